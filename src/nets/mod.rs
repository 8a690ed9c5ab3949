//! Denoiser network configurations, without libtorch: from the language's
//! `net` value (`vit { .. }`, `unet { .. }`; and the `vae { .. }` autoencoder) plus the data's facts to a
//! validated configuration. `msnr check` uses them to reject, before anything
//! runs, a dataset that cannot fit its net; the `msnr-torch` crate builds the
//! networks from the same configurations.

pub mod check;
pub mod error;
mod rules;
pub mod spec;
pub mod unet;
pub mod vae;
pub mod vit;

pub use self::check::{check_net, check_net_widths};
pub use self::error::{weights_listing, ModelError};
pub use self::spec::{NetContext, NetParams, NetSpec};
pub use self::unet::UNetConfig;
pub use self::vae::VaeConfig;
pub use self::vit::ViTConfig;
