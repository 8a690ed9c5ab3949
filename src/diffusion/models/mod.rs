//! Denoiser networks, structured like their reference implementations.
