//! What can go wrong when configuring, building or loading a denoiser.
//! Free of libtorch, so the front end's `check` can report the same errors.

use std::fmt::Write as _;
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

/// Every name of a [`ModelError::Weights`], one per line under its heading
/// (`missing (2):`, `unexpected (1):`, `wrong shape (1):`), and a hint when the
/// unexpected names are the missing ones behind a common prefix (`module.`).
#[must_use]
pub fn weights_listing(missing: &[String], unexpected: &[String], mismatched: &[String]) -> String {
    let parts = [("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)];
    let mut out = String::new();
    for (what, names) in parts.iter().filter(|(_, names)| !names.is_empty()) {
        let _ = write!(out, "\n  {what} ({}):", names.len());
        for name in *names {
            let _ = write!(out, "\n    {name}");
        }
    }
    if let Some(prefix) = common_extra_prefix(missing, unexpected) {
        let _ = write!(out, "\n  every unexpected name is a missing one behind `{prefix}`: set strip = \"{prefix}\"");
    }
    out
}

/// The prefix (ending in `.`) that every unexpected name has before a missing name, if any.
fn common_extra_prefix(missing: &[String], unexpected: &[String]) -> Option<String> {
    let first = unexpected.first()?;
    let prefix = missing.iter().find_map(|m| first.strip_suffix(m.as_str()).filter(|p| p.ends_with('.')))?;
    let all = unexpected.iter().all(|u| u.strip_prefix(prefix).is_some_and(|rest| missing.iter().any(|m| m == rest)));
    all.then(|| prefix.to_owned())
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
    fn the_listing_names_everything_and_spots_a_prefix() {
        let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let text = weights_listing(
            &names(&["a.weight", "b.bias"]),
            &names(&["module.a.weight", "module.b.bias"]),
            &names(&["c: expected [2], found [3]"]),
        );
        assert_eq!(
            text,
            "\n  missing (2):\n    a.weight\n    b.bias\n  unexpected (2):\n    module.a.weight\n    module.b.bias\
             \n  wrong shape (1):\n    c: expected [2], found [3]\
             \n  every unexpected name is a missing one behind `module.`: set strip = \"module.\""
        );
        assert!(!weights_listing(&names(&["a"]), &names(&["x.b"]), &[]).contains("strip"));
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
