//! `AdamW`'s settings (Loshchilov & Hutter, 2019) as a stage parameter, with the checks
//! the checker applies before anything runs. No libtorch: the optimizer itself is in
//! `msnr-torch`'s `diffusion::optimizer`.

use serde::{Deserialize, Serialize};

/// `AdamW` hyperparameters; `Default` is `PyTorch`'s (`lr = 1e-3`, betas `(0.9, 0.999)`,
/// `eps = 1e-8`, `weight_decay = 1e-2`) without warmup.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Decay rates of the first and second moment estimates.
    pub betas: (f64, f64),
    /// Added to the denominator, outside the square root.
    pub eps: f64,
    /// Decoupled weight decay (`p *= 1 - lr * weight_decay`).
    pub weight_decay: f64,
    /// Steps of linear learning-rate warmup (0: none).
    pub warmup: u64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self { lr: 1e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 1e-2, warmup: 0 }
    }
}

impl AdamWConfig {
    /// Checks every setting, naming the first one out of range (`lr`, `betas`, `eps`,
    /// `weight_decay`) with what it must be.
    ///
    /// # Errors
    /// `(setting, message)` for the first setting that `torch.optim.AdamW` would refuse or
    /// that cannot train (a zero learning rate).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let (b1, b2) = self.betas;
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(("lr", format!("must be a finite number > 0, got {}", self.lr)));
        }
        if !((0.0..1.0).contains(&b1) && (0.0..1.0).contains(&b2)) {
            return Err(("betas", format!("both must be in [0, 1), got [{b1}, {b2}]")));
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(("eps", format!("must be a finite number > 0, got {}", self.eps)));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(("weight_decay", format!("must be a finite number >= 0, got {}", self.weight_decay)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_setting() {
        assert_eq!(AdamWConfig::default().validate(), Ok(()));
        let bad = |c: AdamWConfig| c.validate().unwrap_err().0;
        assert_eq!(bad(AdamWConfig { lr: -1.0, ..AdamWConfig::default() }), "lr");
        assert_eq!(bad(AdamWConfig { lr: 0.0, ..AdamWConfig::default() }), "lr");
        assert_eq!(bad(AdamWConfig { betas: (0.9, 1.0), ..AdamWConfig::default() }), "betas");
        assert_eq!(bad(AdamWConfig { eps: 0.0, ..AdamWConfig::default() }), "eps");
        assert_eq!(bad(AdamWConfig { weight_decay: f64::NAN, ..AdamWConfig::default() }), "weight_decay");
    }
}
