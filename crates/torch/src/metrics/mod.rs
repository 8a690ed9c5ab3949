//! Sample-quality metrics on feature sets (e.g. the FID Inception's pool3 features,
//! `diffusion::models::inception`), all in float64:
//! - [`frechet`]: feature statistics and the Frechet distance (FID);
//! - [`kid`]: the kernel inception distance (unbiased MMD^2, cubic kernel, subsets);
//! - [`mt19937`]: numpy's legacy random subsets, so KID's subsets are torch-fidelity's;
//! - [`npz`]: statistics as `.npz` files with `mu` and `sigma` (pytorch-fid's, `OpenAI`'s).

pub mod frechet;
pub mod kid;
pub mod mt19937;
pub mod npz;

pub use self::frechet::{frechet_distance, Statistics};
pub use self::kid::{kid, Kid, KidConfig};

/// Feature sets or statistics that cannot be compared.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetricError {
    /// Features are not a `[n, d]` matrix.
    #[error("{what}: features must be a matrix [n, d], found shape {shape:?}")]
    NotAMatrix {
        /// Which input.
        what: &'static str,
        /// Its shape.
        shape: Vec<i64>,
    },
    /// Too few feature rows for the statistic.
    #[error("{what}: {needed} needs at least {min} feature vectors, found {found}")]
    TooFew {
        /// Which input.
        what: &'static str,
        /// The statistic.
        needed: &'static str,
        /// The least number of rows it takes.
        min: i64,
        /// The rows given.
        found: i64,
    },
    /// Two inputs of different widths, or a covariance that does not fit its mean.
    #[error("feature widths differ: {0}")]
    Mismatch(String),
    /// NaN or infinity in features or statistics.
    #[error("{0}: features or statistics are not finite (NaN or infinity)")]
    NotFinite(&'static str),
    /// A statistics file that cannot be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}
