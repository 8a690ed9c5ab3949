//! Integration tests: cache. The key-to-store-to-lockfile flow as the runner
//! drives it, and the store lock and crash safety across real processes (the
//! test binary re-runs itself as the other process, see [`child`]).

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant, SystemTime};

use msnr::cache::{
    canonical_params, input_keys, CacheError, CacheKey, HashMemo, InputKey, LockEntry, Lockfile, Store, TorchEnv,
    Versions, LOCKFILE_VERSION,
};
use msnr::lang::Value;

/// Environment variable telling the re-run test binary which role to play.
const ROLE: &str = "MSNR_CACHE_TEST_ROLE";
/// Environment variable with the project folder for the child.
const PROJECT: &str = "MSNR_CACHE_TEST_PROJECT";

/// Builds the key of a `train` stage reading `data`, hashing `net_file` through the memo.
fn train_key(memo: &mut HashMemo, gamma: f64, data: &InputKey, net_file: &Path) -> CacheKey {
    let weighting =
        Value::Ctor { name: "min_snr".into(), args: BTreeMap::from([("gamma".into(), Value::Float(gamma))]) };
    let params = BTreeMap::from([
        ("data".into(), Value::Stage("faces".into())),
        ("init".into(), Value::Path(net_file.to_path_buf())),
        ("weighting".into(), weighting),
    ]);
    let upstream = |s: &str| (s == "faces").then(|| data.clone());
    CacheKey {
        kind: "train".into(),
        version: 1,
        params: canonical_params(&params, &mut |p| memo.hash_path(p), &|s| upstream(s).map(|i| i.output)).unwrap(),
        inputs: input_keys(&params, &upstream).unwrap(),
        seed: Some(0),
        torch: Some(TorchEnv { device: "cpu".into(), libtorch: "2.11.0".into() }),
    }
}

/// Writes a file and dates it an hour back (outside the memo's racy window).
fn write_old(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
    let t = SystemTime::now() - Duration::from_secs(3600);
    fs::File::options().write(true).open(path).unwrap().set_modified(t).unwrap();
}

#[test]
fn key_store_and_lockfile_flow_like_a_run_then_a_rerun() {
    let project = tempfile::tempdir().unwrap();
    let net_file = project.path().join("init/net.bin");
    write_old(&net_file, &[1, 2, 3]);
    let store = Store::open(project.path()).unwrap();
    let _lock = store.lock().unwrap();
    let mut memo = store.memo().unwrap();
    let faces = InputKey { output: "2".repeat(64) };

    // First run: a miss, then a committed entry recorded in the lockfile.
    let key = train_key(&mut memo, 5.0, &faces, &net_file);
    assert!(store.get(&key.digest()).is_none());
    let staging = store.begin(&key).unwrap();
    fs::write(staging.out_dir().join("model.safetensors"), b"weights").unwrap();
    let entry = staging.commit(BTreeMap::from([("loss".into(), 0.25)]), BTreeMap::new()).unwrap();
    let lock_path = Lockfile::path_for(&project.path().join("celeba.msnr"));
    let lock_entry = LockEntry {
        kind: key.kind.clone(),
        key: entry.key.clone(),
        key_fields: key.clone(),
        output: entry.meta.output.clone(),
        seed: key.seed,
        versions: Versions { msnr: entry.meta.msnr.clone(), kind: key.version, libtorch: Some("2.11.0".into()) },
        metrics: entry.meta.metrics.clone(),
        pins: BTreeMap::new(),
    };
    let lockfile = Lockfile { version: LOCKFILE_VERSION, stages: BTreeMap::from([("model".into(), lock_entry)]) };
    lockfile.write(&lock_path).unwrap();
    memo.save().unwrap();

    // Re-run in a new process: nothing re-hashed, same key, a hit.
    let mut memo = store.memo().unwrap();
    let again = train_key(&mut memo, 5.0, &faces, &net_file);
    assert_eq!(memo.files_hashed(), 0);
    assert_eq!(again.digest(), entry.key);
    assert_eq!(store.get(&again.digest()).unwrap().meta.output, entry.meta.output);

    // Change gamma and the init file: the plan can say exactly why it re-runs.
    write_old(&net_file, &[9, 9, 9, 9]);
    let changed = train_key(&mut memo, 10.0, &faces, &net_file);
    let recorded = Lockfile::read(&lock_path).unwrap().unwrap();
    let why: Vec<String> = recorded.stages["model"].key_fields.diff(&changed).iter().map(ToString::to_string).collect();
    let old_init = blake3::hash(&[1, 2, 3]).to_hex()[..12].to_string();
    let new_init = blake3::hash(&[9, 9, 9, 9]).to_hex()[..12].to_string();
    assert_eq!(
        why,
        [format!("param init: content {old_init} -> content {new_init}"), "param weighting.gamma: 5.0 -> 10.0".into()]
    );
    assert!(store.get(&changed.digest()).is_none());

    // gc keeps what the lockfile references.
    let keep: HashSet<String> = recorded.stages.values().map(|s| s.key.clone()).collect();
    assert!(store.gc(&keep, false).unwrap().removed.is_empty());
    assert!(store.get(&entry.key).is_some());
}

#[test]
fn a_moved_input_file_keeps_the_key() {
    let project = tempfile::tempdir().unwrap();
    let (a, b) = (project.path().join("a/net.bin"), project.path().join("b/renamed.bin"));
    write_old(&a, b"same bytes");
    write_old(&b, b"same bytes");
    let mut memo = HashMemo::load(project.path().join("m.json")).unwrap();
    let faces = InputKey { output: "2".repeat(64) };
    assert_eq!(train_key(&mut memo, 5.0, &faces, &a).digest(), train_key(&mut memo, 5.0, &faces, &b).digest());
    let other_faces = InputKey { output: "3".repeat(64) };
    assert_ne!(train_key(&mut memo, 5.0, &faces, &a).digest(), train_key(&mut memo, 5.0, &other_faces, &a).digest());
}

/// How long a test waits on the child before failing (instead of hanging).
const PATIENCE: Duration = Duration::from_secs(60);

/// This test binary re-run as the other process; killed if still running when dropped.
struct OtherProcess {
    /// The process.
    child: Child,
    /// Its stdout, line by line.
    stdout: Receiver<String>,
    /// Its stderr, line by line.
    stderr: Receiver<String>,
}

impl OtherProcess {
    /// Spawns the child test [`child`] playing `role` on `project`.
    fn spawn(role: &str, project: &Path) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "cache::child", "--ignored", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(PROJECT, project)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Self { child, stdout, stderr }
    }

    /// Waits for a stdout line ending in `want` (the harness may print
    /// `test cache::child ... ` before it on the same line).
    fn expect_stdout(&self, want: &str) {
        loop {
            match self.stdout.recv_timeout(PATIENCE) {
                Ok(line) if line.trim_end().ends_with(want) => return,
                Ok(_) => {}
                Err(e) => panic!("child never printed {want:?}: {e}"),
            }
        }
    }

    /// The next stderr line.
    fn next_stderr(&self) -> String {
        self.stderr.recv_timeout(PATIENCE).expect("child wrote nothing on stderr")
    }

    /// Closes the child's stdin and waits for it to exit; whether it succeeded.
    fn finish(&mut self) -> bool {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("child did not exit");
    }
}

impl Drop for OtherProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards the lines of `pipe` into a channel from a background thread.
fn lines(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The other process. Not a test by itself: the tests below run it through [`OtherProcess`].
/// Roles: `hold` takes the lock and keeps it until stdin closes; `wait` blocks
/// on the lock; `crash` dies in the middle of writing an entry.
#[test]
#[ignore = "run as a child process by the lock and crash tests"]
fn child() {
    let project = PathBuf::from(std::env::var_os(PROJECT).expect("run by OtherProcess::spawn"));
    let store = Store::open(&project).unwrap();
    let lock = store.lock().unwrap();
    println!("child: locked");
    std::io::stdout().flush().unwrap();
    match std::env::var(ROLE).unwrap().as_str() {
        "hold" => {
            let mut rest = String::new();
            let _ = std::io::stdin().read_line(&mut rest);
        }
        "wait" => {}
        "crash" => {
            let staging = store.begin(&crash_key()).unwrap();
            fs::write(staging.out_dir().join("half.bin"), vec![0u8; 1 << 16]).unwrap();
            fs::write(staging.work_dir().join("ckpt"), b"step 10").unwrap();
            // Exits without running destructors, as if killed: the staging folder stays.
            std::process::exit(9);
        }
        other => panic!("unknown role {other}"),
    }
    drop(lock);
}

/// The key the crashing child was writing.
fn crash_key() -> CacheKey {
    CacheKey {
        kind: "crop".into(),
        version: 1,
        params: BTreeMap::new(),
        inputs: BTreeMap::new(),
        seed: None,
        torch: None,
    }
}

#[test]
fn try_lock_fails_while_another_process_holds_the_store() {
    let project = tempfile::tempdir().unwrap();
    let store = Store::open(project.path()).unwrap();
    let mut holder = OtherProcess::spawn("hold", project.path());
    holder.expect_stdout("child: locked");
    let err = store.try_lock().unwrap_err();
    assert!(matches!(err, CacheError::Locked { .. }));
    assert!(err.to_string().contains(&project.path().join(".msnr/lock").display().to_string()), "{err}");
    assert!(holder.finish());
    store.try_lock().unwrap();
}

#[test]
fn a_waiting_process_says_so_once_then_gets_the_lock() {
    let project = tempfile::tempdir().unwrap();
    let store = Store::open(project.path()).unwrap();
    let held = store.lock().unwrap();
    let mut waiter = OtherProcess::spawn("wait", project.path());
    let lock_path = project.path().join(".msnr/lock");
    assert_eq!(waiter.next_stderr(), format!("waiting for another msnr process holding {}", lock_path.display()));
    drop(held);
    waiter.expect_stdout("child: locked");
    assert!(waiter.finish());
    let rest: Vec<String> = waiter.stderr.try_iter().collect();
    assert!(!rest.iter().any(|l| l.contains("waiting for")), "said more than once: {rest:?}");
}

#[test]
fn a_killed_writer_leaves_no_entry_and_its_leftovers_are_cleaned() {
    let project = tempfile::tempdir().unwrap();
    Store::open(project.path()).unwrap();
    let mut crasher = OtherProcess::spawn("crash", project.path());
    assert!(!crasher.finish(), "the child dies");
    let tmp = project.path().join(".msnr/tmp");
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 1, "the half-written staging folder is left behind");
    let store = Store::open(project.path()).unwrap();
    assert!(store.get(&crash_key().digest()).is_none());
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0, "open cleans it once the lock is free");
    assert_eq!(fs::read(store.work_dir(&crash_key().digest()).join("ckpt")).unwrap(), b"step 10");
}
