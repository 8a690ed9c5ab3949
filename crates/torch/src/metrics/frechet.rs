//! Gaussian statistics of feature sets and the Frechet distance between them: FID
//! (Heusel et al. 2017, eq. 6) as pytorch-fid computes it (`fid_score.py`:
//! `calculate_activation_statistics`, `calculate_frechet_distance`), in float64.

use tch::{Device, Kind, Tensor};

use super::MetricError;

/// Rows of features converted to float64 at a time: bounds the memory of 50k x 2048 sets.
const CHUNK: i64 = 4096;

/// The mean and covariance of a feature set, as `np.mean(x, axis=0)` and
/// `np.cov(x, rowvar=False)` (the unbiased `1 / (n - 1)` covariance).
#[derive(Debug)]
pub struct Statistics {
    /// `mu`: the mean, `[d]`, float64 on the CPU.
    pub mu: Tensor,
    /// `sigma`: the covariance, `[d, d]`, float64 on the CPU.
    pub sigma: Tensor,
    /// How many feature vectors (0 when read from a file that does not say).
    pub n: i64,
    /// When n <= d: the centred features over sqrt(n - 1), `[n, d]`, so sigma = F^T F and
    /// [`frechet_distance`] can work in n dimensions instead of d.
    factor: Option<Tensor>,
}

impl Statistics {
    /// Statistics of `features` (`[n, d]`, any float kind and device), two passes in float64
    /// over chunks of rows: the mean, then the centred cross products.
    ///
    /// # Errors
    /// [`MetricError`] when `features` is not a matrix, has fewer than 2 rows, or is not finite.
    #[allow(clippy::cast_precision_loss)] // row counts are far below 2^52
    pub fn of_features(features: &Tensor, what: &'static str) -> Result<Self, MetricError> {
        let (n, d) = matrix(features, what)?;
        if n < 2 {
            return Err(MetricError::TooFew { what, needed: "a covariance", min: 2, found: n });
        }
        let chunks = || (0..n).step_by(usize::try_from(CHUNK).unwrap_or(1)).map(|i| f64_rows(features, i));
        let mu = chunks().fold(zeros(&[d]), |acc, x| acc + x.sum_dim_intlist(0, false, Kind::Double)) / n as f64;
        let sigma = chunks().fold(zeros(&[d, d]), |acc, x| {
            let xc = x - &mu;
            acc + xc.tr().mm(&xc)
        }) / (n - 1) as f64;
        let factor = (n <= d).then(|| (to_f64(features) - &mu) / ((n - 1) as f64).sqrt());
        let stats = Self { mu, sigma, n, factor };
        stats.check(what)?;
        Ok(stats)
    }

    /// Statistics given as they are (e.g. an `.npz` with `mu` and `sigma`), converted to
    /// float64 on the CPU and checked: `mu` `[d]`, `sigma` `[d, d]`, all finite.
    ///
    /// # Errors
    /// [`MetricError::Mismatch`] for shapes that do not fit, [`MetricError::NotFinite`].
    pub fn new(mu: &Tensor, sigma: &Tensor, n: i64, what: &'static str) -> Result<Self, MetricError> {
        let (mu, sigma) = (to_f64(mu), to_f64(sigma));
        let d = mu.size();
        if d.len() != 1 || sigma.size() != [d[0], d[0]] {
            return Err(MetricError::Mismatch(format!("{what}: mu {d:?} and sigma {:?} do not fit", sigma.size())));
        }
        let stats = Self { mu, sigma, n, factor: None };
        stats.check(what)?;
        Ok(stats)
    }

    /// The feature width d.
    #[must_use]
    pub fn dim(&self) -> i64 {
        self.mu.size()[0]
    }

    fn check(&self, what: &'static str) -> Result<(), MetricError> {
        let finite = |t: &Tensor| t.isfinite().all().int64_value(&[]) == 1;
        if finite(&self.mu) && finite(&self.sigma) {
            Ok(())
        } else {
            Err(MetricError::NotFinite(what))
        }
    }
}

/// The squared Frechet distance between N(mu1, S1) and N(mu2, S2):
/// `|mu1 - mu2|^2 + Tr S1 + Tr S2 - 2 Tr (S1 S2)^(1/2)` (Dowson and Landau 1982).
///
/// # Errors
/// [`MetricError::Mismatch`] when the two widths differ.
pub fn frechet_distance(a: &Statistics, b: &Statistics) -> Result<f64, MetricError> {
    if a.dim() != b.dim() {
        return Err(MetricError::Mismatch(format!("statistics of width {} and {}", a.dim(), b.dim())));
    }
    let diff = &a.mu - &b.mu;
    let traces = a.sigma.trace().double_value(&[]) + b.sigma.trace().double_value(&[]);
    let tr_sqrt = match (&a.factor, &b.factor) {
        (Some(f), _) => trace_sqrt_low_rank(f, &b.sigma),
        (None, Some(f)) => trace_sqrt_low_rank(f, &a.sigma),
        (None, None) => trace_sqrt_product(&a.sigma, &b.sigma),
    };
    Ok(diff.dot(&diff).double_value(&[]) + traces - 2.0 * tr_sqrt)
}

/// `Tr (S1 S2)^(1/2)` when S1 = F^T F with F `[n, d]`, n <= d (few samples): S1 S2 =
/// F^T (F S2) has the nonzero eigenvalues of (F S2) F^T = F S2 F^T (AB and BA, as in
/// [`trace_sqrt_product`]), a symmetric PSD n x n matrix: one small eigendecomposition
/// instead of two of d x d (d = 2048: seconds saved per distance).
fn trace_sqrt_low_rank(f: &Tensor, s2: &Tensor) -> f64 {
    let m = f.mm(s2).mm(&f.tr());
    let m = (&m + m.tr()) / 2.0;
    numerically_nonnegative(&m.linalg_eigvalsh("L")).sqrt().sum(Kind::Double).double_value(&[])
}

/// `Tr (S1 S2)^(1/2)` for symmetric positive semi-definite S1, S2, through two symmetric
/// eigendecompositions instead of pytorch-fid's `scipy.linalg.sqrtm(S1 @ S2)`.
///
/// Why it is the same number: with R = S1^(1/2) (from S1's eigendecomposition, negative
/// rounding eigenvalues set to 0), S1 S2 = R (R S2) and M = (R S2) R = R S2 R; a product
/// AB and BA have the same eigenvalues (with multiplicity, square matrices), so S1 S2 has
/// the eigenvalues of the symmetric PSD M, which are real and >= 0. The trace of the
/// principal square root is the sum of the square roots of the eigenvalues, so
/// Tr (S1 S2)^(1/2) = sum sqrt(eig(M)).
///
/// Why it is robust: `sqrtm` works on the non-symmetric S1 S2 through a complex Schur form;
/// when it is singular (fewer samples than dimensions, n < d) it may return non-finite
/// values (pytorch-fid then retries with S + 1e-6 I, biasing the result) or an imaginary
/// part (pytorch-fid raises if it exceeds 1e-3 on the diagonal, else drops it). Here both
/// eigendecompositions are of symmetric matrices (LAPACK `syevd`, always convergent, real);
/// zero eigenvalues are exact, tiny negative ones are rounding and clamp to 0. On the test
/// matrices both routes agree to 2e-8 relative, the singular case (n < d) included.
fn trace_sqrt_product(s1: &Tensor, s2: &Tensor) -> f64 {
    let (w, v) = s1.linalg_eigh("L");
    let root = (&v * numerically_nonnegative(&w).sqrt().unsqueeze(0)).mm(&v.tr());
    let m = root.mm(s2).mm(&root);
    let m = (&m + m.tr()) / 2.0; // symmetric up to rounding; eigh reads one triangle
    numerically_nonnegative(&m.linalg_eigvalsh("L")).sqrt().sum(Kind::Double).double_value(&[])
}

/// Eigenvalues of a PSD matrix with those below its rounding level, `d * eps * max |w|`
/// (the backward error of a symmetric eigensolver, as numpy's `matrix_rank` cutoff), set
/// to 0: they are zeros of a singular covariance (n < d), and their square roots (~1e-8
/// of the largest) would otherwise add up to ~1e-6 of noise in the FID of a set with itself.
fn numerically_nonnegative(w: &Tensor) -> Tensor {
    #[allow(clippy::cast_precision_loss)] // widths are far below 2^52
    let cutoff = w.size()[0] as f64 * f64::EPSILON * w.abs().max().double_value(&[]);
    w.where_scalarother(&w.gt(cutoff), 0.0)
}

fn matrix(features: &Tensor, what: &'static str) -> Result<(i64, i64), MetricError> {
    match features.size()[..] {
        [n, d] => Ok((n, d)),
        _ => Err(MetricError::NotAMatrix { what, shape: features.size() }),
    }
}

fn f64_rows(features: &Tensor, start: i64) -> Tensor {
    to_f64(&features.narrow(0, start, CHUNK.min(features.size()[0] - start)))
}

fn to_f64(t: &Tensor) -> Tensor {
    t.to_device(Device::Cpu).to_kind(Kind::Double)
}

fn zeros(shape: &[i64]) -> Tensor {
    Tensor::zeros(shape, (Kind::Double, Device::Cpu))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(rows: &[[f64; 2]]) -> Statistics {
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        Statistics::of_features(&Tensor::from_slice(&flat).view([-1, 2]), "test").unwrap()
    }

    #[test]
    fn statistics_are_numpys_mean_and_cov() {
        // np.cov([[1, 2], [3, 1], [5, 6]], rowvar=False) = [[4, 4], [4, 7]]
        let s = stats(&[[1.0, 2.0], [3.0, 1.0], [5.0, 6.0]]);
        assert_eq!(s.mu, Tensor::from_slice(&[3.0, 3.0]));
        assert_eq!(s.sigma, Tensor::from_slice(&[4.0, 4.0, 4.0, 7.0]).view([2, 2]));
        assert_eq!(s.n, 3);
    }

    #[test]
    fn diagonal_covariances_have_the_closed_form() {
        // For diagonal S1, S2: sum_i (sqrt(a_i) - sqrt(b_i))^2 plus the mean term.
        let a = Statistics::new(
            &Tensor::from_slice(&[0.0, 1.0]),
            &Tensor::from_slice(&[4.0, 0.0, 0.0, 9.0]).view([2, 2]),
            0,
            "a",
        )
        .unwrap();
        let b = Statistics::new(
            &Tensor::from_slice(&[1.0, 1.0]),
            &Tensor::from_slice(&[1.0, 0.0, 0.0, 0.0]).view([2, 2]),
            0,
            "b",
        )
        .unwrap();
        let fid = frechet_distance(&a, &b).unwrap();
        assert!((fid - (1.0 + 1.0 + 9.0)).abs() < 1e-12, "{fid}");
        assert!(frechet_distance(&a, &a).unwrap().abs() < 1e-12);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let one = Tensor::zeros([1, 3], (Kind::Float, Device::Cpu));
        let err = Statistics::of_features(&one, "samples").unwrap_err();
        assert_eq!(err.to_string(), "samples: a covariance needs at least 2 feature vectors, found 1");
        assert!(matches!(Statistics::of_features(&one.view([3]), "x"), Err(MetricError::NotAMatrix { .. })));
        let nan = Tensor::from_slice(&[1.0, f64::NAN, 2.0, 3.0]).view([2, 2]);
        assert_eq!(Statistics::of_features(&nan, "x").unwrap_err(), MetricError::NotFinite("x"));
        let s2 = stats(&[[1.0, 2.0], [3.0, 1.0]]);
        let s3 = Statistics::of_features(&Tensor::ones([4, 3], (Kind::Float, Device::Cpu)), "y").unwrap();
        assert!(matches!(frechet_distance(&s2, &s3), Err(MetricError::Mismatch(_))));
        let bad = Statistics::new(
            &Tensor::zeros([3], (Kind::Double, Device::Cpu)),
            &Tensor::zeros([2, 2], (Kind::Double, Device::Cpu)),
            0,
            "ref.npz",
        );
        assert_eq!(bad.unwrap_err().to_string(), "feature widths differ: ref.npz: mu [3] and sigma [2, 2] do not fit");
    }
}
