//! The kernel inception distance (Binkowski et al. 2018, "Demystifying MMD GANs", eq. 4):
//! the unbiased estimate of the squared maximum mean discrepancy between two feature sets
//! under the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over random
//! subsets. As torch-fidelity's `metric_kid.py` (`kid_features_to_metric`, `kernel_poly`,
//! `mmd2` with `mmd_est='unbiased'`): its subsets too, drawn by numpy's
//! `RandomState(seed).choice(n, m, replace=False)` ([`super::mt19937`]), first set then second,
//! and its mean and (population) standard deviation; the subset size is clean-fid's
//! `min(n1, n2, subset_size)` where torch-fidelity would refuse n < subset size.

use tch::{Device, Kind, Tensor};

use super::mt19937::Mt19937;
use super::MetricError;

/// How KID draws its subsets (defaults: torch-fidelity's and clean-fid's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KidConfig {
    /// Subsets averaged over (`kid_subsets`, 100).
    pub subsets: usize,
    /// Largest subset size (`kid_subset_size`, 1000); smaller sets use all their rows.
    pub subset_size: usize,
    /// Seed of numpy's `RandomState` (torch-fidelity's `rng_seed`, 2020).
    pub seed: u32,
}

impl Default for KidConfig {
    fn default() -> Self {
        Self { subsets: 100, subset_size: 1000, seed: 2020 }
    }
}

/// KID over subsets: mean and standard deviation of the per-subset MMD^2.
#[derive(Debug, Clone, PartialEq)]
pub struct Kid {
    /// The mean over subsets (`kernel_inception_distance_mean`).
    pub mean: f64,
    /// Their standard deviation, `np.std` (ddof 0) (`kernel_inception_distance_std`).
    pub std: f64,
    /// The subset size used, `min(n1, n2, subset_size)`.
    pub subset_size: usize,
}

/// KID between feature sets `first` (`[n1, d]`) and `second` (`[n2, d]`), any float kind and device.
///
/// # Errors
/// [`MetricError`] when either is not a matrix, the widths differ, a set has fewer than
/// 2 rows, there are no subsets, or a kernel value is not finite.
pub fn kid(first: &Tensor, second: &Tensor, cfg: &KidConfig) -> Result<Kid, MetricError> {
    let (n1, width) = rows(first, "first features")?;
    let (n2, width2) = rows(second, "second features")?;
    if width != width2 {
        return Err(MetricError::Mismatch(format!("KID of features of width {width} and {width2}")));
    }
    let size = cfg.subset_size.min(n1).min(n2);
    if size < 2 || cfg.subsets == 0 {
        let found = i64::try_from(size).unwrap_or(i64::MAX);
        return Err(MetricError::TooFew { what: "KID", needed: "each subset", min: 2, found });
    }
    let mut rng = Mt19937::new(cfg.seed);
    let mut mmds = Vec::with_capacity(cfg.subsets);
    for _ in 0..cfg.subsets {
        let sub1 = subset(first, &rng.choice(n1, size));
        let sub2 = subset(second, &rng.choice(n2, size));
        mmds.push(mmd2_unbiased(&sub1, &sub2));
    }
    let (mean, std) = mean_std(&mmds);
    if !(mean.is_finite() && std.is_finite()) {
        return Err(MetricError::NotFinite("KID"));
    }
    Ok(Kid { mean, std, subset_size: size })
}

/// torch-fidelity's `kernel_poly` with its defaults: `(X Y^T / d + 1)^3`.
fn kernel(x: &Tensor, y: &Tensor) -> Tensor {
    #[allow(clippy::cast_precision_loss)] // feature widths are far below 2^52
    let d = x.size()[1] as f64;
    (x.mm(&y.tr()) / d + 1.0).pow_tensor_scalar(3)
}

/// The unbiased MMD^2 of equal-sized sets (Binkowski et al. eq. 4, torch-fidelity's `mmd2`):
/// the within-set kernel means without their diagonals, minus twice the cross mean.
#[allow(clippy::cast_precision_loss)] // subset sizes are far below 2^52
fn mmd2_unbiased(x: &Tensor, y: &Tensor) -> f64 {
    let m = x.size()[0] as f64;
    let sum = |k: Tensor| k.sum(Kind::Double).double_value(&[]);
    let off_diagonal = |k: Tensor| {
        let trace = k.trace().double_value(&[]);
        sum(k) - trace
    };
    let within = off_diagonal(kernel(x, x)) + off_diagonal(kernel(y, y));
    within / (m * (m - 1.0)) - 2.0 * sum(kernel(x, y)) / (m * m)
}

/// Mean and population standard deviation (numpy's `np.mean`, `np.std`).
#[allow(clippy::cast_precision_loss)]
fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

fn rows(t: &Tensor, what: &'static str) -> Result<(usize, i64), MetricError> {
    match t.size()[..] {
        [n, d] => Ok((usize::try_from(n).unwrap_or(0), d)),
        _ => Err(MetricError::NotAMatrix { what, shape: t.size() }),
    }
}

fn subset(t: &Tensor, index: &[usize]) -> Tensor {
    let index: Vec<i64> = index.iter().map(|&i| i64::try_from(i).unwrap_or(i64::MAX)).collect();
    t.index_select(0, &Tensor::from_slice(&index).to_device(t.device())).to_device(Device::Cpu).to_kind(Kind::Double)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmd_of_tiny_sets_by_hand() {
        // d = 1, x = {0, 1}, y = {1, 2}: k(a, b) = (ab + 1)^3.
        // within x off-diagonal: 2 k(0,1) = 2; within y: 2 k(1,2) = 54; cross: k(0,1) + k(0,2)
        // + k(1,1) + k(1,2) = 1 + 1 + 8 + 27 = 37. MMD^2 = 56 / 2 - 2 * 37 / 4 = 9.5.
        let x = Tensor::from_slice(&[0.0, 1.0]).view([2, 1]);
        let y = Tensor::from_slice(&[1.0, 2.0]).view([2, 1]);
        assert!((mmd2_unbiased(&x, &y) - 9.5).abs() < 1e-12);
        let cfg = KidConfig { subsets: 3, ..KidConfig::default() };
        let k = kid(&x, &y, &cfg).unwrap();
        assert_eq!((k.mean, k.std, k.subset_size), (9.5, 0.0, 2));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let x = Tensor::zeros([1, 4], (Kind::Float, Device::Cpu));
        let y = Tensor::zeros([5, 4], (Kind::Float, Device::Cpu));
        assert_eq!(
            kid(&x, &y, &KidConfig::default()).unwrap_err().to_string(),
            "KID: each subset needs at least 2 feature vectors, found 1"
        );
        let z = Tensor::zeros([5, 3], (Kind::Float, Device::Cpu));
        assert!(matches!(kid(&y, &z, &KidConfig::default()), Err(MetricError::Mismatch(_))));
        assert!(matches!(kid(&y.view([20]), &z, &KidConfig::default()), Err(MetricError::NotAMatrix { .. })));
    }
}
