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

/// Every `tests/fixtures/lang/invalid/*.msnr` is well-typed but has parameter values its
/// stage kinds refuse: the check pass reports all of them, at the parameters, on a CPU.
#[test]
fn invalid_parameter_fixtures_report() {
    let files = fixtures("invalid");
    assert!(files.len() >= 10);
    for path in files {
        let p = lang::load(&path, &[]).unwrap_or_else(|d| panic!("{}: {}", path.display(), d.render_plain()));
        let dag = msnr::graph::Dag::build(&p).unwrap();
        let cpu = |_: &str| Some("cpu");
        let Err(d) = msnr::stages::check::check(&p, &dag, &cpu) else { panic!("{} checked clean", path.display()) };
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let mut codes = String::new();
        for diag in &d.0 {
            writeln!(codes, "[{}]", diag.code).unwrap();
        }
        snapshot(&format!("check_{name}"), &format!("{codes}\n{}", d.render_plain()));
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
            "error_in_import" | "type_mismatch" | "type_mismatch_quoted_number" | "override_wrong_type" => {
                "msnr::type_mismatch".into()
            }
            "float_suffix" => "msnr::bad_number".into(),
            "duplicate_stage" | "duplicate_param" | "duplicate_field" => "msnr::duplicate".into(),
            "undefined_reference" | "not_imported" => "msnr::undefined".into(),
            s if s.starts_with("override") && s != "override_wrong_type" => "msnr::bad_override".into(),
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
    assert_eq!(d.0[0].code, "msnr::unreadable_pipeline");
    assert!(d.render_plain().contains("cannot read tests/fixtures/lang/no_such_file.msnr: no such file"));
}

/// Issue 10, item 13: a missing, non-UTF-8 or folder pipeline path was reported as
/// `import_not_found`, with no help line.
#[test]
fn a_pipeline_path_that_is_a_folder_or_not_utf8_has_its_own_code_and_help() {
    let d = lang::load(Path::new("tests/fixtures/lang"), &[]).unwrap_err();
    assert_eq!(d.0[0].code, "msnr::unreadable_pipeline");
    assert!(d.render_plain().contains("it is a folder") && d.render_plain().contains("help: give the path"));
    let dir = tempfile::tempdir().unwrap();
    let latin1 = dir.path().join("latin1.msnr");
    fs::write(&latin1, b"# caf\xe9\nstage d = mnist {}\n").unwrap();
    let d = lang::load(&latin1, &[]).unwrap_err();
    assert_eq!(d.0[0].code, "msnr::unreadable_pipeline");
    assert!(d.render_plain().contains("not UTF-8 text") && d.render_plain().contains("save it as UTF-8"));
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
    files.extend(fixtures("fmt"));
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

/// Random pipelines built from the stdlib's own signatures: mostly well-typed
/// values, some wrong ones, references to earlier stages, params, sweeps and
/// overrides. Reaches the analyzer's deep paths that byte mutations rarely do.
struct Generator<'r> {
    rng: &'r mut Rng,
    /// Earlier stages: (name, output type, swept).
    stages: Vec<(String, String, bool)>,
    params: Vec<String>,
}

impl Generator<'_> {
    fn coin(&mut self, percent: usize) -> bool {
        self.rng.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.rng.below(items.len())]
    }

    fn junk(&mut self) -> String {
        let mut options: Vec<String> =
            ["\"s\"", "3", "2.5", "undefined_name", "eps", "[1]", "min_snr { gamma = 1 }", "none", "true", "m[g=1]"]
                .iter()
                .map(|s| (*s).to_string())
                .collect();
        options.extend(self.params.iter().cloned());
        options[self.rng.below(options.len())].clone()
    }

    fn value(&mut self, ty: &lang::Type, depth: usize) -> String {
        use lang::Type;
        if self.coin(8) || depth > 3 {
            return self.junk();
        }
        match ty {
            Type::Int => self.pick(&["0", "7", "500k", "-3", "1_000", "2M"]).into(),
            Type::Float => self.pick(&["0.5", "1e-4", "5", "2.0", "-1"]).into(),
            Type::Str => self.pick(&["\"abc\"", "\"https://x/y.zip\"", "\"\\u{e9}\""]).into(),
            Type::Bool => self.pick(&["true", "false"]).into(),
            Type::Path => self.pick(&["\"a/b\"", "\"../c\"", "\"/abs\""]).into(),
            Type::List(t) => {
                let n = self.rng.below(4);
                let items: Vec<String> = (0..n).map(|_| self.value(t, depth + 1)).collect();
                format!("[{}]", items.join(", "))
            }
            Type::Optional(t) => {
                if self.coin(30) {
                    "none".into()
                } else {
                    self.value(t, depth + 1)
                }
            }
            Type::Union(ts) => {
                let t = ts[self.rng.below(ts.len())].clone();
                self.value(&t, depth + 1)
            }
            Type::Artifact(a) => self.reference(a),
            Type::Family(f) => self.ctor(f, depth),
        }
    }

    fn reference(&mut self, output: &str) -> String {
        let fitting: Vec<(String, bool)> = self
            .stages
            .iter()
            .filter(|(_, o, _)| o == output || self.rng.0 % 7 == 0)
            .map(|(n, _, s)| (n.clone(), *s))
            .collect();
        if fitting.is_empty() {
            return if output == "files" { "\"some/folder\"".into() } else { self.junk() };
        }
        let (name, swept) = fitting[self.rng.below(fitting.len())].clone();
        if swept && self.coin(50) {
            format!("{name}[g={}]", self.pick(&["1", "5", "9"]))
        } else {
            name
        }
    }

    fn ctor(&mut self, family: &str, depth: usize) -> String {
        let lib = lang::stdlib();
        let fam = lib.family(family).expect("family");
        let v = &fam.variants[self.rng.below(fam.variants.len())];
        if v.params.is_empty() && self.coin(60) {
            return v.name.clone();
        }
        let mut fields = Vec::new();
        for p in &v.params {
            if self.coin(50) {
                fields.push(format!("{} = {}", p.name, self.value(&p.ty, depth + 1)));
            }
        }
        format!("{} {{ {} }}", v.name, fields.join(", "))
    }

    fn stage(&mut self, name: &str) -> (String, String) {
        let lib = lang::stdlib();
        let kind = &lib.kinds[self.rng.below(lib.kinds.len())];
        let mut fields = Vec::new();
        for p in &kind.params {
            if self.coin(if p.default.is_none() { 90 } else { 30 }) {
                fields.push(format!("  {} = {}", p.name, self.value(&p.ty, 0)));
            }
        }
        if self.coin(5) {
            fields.push("  bogus = 1".into());
        }
        (format!("stage {name} = {} {{\n{}\n}}\n", kind.name, fields.join("\n")), kind.output.clone())
    }

    fn pipeline(&mut self) -> String {
        let mut out = String::new();
        for i in 0..self.rng.below(3) {
            let name = format!("p{i}");
            let value = self.pick(&["5", "[1, 2]", "eps", "min_snr { gamma = 3 }", "\"x\"", "none"]);
            writeln!(out, "param {name} = {value}").unwrap();
            self.params.push(name);
        }
        for i in 0..=self.rng.below(7) {
            let name = format!("s{i}");
            if self.coin(25) {
                self.params.push("g".into());
                let (text, output) = self.stage(&name);
                self.params.pop();
                writeln!(out, "sweep g in [1, 5, 9] {{\n{text}}}").unwrap();
                self.stages.push((name, output, true));
            } else {
                let (text, output) = self.stage(&name);
                out.push_str(&text);
                self.stages.push((name, output, false));
            }
        }
        out
    }
}

/// A loaded pipeline's invariants: every stage value names a stage of the
/// pipeline, and `refs` lists exactly the stage values of the parameters.
fn check_invariants(p: &Pipeline, text: &str) {
    let names: Vec<&str> = p.stages.iter().map(|s| s.name.as_str()).collect();
    for s in &p.stages {
        let mut values = Vec::new();
        s.params.values().for_each(|v| v.stage_refs(&mut values));
        let mut refs: Vec<&str> = s.refs.iter().map(|(n, _)| n.as_str()).collect();
        values.sort_unstable();
        refs.sort_unstable();
        assert_eq!(values, refs, "stage {} in:\n{text}", s.name);
        for r in refs {
            assert!(names.contains(&r), "{} refers to missing {r} in:\n{text}", s.name);
        }
    }
}

#[test]
fn fuzz_generated_pipelines() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let n: usize = std::env::var("MSNR_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000);
    let (mut ok, start) = (0, std::time::Instant::now());
    for _ in 0..n {
        let text = Generator { rng: &mut rng, stages: Vec::new(), params: Vec::new() }.pipeline();
        let overrides: Vec<(String, String)> =
            if rng.below(4) == 0 { vec![("p0".into(), "7".into())] } else { Vec::new() };
        let result = std::panic::catch_unwind(|| {
            let loaded = lang::load_str("gen.msnr", &text, &overrides);
            match &loaded {
                Ok(p) => check_invariants(p, &text),
                Err(d) => assert!(!d.render_plain().is_empty()),
            }
            let formatted = lang::format(&text).expect("generated text parses");
            let again = lang::load_str("gen.msnr", &formatted, &overrides);
            assert_eq!(loaded.is_ok(), again.is_ok(), "fmt changed the meaning of:\n{text}");
            loaded.is_ok()
        });
        match result {
            Ok(true) => ok += 1,
            Ok(false) => {}
            Err(_) => {
                let dump = std::env::temp_dir().join("msnr-gen-crash.msnr");
                fs::write(&dump, &text).unwrap();
                panic!("crash; input saved to {}", dump.display());
            }
        }
    }
    eprintln!("generated: {n} pipelines ({ok} valid) in {:?}", start.elapsed());
    assert!(ok > n / 50, "the generator should make some valid pipelines ({ok} of {n})");
}

#[test]
fn fmt_snapshots() {
    for path in fixtures("fmt") {
        let text = fs::read_to_string(&path).unwrap();
        let out = lang::format(&text).unwrap_or_else(|d| panic!("{}", d.render_plain()));
        assert_eq!(lang::format(&out).unwrap(), out);
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        snapshot(&format!("fmt_{name}"), &out);
    }
}

#[test]
fn large_pipelines_check_quickly() {
    let mut text = String::from("stage d = mnist {}\n");
    for i in 0..5_000 {
        writeln!(text, "stage c{i} = crop {{ images = d, size = {i}, bogus = 1 }}").unwrap();
    }
    let start = std::time::Instant::now();
    let d = lang::load_str("big.msnr", &text, &[]).unwrap_err();
    assert_eq!(d.0.len(), 5_000);
    text.push_str("stage ok = mnist {}\n");
    let fixed = text.replace(", bogus = 1", "");
    assert_eq!(lang::load_str("big.msnr", &fixed, &[]).unwrap().stages.len(), 5_002);
    assert_eq!(lang::format(&fixed).unwrap(), fixed);
    assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
}
