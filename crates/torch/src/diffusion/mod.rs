//! Diffusion numerics and models on libtorch: schedules, targets, weightings,
//! the loss, timestep sampling, the flat-buffer optimizer and EMA, the `ViT` and the `UNet`,
//! and the samplers.

pub mod ema;
pub mod flat;
pub mod loss;
pub mod models;
pub mod optimizer;
pub mod sampler;
pub mod scaler;
pub mod schedule;
pub mod target;
pub mod timesteps;
pub mod weighting;

pub use schedule::OnDevice;
pub use target::TargetOps;
