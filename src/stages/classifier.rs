//! The `classifier` kind's parameters (`stdlib/classifier.msnr`): a small classifier
//! trained on a labelled dataset, whose features give the classifier distance. The
//! training runs in the worker (`msnr_torch::stages::classifier`).

use serde::{Deserialize, Serialize};

use super::kinds::KindParams;
use super::params::{Positive, Reader, Source};

/// The `classifier` kind's parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassifierParams {
    /// The labelled training images.
    pub data: Source,
    /// Adam steps (>= 1).
    pub steps: u64,
    /// Images per step (>= 1).
    pub batch: u64,
    /// Adam's learning rate (> 0).
    pub lr: f64,
    /// Items held out for the test accuracy (>= 1).
    pub holdout: u64,
    /// Seed of initialisation, shuffle and batches.
    pub seed: u64,
}

impl KindParams for ClassifierParams {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let data = r.source("data");
        let steps = r.int("steps", 1..);
        let batch = r.int("batch", 1..);
        let lr = r.float("lr", Positive);
        let holdout = r.int("holdout", 1..);
        let seed = r.int("seed", 0..);
        Some(Self {
            data: data?,
            steps: steps?.unsigned_abs(),
            batch: batch?.unsigned_abs(),
            lr: lr?,
            holdout: holdout?.unsigned_abs(),
            seed: seed?.unsigned_abs(),
        })
    }
}
