//! The table of stage kinds: for each kind the stdlib declares, its implementation
//! version (part of the cache key), where it runs (in this process, in the libtorch
//! worker, or nowhere yet), and the reader of its typed parameters, which validates
//! them and infers the output's shape for the checker.
//!
//! A new kind is one stdlib declaration, one module with its parameter struct (a
//! [`KindParams`]) and its `run`, and one line in [`KINDS`]; a torch kind also gets one
//! line in the worker's table (`msnr_torch::stages::WORKER_KINDS`). Tests fail when a
//! declared kind has no line here, or a torch kind has no worker line.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::params::{Reader, Shape};
use super::spec::{Reporter, StageError, StageResult, StageSpec};
use super::{checkpoint, classifier, crop, download, fid, images, sample, train, vae_encode};

/// Runs a stage inside the front end process.
pub type LocalRun = fn(&StageSpec, &dyn Reporter) -> Result<StageResult, StageError>;

/// Where a kind's implementation runs.
#[derive(Clone, Copy, Debug)]
pub enum Exec {
    /// In this process (no libtorch).
    Local(LocalRun),
    /// In the `msnr-worker` process (links libtorch).
    Worker,
    /// Declared and type-checked, not implemented yet: `run` refuses it by name.
    Planned,
}

/// A kind's typed parameters: read from the analyzer's values with every check its
/// implementation relies on, serialized into the stage spec, and deserialized by the
/// implementation (in process or in the worker) without re-reading any value.
pub trait KindParams: Serialize + DeserializeOwned {
    /// Reads and validates every parameter, recording each problem in `r`.
    fn read(r: &mut Reader<'_>) -> Option<Self>;

    /// The output's shape, as far as the parameters and the inputs' shapes fix it.
    fn shape(&self, _r: &Reader<'_>) -> Shape {
        Shape::UNKNOWN
    }
}

/// A stage's checked parameters and the output shape they imply.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    /// The kind's parameter struct, serialized (`null` for a planned kind without one).
    pub params: serde_json::Value,
    /// The output's shape.
    pub shape: Shape,
}

/// One stage kind.
#[derive(Clone, Copy, Debug)]
pub struct Kind {
    /// The kind's name as the stdlib declares it.
    pub name: &'static str,
    /// Bumped whenever the implementation's output changes; part of the cache key.
    pub version: u32,
    /// Where it runs.
    pub exec: Exec,
    /// Reads, validates and serializes its parameters.
    pub check: fn(&mut Reader<'_>) -> Option<Checked>,
    /// How many cores it can use at most (`None`: as many as the run's budget gives it);
    /// see [`crate::run::budget`].
    pub max_cores: Option<usize>,
}

impl Kind {
    /// Runs in the `msnr-worker` process (links libtorch).
    #[must_use]
    pub fn torch(&self) -> bool {
        matches!(self.exec, Exec::Worker)
    }
}

/// Every stage kind the stdlib declares.
pub static KINDS: &[Kind] = &[
    Kind {
        name: "download",
        version: 1,
        exec: Exec::Local(download::run),
        check: checked::<download::DownloadParams>,
        max_cores: Some(1),
    },
    Kind {
        name: "images",
        version: 2,
        exec: Exec::Local(images::run),
        check: checked::<images::ImagesParams>,
        max_cores: None,
    },
    Kind {
        name: "mnist",
        version: 1,
        exec: Exec::Local(images::run_mnist),
        check: checked::<images::MnistParams>,
        max_cores: Some(1),
    },
    Kind {
        name: "crop",
        version: 3,
        exec: Exec::Local(crop::run),
        check: checked::<crop::CropParams>,
        max_cores: None,
    },
    Kind {
        name: "vae_encode",
        version: 1,
        exec: Exec::Worker,
        check: checked::<vae_encode::VaeEncodeParams>,
        max_cores: None,
    },
    Kind { name: "train", version: 3, exec: Exec::Worker, check: checked::<train::TrainParams>, max_cores: None },
    Kind {
        name: "classifier",
        version: 2,
        exec: Exec::Worker,
        check: checked::<classifier::ClassifierParams>,
        max_cores: None,
    },
    Kind {
        name: "checkpoint",
        version: 1,
        exec: Exec::Worker,
        check: checked::<checkpoint::CheckpointParams>,
        max_cores: None,
    },
    Kind { name: "sample", version: 1, exec: Exec::Worker, check: checked::<sample::SampleParams>, max_cores: None },
    Kind {
        name: "fid_reference",
        // 2: `stats.npz` entries carry a fixed time, so equal statistics give equal bytes.
        version: 2,
        exec: Exec::Worker,
        check: checked::<fid::FidReferenceParams>,
        max_cores: None,
    },
    // fid 2: `stats.npz` entries carry a fixed time, so equal statistics give equal bytes.
    Kind { name: "fid", version: 2, exec: Exec::Worker, check: checked::<fid::FidParams>, max_cores: None },
];

/// Parameters that choose how a stage runs, never what it produces, by kind: they are
/// left out of the cache key (and so out of `plan`'s reasons and the lockfile), so that
/// changing one re-uses the stored result. `train`'s `loader` qualifies: the resident and
/// the streaming loaders give the same batches in the same order and the same model bit for
/// bit (a test compares them); `device` does not (numerics differ between CPU and CUDA),
/// so the key keeps it.
pub static EXECUTION_ONLY: &[(&str, &str)] = &[("train", "loader")];

/// Whether parameter `param` of kind `kind` is execution-only (see [`EXECUTION_ONLY`]).
#[must_use]
pub fn execution_only(kind: &str, param: &str) -> bool {
    EXECUTION_ONLY.iter().any(|&(k, p)| k == kind && p == param)
}

/// The kind named `name`.
#[must_use]
pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// The kind named `name` if it has an implementation, or the one message every caller
/// gives for a kind that is declared but not implemented yet.
///
/// # Errors
/// When `name` is planned or unknown.
pub fn implemented(name: &str) -> Result<&'static Kind, String> {
    match kind(name) {
        Some(k) if !matches!(k.exec, Exec::Planned) => Ok(k),
        _ => Err(format!("stage kind `{name}` is declared but not implemented yet")),
    }
}

/// Reads `P` and its shape.
fn checked<P: KindParams>(r: &mut Reader<'_>) -> Option<Checked> {
    let params = P::read(r)?;
    let shape = params.shape(r);
    let params = serde_json::to_value(&params).expect("parameter structs serialize");
    Some(Checked { params, shape })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::stdlib;

    #[test]
    fn every_declared_kind_has_a_line_and_every_line_a_declaration() {
        for sig in &stdlib().kinds {
            assert!(kind(&sig.name).is_some(), "stdlib kind `{}` has no line in KINDS", sig.name);
        }
        for k in KINDS {
            assert!(stdlib().kind(k.name).is_some(), "KINDS has `{}`, which the stdlib does not declare", k.name);
        }
    }

    #[test]
    fn unknown_kinds_are_refused_by_name() {
        assert_eq!(implemented("nope").unwrap_err(), "stage kind `nope` is declared but not implemented yet");
        assert!(implemented("train").unwrap().torch());
        assert!(implemented("vae_encode").unwrap().torch());
        assert!(!implemented("crop").unwrap().torch());
    }

    #[test]
    fn every_declared_default_passes_its_kinds_check() {
        // A kind whose required parameters are given plausible values, all others defaulted,
        // must check: a default the checker refuses is a stdlib/implementation mismatch.
        for k in KINDS {
            let params = super::super::check::defaults_for(k.name);
            let none = |_: &str| Shape::UNKNOWN;
            let mut r = Reader::new(&params, &none, Some("cpu"));
            let got = (k.check)(&mut r);
            assert!(r.finish(got).is_ok(), "defaults of `{}` do not check", k.name);
        }
    }
}
