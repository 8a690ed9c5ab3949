//! Cache keys, the content-addressed store, the lockfile and the file-hash memo.
