//! The libtorch-free diffusion numerics: noise schedules (`f64` tables), prediction
//! targets, loss weightings (Min-SNR-gamma and its peers) and the optimizer's settings.
//! The checker validates a pipeline's values with them before anything runs; the
//! `msnr-torch` crate builds its tensors from the same types.

pub mod adamw;
pub mod schedule;
pub mod target;
pub mod weighting;
