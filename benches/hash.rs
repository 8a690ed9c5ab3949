//! Benchmark: content hashing of ~1 GB of inputs, first time and memoized.
//! Targets: first-time hashing at >= 1 GB/s; a no-op re-check (a new process
//! loading the memo and hashing the same folder again) in milliseconds, with
//! zero files re-hashed.
//!
//! `cargo bench --bench hash` writes 4 x 200 MB files and 1000 small files
//! (1 to 64 KiB) of pseudo-random bytes into a temporary folder, then prints a
//! table. Set `MSNR_HASH_BENCH_MB` to change the big-file total (default 800).
//! The page cache cannot be dropped without root, so every pass reads warm
//! pages: the numbers are hashing speed, not disk speed.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use msnr::cache::{hash_file, hash_tree, HashMemo, RACY_WINDOW};

/// Number of big files.
const BIG_FILES: u64 = 4;
/// Number of small files.
const SMALL_FILES: u64 = 1000;

fn main() {
    let big_mb: u64 = std::env::var("MSNR_HASH_BENCH_MB").ok().and_then(|s| s.parse().ok()).unwrap_or(800);
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let bytes = write_inputs(&data, big_mb << 20);
    // Files written within the memo's racy window are (rightly) not memoized;
    // real inputs are older than that.
    std::thread::sleep(RACY_WINDOW * 3);
    println!(
        "inputs: {:.3} GB in {} files ({BIG_FILES} big, {SMALL_FILES} small), warm in the page cache",
        gb(bytes),
        BIG_FILES + SMALL_FILES
    );
    println!("threads: {}", rayon::current_num_threads());
    println!();
    println!("| pass | time | throughput | files hashed |");
    println!("|---|---:|---:|---:|");
    single_thread_baseline(&data, bytes);
    row("tree hash, no memo (hash_tree)", time(|| hash_tree(&data).expect("hash")), bytes, BIG_FILES + SMALL_FILES);
    let memo_path = dir.path().join("hashes.json");
    let mut memo = HashMemo::load(&memo_path).expect("memo");
    let (first, t) = timed(|| memo.hash_path(&data).expect("hash"));
    row("first time, through the memo", t, bytes, memo.files_hashed());
    memo.save().expect("save memo");
    let start = Instant::now();
    let mut memo = HashMemo::load(&memo_path).expect("memo");
    let (again, t_check) = timed(|| memo.hash_path(&data).expect("hash"));
    let t_total = start.elapsed();
    println!("| no-op re-check (stat only) | {:.2} ms | - | {} |", ms(t_check), memo.files_hashed());
    println!("| no-op incl. loading the memo | {:.2} ms | - | {} |", ms(t_total), memo.files_hashed());
    println!();
    assert_eq!(first, again, "the memoized hash differs");
    assert_eq!(memo.files_hashed(), 0, "the no-op re-check re-hashed files");
    println!(
        "memo file: {} bytes; first-time target >= 1 GB/s; no-op target: milliseconds, 0 re-hashed",
        fs::metadata(&memo_path).map_or(0, |m| m.len())
    );
}

/// Plain single-threaded blake3 over each file, for comparison.
fn single_thread_baseline(data: &Path, bytes: u64) {
    let t = time(|| {
        for e in fs::read_dir(data.join("big")).expect("list") {
            let mut hasher = blake3::Hasher::new();
            hasher.update_mmap(e.expect("entry").path()).expect("hash");
        }
        for e in fs::read_dir(data.join("small")).expect("list") {
            hash_file(&e.expect("entry").path()).expect("hash");
        }
    });
    row("single-thread blake3 (baseline)", t, bytes, BIG_FILES + SMALL_FILES);
}

/// Prints one table row.
fn row(name: &str, t: Duration, bytes: u64, hashed: u64) {
    println!("| {name} | {:.1} ms | {:.2} GB/s | {hashed} |", ms(t), gb(bytes) / t.as_secs_f64());
}

/// Writes the input folder; returns its total size.
fn write_inputs(data: &Path, big_total: u64) -> u64 {
    fs::create_dir_all(data.join("big")).expect("mkdir");
    fs::create_dir_all(data.join("small")).expect("mkdir");
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
    let mut total = 0;
    for i in 0..BIG_FILES {
        let buf = noise(&mut rng, big_total / BIG_FILES);
        fs::write(data.join(format!("big/{i}.bin")), &buf).expect("write");
        total += buf.len() as u64;
    }
    for i in 0..SMALL_FILES {
        let size = 1024 + (next(&mut rng) % (63 * 1024));
        let buf = noise(&mut rng, size);
        fs::write(data.join(format!("small/{i:04}.bin")), &buf).expect("write");
        total += size;
    }
    total
}

/// `len` pseudo-random bytes (xorshift64; content only has to be incompressible-ish and fixed).
fn noise(rng: &mut u64, len: u64) -> Vec<u8> {
    let len = usize::try_from(len).expect("fits in memory");
    let mut buf = Vec::with_capacity(len + 8);
    while buf.len() < len {
        buf.extend_from_slice(&next(rng).to_le_bytes());
    }
    buf.truncate(len);
    buf
}

/// One xorshift64 step (Marsaglia 2003).
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Runs `f` and returns how long it took.
fn time<T>(f: impl FnOnce() -> T) -> Duration {
    timed(f).1
}

/// Runs `f` and returns its result and duration.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

/// Milliseconds.
fn ms(t: Duration) -> f64 {
    t.as_secs_f64() * 1e3
}

/// Gigabytes (10^9 bytes).
#[allow(clippy::cast_precision_loss)]
fn gb(bytes: u64) -> f64 {
    bytes as f64 / 1e9
}
