//! Integration tests: lang. Directory-driven: every `tests/fixtures/lang/ok/*.msnr`
//! must load cleanly (its resolved stages are snapshotted), every
//! `tests/fixtures/lang/errors/*.msnr` must fail with the snapshotted
//! diagnostics. An error fixture's first line may be `# args: name=value ...`
//! (the `--set` overrides). Plus the formatter's idempotence on every committed
//! pipeline and a deterministic mutation fuzzer over the same files.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use msnr::lang::{self, Pipeline};

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(Path::new("tests/fixtures/lang").join(dir))
        .expect("fixture dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "msnr"))
        .collect();
    files.sort();
    files
}

/// The `# args: a=1 b=2` overrides of a fixture.
fn overrides(text: &str) -> Vec<(String, String)> {
    let Some(args) = text.lines().next().and_then(|l| l.strip_prefix("# args: ")) else { return Vec::new() };
    args.split(' ').filter_map(|a| a.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn snapshot(name: &str, text: &str) {
    insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!(name, text);
    });
}

/// The resolved pipeline, paths shown relative to the repository.
fn summary(p: &Pipeline) -> String {
    let root = std::env::current_dir().expect("cwd").display().to_string();
    let mut out = String::new();
    for (k, v) in &p.params {
        writeln!(out, "param {k} = {v}").unwrap();
    }
    for s in &p.stages {
        writeln!(out, "stage {} = {}", s.name, s.kind).unwrap();
        for (k, v) in &s.params {
            writeln!(out, "  {k} = {}", v.to_string().replace(&root, "<repo>")).unwrap();
        }
        if let Some(sw) = &s.sweep {
            let b: Vec<String> = sw.bindings.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(out, "  (sweep of `{}`: {})", sw.base, b.join(", ")).unwrap();
        }
        writeln!(out, "  inputs: {}", s.inputs().join(", ")).unwrap();
    }
    out
}

#[test]
fn ok_fixtures_load() {
    let files = fixtures("ok");
    assert!(files.len() >= 4);
    for path in files {
        let p = lang::load(&path, &[]).unwrap_or_else(|d| panic!("{}: {}", path.display(), d.render_plain()));
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        snapshot(&format!("ok_{name}"), &summary(&p));
    }
}

#[test]
fn error_fixtures_report() {
    let files = fixtures("errors");
    assert!(files.len() >= 25);
    for path in files {
        let text = fs::read_to_string(&path).unwrap();
        let Err(d) = lang::load(&path, &overrides(&text)) else { panic!("{} loaded without error", path.display()) };
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let mut shown = String::new();
        for diag in &d.0 {
            writeln!(shown, "[{}]", diag.code).unwrap();
        }
        snapshot(&format!("err_{name}"), &format!("{shown}\n{}", d.render_plain()));
    }
}

#[test]
fn error_codes_match_fixture_names() {
    for path in fixtures("errors") {
        let text = fs::read_to_string(&path).unwrap();
        let d = lang::load(&path, &overrides(&text)).unwrap_err();
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let expected: String = match stem.as_str() {
            s if s.starts_with("syntax") => "msnr::syntax".into(),
            "error_in_import" | "type_mismatch" | "override_wrong_type" => "msnr::type_mismatch".into(),
            "float_suffix" => "msnr::bad_number".into(),
            "duplicate_stage" | "duplicate_param" | "duplicate_field" => "msnr::duplicate".into(),
            "undefined_reference" | "not_imported" => "msnr::undefined".into(),
            "override_unknown_param" | "override_bad_value" => "msnr::bad_override".into(),
            "many_errors" => continue,
            s => format!("msnr::{s}"),
        };
        assert!(
            d.0.iter().any(|x| x.code == expected),
            "{stem}: codes {:?}",
            d.0.iter().map(|x| x.code).collect::<Vec<_>>()
        );
    }
}

#[test]
fn many_errors_are_reported_together() {
    let d = lang::load(Path::new("tests/fixtures/lang/errors/many_errors.msnr"), &[]).unwrap_err();
    assert_eq!(d.0.len(), 4, "{}", d.render_plain());
}

#[test]
fn unreadable_main_file_is_an_error() {
    let d = lang::load(Path::new("tests/fixtures/lang/no_such_file.msnr"), &[]).unwrap_err();
    assert_eq!(d.0[0].code, "msnr::import_not_found");
    assert!(d.render_plain().contains("cannot read tests/fixtures/lang/no_such_file.msnr"));
}

#[test]
fn error_in_import_points_into_that_file() {
    let d = lang::load(Path::new("tests/fixtures/lang/errors/error_in_import.msnr"), &[]).unwrap_err();
    assert_eq!(d.0[0].source.name(), "tests/fixtures/lang/errors/imports/broken.msnr");
}

/// Every committed pipeline: the fixtures, the stdlib and `pipelines/`.
fn committed() -> Vec<PathBuf> {
    let mut files = fixtures("ok");
    files.extend(fixtures("errors"));
    files.extend(fixtures("ok/lib"));
    files.extend(fs::read_dir("stdlib").unwrap().map(|e| e.unwrap().path()));
    if let Ok(dir) = fs::read_dir("pipelines") {
        files.extend(dir.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "msnr")));
    }
    files
}

#[test]
fn fmt_is_idempotent_on_every_committed_pipeline() {
    let mut formatted = 0;
    for path in committed() {
        let text = fs::read_to_string(&path).unwrap();
        let Ok(once) = lang::format(&text) else { continue };
        let twice = lang::format(&once).unwrap_or_else(|d| panic!("{}: {}", path.display(), d.render_plain()));
        assert_eq!(once, twice, "{}", path.display());
        formatted += 1;
    }
    assert!(formatted > 20);
}

#[test]
fn fmt_preserves_meaning_and_comments() {
    for path in fixtures("ok") {
        let text = fs::read_to_string(&path).unwrap();
        let once = lang::format(&text).unwrap();
        let before = lang::load(&path, &[]).unwrap();
        let tmp = path.with_extension("fmt.msnr.tmp");
        fs::write(&tmp, &once).unwrap();
        let after = lang::load(&tmp, &[]);
        fs::remove_file(&tmp).unwrap();
        assert_eq!(summary(&before), summary(&after.unwrap()), "{}", path.display());
        let count = |t: &str| lang::comments::scan(t).len();
        assert_eq!(count(&text), count(&once), "{}", path.display());
    }
}

#[test]
fn stdlib_files_are_canonically_formatted() {
    for (name, text) in lang::stdlib::FILES {
        assert_eq!(lang::format(text).unwrap(), *text, "stdlib/{name} is not `msnr fmt` clean");
    }
}

/// A seeded xorshift generator: the fuzzer is deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap()
    }
}

/// Tokens the mutator splices in: punctuation, keywords, edge-case literals.
const DICTIONARY: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "=",
    ",",
    "\"",
    "\\",
    "#",
    "\n",
    "///",
    "->",
    ":",
    "?",
    "|",
    "<",
    ">",
    "stage ",
    "param ",
    "sweep ",
    " in ",
    "use ",
    "type ",
    "kind ",
    "none",
    "true",
    "99999999999999999999k",
    "9300000000000M",
    "1e999",
    "-0",
    "1.5k",
    "_",
    "é",
    "\\u{110000}",
    "min_snr { gamma = ",
    "model[g=5]",
    "x[",
    "gamma",
    "digits",
    "unet {}",
    "\"std/celeba.msnr\"",
    "\"std/nope.msnr\"",
    "[[[[[[[[",
    "list<int>",
    "\r\n",
];

fn mutate(rng: &mut Rng, input: &str, corpus: &[String]) -> String {
    let mut bytes = input.as_bytes().to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(6) {
            5 => {
                let other = corpus[rng.below(corpus.len())].as_bytes();
                let from = rng.below(other.len());
                let chunk = &other[from..(from + rng.below(200)).min(other.len())];
                bytes.splice(at..at, chunk.iter().copied());
            }
            0 => {
                let end = (at + rng.below(16)).min(bytes.len());
                bytes.drain(at..end);
            }
            1 => {
                let tok = DICTIONARY[rng.below(DICTIONARY.len())];
                bytes.splice(at..at, tok.bytes());
            }
            2 => {
                let end = (at + rng.below(32)).min(bytes.len());
                let chunk = bytes[at..end].to_vec();
                let to = rng.below(bytes.len() + 1);
                bytes.splice(to..to, chunk);
            }
            3 if at < bytes.len() => bytes[at] = b"{}[]=,\"#\n x0_"[rng.below(13)],
            _ => bytes.truncate(at),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Feeds one input through everything a user's file meets; format must be
/// idempotent whenever it succeeds.
fn exercise(input: &str) {
    if let Err(d) = lang::load_str("fuzz.msnr", input, &[("gamma".into(), "7".into())]) {
        assert!(!d.render_plain().is_empty());
    }
    if let Ok(once) = lang::format(input) {
        let twice =
            lang::format(&once).unwrap_or_else(|d| panic!("fmt output does not parse:\n{once}\n{}", d.render_plain()));
        assert_eq!(once, twice, "fmt not idempotent on input:\n{input}");
    }
}

#[test]
fn fuzz_mutations_never_panic() {
    let corpus: Vec<String> = committed().iter().map(|p| fs::read_to_string(p).unwrap()).collect();
    let seed = std::env::var("MSNR_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x9e37_79b9_7f4a_7c15);
    let mut rng = Rng(seed);
    let n: usize = std::env::var("MSNR_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let start = std::time::Instant::now();
    for _ in 0..n {
        let base = &corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, base, &corpus);
        let result = std::panic::catch_unwind(|| exercise(&input));
        if result.is_err() {
            let dump = std::env::temp_dir().join("msnr-fuzz-crash.msnr");
            fs::write(&dump, &input).unwrap();
            panic!("crash; input saved to {}", dump.display());
        }
    }
    eprintln!("fuzz: {n} inputs in {:?}", start.elapsed());
}

/// Crash inputs the fuzzer found, each named after its bug, kept as regression tests.
#[test]
fn fuzz_regressions() {
    for path in fixtures("fuzz") {
        exercise(&fs::read_to_string(&path).unwrap());
    }
}
