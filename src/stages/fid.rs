//! The `fid` kind's parameters (`stdlib/fid.msnr`): the images to score, the reference
//! (a dataset, or statistics in an `.npz`), the Inception weights and the KID subsets,
//! checked before anything runs. The scoring runs in the worker (`msnr_torch::stages::fid`).

use serde::{Deserialize, Serialize};

use super::kinds::KindParams;
use super::params::{ParamError, Reader, Source};
use crate::lang::Value;

/// The `fid` kind's parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FidParams {
    /// The images to score (a `samples` or `dataset` output, or a dataset folder).
    pub samples: Source,
    /// The reference: a dataset, or an `.npz` with `mu` and `sigma` (a file, or a folder
    /// holding exactly one `.npz`).
    pub reference: Source,
    /// pytorch-fid's Inception weights (`.pth` or `.safetensors`, a file or a folder holding
    /// one); required to run.
    pub inception: Option<Source>,
    /// A classifier stage whose features replace Inception's (the classifier distance).
    pub classifier: Option<Source>,
    /// Images per feature-network batch (>= 1).
    pub batch: u64,
    /// KID subsets (>= 1).
    pub kid_subsets: u64,
    /// Largest KID subset (>= 2); smaller sets use all their images.
    pub kid_subset_size: u64,
}

impl KindParams for FidParams {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let samples = r.source("samples");
        let reference = r.source("reference");
        let inception = match r.value("inception") {
            Some(Value::None) => Some(None),
            Some(_) => r.source("inception").map(Some),
            None => None,
        };
        let classifier = match r.value("classifier") {
            Some(Value::None) => Some(None),
            Some(_) => r.source("classifier").map(Some),
            None => None,
        };
        let batch = r.int("batch", 1..);
        let kid_subsets = r.int("kid_subsets", 1..);
        let kid_subset_size = r.int("kid_subset_size", 2..);
        Some(Self {
            samples: samples?,
            reference: reference?,
            inception: inception?,
            classifier: classifier?,
            batch: batch?.unsigned_abs(),
            kid_subsets: kid_subsets?.unsigned_abs(),
            kid_subset_size: kid_subset_size?.unsigned_abs(),
        })
    }
}

impl FidParams {
    /// The Inception weights, or the error that says how to give them.
    ///
    /// # Errors
    /// When `inception` was left unset.
    pub fn inception(&self) -> Result<&Source, ParamError> {
        self.inception.as_ref().ok_or_else(|| {
            ParamError::new("inception", "no Inception weights given").with_help(
                "`use \"std/weights.msnr\"` and set `inception = inception_weights` (pytorch-fid's \
                 pt_inception-2015-12-05-6726825d.pth)",
            )
        })
    }
}
