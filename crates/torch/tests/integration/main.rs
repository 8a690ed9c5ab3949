//! The torch crate's one integration test binary: numerics and models against
//! their PyTorch references, and the train stage end to end.

mod diffusion;
mod models;
mod train;
