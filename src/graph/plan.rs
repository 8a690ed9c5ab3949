//! The plan: for each stage, cached or stale and why.
