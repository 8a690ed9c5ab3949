//! The dataset artifact and how images become one.
//!
//! A dataset is a folder holding `manifest.json` (shape, dtype, class names,
//! shard list; see [`Manifest`]) and safetensors shards `shard-00000.safetensors`,
//! ... each with `images` `[n, c, h, w]` (plain contiguous NCHW) and `labels`
//! `[n]` int64. [`DatasetWriter`] writes one, [`Dataset`] reads and validates one.
//!
//! The rest turns image files into datasets the way the Python reference tools
//! do: [`folder`] lists files and labels as torchvision's `ImageFolder`,
//! [`convert`] decodes and converts modes as Pillow's `Image.convert`,
//! [`resample`] resizes as Pillow's `Image.resize`, [`recipe`] holds the crop
//! recipes of `ScoreSDE` and ADM, [`import`] runs the parallel pipeline, and
//! [`mnist`] serves the bundled MNIST-5k digits.

pub mod convert;
pub mod error;
pub mod folder;
pub mod import;
#[cfg(msnr_libjpeg)]
pub mod jpeg;
pub mod manifest;
pub mod mnist;
pub mod raster;
pub mod reader;
pub mod recipe;
pub mod resample;
pub mod writer;

pub use error::DataError;
pub use manifest::{DType, Manifest, ShardInfo};
pub use raster::{Raster, Region};
pub use reader::{Dataset, Images, Shard};
pub use writer::DatasetWriter;
