//! The executor, progress reporting and the worker protocol.
