//! NVIDIA's `TorchScript` Inception-v3 "detector" (`inception-2015-12-05.pt`, published with
//! StyleGAN2-ADA's metrics), the feature network of EDM's `fid.py` and so of the seed
//! paper's FID-50K numbers. It is loaded with libtorch's `TorchScript` loader (tch's
//! [`CModule`]) and called as EDM calls it (`fid.py`, `calculate_inception_stats`):
//! `detector_net(images, return_features=True)` on uint8 NCHW images in `[0, 255]`,
//! grayscale repeated to 3 channels, giving 2048 features per image (the network resizes
//! to 299x299 itself). `return_features` is its second positional argument.

use std::io::Read;
use std::path::{Path, PathBuf};

use tch::{CModule, Device, IValue, Kind, Tensor};

/// Features per image.
pub const FEATURES: i64 = 2048;

/// A loaded `TorchScript` detector.
#[derive(Debug)]
pub struct Detector {
    module: CModule,
    device: Device,
    path: PathBuf,
}

/// Whether `path` is a `TorchScript` archive (a zip holding `code/` and `constants.pkl`, which
/// a `torch.save` file does not), as opposed to a state dict.
#[must_use]
pub fn is_torchscript(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    let zip = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == *b"PK\x03\x04";
    zip && std::fs::File::open(path)
        .ok()
        .and_then(|f| zip::ZipArchive::new(f).ok())
        .is_some_and(|archive| archive.file_names().any(|n| n.ends_with("/constants.pkl") || n.contains("/code/")))
}

impl Detector {
    /// Loads the module at `path` onto `device`, in evaluation mode.
    ///
    /// # Errors
    /// libtorch's message when the file is no loadable `TorchScript` module.
    pub fn load(path: &Path, device: Device) -> Result<Self, String> {
        let mut module = CModule::load_on_device(path, device).map_err(|e| format!("not a TorchScript module: {e}"))?;
        module.set_eval();
        Ok(Self { module, device, path: path.to_path_buf() })
    }

    /// Features `[n, 2048]` (float32, CPU) of uint8 images `[n, c, h, w]` (c = 1 or 3).
    ///
    /// # Errors
    /// Images that are not uint8 NCHW with 1 or 3 channels, or a module that fails or does
    /// not return `[n, 2048]`.
    pub fn features(&self, images: &Tensor) -> Result<Tensor, String> {
        let size = images.size();
        if images.kind() != Kind::Uint8 || size.len() != 4 || !matches!(size[1], 1 | 3) {
            return Err(format!("expected uint8 images [n, 1 or 3, h, w], got {:?} {size:?}", images.kind()));
        }
        let x = if size[1] == 1 { images.repeat([1, 3, 1, 1]) } else { images.shallow_clone() };
        let inputs = [IValue::Tensor(x.to_device(self.device)), IValue::Bool(true)];
        let out = tch::no_grad(|| self.module.forward_is(&inputs)).map_err(|e| format!("the detector failed: {e}"))?;
        let IValue::Tensor(features) = out else {
            return Err(format!("{}: the detector returned no tensor", self.path.display()));
        };
        if features.size() != [size[0], FEATURES] {
            return Err(format!(
                "{}: the detector returned {:?}, expected [{}, {FEATURES}] features",
                self.path.display(),
                features.size(),
                size[0]
            ));
        }
        Ok(features.to_kind(Kind::Float).to_device(Device::Cpu))
    }

    /// [`Detector::features`] `batch` images at a time, calling `done` with the count so far.
    ///
    /// # Errors
    /// As [`Detector::features`].
    pub fn features_batched(&self, images: &Tensor, batch: i64, done: &mut dyn FnMut(i64)) -> Result<Tensor, String> {
        let n = images.size().first().copied().unwrap_or(0);
        let mut parts = Vec::new();
        for start in (0..n).step_by(usize::try_from(batch.max(1)).unwrap_or(1)) {
            let len = batch.max(1).min(n - start);
            parts.push(self.features(&images.narrow(0, start, len))?);
            done(start + len);
        }
        if parts.is_empty() {
            return Ok(Tensor::zeros([0, FEATURES], (Kind::Float, Device::Cpu)));
        }
        Ok(Tensor::cat(&parts, 0))
    }
}
