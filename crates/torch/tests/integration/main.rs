//! The torch crate's one integration test binary: numerics and models against
//! their PyTorch references, the samplers, one training step against the seed repo's
//! `training_losses`, FID's network and metrics against pytorch-fid, scipy and
//! torch-fidelity, the VAE against diffusers, the train, sample and `vae_encode`
//! stages end to end, `train`'s resident and streaming loaders against each other, and
//! data-parallel training (c10d Gloo) against one process.

mod checkpoint;
mod ddp;
mod diffusion;
mod fid;
mod latent_pipeline;
mod models;
mod sample_stage;
mod sampler;
mod step;
mod stream;
mod support;
mod train;
mod vae;
