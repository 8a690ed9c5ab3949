//! `manifest.json`: what a dataset folder holds (count, shape, dtype, classes,
//! shards), and the checks that make a broken one fail with a clear message.
//!
//! ```json
//! {
//!   "format": "msnr-dataset", "version": 1,
//!   "count": 5000, "channels": 1, "height": 28, "width": 28, "dtype": "u8",
//!   "classes": ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
//!   "shards": [{ "file": "shard-00000.safetensors", "count": 5000 }]
//! }
//! ```

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::DataError;

/// The manifest's file name inside a dataset folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The `format` tag every manifest carries.
pub const FORMAT: &str = "msnr-dataset";
/// The manifest layout version this code reads and writes.
pub const VERSION: u32 = 1;

/// The element type of the `images` tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// Pixels 0..=255.
    U8,
    /// Floats (VAE latents).
    F32,
}

impl DType {
    /// Bytes per element.
    #[must_use]
    pub fn size(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::F32 => 4,
        }
    }

    /// The matching safetensors dtype.
    #[must_use]
    pub fn safetensors(self) -> safetensors::Dtype {
        match self {
            Self::U8 => safetensors::Dtype::U8,
            Self::F32 => safetensors::Dtype::F32,
        }
    }
}

/// The largest item a dataset may hold (4 GiB: a 16384 x 16384 x 4 float32 latent fits).
pub const MAX_ITEM_BYTES: usize = 1 << 32;

/// One shard file and how many items it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardInfo {
    /// File name inside the dataset folder (`shard-00000.safetensors`).
    pub file: String,
    /// Items in the shard.
    pub count: usize,
}

/// The content of `manifest.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: u32,
    /// Total items over all shards.
    pub count: usize,
    /// Channels per item (1 for L, 3 for RGB, 4 for SD-VAE latents).
    pub channels: usize,
    /// Item height.
    pub height: usize,
    /// Item width.
    pub width: usize,
    /// Element type of `images`.
    pub dtype: DType,
    /// Class names; label `i` is `classes[i]`.
    pub classes: Vec<String>,
    /// The shards, in item order.
    pub shards: Vec<ShardInfo>,
}

impl Manifest {
    /// An empty manifest for items of `[channels, height, width]`.
    #[must_use]
    pub fn new(shape: [usize; 3], dtype: DType, classes: Vec<String>) -> Self {
        let [channels, height, width] = shape;
        let format = FORMAT.to_owned();
        Self { format, version: VERSION, count: 0, channels, height, width, dtype, classes, shards: Vec::new() }
    }

    /// Elements per item (`c * h * w`).
    #[must_use]
    pub fn item_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Bytes per item.
    #[must_use]
    pub fn item_bytes(&self) -> usize {
        self.item_len() * self.dtype.size()
    }

    /// Reads and validates `dir/manifest.json`.
    ///
    /// # Errors
    /// When the file is missing, is not valid JSON of this layout, or
    /// contradicts itself; the message names the file.
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        let path = dir.join(MANIFEST_FILE);
        let text = fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DataError::invalid(
                &path,
                "not found: the folder is not a dataset (the output of images, mnist or crop)",
            ),
            _ => DataError::io(&path, e),
        })?;
        let manifest: Self = serde_json::from_str(&text).map_err(|e| DataError::invalid(&path, e.to_string()))?;
        manifest.validate().map_err(|message| DataError::invalid(&path, message))?;
        Ok(manifest)
    }

    /// Writes `dir/manifest.json`.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn save(&self, dir: &Path) -> Result<(), DataError> {
        let path = dir.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| DataError::invalid(&path, e.to_string()))?;
        fs::write(&path, text + "\n").map_err(|e| DataError::io(&path, e))
    }

    /// Checks the fields agree with each other.
    ///
    /// # Errors
    /// A message saying which field is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("`format` is {:?}, expected {FORMAT:?}", self.format));
        }
        if self.version != VERSION {
            return Err(format!("`version` {} is not supported (this msnr reads version {VERSION})", self.version));
        }
        let (c, h, w) = (self.channels, self.height, self.width);
        let bytes = c.checked_mul(h).and_then(|n| n.checked_mul(w)).and_then(|n| n.checked_mul(self.dtype.size()));
        match bytes {
            Some(0) => return Err(format!("item shape [{c}, {h}, {w}] has a zero dimension")),
            Some(n) if n <= MAX_ITEM_BYTES => {}
            _ => return Err(format!("item shape [{c}, {h}, {w}] is too large (over {MAX_ITEM_BYTES} bytes an item)")),
        }
        if self.classes.is_empty() {
            return Err("`classes` is empty".into());
        }
        self.validate_shards()
    }

    fn validate_shards(&self) -> Result<(), String> {
        for shard in &self.shards {
            let plain = Path::new(&shard.file).file_name().is_some_and(|name| name == shard.file.as_str());
            if !plain || !shard.file.ends_with(".safetensors") {
                return Err(format!("shard file {:?} is not a plain `.safetensors` file name", shard.file));
            }
        }
        let total = self.shards.iter().try_fold(0_usize, |sum, s| sum.checked_add(s.count));
        if total != Some(self.count) {
            let total = total.map_or_else(|| "more than can be counted".to_string(), |t| t.to_string());
            return Err(format!("`count` is {} but the shards hold {total} items", self.count));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        let mut m = Manifest::new([3, 8, 8], DType::U8, vec!["a".into()]);
        m.shards.push(ShardInfo { file: "shard-00000.safetensors".into(), count: 5 });
        m.count = 5;
        m
    }

    #[test]
    fn valid_manifest_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        manifest().save(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), manifest());
    }

    #[test]
    fn count_mismatch_is_reported() {
        let mut m = manifest();
        m.count = 6;
        assert_eq!(m.validate().unwrap_err(), "`count` is 6 but the shards hold 5 items");
    }

    #[test]
    fn shapes_and_counts_that_overflow_are_errors() {
        let mut m = manifest();
        (m.channels, m.height) = (1 << 32, 1 << 32);
        assert!(m.validate().unwrap_err().contains("is too large"));
        let mut m = manifest();
        (m.height, m.width) = (1 << 16, 1 << 16);
        assert!(m.validate().unwrap_err().contains("is too large"), "over 4 GiB an item");
        let mut m = manifest();
        m.shards[0].count = usize::MAX;
        m.shards.push(m.shards[0].clone());
        assert!(m.validate().unwrap_err().contains("more than can be counted"));
    }

    #[test]
    fn shard_path_traversal_is_refused() {
        let mut m = manifest();
        m.shards[0].file = "../x.safetensors".into();
        assert!(m.validate().unwrap_err().contains("not a plain"));
    }

    #[test]
    fn zero_dimension_and_version_are_refused() {
        let mut m = manifest();
        m.width = 0;
        assert!(m.validate().unwrap_err().contains("zero dimension"));
        let mut m = manifest();
        m.version = 7;
        assert!(m.validate().unwrap_err().contains("`version` 7"));
    }

    #[test]
    fn missing_and_malformed_manifests_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("manifest.json") && err.contains("not a dataset"), "{err}");
        fs::write(dir.path().join(MANIFEST_FILE), r#"{"format": "msnr-dataset", "version": 1}"#).unwrap();
        let err = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("manifest.json") && err.contains("missing field `count`"), "{err}");
        fs::write(dir.path().join(MANIFEST_FILE), r#"{"format": "msnr-dataset", "dtype": "f16"}"#).unwrap();
        let err = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("unknown variant `f16`"), "{err}");
    }
}
