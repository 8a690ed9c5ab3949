//! The torch crate's one integration test binary: numerics and models against
//! their PyTorch references, one training step against the seed repo's `training_losses`,
//! and the train stage end to end.

mod diffusion;
mod models;
mod sampler;
mod step;
mod train;
