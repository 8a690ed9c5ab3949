//! Streams an `http(s)` URL into a partial file, resuming it with a `Range`
//! request (RFC 9110 section 14) when the server supports ranges, restarting
//! from zero when it does not, and retrying transient failures with backoff.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use ureq::http::{header, Response, StatusCode};
use ureq::{Agent, Body};

use super::retry::{is_transient_status, parse_retry_after, RetryPolicy};
use crate::stages::spec::Reporter;

/// Attempts in total, progress or not, after which a download gives up.
const MAX_ATTEMPTS: u32 = 1000;
/// The least time between two progress reports.
const REPORT_EVERY: Duration = Duration::from_millis(100);

/// Why one attempt ended without the whole file.
#[derive(Debug)]
enum Failure {
    /// Worth another attempt (after a wait, at least `retry_after` when the server asked).
    Transient { message: String, retry_after: Option<Duration> },
    /// Not worth retrying; the message is final.
    Permanent(String),
}

impl Failure {
    fn transient(message: impl Into<String>) -> Self {
        Self::Transient { message: message.into(), retry_after: None }
    }
}

/// Where a download's bytes go between attempts: `partial` holds the bytes
/// received so far, `partial.validator` the `ETag`/`Last-Modified` they came with.
pub struct Partial {
    /// The partially downloaded file.
    pub path: PathBuf,
    validator: PathBuf,
}

impl Partial {
    /// The partial file `partial` inside `work_dir`.
    #[must_use]
    pub fn in_dir(work_dir: &Path) -> Self {
        Self { path: work_dir.join("partial"), validator: work_dir.join("partial.validator") }
    }

    /// Bytes already downloaded.
    fn len(&self) -> u64 {
        fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Forgets the partial download (after a bad checksum or a changed resource).
    ///
    /// # Errors
    /// When an existing file cannot be removed.
    pub fn discard(&self) -> io::Result<()> {
        for path in [&self.path, &self.validator] {
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Downloads `url` into `partial.path`, resuming what an earlier attempt (or
/// run) left there. Returns the file's size.
///
/// # Errors
/// A message naming the URL: a permanent HTTP error (4xx other than 408/429),
/// or the last transient failure once `policy.tries` attempts in a row made
/// no progress.
pub fn fetch(url: &str, partial: &Partial, policy: &RetryPolicy, reporter: &dyn Reporter) -> Result<u64, String> {
    let agent = agent(policy);
    let (mut best, mut stalled, mut attempt) = (partial.len(), 0u32, 0u32);
    loop {
        attempt += 1;
        let (message, retry_after) = match try_once(&agent, url, partial, reporter) {
            Ok(size) => return Ok(size),
            Err(Failure::Permanent(message)) => return Err(message),
            Err(Failure::Transient { message, retry_after }) => (message, retry_after),
        };
        let now = partial.len();
        stalled = if now > best { 0 } else { stalled + 1 };
        best = best.max(now);
        if stalled >= policy.tries.max(1) || attempt == MAX_ATTEMPTS {
            return Err(format!("GET {url}: {message} (gave up after {attempt} attempts)"));
        }
        let wait = policy.delay(stalled.max(1), retry_after);
        reporter.log(&format!("GET {url}: {message}; retrying in {:.1} s", wait.as_secs_f64()));
        thread::sleep(wait);
    }
}

/// The HTTP client: statuses come back as responses, bodies are not re-encoded.
fn agent(policy: &RetryPolicy) -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(policy.io_timeout))
        .timeout_recv_response(Some(policy.io_timeout))
        .timeout_per_read(Some(policy.io_timeout))
        .user_agent(concat!("msnr/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// One request: asks for the bytes after what `partial` holds and appends them.
fn try_once(agent: &Agent, url: &str, partial: &Partial, reporter: &dyn Reporter) -> Result<u64, Failure> {
    let have = partial.len();
    let response = request(agent, url, partial, have).call().map_err(|e| classify(url, &e))?;
    let status = response.status();
    let (start, total) = match status {
        StatusCode::PARTIAL_CONTENT => resumed_range(&response, partial, have)?,
        StatusCode::OK => (0, response.body().content_length()),
        StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => return already_complete(&response, partial, have),
        _ => return Err(status_failure(url, &response)),
    };
    if start == 0 {
        save_validator(&response, partial);
    }
    let got = receive(response.into_body(), &partial.path, start, total, reporter)?;
    match total {
        Some(total) if got < total => {
            Err(Failure::transient(format!("body shorter than Content-Length: expected {total} bytes, got {got}")))
        }
        _ => Ok(got),
    }
}

/// The GET request, with a `Range` (and `If-Range`) header when resuming.
fn request(
    agent: &Agent,
    url: &str,
    partial: &Partial,
    have: u64,
) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
    let mut req = agent.get(url).header(header::ACCEPT_ENCODING, "identity");
    if have > 0 {
        req = req.header(header::RANGE, format!("bytes={have}-"));
        if let Ok(validator) = fs::read_to_string(&partial.validator) {
            req = req.header(header::IF_RANGE, validator.trim());
        }
    }
    if let Some(token) = hub_token(url) {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    req
}

/// A Hugging Face access token for `huggingface.co` URLs (gated datasets),
/// from `HF_TOKEN` as the Hub's own clients read it.
fn hub_token(url: &str) -> Option<String> {
    let token = on_hub(url).then(|| std::env::var("HF_TOKEN").ok()).flatten();
    token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

/// Whether `url`'s host is `huggingface.co` or one of its subdomains.
fn on_hub(url: &str) -> bool {
    let authority = url.split_once("://").map_or("", |(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""));
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host = host_port.split(':').next().unwrap_or(host_port).to_ascii_lowercase();
    host == "huggingface.co" || host.ends_with(".huggingface.co")
}

/// Where a 206 response starts and the resource's total size, from its
/// `Content-Range: bytes first-last/total`; a range that does not continue the
/// partial file discards it, so the next attempt starts over.
fn resumed_range(response: &Response<Body>, partial: &Partial, have: u64) -> Result<(u64, Option<u64>), Failure> {
    let value = response.headers().get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()).unwrap_or("");
    match parse_content_range(value) {
        Some((first, total)) if first == have => Ok((first, total)),
        _ => {
            partial.discard().map_err(|e| Failure::Permanent(format!("{}: {e}", partial.path.display())))?;
            Err(Failure::transient(format!(
                "server answered a resume from byte {have} with Content-Range `{value}`; restarting"
            )))
        }
    }
}

/// Parses `bytes first-last/total` (total may be `*`).
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let first = range.split_once('-')?.0.trim().parse().ok()?;
    Some((first, total.trim().parse().ok()))
}

/// A 416 answer to a resume: complete when `Content-Range: bytes */size` says the
/// partial file already holds every byte; otherwise start over.
fn already_complete(response: &Response<Body>, partial: &Partial, have: u64) -> Result<u64, Failure> {
    let size = response.headers().get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok());
    if size.and_then(|v| v.trim().strip_prefix("bytes */")).and_then(|s| s.parse::<u64>().ok()) == Some(have) {
        return Ok(have);
    }
    partial.discard().map_err(|e| Failure::Permanent(format!("{}: {e}", partial.path.display())))?;
    Err(Failure::transient(format!("server cannot resume from byte {have} (HTTP 416); restarting")))
}

/// Keeps the response's strong `ETag` (or `Last-Modified`) so a later resume
/// sends it as `If-Range` and a changed resource restarts instead of mixing.
fn save_validator(response: &Response<Body>, partial: &Partial) {
    let headers = response.headers();
    let etag = headers.get(header::ETAG).and_then(|v| v.to_str().ok()).filter(|e| !e.starts_with("W/"));
    let value = etag.or_else(|| headers.get(header::LAST_MODIFIED).and_then(|v| v.to_str().ok()));
    let _ = match value {
        Some(v) => fs::write(&partial.validator, v),
        None => fs::remove_file(&partial.validator),
    };
}

/// The failure for a status other than 200/206.
fn status_failure(url: &str, response: &Response<Body>) -> Failure {
    let status = response.status();
    let message = format!("HTTP {} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
    if is_transient_status(status.as_u16()) {
        let retry_after = response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok());
        return Failure::Transient { message, retry_after: retry_after.and_then(parse_retry_after) };
    }
    let hint = match status.as_u16() {
        401 | 403 if on_hub(url) && hub_token(url).is_none() => {
            "; a gated Hugging Face dataset needs its terms accepted on its page and an access token in HF_TOKEN"
        }
        _ => " (client errors are not retried)",
    };
    Failure::Permanent(format!("GET {url}: {message}{hint}"))
}

/// Whether a transport error is worth retrying.
fn classify(url: &str, error: &ureq::Error) -> Failure {
    use ureq::Error as E;
    match error {
        E::Io(_) | E::Timeout(_) | E::HostNotFound | E::ConnectionFailed | E::Protocol(_) => {
            Failure::transient(error.to_string())
        }
        _ => Failure::Permanent(format!("GET {url}: {error}")),
    }
}

/// Writes the body into the partial file from byte `start` on (dropping what
/// follows), reporting progress. Returns the file's size when the body ends.
fn receive(body: Body, path: &Path, start: u64, total: Option<u64>, reporter: &dyn Reporter) -> Result<u64, Failure> {
    let io_fail = |e: io::Error| Failure::Permanent(format!("{}: {e}", path.display()));
    let mut out = BufWriter::with_capacity(1 << 20, open_at(path, start).map_err(io_fail)?);
    let mut meter = Meter::new(start, total.unwrap_or(0));
    let copied = copy(body.into_reader(), &mut out, &mut meter, reporter);
    out.flush().map_err(io_fail)?;
    match copied {
        Ok(()) => Ok(meter.done),
        Err(Copy::Read(e)) => Err(Failure::transient(match total {
            Some(total) => {
                format!("body shorter than Content-Length: expected {total} bytes, got {} ({e})", meter.done)
            }
            None => format!("connection lost after {} bytes: {e}", meter.done),
        })),
        Err(Copy::Write(e)) => Err(io_fail(e)),
    }
}

/// The partial file cut to `start` bytes, positioned at its end.
fn open_at(path: &Path, start: u64) -> io::Result<File> {
    let mut file = OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    file.set_len(start)?;
    file.seek(SeekFrom::Start(start))?;
    Ok(file)
}

/// Which side of a copy failed.
enum Copy {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `body` to `out`, counting bytes in `meter`.
fn copy(mut body: impl Read, out: &mut impl Write, meter: &mut Meter, reporter: &dyn Reporter) -> Result<(), Copy> {
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Copy::Read(e)),
        };
        out.write_all(&buf[..n]).map_err(Copy::Write)?;
        meter.add(n as u64, reporter);
    }
}

/// Bytes received and the transfer rate, reported at most every [`REPORT_EVERY`].
struct Meter {
    done: u64,
    total: u64,
    started: Instant,
    at_start: u64,
    last_report: Option<Instant>,
}

impl Meter {
    fn new(done: u64, total: u64) -> Self {
        Self { done, total, started: Instant::now(), at_start: done, last_report: None }
    }

    fn add(&mut self, n: u64, reporter: &dyn Reporter) {
        self.done += n;
        let now = Instant::now();
        if self.last_report.is_some_and(|t| now.duration_since(t) < REPORT_EVERY) && self.done != self.total {
            return;
        }
        self.last_report = Some(now);
        let seconds = now.duration_since(self.started).as_secs_f64().max(1e-3);
        #[allow(clippy::cast_precision_loss)]
        let rate = (self.done - self.at_start) as f64 / seconds / 1e6;
        reporter.progress(self.done, self.total, &crate::run::progress::rate(rate, "MB"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_ranges() {
        assert_eq!(parse_content_range("bytes 100-999/1000"), Some((100, Some(1000))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
        assert_eq!(parse_content_range("bytes */1000"), None);
    }

    #[test]
    fn recognises_hub_hosts() {
        assert!(on_hub("https://huggingface.co/datasets/x/resolve/main/a.tar.gz"));
        assert!(on_hub("https://cdn-lfs.huggingface.co/x"));
        assert!(!on_hub("https://evil.example/huggingface.co/x"));
        assert!(!on_hub("https://huggingface.co.evil.example/x"));
        assert!(!on_hub("https://huggingface.co@evil.example/x"));
    }

    #[test]
    fn discards_missing_partials() {
        let dir = tempfile::tempdir().unwrap();
        let partial = Partial::in_dir(dir.path());
        assert_eq!(partial.len(), 0);
        partial.discard().unwrap();
        fs::write(&partial.path, b"abc").unwrap();
        assert_eq!(partial.len(), 3);
        partial.discard().unwrap();
        assert!(!partial.path.exists());
    }
}
