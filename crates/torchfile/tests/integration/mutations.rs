//! Truncated and mutated fixtures fail cleanly or load: never a panic, never a hang.
