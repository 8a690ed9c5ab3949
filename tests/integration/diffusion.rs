//! Integration tests: diffusion.
