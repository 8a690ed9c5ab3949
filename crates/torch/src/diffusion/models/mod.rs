//! Networks (the denoisers and FID's feature network), structured like their reference
//! implementations so their checkpoints load by name:
//! - [`vit`]: the seed paper's ViT (Min-SNR-Diffusion-Training, `vision_transformer.py`);
//! - [`unet`]: the ADM UNet (guided-diffusion, `unet.py`);
//! - [`denoiser`]: the [`Denoiser`] trait the stages use and [`build`];
//! - [`inception`]: pytorch-fid's FID Inception-v3, the feature network of FID and KID;
//! - [`vae`]: Stable Diffusion's VAE (diffusers' `AutoencoderKL`), for latent diffusion;
//! - [`detector`]: NVIDIA's `TorchScript` Inception-v3, as EDM's `fid.py` calls it;
//! - [`weights`]: strict safetensors loading.
//!
//! Their configurations and validation live without libtorch in `msnr::nets`
//! (re-exported here), so the front end's `msnr check` uses the same rules.

pub mod denoiser;
pub mod detector;
pub mod inception;
mod layers;
pub mod unet;
pub mod vae;
pub mod vit;
pub mod weights;

pub use self::denoiser::{build, Denoiser};
pub use self::unet::{UNet, UNetConfig};
pub use self::vae::AutoencoderKL;
pub use self::vit::{ViT, ViTConfig};
pub use self::weights::{load_state_dict, load_weights};
pub use msnr::nets::{check_net, ModelError, NetContext, NetParams, NetSpec, VaeConfig};
