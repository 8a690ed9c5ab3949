//! The `download` stage: fetches one URL (`http`, `https` or `file`) into the
//! stage's output, resuming an interrupted transfer and retrying transient
//! failures, verifies its checksum (or the lockfile's pin), and extracts it
//! when it is an archive.
//!
//! The stdlib declares it as
//! `kind download -> files { url: str, sha256: str?, blake3: str?, extract: bool = true }`.

mod checksum;
mod fetch;
mod retry;
mod source;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::archive::{self, Format};
use super::kinds::KindParams;
use super::params::{ParamError, Reader};
use super::spec::{Reporter, StageError, StageResult, StageSpec};
use checksum::{Expected, SHA256_PIN};
use fetch::Partial;
pub use retry::{RetryPolicy, BASE_DELAY_ENV, TRIES_ENV};
use source::Source;

/// The `download` kind's parameters (`stdlib/data.msnr`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DownloadParams {
    /// The address to fetch (trimmed).
    pub url: String,
    /// Expected SHA-256 (hex), when given.
    pub sha256: Option<String>,
    /// Expected BLAKE3 (hex), when given.
    pub blake3: Option<String>,
    /// Unpack a recognised archive.
    pub extract: bool,
}

impl KindParams for DownloadParams {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let url = r.str("url").map(|u| u.trim().to_owned());
        if let Some(Err(m)) = url.as_deref().map(Source::parse) {
            r.fail::<()>(ParamError::new("url", m));
        }
        let sha256 = r.opt_str("sha256");
        let blake3 = r.opt_str("blake3");
        if let (Some(s), Some(b)) = (&sha256, &blake3) {
            if let Err(e) = Expected::from_hex(s.as_deref(), b.as_deref()) {
                r.fail::<()>(ParamError::new(e.0, e.1));
            }
        }
        let extract = r.bool("extract");
        Some(Self { url: url?, sha256: sha256?, blake3: blake3?, extract: extract? })
    }
}

/// The stage's parameters, with the URL parsed and the hashes decoded.
struct Params {
    url: String,
    source: Source,
    expected: Expected,
    extract: bool,
}

impl Params {
    /// Reads the typed parameters of `spec`.
    fn read(spec: &StageSpec) -> Result<Self, StageError> {
        let p: DownloadParams = spec.typed()?;
        let source = Source::parse(&p.url).map_err(|m| StageError::param("url", m))?;
        let expected = Expected::from_hex(p.sha256.as_deref(), p.blake3.as_deref())
            .map_err(|(name, message)| StageError::param(name, message))?;
        Ok(Self { url: p.url, source, expected, extract: p.extract })
    }
}

/// Runs the stage with the retry policy from the environment
/// ([`TRIES_ENV`], [`BASE_DELAY_ENV`]).
///
/// # Errors
/// A bad parameter, a failed transfer, a checksum mismatch, or an unsafe or
/// malformed archive; the output folder is then not to be cached.
pub fn run(spec: &StageSpec, reporter: &dyn Reporter) -> Result<StageResult, StageError> {
    run_with(spec, reporter, &RetryPolicy::from_env())
}

/// Runs the stage with an explicit retry policy.
///
/// # Errors
/// As [`run`].
pub fn run_with(spec: &StageSpec, reporter: &dyn Reporter, policy: &RetryPolicy) -> Result<StageResult, StageError> {
    let params = Params::read(spec)?;
    let name = source::file_name(&params.url);
    let partial = Partial::in_dir(&spec.work_dir);
    let local = obtain(&params, &partial, &spec.work_dir, policy, reporter)?;
    let bytes = fs::metadata(&local).map_err(|e| StageError::io(&local, e))?.len();
    let sha256 = verify(&params, spec, &local, &partial, reporter)?;
    let files = place(&params, &local, &name, &spec.out_dir, reporter)?;
    if matches!(params.source, Source::Http(_)) {
        let _ = partial.discard();
    }
    reporter.log(&format!("downloaded {} ({bytes} bytes, {files} files)", params.url));
    #[allow(clippy::cast_precision_loss)]
    let metrics = BTreeMap::from([("bytes".to_owned(), bytes as f64), ("files".to_owned(), files as f64)]);
    // With no checksum in the pipeline, the lockfile pins what this run fetched.
    let pins =
        if params.expected.is_empty() { BTreeMap::from([(SHA256_PIN.to_owned(), sha256)]) } else { BTreeMap::new() };
    Ok(StageResult { metrics, pins })
}

/// The complete file on local disk: the partial download in `work_dir` once
/// the transfer finishes, or the `file://` path itself.
fn obtain(
    params: &Params,
    partial: &Partial,
    work_dir: &Path,
    policy: &RetryPolicy,
    reporter: &dyn Reporter,
) -> Result<PathBuf, StageError> {
    match &params.source {
        Source::File(path) if path.is_file() => Ok(path.clone()),
        Source::File(path) => Err(StageError::param("url", format!("{}: no such file", path.display()))),
        Source::Http(url) => {
            fs::create_dir_all(work_dir).map_err(|e| StageError::io(work_dir, e))?;
            fetch::fetch(url, partial, policy, reporter).map_err(StageError::Failed)?;
            Ok(partial.path.clone())
        }
    }
}

/// Checks the checksums and returns the SHA-256; a mismatching download is
/// discarded so the next run fetches it again instead of resuming past its end.
fn verify(
    params: &Params,
    spec: &StageSpec,
    local: &Path,
    partial: &Partial,
    reporter: &dyn Reporter,
) -> Result<String, StageError> {
    let actual =
        checksum::digest(local, params.expected.blake3.is_some(), reporter).map_err(|e| StageError::io(local, e))?;
    let pinned = spec.pins.get(SHA256_PIN).map(String::as_str);
    params.expected.verify(&actual, pinned, &params.url).map_err(|message| {
        if matches!(params.source, Source::Http(_)) {
            let _ = partial.discard();
        }
        StageError::Failed(message)
    })?;
    reporter.log(&format!("sha256 {} {}", actual.sha256, params.url));
    Ok(actual.sha256)
}

/// Fills `out_dir`: the archive's entries when extracting one (an archive of
/// archives unpacked one level further), otherwise the file itself under
/// `name`. Returns the number of files written.
fn place(
    params: &Params,
    local: &Path,
    name: &str,
    out_dir: &Path,
    reporter: &dyn Reporter,
) -> Result<u64, StageError> {
    fs::create_dir_all(out_dir).map_err(|e| StageError::io(out_dir, e))?;
    let format = if params.extract { Format::detect(local, name).map_err(|e| StageError::io(local, e))? } else { None };
    if let Some(format) = format {
        let failed =
            |e: archive::ArchiveError| StageError::Failed(format!("extracting {name} from {}: {e}", params.url));
        let outer = archive::extract(local, format, out_dir, reporter).map_err(failed)?;
        let inner = archive::extract_inner(out_dir, reporter).map_err(failed)?;
        return Ok(inner.unwrap_or(outer).files);
    }
    let dest = out_dir.join(name);
    let moved = matches!(params.source, Source::Http(_)) && fs::rename(local, &dest).is_ok();
    if !moved {
        fs::copy(local, &dest).map_err(|e| StageError::io(&dest, e))?;
    }
    Ok(1)
}
