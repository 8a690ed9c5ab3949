//! What can go wrong when configuring, building or loading a denoiser.
//! Free of libtorch, so the front end's `check` can report the same errors.

use std::path::PathBuf;

/// An error from the model layer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// A parameter (e.g. `net.patch`) or data fact rules the network out.
    #[error("{param}: {message}")]
    Invalid {
        /// The parameter path as the user wrote it: `net.patch`, `net.mults`, `data.image_size`.
        param: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A weights file whose names or shapes differ from the network's parameters.
    #[error("{}: weights do not match the network: {}", path.display(), summary(missing, unexpected, mismatched))]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// Network parameters the file lacks.
        missing: Vec<String>,
        /// Tensors in the file the network has no parameter for.
        unexpected: Vec<String>,
        /// `name: expected [..], found [..]` for each parameter whose shape differs.
        mismatched: Vec<String>,
    },
    /// A weights file that could not be read.
    #[error("{}: cannot read weights: {message}", path.display())]
    Read {
        /// The weights file.
        path: PathBuf,
        /// libtorch's or safetensors' message.
        message: String,
    },
}

impl ModelError {
    /// An [`ModelError::Invalid`] for `param` with `message`.
    #[must_use]
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self::Invalid { param: param.to_string(), message: message.into() }
    }

    /// The (parameter path, message) pair `msnr check` reports; errors not tied to a
    /// parameter are reported against `net`.
    #[must_use]
    pub fn into_param(self) -> (String, String) {
        match self {
            Self::Invalid { param, message } => (param, message),
            other => ("net".to_string(), other.to_string()),
        }
    }
}

/// "missing a, b; unexpected c; shape x: ..." with at most five names per list.
fn summary(missing: &[String], unexpected: &[String], mismatched: &[String]) -> String {
    let parts = [("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)];
    let lists: Vec<String> = parts
        .iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(what, names)| format!("{what} ({}): {}", names.len(), abbreviate(names)))
        .collect();
    lists.join("; ")
}

/// The first five names, then "and N more".
fn abbreviate(names: &[String]) -> String {
    let shown = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    match names.len() {
        n if n > 5 => format!("{shown} and {} more", n - 5),
        _ => shown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_names_the_parameter() {
        let e = ModelError::invalid("net.patch", "3 does not divide 32");
        assert_eq!(e.to_string(), "net.patch: 3 does not divide 32");
        assert_eq!(e.into_param(), ("net.patch".to_string(), "3 does not divide 32".to_string()));
    }

    #[test]
    fn weights_error_lists_names_and_abbreviates() {
        let names: Vec<String> = (0..7).map(|i| format!("w{i}")).collect();
        let e = ModelError::Weights {
            path: "m.safetensors".into(),
            missing: names,
            unexpected: vec!["extra".into()],
            mismatched: vec![],
        };
        let text = e.to_string();
        assert!(text.contains("missing (7): w0, w1, w2, w3, w4 and 2 more"), "{text}");
        assert!(text.contains("unexpected (1): extra"), "{text}");
        assert!(!text.contains("wrong shape"), "{text}");
    }
}
