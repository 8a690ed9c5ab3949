//! Strict loading of safetensors weights into a network's `VarStore`, as PyTorch's
//! `load_state_dict(strict=True)`: every parameter present with its shape and no
//! stray tensor, or an error listing what differs. (`VarStore::load` ignores
//! extra tensors, broadcasts some shape mismatches and changes the variables' kinds.)

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::path::Path;

use tch::nn::VarStore;
use tch::Tensor;

use msnr::nets::ModelError;

/// Loads `path` (safetensors) into `vs`, keeping each variable's kind and device. A file in
/// the store is first checked against its entry's record (size and hash).
///
/// # Errors
/// [`ModelError::Read`] when the file cannot be read or a stored file is corrupted, [`ModelError::Weights`] listing every
/// missing, unexpected or misshapen tensor (then nothing is loaded).
pub fn load_weights(vs: &VarStore, path: &Path) -> Result<(), ModelError> {
    msnr::cache::check_stored_file(path)
        .map_err(|e| ModelError::Read { path: path.to_path_buf(), message: e.to_string() })?;
    let read = |e: tch::TchError| ModelError::Read { path: path.to_path_buf(), message: e.to_string() };
    let file: HashMap<String, Tensor> = Tensor::read_safetensors(path).map_err(read)?.into_iter().collect();
    load_state_dict(vs, &file, path)
}

/// Copies the named tensors `file` (read from `path`, e.g. a checkpoint's state dict) into
/// `vs`, strictly as [`load_weights`].
///
/// # Errors
/// [`ModelError::Weights`] listing every missing, unexpected or misshapen tensor (then
/// nothing is loaded), [`ModelError::Read`] when a copy fails (e.g. a non-numeric tensor).
pub fn load_state_dict<S: BuildHasher>(
    vs: &VarStore,
    file: &HashMap<String, Tensor, S>,
    path: &Path,
) -> Result<(), ModelError> {
    let read = |e: tch::TchError| ModelError::Read { path: path.to_path_buf(), message: e.to_string() };
    let vars = vs.variables();
    let sorted = |mut names: Vec<String>| {
        names.sort();
        names
    };
    let missing = sorted(vars.keys().filter(|k| !file.contains_key(*k)).cloned().collect());
    let unexpected = sorted(file.keys().filter(|k| !vars.contains_key(*k)).cloned().collect());
    let mismatched = sorted(
        vars.iter()
            .filter_map(|(name, var)| file.get(name).map(|src| (name, var.size(), src.size())))
            .filter(|(_, want, got)| want != got)
            .map(|(name, want, got)| format!("{name}: expected {want:?}, found {got:?}"))
            .collect(),
    );
    if !(missing.is_empty() && unexpected.is_empty() && mismatched.is_empty()) {
        return Err(ModelError::Weights { path: path.to_path_buf(), missing, unexpected, mismatched });
    }
    tch::no_grad(|| vars.iter().try_for_each(|(name, var)| var.shallow_clone().f_copy_(&file[name]))).map_err(read)
}

#[cfg(test)]
mod tests {
    use tch::nn::Init;
    use tch::{Device, Kind};

    use super::*;

    fn store(names: &[(&str, &[i64])]) -> VarStore {
        let vs = VarStore::new(Device::Cpu);
        for (name, shape) in names {
            let _ = vs.root().var(name, shape, Init::Const(0.0));
        }
        vs
    }

    #[test]
    fn loads_matching_weights_and_reports_differences() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let a = Tensor::from_slice(&[1.0f32, 2.0]);
        let b = Tensor::ones([2, 2], (Kind::Float, Device::Cpu));
        Tensor::write_safetensors(&[("a", &a), ("b", &b), ("extra", &a)], &path).unwrap();

        let ok = store(&[("a", &[2]), ("b", &[2, 2])]);
        let err = load_weights(&ok, &path).unwrap_err();
        assert!(
            matches!(&err, ModelError::Weights { unexpected, missing, .. } if unexpected == &["extra"] && missing.is_empty())
        );

        let bad = store(&[("a", &[1]), ("c", &[2])]);
        let ModelError::Weights { missing, mismatched, .. } = load_weights(&bad, &path).unwrap_err() else { panic!() };
        assert_eq!(missing, ["c"]);
        assert_eq!(mismatched, ["a: expected [1], found [2]"]);

        Tensor::write_safetensors(&[("a", &a), ("b", &b)], &path).unwrap();
        load_weights(&ok, &path).unwrap();
        assert_eq!(ok.variables()["a"], a);
    }

    #[test]
    fn unreadable_files_name_the_path() {
        let err = load_weights(&store(&[]), Path::new("/nonexistent/w.safetensors")).unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent/w.safetensors: cannot read weights"), "{err}");
    }
}
