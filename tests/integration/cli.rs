//! End-to-end tests of the `msnr` binary: run, caching, plan reasons, failures,
//! the store's atomicity under SIGKILL, the worker boundary and the lock.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A throwaway project folder with a pipeline, driven through the real binary.
pub(crate) struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join(".msnr")).expect("store dir");
        Self { dir }
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub(crate) fn write(&self, rel: &str, text: &str) -> &Self {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    /// Copies `examples/digits/<label>/*.png` (the first `per_class` of each) into `rel`.
    pub(crate) fn digits(&self, rel: &str, per_class: usize) -> &Self {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/digits");
        for label in 0..10 {
            let dst = self.path(&format!("{rel}/{label}"));
            std::fs::create_dir_all(&dst).unwrap();
            for n in 0..per_class {
                std::fs::copy(src.join(format!("{label}/{n}.png")), dst.join(format!("{n}.png"))).unwrap();
            }
        }
        self
    }

    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_msnr"));
        cmd.args(args).current_dir(self.dir.path()).env("MSNR_PLAIN", "1").env_remove("MSNR_HOME");
        cmd
    }

    pub(crate) fn msnr(&self, args: &[&str]) -> Run {
        Run(self.cmd(args).output().expect("msnr runs"))
    }

    pub(crate) fn store_entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path(".msnr/store"))
            .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    pub(crate) fn tmp_entries(&self) -> usize {
        std::fs::read_dir(self.path(".msnr/tmp")).map_or(0, Iterator::count)
    }
}

/// A finished command.
pub(crate) struct Run(Output);

impl Run {
    pub(crate) fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    #[track_caller]
    pub(crate) fn success(&self) -> &Self {
        assert!(self.0.status.success(), "expected success\nstdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr());
        self
    }
    #[track_caller]
    pub(crate) fn failure(&self) -> &Self {
        assert!(!self.0.status.success(), "expected failure\nstdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr());
        self
    }
    #[track_caller]
    pub(crate) fn stderr_has(&self, needle: &str) -> &Self {
        assert!(self.stderr().contains(needle), "stderr lacks {needle:?}:\n{}", self.stderr());
        self
    }
    #[track_caller]
    pub(crate) fn stdout_has(&self, needle: &str) -> &Self {
        assert!(self.stdout().contains(needle), "stdout lacks {needle:?}:\n{}", self.stdout());
        self
    }
}

const DIGITS: &str = "stage digits = images { path = \"digits\", channels = 1 }\n";

#[test]
fn run_then_rerun_is_fully_cached() {
    let p = Project::new();
    p.digits("digits", 2).write("p.msnr", DIGITS);
    p.msnr(&["run", "p.msnr"]).success().stderr_has("1 ran, 0 cached");
    p.msnr(&["run", "p.msnr"]).success().stderr_has("0 ran, 1 cached");
    let lock = std::fs::read_to_string(p.path("p.msnr.lock")).unwrap();
    assert!(lock.contains("\"digits\""), "{lock}");
    assert_eq!(p.store_entries().len(), 1);
}

#[test]
fn plan_says_why_a_stage_is_stale() {
    let p = Project::new();
    p.digits("digits", 1).write("p.msnr", DIGITS);
    p.msnr(&["plan", "p.msnr"]).success().stdout_has("never run");
    p.msnr(&["run", "p.msnr"]).success();
    p.msnr(&["plan", "p.msnr"]).success().stdout_has("cached");
    p.write("p.msnr", "stage digits = images { path = \"digits\", channels = 3 }\n");
    p.msnr(&["plan", "p.msnr"]).success().stdout_has("channels: 1 -> 3");
    std::fs::write(p.path("digits/0/0.png"), std::fs::read(p.path("digits/1/0.png")).unwrap()).unwrap();
    p.write("p.msnr", DIGITS);
    p.msnr(&["plan", "p.msnr"]).success().stdout_has("param path");
}

#[test]
fn param_override_changes_the_key() {
    let p = Project::new();
    p.digits("digits", 1).write("p.msnr", "param ch = 1\nstage digits = images { path = \"digits\", channels = ch }\n");
    p.msnr(&["run", "p.msnr"]).success();
    p.msnr(&["plan", "p.msnr", "--set", "ch=3"]).success().stdout_has("channels: 1 -> 3");
}

#[test]
fn corrupt_image_fails_naming_it_and_caches_nothing() {
    let p = Project::new();
    p.digits("digits", 1).write("p.msnr", DIGITS).write("digits/3/bad.png", "not a png");
    p.msnr(&["run", "p.msnr"]).failure().stderr_has("bad.png");
    assert!(p.store_entries().is_empty(), "{:?}", p.store_entries());
    assert_eq!(p.tmp_entries(), 0);
    std::fs::remove_file(p.path("digits/3/bad.png")).unwrap();
    p.msnr(&["run", "p.msnr"]).success().stderr_has("1 ran");
}

#[test]
fn vae_encode_of_grey_images_is_refused_before_running() {
    let p = Project::new();
    p.digits("digits", 1).write(
        "p.msnr",
        "stage digits = images { path = \"digits\", channels = 1 }\nstage s = vae_encode { images = digits, vae = \"digits\" }\n",
    );
    p.msnr(&["run", "p.msnr"])
        .failure()
        .stderr_has("stage `s`: `images`: the VAE encodes 3-channel images, found 1 channels");
    assert!(p.store_entries().is_empty());
}

#[test]
fn failed_stage_skips_its_readers() {
    let p = Project::new();
    p.write(
        "p.msnr",
        "stage a = images { path = \"missing\", channels = 1 }\nstage b = crop { images = a, size = 8 }\n",
    );
    p.msnr(&["run", "p.msnr"]).failure().stderr_has("b: skipped").stderr_has("a: FAILED");
}

#[test]
fn graph_prints_dot_and_mermaid() {
    let p = Project::new();
    p.digits("digits", 1).write("p.msnr", "stage a = images { path = \"digits\", channels = 1 }\nstage b = crop { images = a, recipe = adm {}, size = 8 }\n");
    p.msnr(&["graph", "p.msnr"]).success().stdout_has("n0 -> n1;");
    p.msnr(&["graph", "p.msnr", "--format", "mermaid"]).success().stdout_has("n0 --> n1");
}

#[test]
fn dependency_cycle_lists_every_stage() {
    let p = Project::new();
    p.write(
        "p.msnr",
        "stage a = crop { images = c, size = 8 }\nstage b = crop { images = a, size = 8 }\nstage c = crop { images = b, size = 8 }\n",
    );
    p.msnr(&["check", "p.msnr"]).failure().stderr_has("dependency cycle between stages `a`, `b`, `c`");
}

#[test]
fn gc_removes_unreferenced_entries() {
    let p = Project::new();
    p.digits("digits", 1).write("p.msnr", DIGITS);
    p.msnr(&["run", "p.msnr"]).success();
    p.write("p.msnr", "stage digits = images { path = \"digits\", channels = 3 }\n");
    p.msnr(&["run", "p.msnr"]).success();
    assert_eq!(p.store_entries().len(), 2);
    p.msnr(&["gc"]).success().stdout_has("freed");
    assert_eq!(p.store_entries().len(), 1);
    p.msnr(&["run", "p.msnr"]).success().stderr_has("0 ran, 1 cached");
}

/// Writes a fake worker that kills itself, standing in for a worker that crashes or is OOM-killed.
fn crashing_worker(p: &Project) -> PathBuf {
    let path = p.path("fake-worker.sh");
    std::fs::write(&path, "#!/bin/sh\necho 'about to crash' >&2\nkill -KILL $$\n").unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

#[test]
fn worker_crash_fails_the_stage_cleanly() {
    let p = Project::new();
    p.digits("digits", 1).write(
        "p.msnr",
        "stage digits = images { path = \"digits\", channels = 1 }\nstage m = train { data = digits, net = unet { channels = 32, mults = [1], attention = [] }, steps = 2, batch = 2 }\n",
    );
    let worker = crashing_worker(&p);
    let out = Run(p.cmd(&["run", "p.msnr"]).env("MSNR_WORKER", &worker).output().unwrap());
    out.failure().stderr_has("killed by SIGKILL").stderr_has("about to crash");
    assert_eq!(p.store_entries().len(), 1, "only `digits` is cached");
    assert_eq!(p.tmp_entries(), 0);
}

/// Waits until `cond` holds, polling every few milliseconds.
pub(crate) fn wait_for(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn sigkill_mid_stage_leaves_no_corrupt_entry_and_redoes_only_that_stage() {
    let p = Project::new();
    p.digits("small", 1).digits("big", 10);
    for copy in 1..5 {
        for label in 0..10 {
            for n in 0..10 {
                let dir = p.path(&format!("big/{label}"));
                std::fs::copy(dir.join(format!("{n}.png")), dir.join(format!("{n}-{copy}.png"))).unwrap();
            }
        }
    }
    p.write("p.msnr", "stage small = images { path = \"small\", channels = 1 }\nstage big = images { path = \"big\", channels = 1 }\nstage crop = crop { images = big, recipe = adm {}, size = 16 }\n");
    p.msnr(&["run", "p.msnr", "--only", "small"]).success();
    assert_eq!(p.store_entries().len(), 1);
    let mut child =
        p.cmd(&["run", "p.msnr", "--jobs", "1"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for("a stage to start", Duration::from_secs(30), || p.tmp_entries() > 0);
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = p.store_entries();
    assert!(kept.len() < 3, "the run was killed before it finished");
    for key in &kept {
        assert!(p.path(&format!(".msnr/store/{key}/meta.json")).exists(), "entry {key} is complete");
    }
    let again = p.msnr(&["run", "p.msnr"]);
    again.success().stderr_has("small: cached").stderr_has(&format!("{} ran, {} cached", 3 - kept.len(), kept.len()));
    assert_eq!(p.tmp_entries(), 0, "the leftover temporary folder was removed");
}

#[test]
fn a_second_run_waits_for_the_lock() {
    let p = Project::new();
    p.digits("digits", 1).write(
        "p.msnr",
        "stage digits = images { path = \"digits\", channels = 1 }\nstage m = train { data = digits, net = unet { channels = 32, mults = [1], attention = [] }, steps = 2, batch = 2 }\n",
    );
    let worker = p.path("slow-worker.sh");
    let marker = p.path("worker-started");
    std::fs::write(
        &worker,
        format!(
            "#!/bin/sh\ntouch '{}'\nsleep 1.5\necho '@msnr {{\"error\":\"slow fake worker\"}}'\n",
            marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&worker, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let first = p
        .cmd(&["run", "p.msnr"])
        .env("MSNR_WORKER", &worker)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the first run's worker", Duration::from_secs(30), || marker.exists());
    let second = Run(p.cmd(&["run", "p.msnr"]).env("MSNR_WORKER", &worker).output().unwrap());
    let first = Run(first.wait_with_output().unwrap());
    first.failure().stderr_has("slow fake worker");
    second.failure().stderr_has("waiting for another msnr process").stderr_has("digits: cached");
}

#[test]
fn check_rejects_data_that_cannot_fit_the_net_pointing_at_the_parameter() {
    let p = Project::new();
    p.write(
        "p.msnr",
        "stage digits = mnist {}\nstage m = train {\n  data = digits\n  net = vit { depth = 2, width = 64, heads = 4, patch = 3 }\n  steps = 10\n}\n",
    );
    let out = p.msnr(&["check", "p.msnr"]);
    out.failure().stderr_has("net.patch").stderr_has("digits` gives 1x28x28").stderr_has("p.msnr:4:");
    p.write(
        "p.msnr",
        "stage digits = mnist {}\nstage m = train { data = digits, net = unet { mults = [1, 2, 2, 2] }, steps = 10 }\n",
    );
    p.msnr(&["check", "p.msnr"]).failure().stderr_has("net.mults");
}

#[test]
fn committed_pipelines_check_and_plan_without_network() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "msnr"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "every committed pipeline: {files:?}");
    for file in files {
        let p = Project::new();
        let file = file.to_str().unwrap();
        p.msnr(&["check", file]).success().stdout_has("ok");
        let plan = Command::new(env!("CARGO_BIN_EXE_msnr"))
            .args(["plan", file])
            .env("MSNR_HOME", p.dir.path())
            .output()
            .unwrap();
        let plan = Run(plan);
        plan.success().stdout_has("STAGE");
    }
}

#[test]
fn the_front_end_binary_does_not_link_libtorch() {
    let out = Command::new("readelf")
        .args(["-d", env!("CARGO_BIN_EXE_msnr")])
        .output()
        .expect("readelf (binutils) is installed");
    let text = String::from_utf8_lossy(&out.stdout);
    let needed: Vec<&str> = text.lines().filter(|l| l.contains("(NEEDED)")).collect();
    assert!(!needed.is_empty(), "{text}");
    assert!(
        needed.iter().all(|l| !l.contains("torch") && !l.contains("libc10")),
        "msnr must not load libtorch:\n{needed:#?}"
    );
}

#[test]
fn doc_prints_the_stdlib_reference_and_names_unknown_entries() {
    let p = Project::new();
    p.msnr(&["doc", "train"])
        .success()
        .stdout_has("stage kind `train` -> model")
        .stdout_has("weighting: weighting = constant");
    // The weighting's doc maps msnr's weightings to the seed repo's `mse_loss_weight_type`s.
    p.msnr(&["doc", "weighting"])
        .success()
        .stdout_has("min_snr { gamma }")
        .stdout_has("min_snr { gamma = k }   `min_snr_k` (x0, eps), `vmin_snr_k` (v)");
    p.msnr(&["doc", "gama"]).failure().stderr_has("known: ").stderr_has("crop, crop_recipe");
    p.msnr(&["doc", "sweep"]).success().stdout_has("sweep g in [1, 5], t in [eps, v]");
}

#[test]
fn verify_reproduces_every_output_and_names_a_tampered_one() {
    let p = Project::new();
    p.digits("digits", 1).write("p.msnr", "stage digits = images { path = \"digits\", channels = 1 }\nstage small = crop { images = digits, recipe = adm {}, size = 8 }\n");
    p.msnr(&["verify", "p.msnr"]).failure().stderr_has("run the pipeline first");
    p.msnr(&["run", "p.msnr"]).success();
    let lock_before = std::fs::read_to_string(p.path("p.msnr.lock")).unwrap();
    let store_before = p.store_entries();
    p.msnr(&["verify", "p.msnr"]).success().stdout_has("digits  reproduced").stdout_has("small   reproduced");
    assert_eq!(std::fs::read_to_string(p.path("p.msnr.lock")).unwrap(), lock_before, "the lockfile is untouched");
    assert_eq!(p.store_entries(), store_before, "the project's store is untouched");
    let output = lock_before.split("\"output\": \"").nth(1).unwrap()[..64].to_string();
    p.write("p.msnr.lock", &lock_before.replace(&output, &"0".repeat(64)));
    p.msnr(&["verify", "p.msnr"]).failure().stdout_has("OUTPUT DIFFERS").stderr_has("not reproduced: digits");
}

/// Issue 10, item 5 (early cutoff): a PNG re-encoded with identical pixels re-runs the
/// import, whose output hash is unchanged, so the crop below it stays cached.
#[test]
fn identical_upstream_output_leaves_downstream_cached() {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let p = Project::new();
    p.digits("digits", 2);
    p.write("p.msnr", "stage d = images { path = \"digits\", channels = 1 }\nstage c = crop { images = d, recipe = adm {}, size = 14 }\n");
    p.msnr(&["run", "p.msnr"]).success();
    let file = p.path("digits/3/0.png");
    let before = std::fs::read(&file).unwrap();
    let img = image::open(&file).unwrap();
    let encoder =
        PngEncoder::new_with_quality(std::fs::File::create(&file).unwrap(), CompressionType::Best, FilterType::Paeth);
    img.write_with_encoder(encoder).unwrap();
    assert_ne!(std::fs::read(&file).unwrap(), before, "the re-encoded file must differ in bytes");
    p.msnr(&["run", "p.msnr"]).success().stderr_has("msnr: d: done").stderr_has("msnr: c: cached");
}

/// The recorded output hash of stage `name` in the lockfile `rel`.
fn locked_output(p: &Project, rel: &str, name: &str) -> String {
    let lock: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p.path(rel)).unwrap()).unwrap();
    lock["stages"][name]["output"].as_str().unwrap_or_else(|| panic!("no output for {name} in {lock}")).to_string()
}

/// Issue 15: a sweep over `steps` runs its instances shortest first, each continuing the
/// stored shorter run, and the longer run's output is bit for bit the one a run from scratch
/// gives; lengthening training later re-uses the stored runs too.
#[test]
fn a_longer_run_continues_the_stored_shorter_one_bit_for_bit() {
    let net = "net = unet { channels = 32, mults = [1], attention = [] }, batch = 2, log_every = 2";
    let sweep = |steps: &str| {
        format!("{DIGITS}sweep n in [{steps}] {{\n  stage m = train {{ data = digits, {net}, steps = n }}\n}}\n")
    };
    let p = Project::new();
    p.digits("digits", 1).write("p.msnr", &sweep("2, 4"));
    p.msnr(&["plan", "p.msnr"]).success().stdout_has("will continue `m[n=2]`, which runs first");
    p.msnr(&["run", "p.msnr"]).success().stderr_has("continuing `m[n=2]` from step 2");
    let scratch = Project::new();
    scratch
        .digits("digits", 1)
        .write("p.msnr", &format!("{DIGITS}stage m = train {{ data = digits, {net}, steps = 4 }}\n"));
    scratch.msnr(&["run", "p.msnr"]).success();
    assert_eq!(locked_output(&p, "p.msnr.lock", "m[n=4]"), locked_output(&scratch, "p.msnr.lock", "m"));
    // Lengthening: the 4-step run is stored, so a 6-step run continues it.
    p.write("p.msnr", &sweep("2, 4, 6"));
    p.msnr(&["plan", "p.msnr"]).success().stdout_has("will continue `m[n=4]` (stored) from step 4");
    p.msnr(&["run", "p.msnr"])
        .success()
        .stderr_has("m[n=2]: cached")
        .stderr_has("m[n=4]: cached")
        .stderr_has("continuing `m[n=4]` from step 4");
    // A run the pipeline no longer declares is named by its entry.
    p.write("p.msnr", &format!("{DIGITS}stage m = train {{ data = digits, {net}, steps = 3 }}\n"));
    p.msnr(&["run", "p.msnr"]).success().stderr_has("continuing `train (entry");
}

/// Issue 15: `compare` reads a sweep over the training length as metric-versus-steps
/// series, says how many steps each needs to reach the baseline's final value, and prints
/// the same rows as JSON and CSV.
#[test]
fn compare_reads_a_length_sweep_as_series_and_reaches_the_baseline() {
    let p = Project::new();
    p.write(
        "p.msnr",
        "stage d = mnist { count = 120 }\nstage small = crop { images = d, recipe = adm {}, size = 14 }\n\
         stage judge = classifier { data = small, steps = 20, holdout = 20 }\n\
         sweep weighting in [constant, min_snr { gamma = 5 }], n in [2, 4] {\n\
           stage m = train { data = small, net = unet { channels = 32, mults = [1], attention = [] }, weighting = weighting, steps = n, batch = 4, log_every = 2 }\n\
           stage s = sample { model = m, sampler = ddim { steps = 2 }, count = 20, batch = 20 }\n\
           stage score = fid { samples = s, reference = small, classifier = judge }\n\
         }\n",
    );
    p.msnr(&["compare", "p.msnr"]).success().stdout_has("no metrics recorded yet");
    p.msnr(&["run", "p.msnr"]).success();
    p.msnr(&["compare", "p.msnr", "--reach", "classifier_distance=baseline"])
        .success()
        .stdout_has("score (fid)")
        .stdout_has("steps to reach the final classifier_distance of weighting=constant")
        .stdout_has("weighting=min_snr{gamma=5}");
    p.msnr(&["compare", "p.msnr", "--reach", "fid=3"]).failure().stderr_has("no stage recorded a metric `fid`");
    let json =
        p.msnr(&["compare", "p.msnr", "--format", "json", "--reach", "classifier_distance=100"]).success().stdout();
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let scores: Vec<&serde_json::Value> =
        doc["rows"].as_array().unwrap().iter().filter(|r| r["kind"] == "fid").collect();
    assert_eq!(scores.len(), 4);
    let steps: BTreeSet<u64> = scores.iter().map(|r| r["steps"].as_u64().unwrap()).collect();
    assert_eq!(steps, BTreeSet::from([2, 4]), "each score knows its training's steps");
    assert!(scores.iter().all(|r| r["metrics"]["n"] == 20.0 && r["device"] == "cpu"));
    assert_eq!(doc["reach"].as_array().unwrap().len(), 2, "one answer per series: {json}");
    let csv = p.msnr(&["compare", "p.msnr", "--format", "csv"]).success().stdout();
    assert!(csv.starts_with("stage,kind,weighting,n,train_steps,"), "{csv}");
    assert!(csv.contains("\"score[weighting=constant,n=4]\"") || csv.contains("score[weighting=constant,n=4]"));
}

/// A tiny train on one digit per class: the real worker, a few seconds on a CPU.
const TRAIN: &str = "stage digits = images { path = \"digits\", channels = 1 }\nstage m = train { data = digits, net = unet { channels = 32, mults = [1], attention = [] }, steps = 2, batch = 2 }\n";

/// Waits for `child` at most `limit`; kills it and fails the test if it is still running then.
#[track_caller]
pub(crate) fn wait_at_most(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("msnr still running after {limit:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Issue 10, item 1: `msnr run FILE | head -2` hung forever once the pipe closed (a stage
/// thread panicked printing, the worker was left a zombie, nothing was stored).
#[test]
fn a_run_whose_stdout_and_stderr_are_closed_pipes_finishes_and_stores_its_results() {
    let p = Project::new();
    p.digits("digits", 1).write("p.msnr", TRAIN);
    let mut child = p.cmd(&["run", "p.msnr"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    let status = wait_at_most(&mut child, Duration::from_secs(120));
    assert!(status.success(), "{status:?}");
    let status = p.msnr(&["status", "p.msnr"]);
    assert_eq!(status.success().stdout().matches("  stored  ").count(), 2, "{}", status.stdout());
    assert_eq!(p.store_entries().len(), 2);
    assert_eq!(p.tmp_entries(), 0);
}

/// The processes whose command line mentions `dir` (a worker's spec lives under the project).
fn processes_under(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push(cmdline);
        }
    }
    found
}

/// Issue 10, item 2: Ctrl-C was silent, left a `.msnr/tmp/<key>.<pid>.*` folder and a zombie
/// worker, and `plan` then said "never run" for a train that had checkpointed.
#[test]
fn ctrl_c_stops_the_worker_cleans_up_and_says_where_a_rerun_resumes() {
    let p = Project::new();
    p.digits("digits", 1).write(
        "p.msnr",
        "stage digits = images { path = \"digits\", channels = 1 }\nstage m = train { data = digits, net = unet { channels = 32, mults = [1], attention = [] }, steps = 1M, batch = 2, checkpoint_every = 5 }\n",
    );
    let mut child = p.cmd(&["run", "p.msnr"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let work = p.path(".msnr/work");
    let checkpointed = || {
        std::fs::read_dir(&work)
            .is_ok_and(|d| d.filter_map(Result::ok).any(|e| e.path().join("ckpt/state.json").exists()))
    };
    wait_for("a checkpoint", Duration::from_secs(120), checkpointed);
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: plain syscall on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = wait_at_most(&mut child, Duration::from_secs(30));
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}\n{stderr}");
    let said = "interrupted: re-running resumes `m` from step ";
    let step = stderr.split(said).nth(1).unwrap_or_else(|| panic!("{stderr}")).lines().next().unwrap();
    assert!(step.parse::<u64>().unwrap() >= 5, "{stderr}");
    assert_eq!(p.tmp_entries(), 0, "{stderr}");
    assert_eq!(processes_under(p.dir.path()), Vec::<String>::new(), "the worker is gone");
    p.msnr(&["plan", "p.msnr"]).success().stdout_has(&format!("will resume from step {step}"));
    p.msnr(&["status", "p.msnr"]).success().stdout_has("digits  stored");
}

/// Issue 10, item 7: `gc` deleted entries that a lockfile on disk still referred to when no
/// run had registered it (a lockfile from `git checkout`, a renamed pipeline).
#[test]
fn gc_keeps_what_an_unregistered_lockfile_refers_to_and_names_the_lockfiles_it_read() {
    let p = Project::new();
    p.digits("digits", 1).write("p.msnr", DIGITS);
    p.msnr(&["run", "p.msnr"]).success();
    let old_lock = std::fs::read_to_string(p.path("p.msnr.lock")).unwrap();
    p.write("p.msnr", "stage digits = images { path = \"digits\", channels = 3 }\n");
    p.msnr(&["run", "p.msnr"]).success();
    p.write("papers/old.msnr.lock", &old_lock).write("target/ignored.msnr.lock", "not json");
    assert_eq!(p.store_entries().len(), 2);
    let gc = p.msnr(&["gc"]);
    gc.success()
        .stdout_has("keeping what p.msnr.lock refers to")
        .stdout_has("keeping what papers/old.msnr.lock refers to");
    assert_eq!(p.store_entries().len(), 2, "{}", gc.stdout());
    std::fs::remove_file(p.path("papers/old.msnr.lock")).unwrap();
    p.msnr(&["gc"]).success().stdout_has("freed");
    assert_eq!(p.store_entries().len(), 1);
}

/// Issue 10, item 10: a read-only pipeline folder failed only after every stage ran, naming a
/// temporary file instead of the lockfile. Root writes anywhere, so as root the folder is made
/// read-only by a read-only bind mount in a private mount namespace (`unshare -m`).
#[test]
fn a_lockfile_that_cannot_be_written_fails_the_run_before_anything_runs() {
    let p = Project::new();
    p.digits("ro/digits", 1).write("ro/p.msnr", DIGITS);
    let ro = p.path("ro");
    // SAFETY: plain syscall.
    let out = if unsafe { libc::geteuid() } == 0 {
        if !Command::new("unshare").args(["-m", "true"]).status().is_ok_and(|s| s.success()) {
            eprintln!("skipped: as root, a folder can be made read-only only with `unshare -m`, not usable here");
            return;
        }
        let script = format!("mount --bind -o ro '{0}' '{0}' && exec \"$0\" run ro/p.msnr", ro.display());
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "sh", "-c", &script, env!("CARGO_BIN_EXE_msnr")]).current_dir(p.dir.path());
        Run(cmd.env("MSNR_PLAIN", "1").env_remove("MSNR_HOME").output().unwrap())
    } else {
        std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
        let out = p.msnr(&["run", "ro/p.msnr"]);
        std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        out
    };
    out.failure().stderr_has("p.msnr.lock").stderr_has("nothing was run");
    assert!(p.store_entries().is_empty(), "{:?}\n{}", p.store_entries(), out.stderr());
}

/// Issue 10, item 11: a pin mismatch said "re-run with `--update-pins`", a flag that did not exist.
#[test]
fn update_pins_accepts_a_download_that_changed_upstream_and_pins_its_new_hash() {
    let p = Project::new();
    p.write("upstream/data.bin", "first version");
    let url = format!("file://{}", p.path("upstream/data.bin").display());
    p.write("p.msnr", &format!("stage raw = download {{ url = \"{url}\", extract = false }}\n"));
    p.msnr(&["run", "p.msnr"]).success();
    let pin = |p: &Project| {
        let lock = std::fs::read_to_string(p.path("p.msnr.lock")).unwrap();
        let pins = lock.split("\"pins\": {").nth(1).unwrap();
        pins.split("\"sha256\": \"").nth(1).unwrap()[..64].to_string()
    };
    let first = pin(&p);
    p.write("upstream/data.bin", "second version");
    std::fs::remove_dir_all(p.path(".msnr/store")).unwrap();
    let refused = p.msnr(&["run", "p.msnr"]);
    refused.failure().stderr_has("lockfile pinned").stderr_has("--update-pins");
    assert_eq!(pin(&p), first, "a refused download keeps the pin");
    let updated = p.msnr(&["run", "p.msnr", "--update-pins"]);
    updated.success().stderr_has(&format!("raw: sha256 pin updated: {first} -> "));
    assert_ne!(pin(&p), first);
    p.msnr(&["run", "p.msnr"]).success().stderr_has("0 ran, 1 cached");
}

/// Issue 10, item 14: `fmt` failed on a UTF-8 byte order mark that `check` accepts, and turned
/// CRLF into LF, so `fmt --check` always failed on a CRLF file.
#[test]
fn fmt_keeps_a_byte_order_mark_and_crlf_so_check_passes_after_formatting() {
    let p = Project::new();
    p.write("p.msnr", "\u{feff}stage digits = mnist {  }\r\nstage few = mnist {\r\n  count = 10 }\r\n");
    p.msnr(&["check", "p.msnr"]).success();
    p.msnr(&["fmt", "p.msnr", "--check"]).failure().stderr_has("not formatted: p.msnr");
    p.msnr(&["fmt", "p.msnr"]).success().stdout_has("formatted p.msnr");
    let text = std::fs::read_to_string(p.path("p.msnr")).unwrap();
    assert!(text.starts_with("\u{feff}stage digits = mnist {}\r\n"), "{text:?}");
    assert_eq!(text.matches('\n').count(), text.matches("\r\n").count(), "{text:?}");
    p.msnr(&["fmt", "p.msnr", "--check"]).success();
    p.msnr(&["check", "p.msnr"]).success();
}

/// Issue 10, item 8: `run` ran every stage of every imported file (`use "std/celeba.msnr"`
/// put its 1.4 GB download into each run); now the main file's stages and what they read.
#[test]
fn run_runs_the_main_files_stages_and_only_the_imported_stages_they_use() {
    let p = Project::new();
    p.digits("digits", 1).write(
        "lib.msnr",
        "stage used = images { path = \"digits\", channels = 1 }\nstage unused = images { path = \"no-such-folder\", channels = 1 }\n",
    );
    p.write("p.msnr", "use \"lib.msnr\"\nstage small = crop { images = used, recipe = adm {}, size = 8 }\n");
    p.msnr(&["run", "p.msnr"]).success().stderr_has("2 ran, 0 cached, 0 failed");
    let lock = std::fs::read_to_string(p.path("p.msnr.lock")).unwrap();
    assert!(lock.contains("\"used\"") && !lock.contains("\"unused\""), "{lock}");
    p.msnr(&["run", "p.msnr", "--only", "unused"]).failure().stderr_has("unused: FAILED");
    p.write("only-imports.msnr", "use \"lib.msnr\"\n");
    p.msnr(&["run", "only-imports.msnr"]).failure().stderr_has("unused: FAILED").stderr_has("used: cached");
}

/// A fake worker for `msnr run` number `me`: it says it started, then waits for the worker
/// of the other run to start too, and succeeds only if it does (within a minute).
fn rendezvous_worker(p: &Project, me: &str, other: &str) -> PathBuf {
    let path = p.path(&format!("worker-{me}.sh"));
    let (mine, theirs) = (p.path(&format!("{me}.started")), p.path(&format!("{other}.started")));
    let script = format!(
        "#!/bin/sh\ntouch '{}'\ni=0\nwhile [ ! -e '{}' ]; do\n  i=$((i+1))\n  if [ $i -gt 1200 ]; then echo '@msnr {{\"error\":\"the other run never ran at the same time\"}}'; exit 0; fi\n  sleep 0.05\ndone\necho '@msnr {{\"result\":{{\"metrics\":{{}},\"pins\":{{}}}}}}'\n",
        mine.display(),
        theirs.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// Issue 10, item 4: one lock covered the whole store, so two unrelated pipelines of one
/// project ran one after the other. Each run's train stage waits for the other's to start,
/// so the test passes only if both build at once; the `digits` stage they share has one key,
/// built by one run while the other waits for it and then uses the stored entry.
#[test]
fn two_pipelines_of_one_project_build_at_once_and_share_what_they_have_in_common() {
    let p = Project::new();
    p.digits("digits", 1);
    let train = |steps: u32| {
        format!("{DIGITS}stage m = train {{ data = digits, net = unet {{ channels = 32, mults = [1], attention = [] }}, steps = {steps}, batch = 2 }}\n")
    };
    p.write("a.msnr", &train(2)).write("b.msnr", &train(3));
    let spawn = |file: &str, worker: &PathBuf| {
        p.cmd(&["run", file]).env("MSNR_WORKER", worker).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
    };
    let a = spawn("a.msnr", &rendezvous_worker(&p, "a", "b"));
    let b = spawn("b.msnr", &rendezvous_worker(&p, "b", "a"));
    let (a, b) = (Run(a.wait_with_output().unwrap()), Run(b.wait_with_output().unwrap()));
    a.success().stderr_has("m: done");
    b.success().stderr_has("m: done");
    let built = [&a, &b].iter().filter(|r| r.stderr().contains("digits: done")).count();
    let used = [&a, &b].iter().filter(|r| r.stderr().contains("digits: cached")).count();
    assert_eq!((built, used), (1, 1), "one run builds `digits`, the other uses it\n{}\n{}", a.stderr(), b.stderr());
    assert_eq!(p.store_entries().len(), 3);
    assert_eq!(p.tmp_entries(), 0);
}

/// The key of stage `stage` in the lockfile of `p.msnr`.
fn locked_key(p: &Project, stage: &str) -> String {
    let lock = std::fs::read_to_string(p.path("p.msnr.lock")).unwrap();
    let at = lock.find(&format!("\"{stage}\": {{")).unwrap();
    lock[at..].split("\"key\": \"").nth(1).unwrap()[..64].to_string()
}

/// Flips one byte of `file` (its size unchanged) and puts its mtime back, as silent damage
/// on disk would: only hashing can see it.
fn flip_quietly(file: &Path, at_end: usize) {
    let mtime = std::fs::metadata(file).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(file).unwrap();
    let i = bytes.len() - at_end;
    bytes[i] ^= 0x5a;
    std::fs::write(file, &bytes).unwrap();
    std::fs::File::options().write(true).open(file).unwrap().set_modified(mtime).unwrap();
}

/// Issue 10, item 6: pixels changed in a stored dataset shard went unnoticed (`stored`,
/// `cached`, `verify` said `reproduced`, and a reader consumed them).
#[test]
fn a_changed_dataset_shard_is_found_by_status_check_verify_a_reader_and_run() {
    let p = Project::new();
    p.digits("digits", 1);
    let pipeline =
        |size: u32| format!("{DIGITS}stage c = crop {{ images = digits, recipe = adm {{}}, size = {size} }}\n");
    p.write("p.msnr", &pipeline(8));
    p.msnr(&["run", "p.msnr"]).success();
    p.msnr(&["status", "p.msnr", "--check"]).success();
    let shard = p.path(&format!(".msnr/store/{}/out/shard-00000.safetensors", locked_key(&p, "digits")));
    flip_quietly(&shard, 1);
    p.msnr(&["status", "p.msnr"]).success().stdout_has("digits  stored");
    p.msnr(&["status", "p.msnr", "--check"])
        .failure()
        .stdout_has("digits  CORRUPTED")
        .stdout_has("digits: shard-00000.safetensors: hash mismatch")
        .stderr_has("corrupted store entries: digits");
    p.msnr(&["verify", "p.msnr"])
        .failure()
        .stdout_has("digits  CORRUPTED IN THE PROJECT'S STORE (shard-00000.safetensors: hash mismatch)")
        .stderr_has("not reproduced: digits");
    // A new crop reads the shard: the reader sees the damage, and the run sets the entry aside.
    p.write("p.msnr", &pipeline(6));
    p.msnr(&["run", "p.msnr"])
        .failure()
        .stderr_has("shard-00000.safetensors: hash mismatch")
        .stderr_has("the store entry is corrupted; `msnr run` rebuilds it")
        .stderr_has("`digits`: stored entry corrupted");
    p.msnr(&["run", "p.msnr"]).success().stderr_has("digits: done").stderr_has("c: done");
    p.msnr(&["status", "p.msnr", "--check"]).success();
    assert_eq!(std::fs::read_dir(p.path(".msnr/quarantine")).unwrap().count(), 1, "moved aside, not deleted");
    // Damage that moves the mtime is seen by `run` before the entry is used as cached.
    let shard = p.path(&format!(".msnr/store/{}/out/shard-00000.safetensors", locked_key(&p, "digits")));
    let mut bytes = std::fs::read(&shard).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&shard, &bytes).unwrap();
    p.msnr(&["run", "p.msnr"])
        .success()
        .stderr_has("`digits`: stored entry corrupted (shard-00000.safetensors: hash mismatch)")
        .stderr_has("rebuilding")
        .stderr_has("digits: done")
        .stderr_has("c: cached");
}

/// Issue 10, item 6, for a model: flipped bytes in `model.safetensors` and a deleted
/// `ema.safetensors` are found by `status --check`, by the sampler reading the weights, and
/// by `run`, which moves the entry aside and retrains.
#[test]
fn a_damaged_model_is_found_by_status_check_the_sampler_and_run() {
    let p = Project::new();
    p.digits("digits", 1).write("p.msnr", TRAIN);
    p.msnr(&["run", "p.msnr"]).success();
    let model = |p: &Project| p.path(&format!(".msnr/store/{}/out", locked_key(p, "m")));
    flip_quietly(&model(&p).join("model.safetensors"), 100);
    p.msnr(&["status", "p.msnr", "--check"]).failure().stdout_has("m: model.safetensors: hash mismatch");
    let sample = "stage s = sample { model = m, count = 2, ema = false, sampler = ddim { steps = 2 } }\n";
    p.write("p.msnr", &format!("{TRAIN}{sample}"));
    p.msnr(&["run", "p.msnr"])
        .failure()
        .stderr_has("model.safetensors: hash mismatch")
        .stderr_has("the store entry is corrupted; `msnr run` rebuilds it")
        .stderr_has("`m`: stored entry corrupted");
    p.msnr(&["run", "p.msnr"]).success().stderr_has("m: done").stderr_has("s: done");
    std::fs::remove_file(model(&p).join("ema.safetensors")).unwrap();
    p.msnr(&["plan", "p.msnr"]).success().stdout_has("stored entry corrupted (ema.safetensors: missing)");
    p.msnr(&["status", "p.msnr"]).success().stdout_has("m       CORRUPTED").stdout_has("m: ema.safetensors: missing");
    p.msnr(&["run", "p.msnr"])
        .success()
        .stderr_has("`m`: stored entry corrupted (ema.safetensors: missing)")
        .stderr_has("m: done");
    p.msnr(&["status", "p.msnr", "--check"]).success();
}

/// The bug: `msnr gc` deleted the work folder of an interrupted `train`, its checkpoint
/// (the resume state), because no lockfile refers to a key that never completed. Work
/// folders changed within the grace period (7 days) stay.
#[test]
fn gc_keeps_the_checkpoint_of_an_interrupted_train() {
    let p = Project::new();
    p.digits("digits", 1).write("p.msnr", DIGITS);
    p.msnr(&["run", "p.msnr"]).success();
    let work = p.path(&format!(".msnr/work/{}", "ab".repeat(32)));
    std::fs::create_dir_all(work.join("ckpt")).unwrap();
    std::fs::write(work.join("ckpt/state.json"), "{\"step\": 30}").unwrap();
    p.msnr(&["gc"]).success().stdout_has(&format!("keeping work folder {}", "ab".repeat(32)));
    assert!(work.join("ckpt/state.json").exists());
    let old = std::time::SystemTime::now() - Duration::from_secs(8 * 24 * 3600);
    for path in [work.join("ckpt/state.json"), work.join("ckpt"), work.clone()] {
        std::fs::File::open(&path).unwrap().set_modified(old).unwrap();
    }
    p.msnr(&["gc"]).success().stdout_has(&format!("removed {}", "ab".repeat(32)));
    assert!(!work.exists());
    p.msnr(&["run", "p.msnr"]).success().stderr_has("0 ran, 1 cached");
}

/// Per-entry locks let runs proceed at once, but what a run built is named by its lockfile
/// only when it ends: `gc` waits for running runs instead of deleting their fresh entries.
#[test]
fn gc_waits_for_a_running_run_instead_of_deleting_what_it_built() {
    use std::io::BufRead as _;
    let p = Project::new();
    p.digits("digits", 1).write("p.msnr", &format!("{DIGITS}stage m = train {{ data = digits, net = unet {{ channels = 32, mults = [1], attention = [] }}, steps = 2, batch = 2 }}\n"));
    let (started, release) = (p.path("worker-started"), p.path("release"));
    let worker = p.path("held-worker.sh");
    std::fs::write(
        &worker,
        format!(
            "#!/bin/sh\ntouch '{}'\ni=0\nwhile [ ! -e '{}' ] && [ $i -lt 1200 ]; do i=$((i+1)); sleep 0.05; done\necho '@msnr {{\"result\":{{\"metrics\":{{}},\"pins\":{{}}}}}}'\n",
            started.display(),
            release.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&worker, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let run = p
        .cmd(&["run", "p.msnr"])
        .env("MSNR_WORKER", &worker)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the run's worker", Duration::from_secs(60), || started.exists());
    let mut gc = p.cmd(&["gc"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    std::io::BufReader::new(gc.stderr.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.contains("waiting for running msnr processes to finish"), "{first}");
    std::fs::write(&release, "").unwrap();
    Run(run.wait_with_output().unwrap()).success();
    let gc = Run(gc.wait_with_output().unwrap());
    gc.success().stdout_has("freed 0.0 B in 0 entries");
    let again = Run(p.cmd(&["run", "p.msnr"]).env("MSNR_WORKER", &worker).output().unwrap());
    again.success().stderr_has("0 ran, 2 cached");
}

/// `plan` listed the stages of imported files that `run` skips: it now plans what `run`
/// runs, and says in one line how many imported stages are not used.
#[test]
fn plan_lists_what_run_runs_and_counts_the_unused_imported_stages() {
    let p = Project::new();
    p.digits("digits", 1).write(
        "lib.msnr",
        "stage used = images { path = \"digits\", channels = 1 }\nstage unused = images { path = \"no-such-folder\", channels = 1 }\nstage unused_too = crop { images = unused, recipe = adm {}, size = 8 }\n",
    );
    p.write("p.msnr", "use \"lib.msnr\"\nstage small = crop { images = used, recipe = adm {}, size = 8 }\n");
    let plan = p.msnr(&["plan", "p.msnr"]);
    plan.success().stdout_has("used ").stdout_has("small ");
    plan.stdout_has("2 stages of imported files not used by this pipeline");
    assert!(!plan.stdout().contains("unused"), "{}", plan.stdout());
    p.msnr(&["run", "p.msnr"]).success().stderr_has("2 ran, 0 cached, 0 failed");
    let plan = p.msnr(&["plan", "p.msnr"]);
    assert_eq!(plan.stdout().matches("cached").count(), 2, "{}", plan.stdout());
    p.write("only-imports.msnr", "use \"lib.msnr\"\n");
    p.msnr(&["plan", "only-imports.msnr"]).success().stdout_has("unused_too").stdout_has("used ");
}

/// Writes a fake worker that records the thread budget it was handed (`MSNR_THREADS` and
/// `OMP_NUM_THREADS`) in `marks/<pid>`, waits (10 s at most) until `expect` workers have
/// recorded theirs, notes how many it saw, and reports success.
fn recording_worker(p: &Project, expect: usize) -> PathBuf {
    let (path, marks) = (p.path("recording-worker.sh"), p.path("marks"));
    std::fs::create_dir_all(&marks).unwrap();
    let script = format!(
        "#!/bin/sh\nm='{m}'\necho \"$MSNR_THREADS $OMP_NUM_THREADS $RAYON_NUM_THREADS gpu=$CUDA_VISIBLE_DEVICES\" > \"$m/$$\"\n\
         i=0\nwhile [ $(ls \"$m\" | wc -l) -lt {expect} ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done\n\
         echo \"saw $(ls \"$m\" | wc -l)\" >> \"$m/$$\"\necho '@msnr {{\"result\":{{\"metrics\":{{}}}}}}'\n",
        m = marks.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// What each recording worker wrote, sorted.
fn worker_marks(p: &Project) -> Vec<String> {
    let mut marks: Vec<String> = std::fs::read_dir(p.path("marks"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap().replace('\n', "; "))
        .collect();
    marks.sort();
    marks
}

/// Issue 10, item 3: every worker used every core, so two trainings of a sweep run at once
/// oversubscribed the CPU. Now the running stages share `--cores`: a CPU torch stage runs
/// alone with the whole budget as its intra-op thread count (libtorch's CPU results depend
/// on it, so it must not vary with what else runs); CUDA stages run at once, one GPU each,
/// sharing the cores.
#[test]
fn workers_get_their_share_of_the_core_budget() {
    let sweep = "stage digits = images { path = \"digits\", channels = 1 }\nsweep s in [1, 2] {\n  stage m = train { data = digits, net = unet { channels = 32, mults = [1], attention = [] }, steps = 2, batch = 2, seed = s }\n}\n";
    let cases = [
        ("cpu", 1, ["3 3 3 gpu=; saw 1; ", "3 3 3 gpu=; saw 2; "]),
        ("cuda", 2, ["1 1 1 gpu=5; saw 2; ", "2 2 2 gpu=3; saw 2; "]),
    ];
    for (device, together, expected) in cases {
        let p = Project::new();
        p.digits("digits", 1).write("p.msnr", sweep);
        let worker = recording_worker(&p, together);
        let mut cmd = p.cmd(&["run", "p.msnr", "--cores", "3"]);
        cmd.env("MSNR_WORKER", &worker).env("MSNR_DEVICE", device).env_remove("CUDA_VISIBLE_DEVICES");
        if device == "cuda" {
            cmd.env("CUDA_VISIBLE_DEVICES", "3,5");
        }
        Run(cmd.output().unwrap()).success().stderr_has("3 ran, 0 cached");
        assert_eq!(worker_marks(&p), expected, "{device}");
    }
}

#[test]
fn jobs_one_runs_one_worker_with_every_core() {
    let p = Project::new();
    p.digits("digits", 1).write(
        "p.msnr",
        "stage digits = images { path = \"digits\", channels = 1 }\nstage m = train { data = digits, net = unet { channels = 32, mults = [1], attention = [] }, steps = 2, batch = 2 }\n",
    );
    let worker = recording_worker(&p, 1);
    let mut cmd = p.cmd(&["run", "p.msnr", "--cores", "3", "--jobs", "1"]);
    cmd.env("MSNR_WORKER", &worker).env("MSNR_DEVICE", "cpu").env_remove("CUDA_VISIBLE_DEVICES");
    let out = Run(cmd.output().unwrap());
    out.success();
    assert_eq!(worker_marks(&p), ["3 3 3 gpu=; saw 1; "]);
    p.msnr(&["run", "p.msnr", "--cores", "0"]).failure().stderr_has("--cores");
}

/// Writes a fake worker that reports an unknown total, then 30 steps with a message too
/// long for any 80-column line, a log line, and success.
fn progress_worker(p: &Project) -> PathBuf {
    let path = p.path("progress-worker.sh");
    let message = "loss 0.0123, 12.3 step/s, and a message long enough to overflow any eighty-column terminal line";
    let script = format!(
        "#!/bin/sh\necho '@msnr {{\"progress\":{{\"done\":0,\"total\":0,\"message\":\"loading\"}}}}'\nsleep 0.2\n\
         i=1\nwhile [ $i -le 30 ]; do\n  echo \"@msnr {{\\\"progress\\\":{{\\\"done\\\":$i,\\\"total\\\":30,\\\"message\\\":\\\"{message}\\\"}}}}\"\n  sleep 0.05\n  i=$((i+1))\ndone\n\
         echo '@msnr {{\"log\":\"a log line\"}}'\necho '@msnr {{\"result\":{{\"metrics\":{{}}}}}}'\n"
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// A terminal of `width` columns and unbounded height, enough of a VT100 for what
/// indicatif and console write: printable characters with deferred autowrap, `\r`, `\n`,
/// and the CSI sequences for cursor moves and erasing; colours and modes are ignored.
struct Terminal {
    width: usize,
    rows: Vec<Vec<char>>,
    row: usize,
    col: usize,
    wrap_pending: bool,
}

impl Terminal {
    fn new(width: usize) -> Self {
        Self { width, rows: vec![Vec::new()], row: 0, col: 0, wrap_pending: false }
    }

    /// Feeds `text`, calling `check` with the screen after every carriage return, line
    /// feed and escape sequence (the points where a redraw is complete or starts).
    fn feed(&mut self, text: &str, check: &mut impl FnMut(&[String])) {
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\r' => (self.col, self.wrap_pending) = (0, false),
                '\n' => self.down(1),
                '\u{1b}' if chars.next_if_eq(&'[').is_some() => {
                    let mut params = String::new();
                    let final_byte = loop {
                        match chars.next() {
                            Some(f) if ('\u{40}'..='\u{7e}').contains(&f) => break f,
                            Some(p) => params.push(p),
                            None => return,
                        }
                    };
                    self.csi(&params, final_byte);
                }
                '\u{1b}' => {
                    chars.next();
                }
                c if c.is_control() => continue,
                c => {
                    self.put(c);
                    continue;
                }
            }
            check(&self.screen());
        }
    }

    fn put(&mut self, c: char) {
        if self.wrap_pending {
            self.down(1);
            self.col = 0;
        }
        let row = &mut self.rows[self.row];
        if row.len() <= self.col {
            row.resize(self.col + 1, ' ');
        }
        row[self.col] = c;
        if self.col + 1 == self.width {
            self.wrap_pending = true;
        } else {
            self.col += 1;
        }
    }

    fn down(&mut self, n: usize) {
        self.row += n;
        self.wrap_pending = false;
        while self.rows.len() <= self.row {
            self.rows.push(Vec::new());
        }
    }

    fn csi(&mut self, params: &str, final_byte: char) {
        let n = params.trim_start_matches('?').parse::<usize>().unwrap_or(0);
        self.wrap_pending = false;
        match final_byte {
            'A' => self.row = self.row.saturating_sub(n.max(1)),
            'B' => self.down(n.max(1)),
            'C' => self.col = (self.col + n.max(1)).min(self.width - 1),
            'D' => self.col = self.col.saturating_sub(n.max(1)),
            'G' => self.col = n.max(1).min(self.width) - 1,
            'K' => {
                let row = &mut self.rows[self.row];
                match n {
                    0 => row.truncate(self.col),
                    1 => row.iter_mut().take(self.col + 1).for_each(|c| *c = ' '),
                    _ => row.clear(),
                }
            }
            'J' => {
                self.rows[self.row].truncate(self.col);
                self.rows.truncate(self.row + 1);
            }
            _ => {}
        }
    }

    /// The rows, trailing blanks removed.
    fn screen(&self) -> Vec<String> {
        self.rows.iter().map(|r| r.iter().collect::<String>().trim_end().to_string()).collect()
    }
}

/// Issue 10, item 15: the progress line was ~150 characters, wrapped at 80 columns and
/// garbled its redraws; its first frame was a full bar at `0/0`. Under a real
/// pseudo-terminal of 80 columns (`script`), every line drawn now fits.
#[test]
fn progress_lines_fit_an_80_column_terminal() {
    let p = Project::new();
    p.digits("digits", 1).write(
        "p.msnr",
        "stage digits = images { path = \"digits\", channels = 1 }\nsweep weighting_of_the_loss in [constant, min_snr { gamma = 5 }] {\n  stage model_with_a_long_name = train { data = digits, net = unet { channels = 32, mults = [1], attention = [] }, weighting = weighting_of_the_loss, steps = 30 }\n}\n",
    );
    let worker = progress_worker(&p);
    let command = format!("stty cols 80 rows 24; exec '{}' run p.msnr --cores 2", env!("CARGO_BIN_EXE_msnr"));
    let out = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .current_dir(p.path("."))
        .env("MSNR_WORKER", &worker)
        .env("TERM", "xterm-256color")
        .env_remove("MSNR_PLAIN")
        .env_remove("MSNR_HOME")
        .stdin(Stdio::null())
        .output()
        .expect("`script` (util-linux) runs a command under a pseudo-terminal");
    let typescript = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{typescript}");
    // Every row the terminal shows, at every moment, is a whole line: a message
    // (`msnr: ...`, which may go on in the next row as any long text does) or a stage's
    // progress line (its name first), which never reaches the last column. A progress line
    // longer than the terminal would wrap, and its tail start a row of its own.
    let mut terminal = Terminal::new(80);
    let mut seen = Vec::new();
    terminal.feed(&typescript, &mut |screen: &[String]| {
        let mut in_message = false;
        for row in screen {
            let progress = ["model_with_a_", "digits "].iter().any(|p| row.starts_with(p));
            let whole = row.is_empty() || progress || row.starts_with("msnr: ");
            assert!(whole || in_message, "a garbled row {row:?} in\n{}", screen.join("\n"));
            assert!(!progress || row.chars().count() < 80, "a progress line reaches the last column: {row:?}");
            in_message = (in_message || row.starts_with("msnr: ")) && row.chars().count() == 80;
            assert!(!row.contains("0/0"), "no bar before the total is known: {row:?}");
            if row.contains("/30 ") && !seen.contains(row) {
                seen.push(row.clone());
            }
        }
    });
    assert!(seen.iter().any(|r| r.contains("/30 [") || r.contains("] ")), "a bar was drawn: {seen:#?}");
    assert!(seen.iter().any(|r| r.contains(" loss 0.0123, 12.3 step/s")), "{seen:#?}");
    let text = terminal.screen().join("\n");
    for w in ["constant", "min_snr{gamma=5}"] {
        assert!(text.contains(&format!("msnr: model_with_a_long_name[weighting_of_the_loss={w}]: done in")), "{text}");
    }
    assert!(text.contains("msnr: 3 ran, 0 cached, 0 failed"), "{text}");
    assert!(!text.contains("step/s"), "the progress lines were cleared at the end:\n{text}");
}
