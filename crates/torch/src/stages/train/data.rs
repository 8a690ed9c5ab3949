//! The training data on the device: a dataset artifact's items as stored
//! (`uint8` images stay `uint8`, a quarter of the memory of `float32`: CelebA 64 is 2.5 GB
//! instead of 10) and labels; a batch is gathered, then scaled from 0..255 to
//! [-1, 1] (latents are used as stored).

use std::path::Path;

use tch::{Device, Kind, Tensor};

use msnr::data::reader::{Dataset, Images};
use msnr::stages::StageError;

/// Items and labels resident on the training device.
pub struct TrainData {
    /// `[n, c, h, w]`, uint8 (images) or float32 (latents).
    pub images: Tensor,
    /// `[n]` int64.
    pub labels: Tensor,
    /// Classes; 0 or 1 class trains an unconditional net.
    pub num_classes: i64,
    /// Channels, height, width.
    pub shape: [i64; 3],
}

impl TrainData {
    /// Loads the dataset at `dir` onto `device`.
    ///
    /// # Errors
    /// An unreadable or empty dataset, named.
    pub fn load(dir: &Path, device: Device) -> Result<Self, StageError> {
        let data = Dataset::open(dir).map_err(|e| StageError::param("data", e.to_string()))?;
        let m = data.manifest().clone();
        if m.count == 0 {
            return Err(StageError::param("data", "the dataset is empty"));
        }
        let (images, labels) = data.read_all().map_err(|e| StageError::param("data", e.to_string()))?;
        let shape = [to_i64(m.count), to_i64(m.channels), to_i64(m.height), to_i64(m.width)];
        let images = match &images {
            Images::U8(bytes) => Tensor::from_slice(bytes).view(shape),
            Images::F32(values) => Tensor::from_slice(values).view(shape),
        };
        let num_classes = if m.classes.len() > 1 { to_i64(m.classes.len()) } else { 0 };
        Ok(Self {
            images: images.to_device(device),
            labels: Tensor::from_slice(&labels).to_device(device),
            num_classes,
            shape: [shape[1], shape[2], shape[3]],
        })
    }

    /// The items at `idx` as float32 in the model's range: images scaled to [-1, 1].
    pub fn batch(&self, idx: &Tensor) -> Tensor {
        let items = self.images.index_select(0, idx);
        if items.kind() == Kind::Uint8 {
            items.to_kind(Kind::Float) / 127.5 - 1.0
        } else {
            items
        }
    }

    /// Number of items.
    #[must_use]
    pub fn len(&self) -> i64 {
        self.images.size()[0]
    }

    /// True when there are no items (never, after [`TrainData::load`]).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn to_i64(v: usize) -> i64 {
    i64::try_from(v).expect("dataset dimensions fit in i64")
}
