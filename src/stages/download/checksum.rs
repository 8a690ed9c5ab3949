//! Content checksums of a downloaded file (SHA-256, FIPS 180-4; BLAKE3) and
//! how they are checked: against the pipeline's `sha256`/`blake3` parameters,
//! or, when the pipeline gives neither, against the pin an earlier run recorded
//! in the lockfile.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::stages::spec::Reporter;

/// The lockfile pin key under which a download's SHA-256 is recorded.
pub const SHA256_PIN: &str = "sha256";

/// Checksums the pipeline asked for (lowercase hex).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// The `sha256` parameter.
    pub sha256: Option<String>,
    /// The `blake3` parameter.
    pub blake3: Option<String>,
}

/// Checksums of the file actually downloaded (lowercase hex).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actual {
    /// Always computed: it is what the lockfile pins.
    pub sha256: String,
    /// Computed only when the pipeline gave a `blake3`.
    pub blake3: Option<String>,
}

impl Expected {
    /// The optional `sha256` and `blake3` parameters, checked and lowercased.
    ///
    /// # Errors
    /// `(parameter, message)` when a value is not 64 hexadecimal digits.
    pub fn from_hex(sha256: Option<&str>, blake3: Option<&str>) -> Result<Self, (&'static str, String)> {
        Ok(Self { sha256: hex_param("sha256", sha256)?, blake3: hex_param("blake3", blake3)? })
    }

    /// Whether the pipeline gave any checksum.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.sha256.is_none() && self.blake3.is_none()
    }

    /// Checks `actual` against the parameters or, when there are none, against
    /// `pinned` (the lockfile's SHA-256 from an earlier run).
    ///
    /// # Errors
    /// A message naming the URL, the expected and the actual digest.
    pub fn verify(&self, actual: &Actual, pinned: Option<&str>, url: &str) -> Result<(), String> {
        if let Some(want) = &self.sha256 {
            check("sha256", want, &actual.sha256, url)?;
        }
        if let (Some(want), Some(got)) = (&self.blake3, &actual.blake3) {
            check("blake3", want, got, url)?;
        }
        match pinned.map(str::to_ascii_lowercase) {
            Some(pin) if self.is_empty() && pin != actual.sha256 => Err(format!(
                "sha256 mismatch for {url}: the lockfile pinned {pin} (recorded by an earlier run), but the \
                 download is {}; if the file changed upstream on purpose, delete this stage's `sha256` pin from \
                 the lockfile or re-run with `--update-pins`",
                actual.sha256
            )),
            _ => Ok(()),
        }
    }
}

/// Compares one digest.
fn check(algorithm: &str, want: &str, got: &str, url: &str) -> Result<(), String> {
    if want == got {
        Ok(())
    } else {
        Err(format!("{algorithm} mismatch for {url}: expected {want}, got {got}"))
    }
}

/// An optional hex digest parameter, lowercased.
fn hex_param(name: &'static str, value: Option<&str>) -> Result<Option<String>, (&'static str, String)> {
    let Some(text) = value.map(str::trim) else { return Ok(None) };
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(Some(text.to_ascii_lowercase()))
    } else {
        Err((name, format!("expected 64 hexadecimal digits, got {text:?}")))
    }
}

/// Hashes the file at `path` in one pass: SHA-256 always, BLAKE3 when
/// `with_blake3`. Reports progress in bytes.
///
/// # Errors
/// When the file cannot be read.
pub fn digest(path: &Path, with_blake3: bool, reporter: &dyn Reporter) -> io::Result<Actual> {
    let mut file = File::open(path)?;
    let total = file.metadata()?.len();
    let mut sha = Sha256::new();
    let mut b3 = with_blake3.then(blake3::Hasher::new);
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        if let Some(h) = b3.as_mut() {
            h.update(&buf[..n]);
        }
        done += n as u64;
        reporter.progress(done, total, "verifying checksum");
    }
    Ok(Actual { sha256: hex(&sha.finalize()), blake3: b3.map(|h| h.finalize().to_hex().to_string()) })
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::spec::Silent;

    /// SHA-256("abc"), FIPS 180-2 appendix B.1.
    const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    /// BLAKE3("abc"), from the reference implementation's test vectors.
    const ABC_BLAKE3: &str = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85";

    fn actual() -> Actual {
        Actual { sha256: ABC_SHA256.into(), blake3: Some(ABC_BLAKE3.into()) }
    }

    #[test]
    fn digests_known_vectors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(digest(&path, true, &Silent).unwrap(), actual());
        assert_eq!(digest(&path, false, &Silent).unwrap().blake3, None);
    }

    #[test]
    fn reads_params() {
        let upper = ABC_SHA256.to_ascii_uppercase();
        let expected = Expected::from_hex(Some(&upper), None).unwrap();
        assert_eq!(expected.sha256.as_deref(), Some(ABC_SHA256));
        let short = Expected::from_hex(Some("abc"), None).unwrap_err();
        assert_eq!(short.0, "sha256");
        assert!(short.1.contains("expected 64 hexadecimal digits"));
    }

    #[test]
    fn verifies_parameters_before_pins() {
        let wrong = "0".repeat(64);
        let by_param = Expected { sha256: Some(wrong.clone()), blake3: None };
        let err = by_param.verify(&actual(), None, "u").unwrap_err();
        assert!(err.contains(&wrong) && err.contains(ABC_SHA256), "{err}");
        let by_blake3 = Expected { sha256: None, blake3: Some(wrong.clone()) };
        assert!(by_blake3.verify(&actual(), None, "u").unwrap_err().starts_with("blake3 mismatch"));
        let unset = Expected::default();
        assert_eq!(unset.verify(&actual(), Some(ABC_SHA256), "u"), Ok(()));
        let err = unset.verify(&actual(), Some(&wrong), "u").unwrap_err();
        assert!(err.contains("lockfile pinned") && err.contains("--update-pins"), "{err}");
        let given = Expected { sha256: Some(ABC_SHA256.into()), blake3: None };
        assert_eq!(given.verify(&actual(), Some(&wrong), "u"), Ok(()), "a parameter overrides a stale pin");
    }
}
