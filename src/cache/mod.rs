//! Cache keys, the content-addressed store, the lockfile and the file-hash memo.
//!
//! How the pieces fit, for one stage:
//! 1. [`canonical_params`] and [`input_keys`] turn resolved parameters into key
//!    form (paths hashed through a [`HashMemo`], stage references replaced by
//!    upstream output hashes), and a [`CacheKey`] collects them with the kind,
//!    version, seed and torch environment; [`CacheKey::digest`] names the entry.
//! 2. [`Store::get`] finds a complete entry, or [`Store::begin`] stages a new
//!    one and [`Staging::commit`] publishes it atomically (with the entry's
//!    [`Store::lock_entry`] held; [`Store::lock`] is the short store-wide lock for
//!    bookkeeping). [`Entry::check`] finds files damaged since they were stored.
//! 3. The [`Lockfile`] records each stage's key, output and metrics next to the
//!    pipeline; [`CacheKey::diff`] against it explains why a stage re-runs.
//!
//! Benchmark: `cargo bench --bench hash`.

mod atomic;
mod error;
mod exact_float;
mod hash;
mod integrity;
mod key;
mod lock;
mod lockfile;
mod memo;
mod staging;
mod store;

pub use atomic::write_atomic;
pub use error::{CacheError, CORRUPTED};
pub use hash::{hash_file, hash_path, hash_tree, LARGE_FILE};
pub use integrity::{check_stored_file, record_tree, Damage, Depth, FileRecord, Problem, StoredFiles};
pub use key::{canonical_params, input_keys, short_hash, CacheKey, InputKey, KeyChange, KeyValue, TorchEnv};
pub use lock::StoreLock;
pub use lockfile::{LockEntry, Lockfile, Versions, LOCKFILE_VERSION};
pub use memo::{FileStat, HashMemo, RACY_WINDOW};
pub use staging::Staging;
pub use store::{check_key, Entry, GcReport, Meta, Store, STORE_DIR, WORK_GRACE};
