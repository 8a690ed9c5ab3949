//! Diffusion numerics and models on libtorch: schedules, targets, weightings,
//! the loss, the ViT and the UNet.

pub mod models;
