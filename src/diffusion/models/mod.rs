//! Denoiser networks, structured like their reference implementations so their
//! checkpoints load by name:
//! - [`vit`]: the seed paper's ViT (Min-SNR-Diffusion-Training, `vision_transformer.py`);
//! - [`unet`]: the ADM UNet (guided-diffusion, `unet.py`);
//! - [`denoiser`]: the [`Denoiser`] trait the stages use and [`build`];
//! - [`spec`] and [`check`]: from the language's `net` value to a validated
//!   configuration, without libtorch (the front end's `msnr check` uses them);
//! - [`weights`]: strict safetensors loading.
//!
//! Files free of libtorch: `args`, `check`, `error`, `rules`, `spec`, `vit/config`, `unet/config`.

mod args;
pub mod check;
pub mod denoiser;
pub mod error;
mod layers;
mod rules;
pub mod spec;
pub mod unet;
pub mod vit;
pub mod weights;

pub use self::check::check_net;
pub use self::denoiser::{build, Denoiser};
pub use self::error::ModelError;
pub use self::spec::{NetContext, NetSpec};
pub use self::unet::{UNet, UNetConfig};
pub use self::vit::{ViT, ViTConfig};
pub use self::weights::load_weights;
