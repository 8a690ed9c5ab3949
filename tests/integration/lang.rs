//! Integration tests: lang.
