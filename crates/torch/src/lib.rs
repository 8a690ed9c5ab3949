//! msnr-torch: everything of msnr that runs on libtorch (tch), kept out of the
//! front end crate so that `msnr` itself never loads libtorch.
//!
//! - [`diffusion`]: schedules, targets, weightings, the loss, timestep
//!   sampling, the flat-buffer AdamW and EMA, and the denoiser networks;
//! - [`metrics`]: FID's statistics and Frechet distance, KID;
//! - [`stages`]: the torch stage kinds (`train`) and their dispatch, which
//!   the `msnr-worker` binary calls with a spec from the runner;
//! - [`shim`]: the few libtorch calls tch does not bind (autocast dtype, pinned memory,
//!   the fused `AdamW` kernel).

pub mod diffusion;
pub mod metrics;
pub mod shim;
pub mod stages;
#[doc(hidden)]
pub mod testing;
