//! Integration tests: the `download` stage against a scripted HTTP server on
//! 127.0.0.1 (see [`server`]): plain transfers, retries, resumes, checksums and
//! lockfile pins, and the extraction of good and malicious archives.

mod server;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use msnr::lang::Value;
use msnr::stages::download::{self, RetryPolicy};
use msnr::stages::spec::{Reporter, StageError, StageResult, StageSpec};
use server::{Reply, Server};
use sha2::Digest;

/// Retries as in production, but with short waits so the tests stay fast.
const FAST: RetryPolicy = RetryPolicy {
    tries: 4,
    base_delay: Duration::from_millis(50),
    max_delay: Duration::from_secs(1),
    io_timeout: Duration::from_secs(10),
};

/// Records what a stage reports.
#[derive(Default)]
struct Recorder {
    progress: Mutex<Vec<(u64, u64, String)>>,
    logs: Mutex<Vec<String>>,
}

impl Reporter for Recorder {
    fn progress(&self, done: u64, total: u64, message: &str) {
        self.progress.lock().unwrap().push((done, total, message.to_owned()));
    }
    fn log(&self, line: &str) {
        self.logs.lock().unwrap().push(line.to_owned());
    }
}

/// One download stage instance with its own folders.
struct Case {
    tmp: tempfile::TempDir,
    spec: StageSpec,
    reporter: Recorder,
}

impl Case {
    fn new(url: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let params = BTreeMap::from([
            ("url".to_owned(), Value::Str(url.to_owned())),
            ("sha256".to_owned(), Value::None),
            ("blake3".to_owned(), Value::None),
            ("extract".to_owned(), Value::Bool(true)),
        ]);
        let spec = StageSpec::standalone("download", params, &tmp.path().join("store/out"), &tmp.path().join("work"));
        Self { tmp, spec, reporter: Recorder::default() }
    }

    fn param(mut self, name: &str, value: Value) -> Self {
        self.spec.params.insert(name.to_owned(), value);
        self
    }

    fn pin(mut self, sha256: &str) -> Self {
        self.spec.pins.insert("sha256".into(), sha256.into());
        self
    }

    /// Runs the stage into a fresh, empty output folder (as the runner does).
    fn run(&self) -> Result<StageResult, StageError> {
        let _ = fs::remove_dir_all(&self.spec.out_dir);
        fs::create_dir_all(&self.spec.out_dir).unwrap();
        download::run_with(&self.spec, &self.reporter, &FAST)
    }

    fn out(&self, rel: &str) -> PathBuf {
        self.spec.out_dir.join(rel)
    }

    fn partial(&self) -> PathBuf {
        self.spec.work_dir.join("partial")
    }

    fn out_is_empty(&self) -> bool {
        fs::read_dir(&self.spec.out_dir).map_or(true, |mut d| d.next().is_none())
    }
}

/// `n` bytes of deterministic noise (a 64-bit LCG, Knuth's MMIX constants).
fn noise(n: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    sha2::Sha256::digest(bytes).iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Metric `name` of `result`, an integral count stored as `f64`.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn metric(result: &StageResult, name: &str) -> u64 {
    result.metrics[name] as u64
}

fn err_text(result: Result<StageResult, StageError>) -> String {
    result.expect_err("the stage should fail").to_string()
}

const SIZE: usize = 300_000;
const SIZE_U64: u64 = SIZE as u64;

#[test]
fn downloads_a_file_over_http_and_pins_its_sha256() {
    let body = noise(SIZE);
    let server = Server::start(body.clone(), None, vec![Reply::FULL]);
    let case = Case::new(&server.url("weights.bin?download=true"));
    let result = case.run().unwrap();
    assert_eq!(fs::read(case.out("weights.bin")).unwrap(), body);
    assert_eq!(metric(&result, "bytes"), SIZE_U64);
    assert_eq!(metric(&result, "files"), 1);
    assert_eq!(result.pins, BTreeMap::from([("sha256".to_owned(), sha256_hex(&body))]));
    let request = &server.requests()[0];
    assert_eq!(request.path, "/weights.bin?download=true");
    assert_eq!(request.header("Accept-Encoding"), Some("identity"));
    assert_eq!(request.header("Range"), None);
    let progress = case.reporter.progress.lock().unwrap();
    let last_transfer = progress.iter().rev().find(|(_, _, m)| m.ends_with("MB/s")).unwrap();
    assert_eq!((last_transfer.0, last_transfer.1), (SIZE_U64, SIZE_U64));
    assert!(!case.partial().exists(), "the partial file is moved into the output");
}

#[test]
fn a_404_fails_at_once_naming_the_url_and_status() {
    let server = Server::start(noise(10), None, vec![Reply::Status(404)]);
    let url = server.url("missing.zip");
    let message = err_text(Case::new(&url).run());
    assert!(message.contains(&url) && message.contains("HTTP 404"), "{message}");
    assert_eq!(server.requests().len(), 1, "a client error is not retried");
}

#[test]
fn server_errors_are_retried_until_the_download_succeeds() {
    let body = noise(SIZE);
    let server = Server::start(body.clone(), None, vec![Reply::Status(500), Reply::Status(429), Reply::FULL]);
    let case = Case::new(&server.url("data.bin"));
    case.run().unwrap();
    assert_eq!(fs::read(case.out("data.bin")).unwrap(), body);
    assert_eq!(server.requests().len(), 3);
    let logs = case.reporter.logs.lock().unwrap();
    assert!(logs.iter().any(|l| l.contains("HTTP 500") && l.contains("retrying")), "{logs:?}");
}

#[test]
fn persistent_server_errors_give_up_after_the_configured_tries() {
    let server = Server::start(noise(10), None, vec![Reply::Status(503)]);
    let url = server.url("data.bin");
    let case = Case::new(&url);
    let message = err_text(case.run());
    assert!(message.contains(&url) && message.contains("HTTP 503") && message.contains("4 attempts"), "{message}");
    assert_eq!(server.requests().len(), 4);
    assert!(case.out_is_empty());
}

#[test]
fn connection_failures_are_retried_then_reported() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/x.bin");
    let message = err_text(Case::new(&url).run());
    assert!(message.contains(&url) && message.contains("gave up after 4 attempts"), "{message}");
}

#[test]
fn a_silent_server_times_out_and_is_retried() {
    let body = noise(SIZE);
    let server = Server::start(body.clone(), None, vec![Reply::Silence(1500), Reply::FULL]);
    let case = Case::new(&server.url("data.bin"));
    let policy = RetryPolicy { io_timeout: Duration::from_millis(300), ..FAST };
    fs::create_dir_all(&case.spec.out_dir).unwrap();
    download::run_with(&case.spec, &case.reporter, &policy).unwrap();
    assert_eq!(fs::read(case.out("data.bin")).unwrap(), body);
    let logs = case.reporter.logs.lock().unwrap();
    assert!(logs.iter().any(|l| l.contains("timeout") && l.contains("retrying")), "{logs:?}");
}

#[test]
fn a_truncated_body_is_an_error_naming_expected_and_received_sizes() {
    // The server closes the connection after 1000 bytes every time and ignores
    // ranges, so no attempt gets further than the first.
    let server = Server::start(noise(SIZE), None, vec![Reply::Body { ranges: false, cut: Some(1000) }]);
    let case = Case::new(&server.url("data.bin"));
    let message = err_text(case.run());
    assert!(message.contains(&format!("expected {SIZE} bytes, got 1000")), "{message}");
    assert_eq!(server.requests().len(), 5, "one attempt with progress, then 4 without");
    assert!(case.out_is_empty());
}

#[test]
fn a_truncated_body_resumes_with_a_range_request() {
    let body = noise(SIZE);
    let server = Server::start(body.clone(), None, vec![Reply::cut(100_000), Reply::cut(100_000), Reply::FULL]);
    let case = Case::new(&server.url("data.bin"));
    case.run().unwrap();
    assert_eq!(fs::read(case.out("data.bin")).unwrap(), body);
    let ranges: Vec<_> = server.requests().iter().map(|r| r.header("Range").map(str::to_owned)).collect();
    assert_eq!(ranges, [None, Some("bytes=100000-".into()), Some("bytes=200000-".into())]);
}

#[test]
fn an_interrupted_download_resumes_in_the_next_run() {
    let body = noise(SIZE);
    // Run 1: cut after 120000 bytes, then a client error ends the run.
    // Run 2: the rest, from the partial file left in the work folder.
    let server = Server::start(body.clone(), None, vec![Reply::cut(120_000), Reply::Status(403), Reply::FULL]);
    let case = Case::new(&server.url("data.bin"));
    assert!(err_text(case.run()).contains("HTTP 403"));
    assert_eq!(fs::metadata(case.partial()).unwrap().len(), 120_000);
    assert!(case.out_is_empty());
    case.run().unwrap();
    assert_eq!(fs::read(case.out("data.bin")).unwrap(), body);
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[2].header("Range"), Some("bytes=120000-"));
}

#[test]
fn a_server_that_ignores_ranges_restarts_from_zero() {
    let body = noise(SIZE);
    let server = Server::start(body.clone(), None, vec![Reply::NO_RANGES]);
    let case = Case::new(&server.url("data.bin"));
    fs::create_dir_all(&case.spec.work_dir).unwrap();
    fs::write(case.partial(), vec![0xAA; 5000]).unwrap();
    case.run().unwrap();
    assert_eq!(fs::read(case.out("data.bin")).unwrap(), body, "no stale prefix");
    assert_eq!(server.requests()[0].header("Range"), Some("bytes=5000-"));
}

#[test]
fn a_resume_answered_with_the_wrong_range_restarts_from_zero() {
    let body = noise(SIZE);
    let server = Server::start(body.clone(), None, vec![Reply::WrongRange, Reply::FULL]);
    let case = Case::new(&server.url("data.bin"));
    fs::create_dir_all(&case.spec.work_dir).unwrap();
    fs::write(case.partial(), vec![0xAA; 5000]).unwrap();
    case.run().unwrap();
    assert_eq!(fs::read(case.out("data.bin")).unwrap(), body);
    let ranges: Vec<_> = server.requests().iter().map(|r| r.header("Range").map(str::to_owned)).collect();
    assert_eq!(ranges, [Some("bytes=5000-".into()), None]);
}

#[test]
fn a_changed_resource_restarts_instead_of_resuming() {
    let body = noise(SIZE);
    let server = Server::start(body.clone(), Some("\"v2\""), vec![Reply::FULL]);
    let case = Case::new(&server.url("data.bin"));
    fs::create_dir_all(&case.spec.work_dir).unwrap();
    fs::write(case.partial(), vec![0xAA; 5000]).unwrap();
    fs::write(case.spec.work_dir.join("partial.validator"), "\"v1\"").unwrap();
    case.run().unwrap();
    assert_eq!(fs::read(case.out("data.bin")).unwrap(), body);
    assert_eq!(server.requests()[0].header("If-Range"), Some("\"v1\""));
}

#[test]
fn a_complete_partial_file_is_not_fetched_again() {
    let body = noise(SIZE);
    let server = Server::start(body.clone(), None, vec![Reply::FULL]);
    let case = Case::new(&server.url("data.bin"));
    fs::create_dir_all(&case.spec.work_dir).unwrap();
    fs::write(case.partial(), &body).unwrap();
    case.run().unwrap();
    assert_eq!(fs::read(case.out("data.bin")).unwrap(), body);
    assert_eq!(server.requests()[0].header("Range"), Some(&*format!("bytes={SIZE}-")));
}

#[test]
fn a_wrong_sha256_fails_naming_both_hashes() {
    let body = noise(SIZE);
    let server = Server::start(body.clone(), None, vec![Reply::FULL]);
    let wrong = "ab".repeat(32);
    let case = Case::new(&server.url("data.bin")).param("sha256", Value::Str(wrong.clone()));
    let message = err_text(case.run());
    assert!(message.contains(&wrong) && message.contains(&sha256_hex(&body)), "{message}");
    assert!(case.out_is_empty());
    assert!(!case.partial().exists(), "a bad download is discarded, not resumed");
}

#[test]
fn checksums_given_in_the_pipeline_are_verified_and_not_pinned() {
    let body = noise(SIZE);
    let server = Server::start(body.clone(), None, vec![Reply::FULL]);
    let blake3 = blake3::hash(&body).to_hex().to_string();
    let good = Case::new(&server.url("data.bin"))
        .param("sha256", Value::Str(sha256_hex(&body).to_uppercase()))
        .param("blake3", Value::Str(blake3.clone()));
    assert!(good.run().unwrap().pins.is_empty());
    let bad = Case::new(&server.url("data.bin")).param("blake3", Value::Str(blake3.replace('a', "b")));
    let message = err_text(bad.run());
    assert!(message.starts_with("blake3 mismatch") && message.contains(&blake3), "{message}");
}

#[test]
fn a_lockfile_pin_is_enforced_when_the_pipeline_gives_no_checksum() {
    let body = noise(SIZE);
    let server = Server::start(body.clone(), None, vec![Reply::FULL]);
    let stale = "0".repeat(64);
    let case = Case::new(&server.url("data.bin")).pin(&stale);
    let message = err_text(case.run());
    assert!(message.contains("lockfile pinned") && message.contains(&stale), "{message}");
    assert!(message.contains(&sha256_hex(&body)) && message.contains("--update-pins"), "{message}");
    let pinned = Case::new(&server.url("data.bin")).pin(&sha256_hex(&body));
    assert_eq!(pinned.run().unwrap().pins["sha256"], sha256_hex(&body));
}

#[test]
fn a_bad_checksum_parameter_names_the_parameter() {
    let case = Case::new("http://127.0.0.1:9/x").param("sha256", Value::Str("xyz".into()));
    assert!(err_text(case.run()).starts_with("parameter `sha256`"));
    let case = Case::new("ftp://example.org/x");
    assert!(err_text(case.run()).contains("unsupported URL scheme `ftp`"));
}

/// An archive entry, written without the archive libraries' own path checks.
#[derive(Clone, Copy)]
enum Entry<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

/// A gzip-compressed tar of `entries` (names written raw into ustar headers).
fn tar_gz(entries: &[Entry]) -> Vec<u8> {
    use tar::EntryType;
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for entry in entries {
        let (name, kind, data, link): (&str, EntryType, &[u8], &str) = match entry {
            Entry::File(n, d) => (n, EntryType::Regular, d, ""),
            Entry::Dir(n) => (n, EntryType::Directory, b"", ""),
            Entry::Symlink(n, t) => (n, EntryType::Symlink, b"", t),
            Entry::Hardlink(n, t) => (n, EntryType::Link, b"", t),
        };
        let mut header = tar::Header::new_ustar();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(if kind == EntryType::Directory { 0o755 } else { 0o644 });
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// A zip of `entries` (hard links are not a zip concept).
fn zip(entries: &[Entry]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for entry in entries {
        match entry {
            Entry::File(name, data) => {
                writer.start_file(*name, options).unwrap();
                writer.write_all(data).unwrap();
            }
            Entry::Dir(name) => writer.add_directory(*name, options).unwrap(),
            Entry::Symlink(name, target) => writer.add_symlink(*name, *target, options).unwrap(),
            Entry::Hardlink(..) => unreachable!("zip has no hard links"),
        }
    }
    writer.finish().unwrap().into_inner()
}

/// The tree under `root` as sorted `path` or `path -> target` lines.
fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                out.push(format!("{rel} -> {}", fs::read_link(&path).unwrap().display()));
            } else if meta.is_dir() {
                out.push(format!("{rel}/"));
                stack.push(path);
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

const GOOD: &[Entry] = &[
    Entry::Dir("img_align_celeba/"),
    Entry::File("img_align_celeba/000001.jpg", b"first"),
    Entry::File("./img_align_celeba/sub/000002.jpg", b"second"),
    Entry::Symlink("img_align_celeba/latest.jpg", "sub/000002.jpg"),
];

#[test]
fn extracts_a_tar_gz() {
    let mut entries = GOOD.to_vec();
    entries.push(Entry::Hardlink("copy.jpg", "img_align_celeba/000001.jpg"));
    let server = Server::start(tar_gz(&entries), None, vec![Reply::FULL]);
    let case = Case::new(&server.url("faces.tar.gz"));
    let result = case.run().unwrap();
    let expected = [
        "copy.jpg",
        "img_align_celeba/",
        "img_align_celeba/000001.jpg",
        "img_align_celeba/latest.jpg -> sub/000002.jpg",
        "img_align_celeba/sub/",
        "img_align_celeba/sub/000002.jpg",
    ];
    assert_eq!(listing(&case.spec.out_dir), expected);
    assert_eq!(fs::read(case.out("img_align_celeba/latest.jpg")).unwrap(), b"second");
    assert_eq!(fs::read(case.out("copy.jpg")).unwrap(), b"first");
    assert_eq!(metric(&result, "files"), 3);
    assert!(!case.partial().exists(), "the archive is dropped once extracted");
}

#[test]
fn extracts_a_zip_detected_by_its_magic_bytes() {
    let server = Server::start(zip(GOOD), None, vec![Reply::FULL]);
    let case = Case::new(&server.url("download"));
    let result = case.run().unwrap();
    let expected = [
        "img_align_celeba/",
        "img_align_celeba/000001.jpg",
        "img_align_celeba/latest.jpg -> sub/000002.jpg",
        "img_align_celeba/sub/",
        "img_align_celeba/sub/000002.jpg",
    ];
    assert_eq!(listing(&case.spec.out_dir), expected);
    assert_eq!(metric(&result, "files"), 2);
}

#[test]
fn extract_false_keeps_the_archive_as_a_file() {
    let archive = zip(GOOD);
    let server = Server::start(archive.clone(), None, vec![Reply::FULL]);
    let case = Case::new(&server.url("faces.zip")).param("extract", Value::Bool(false));
    case.run().unwrap();
    assert_eq!(listing(&case.spec.out_dir), ["faces.zip"]);
    assert_eq!(fs::read(case.out("faces.zip")).unwrap(), archive);
}

/// A plain tar of `entries` (regular files only).
fn tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, name, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn an_archive_of_per_class_tars_becomes_class_folders() {
    // The layout of ILSVRC2012_img_train.tar: one tar of JPEGs per class.
    let class_a = tar(&[("n01440764_10026.JPEG", b"fish"), ("n01440764_10027.JPEG", b"fish2")]);
    let class_b = tar(&[("n01443537_1.JPEG", b"shark")]);
    let outer = tar(&[("n01440764.tar", &class_a), ("n01443537.tar", &class_b)]);
    let server = Server::start(outer, None, vec![Reply::FULL]);
    let case = Case::new(&server.url("ILSVRC2012_img_train.tar"));
    let result = case.run().unwrap();
    let expected = [
        "n01440764/",
        "n01440764/n01440764_10026.JPEG",
        "n01440764/n01440764_10027.JPEG",
        "n01443537/",
        "n01443537/n01443537_1.JPEG",
    ];
    assert_eq!(listing(&case.spec.out_dir), expected);
    assert_eq!(metric(&result, "files"), 3);
}

/// Serves `archive` as `name`, runs the stage, and returns its error; checks
/// that nothing appeared next to the output folder.
fn refused(archive: Vec<u8>, name: &str) -> String {
    let server = Server::start(archive, None, vec![Reply::FULL]);
    let case = Case::new(&server.url(name));
    let message = err_text(case.run());
    let beside: Vec<_> = fs::read_dir(case.tmp.path().join("store")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(beside, ["out"], "nothing may be written outside the output folder");
    assert!(!case.tmp.path().join("evil.txt").exists());
    message
}

#[test]
fn refuses_malicious_tar_gz_entries() {
    let abs = std::env::temp_dir().join(format!("msnr-evil-{}.txt", std::process::id()));
    let abs_name = abs.display().to_string();
    let cases: Vec<(Vec<Entry>, &str, &str)> = vec![
        (vec![Entry::File("ok.txt", b"ok"), Entry::File("../evil.txt", b"x")], "../evil.txt", "`..` component"),
        (vec![Entry::File("a/../../evil.txt", b"x")], "a/../../evil.txt", "`..` component"),
        (vec![Entry::File(&abs_name, b"x")], &abs_name, "absolute path"),
        (vec![Entry::Symlink("link", "../../evil.txt")], "link", "points outside"),
        (vec![Entry::Symlink("link", "/etc")], "link", "absolute path"),
        (vec![Entry::Hardlink("hard", "../evil.txt")], "hard", "outside the archive"),
        (
            vec![Entry::Symlink("sub/up", ".."), Entry::Symlink("esc", "sub/up/.."), Entry::File("esc/evil.txt", b"x")],
            "esc/evil.txt",
            "passes through the symlink `esc`",
        ),
    ];
    for (entries, entry, reason) in cases {
        let message = refused(tar_gz(&entries), "evil.tar.gz");
        assert!(message.contains(&format!("entry `{entry}`")) && message.contains(reason), "{message}");
        assert!(message.contains("evil.tar.gz"), "{message}");
    }
    assert!(!abs.exists());
}

#[test]
fn refuses_malicious_zip_entries() {
    let abs = std::env::temp_dir().join(format!("msnr-evil-zip-{}.txt", std::process::id()));
    let abs_name = abs.display().to_string();
    let cases: Vec<(Vec<Entry>, &str, &str)> = vec![
        (vec![Entry::File("ok.txt", b"ok"), Entry::File("../evil.txt", b"x")], "../evil.txt", "`..` component"),
        (vec![Entry::File(&abs_name, b"x")], &abs_name, "absolute path"),
        (vec![Entry::Symlink("link", "../../evil.txt")], "link", "points outside"),
        (vec![Entry::Symlink("link", "/etc"), Entry::File("link/evil.txt", b"x")], "link", "absolute path"),
    ];
    for (entries, entry, reason) in cases {
        let message = refused(zip(&entries), "evil.zip");
        assert!(message.contains(&format!("entry `{entry}`")) && message.contains(reason), "{message}");
    }
    assert!(!abs.exists());
}

#[test]
fn reads_file_urls() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("faces archive.tgz");
    fs::write(&archive, tar_gz(GOOD)).unwrap();
    let url = format!("file://{}", archive.display().to_string().replace(' ', "%20"));
    let case = Case::new(&url);
    let result = case.run().unwrap();
    assert!(case.out("img_align_celeba/sub/000002.jpg").is_file());
    assert_eq!(metric(&result, "files"), 2);
    assert!(archive.exists(), "a local source is read in place, never moved");
    let plain = tmp.path().join("notes.txt");
    fs::write(&plain, b"hello").unwrap();
    let case = Case::new(&format!("file://{}", plain.display()));
    case.run().unwrap();
    assert_eq!(fs::read(case.out("notes.txt")).unwrap(), b"hello");
    let missing = Case::new(&format!("file://{}", tmp.path().join("nope.zip").display()));
    assert!(err_text(missing.run()).contains("nope.zip: no such file"));
}
