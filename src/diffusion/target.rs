//! What the network predicts: the noise `eps`, the clean sample `x0`, or the velocity
//! `v = alpha * eps - sigma * x0` (Salimans & Ho 2022, "Progressive Distillation", sec. 4).
//! No libtorch: the tensor formulas (the target of a batch, a prediction's `x0` and `eps`)
//! are in `msnr-torch`'s `diffusion::target`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The quantity a diffusion network is trained to predict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The added noise `eps` (Ho et al. 2020).
    Eps,
    /// The clean sample `x0`.
    X0,
    /// The velocity `v = alpha * eps - sigma * x0` (Salimans & Ho 2022).
    V,
}

/// All targets, in a fixed order (for tables and tests).
pub const TARGETS: [Target; 3] = [Target::Eps, Target::X0, Target::V];

impl Target {
    /// The name used in pipelines: `eps`, `x0` or `v`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Eps => "eps",
            Self::X0 => "x0",
            Self::V => "v",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not `eps`, `x0` or `v`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown diffusion target `{0}` (expected one of: eps, x0, v)")]
pub struct UnknownTarget(pub String);

impl FromStr for Target {
    type Err = UnknownTarget;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        TARGETS.into_iter().find(|t| t.name() == name).ok_or_else(|| UnknownTarget(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_target_names() {
        assert_eq!("v".parse::<Target>(), Ok(Target::V));
        assert_eq!("x0".parse::<Target>().unwrap().to_string(), "x0");
        assert_eq!(
            "noise".parse::<Target>().unwrap_err().to_string(),
            "unknown diffusion target `noise` (expected one of: eps, x0, v)"
        );
    }

    #[test]
    fn serializes_as_the_pipeline_name() {
        assert_eq!(serde_json::to_string(&Target::X0).unwrap(), "\"x0\"");
    }
}
