//! Truncated and mutated fixtures fail cleanly or load: never a panic, never a hang.
//!
//! Deterministic: a SplitMix64 stream seeded per fixture. Zip fixtures are also rebuilt
//! with a mutated `data.pkl` (a byte flip in the archive itself mostly trips the CRC), so
//! the unpickler sees mutants from both containers. `TORCHFILE_FUZZ_ITERS=20000` runs a
//! longer search; `fuzz/fuzz_targets/torchfile.rs` is the coverage-guided version.

use std::io::{Cursor, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::{fixture, torch_fixtures};

/// Mutants per fixture and container layer (`TORCHFILE_FUZZ_ITERS` overrides it).
const MUTANTS: u64 = 160;

fn mutants() -> u64 {
    std::env::var("TORCHFILE_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(MUTANTS)
}
/// Truncation points per fixture.
const CUTS: usize = 48;

/// SplitMix64 (Steele, Lea, Flood 2014), enough for reproducible mutants.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).expect("below n")
    }
}

/// Load the bytes; a panic or a slow load fails the test naming the mutant.
fn check(what: &str, bytes: &[u8]) -> bool {
    let start = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| {
        torchfile::load_bytes(what, bytes).map(|ckpt| {
            for (name, t) in ckpt.tensors(None) {
                let numel: usize = t.shape.iter().product();
                assert_eq!(t.data.len(), numel * t.dtype.size(), "{what}: tensor {name}");
            }
        })
    }));
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(2), "{what}: took {elapsed:?}");
    match result {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            assert!(e.to_string().starts_with(what), "{e}");
            false
        }
        Err(payload) => panic!("{what}: panicked: {:?}", payload.downcast_ref::<String>()),
    }
}

/// One to four byte changes: random bytes, bit flips, or boundary values.
fn mutate(bytes: &[u8], rng: &mut SplitMix64) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for _ in 0..=rng.below(4) {
        let i = rng.below(out.len());
        out[i] = match rng.below(3) {
            0 => rng.next().to_le_bytes()[0],
            1 => out[i] ^ (1 << rng.below(8)),
            _ => [0x00, 0x01, 0x7f, 0x80, 0xff][rng.below(5)],
        };
    }
    out
}

/// The archive rebuilt with `data.pkl` replaced (entries stored, names kept).
fn rezip(archive: &[u8], pickle: &[u8]) -> Vec<u8> {
    let mut input = zip::ZipArchive::new(Cursor::new(archive)).unwrap();
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..input.len() {
        let mut entry = input.by_index(i).unwrap();
        let name = entry.name().to_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.start_file(name.as_str(), options).unwrap();
        out.write_all(if name.ends_with("/data.pkl") { pickle } else { &data }).unwrap();
    }
    out.finish().unwrap().into_inner()
}

fn data_pkl(archive: &[u8]) -> Vec<u8> {
    let mut input = zip::ZipArchive::new(Cursor::new(archive)).unwrap();
    let name = input.file_names().find(|n| n.ends_with("/data.pkl")).unwrap().to_owned();
    let mut data = Vec::new();
    input.by_name(&name).unwrap().read_to_end(&mut data).unwrap();
    data
}

fn fuzz_file(path: &Path, seed: u64) -> (usize, usize) {
    let bytes = std::fs::read(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut rng = SplitMix64(seed);
    let (mut total, mut loaded) = (0, 0);
    let mut run = |what: String, data: &[u8]| {
        total += 1;
        loaded += usize::from(check(&what, data));
    };
    for k in 0..CUTS {
        let len = bytes.len() * k / CUTS;
        run(format!("{name} cut at {len}"), &bytes[..len]);
    }
    for m in 0..mutants() {
        run(format!("{name} mutant {m} (seed {seed})"), &mutate(&bytes, &mut rng));
    }
    if bytes.starts_with(b"PK") {
        let pickle = data_pkl(&bytes);
        for k in 0..CUTS {
            run(format!("{name} data.pkl cut at {k}/{CUTS}"), &rezip(&bytes, &pickle[..pickle.len() * k / CUTS]));
        }
        for m in 0..mutants() {
            run(format!("{name} data.pkl mutant {m} (seed {seed})"), &rezip(&bytes, &mutate(&pickle, &mut rng)));
        }
    }
    (total, loaded)
}

#[test]
fn truncated_and_mutated_files_fail_cleanly() {
    let mut files = torch_fixtures();
    files.extend(["malicious_system.pt", "malicious_legacy.pt"].map(fixture));
    let (mut total, mut loaded) = (0, 0);
    for (i, path) in files.iter().enumerate() {
        let (t, l) = fuzz_file(path, 0x5eed_0000 + i as u64);
        total += t;
        loaded += l;
    }
    // The unmutated prefix (cut at 0) never loads; some byte flips land in tensor data and load.
    assert!(total > 1000, "{total} mutants");
    assert!(loaded > 0 && loaded < total, "{loaded} of {total} loaded");
    eprintln!("{total} mutants, {loaded} loaded, the rest failed cleanly");
}
