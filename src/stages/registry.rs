//! What the runner must know of each stage kind without running it: its
//! implementation version (part of the cache key) and whether it needs
//! libtorch (then it runs in the worker process).

/// Facts about one implemented stage kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindInfo {
    /// The kind's name as the stdlib declares it.
    pub name: &'static str,
    /// Bumped whenever the implementation's output changes; part of the cache key.
    pub version: u32,
    /// Runs in the `msnr-worker` process (links libtorch).
    pub torch: bool,
}

/// Every kind with an implementation. A kind declared in the stdlib but absent
/// here is refused by `run` with an error naming it.
pub const KINDS: &[KindInfo] = &[
    KindInfo { name: "images", version: 2, torch: false },
    KindInfo { name: "mnist", version: 1, torch: false },
    KindInfo { name: "crop", version: 2, torch: false },
    KindInfo { name: "download", version: 1, torch: false },
    KindInfo { name: "train", version: 3, torch: true },
];

/// The implementation facts of `kind`, if it has an implementation.
#[must_use]
pub fn kind(kind: &str) -> Option<KindInfo> {
    KINDS.iter().copied().find(|k| k.name == kind)
}

/// The implementation facts of `kind`, or the one message every caller gives
/// for a kind the stdlib declares but nothing implements yet.
///
/// # Errors
/// When `kind` has no implementation.
pub fn implemented(kind_name: &str) -> Result<KindInfo, String> {
    kind(kind_name).ok_or_else(|| format!("stage kind `{kind_name}` is declared but not implemented yet"))
}
