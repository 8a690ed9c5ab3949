//! The `fid` kind's parameters (`stdlib/fid.msnr`): the images to score, the reference
//! (a dataset, a `fid_reference` stage's cached statistics, or statistics in an `.npz`),
//! the Inception weights and the KID subsets, checked before anything runs; and the
//! `fid_reference` kind's (a reference's features, computed once). The scoring runs in the worker (`msnr_torch::stages::fid`).

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

/// An optional `files` or stage parameter (`files?`, `classifier?`): `None` inside when unset,
/// `None` outside when unreadable (the error recorded), as [`Reader::opt_str`].
#[allow(clippy::option_option)]
fn optional_source(r: &mut Reader<'_>, name: &str) -> Option<Option<Source>> {
    match r.value(name) {
        Some(Value::None) => Some(None),
        Some(_) => r.source(name).map(Some),
        None => None,
    }
}

impl KindParams for FidParams {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let samples = r.source("samples");
        let reference = r.source("reference");
        let inception = optional_source(r, "inception");
        let classifier = optional_source(r, "classifier");
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
        inception(self.inception.as_ref())
    }
}

/// `inception`, or the error that says how to give it.
fn inception(given: Option<&Source>) -> Result<&Source, ParamError> {
    given.ok_or_else(|| {
        ParamError::new("inception", "no Inception weights given").with_help(
            "`use \"std/weights.msnr\"` and set `inception = inception_weights` (pytorch-fid's \
             pt_inception-2015-12-05-6726825d.pth) or `inception = inception_detector` (NVIDIA's TorchScript \
             network, as EDM's fid.py)",
        )
    })
}

/// The `fid_reference` kind's parameters: a reference dataset's features and statistics in
/// one feature network, computed once and cached as their own artifact, so every `fid`
/// stage scoring against that reference reads them instead of recomputing them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FidReferenceParams {
    /// The reference images.
    pub images: Source,
    /// The Inception weights (pytorch-fid's, or NVIDIA's `TorchScript` detector).
    pub inception: Option<Source>,
    /// A classifier stage whose features replace Inception's.
    pub classifier: Option<Source>,
    /// Images per feature-network batch (>= 1).
    pub batch: u64,
}

impl KindParams for FidReferenceParams {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let images = r.source("images");
        let inception = optional_source(r, "inception");
        let classifier = optional_source(r, "classifier");
        let batch = r.int("batch", 1..);
        Some(Self { images: images?, inception: inception?, classifier: classifier?, batch: batch?.unsigned_abs() })
    }
}

impl FidReferenceParams {
    /// The Inception weights, or the error that says how to give them.
    ///
    /// # Errors
    /// When `inception` was left unset.
    pub fn inception(&self) -> Result<&Source, ParamError> {
        inception(self.inception.as_ref())
    }
}
