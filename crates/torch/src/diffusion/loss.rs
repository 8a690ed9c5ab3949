//! The weighted diffusion loss: `mean_b( factor(t_b) * mean_{c,h,w} (pred_b - target_b)^2 )`,
//! the seed repo's `training_losses` (`mse_loss_weight * mean_flat((target - output) ** 2)`,
//! then the batch mean) and diffusers' `--snr_gamma` loss, computed in `f32` whatever the
//! prediction's precision (bf16/fp16 predictions are upcast first, as diffusers'
//! `F.mse_loss(model_pred.float(), target.float())`).

use tch::{Kind, Tensor};

/// Shapes that cannot form a loss.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LossError {
    /// The prediction and the target differ in shape.
    #[error("prediction shape {pred:?} differs from target shape {target:?}")]
    ShapeMismatch {
        /// The prediction's shape.
        pred: Vec<i64>,
        /// The target's shape.
        target: Vec<i64>,
    },
    /// The timesteps are not one per sample.
    #[error("expected {batch} timesteps (one per sample, shape [{batch}]), got shape {t:?}")]
    Timesteps {
        /// The batch size.
        batch: i64,
        /// The timesteps' shape.
        t: Vec<i64>,
    },
}

/// The loss of one batch.
#[derive(Debug)]
pub struct LossTerms {
    /// The scalar to minimise: the batch mean of `weighted`.
    pub loss: Tensor,
    /// Per sample: `factor(t) * mse` (the seed repo's `mse`), shape `[B]`.
    pub weighted: Tensor,
    /// Per sample: the unweighted MSE over all non-batch dims (the seed repo's `mse_raw`), `[B]`.
    pub mse: Tensor,
}

/// The weighted loss of `pred` against `target` at timesteps `t` (`Int64`, shape `[B]`), with
/// `factors` the per-timestep table of [`super::weighting::FactorTable::to_device`].
///
/// # Errors
/// When `pred` and `target` differ in shape or `t` is not one timestep per sample.
pub fn loss(pred: &Tensor, target: &Tensor, t: &Tensor, factors: &Tensor) -> Result<LossTerms, LossError> {
    check_shapes(pred, target, t)?;
    let dims: Vec<i64> = (1..i64::try_from(pred.dim()).unwrap_or(1)).collect();
    let diff = pred.to_kind(Kind::Float) - target.to_kind(Kind::Float);
    let mse = diff.square().mean_dim(dims.as_slice(), false, Kind::Float);
    let weighted = &mse * factors.take(t).to_kind(Kind::Float);
    Ok(LossTerms { loss: weighted.mean(Kind::Float), weighted, mse })
}

/// `pred` and `target` alike, `t` of shape `[B]`.
fn check_shapes(pred: &Tensor, target: &Tensor, t: &Tensor) -> Result<(), LossError> {
    let (p, g) = (pred.size(), target.size());
    if p != g {
        return Err(LossError::ShapeMismatch { pred: p, target: g });
    }
    let batch = p.first().copied().unwrap_or(0);
    if t.size() != [batch] {
        return Err(LossError::Timesteps { batch, t: t.size() });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // exact values are the point
mod tests {
    use tch::Device;

    use super::*;

    #[test]
    fn weights_per_sample_means_then_averages() {
        let pred = Tensor::from_slice(&[1.0f32, 3.0, 0.0, 0.0]).reshape([2, 2]);
        let target = Tensor::zeros([2, 2], (Kind::Float, Device::Cpu));
        let factors = Tensor::from_slice(&[10.0f32, 0.5, 2.0]);
        let terms = loss(&pred, &target, &Tensor::from_slice(&[1i64, 2]), &factors).unwrap();
        assert_eq!(Vec::<f32>::try_from(&terms.mse).unwrap(), [5.0, 0.0]);
        assert_eq!(Vec::<f32>::try_from(&terms.weighted).unwrap(), [2.5, 0.0]);
        assert_eq!(terms.loss.double_value(&[]), 1.25);
    }

    #[test]
    fn upcasts_half_precision_predictions() {
        let pred = Tensor::from_slice(&[0.1f32; 8]).reshape([2, 4]).to_kind(Kind::BFloat16);
        let target = Tensor::zeros([2, 4], (Kind::Float, Device::Cpu));
        let terms = loss(&pred, &target, &Tensor::from_slice(&[0i64, 0]), &Tensor::from_slice(&[1.0f32])).unwrap();
        assert_eq!(terms.loss.kind(), Kind::Float);
        let bf = f64::from(half_bf16(0.1));
        assert!((bf - f64::from(0.1f32)).abs() > 1e-6, "the bf16 value differs from the f32 one");
        assert!((terms.loss.double_value(&[]) - bf * bf).abs() < 1e-8);
    }

    /// `x` rounded to bfloat16 (round to nearest even), as `f32`.
    fn half_bf16(x: f32) -> f32 {
        let bits = x.to_bits();
        let rounded = (bits + 0x7fff + ((bits >> 16) & 1)) & 0xffff_0000;
        f32::from_bits(rounded)
    }

    #[test]
    fn rejects_mismatched_shapes() {
        let a = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
        let b = Tensor::zeros([2, 4], (Kind::Float, Device::Cpu));
        let f = Tensor::ones([5], (Kind::Float, Device::Cpu));
        let t = Tensor::from_slice(&[0i64, 1]);
        assert!(matches!(loss(&a, &b, &t, &f), Err(LossError::ShapeMismatch { .. })));
        let err = loss(&a, &a, &Tensor::from_slice(&[0i64]), &f).unwrap_err();
        assert_eq!(err.to_string(), "expected 2 timesteps (one per sample, shape [2]), got shape [1]");
    }
}
