//! The train stage's runtime settings, built from the typed parameters the checker
//! read and validated (`msnr::stages::train::TrainParams`, deserialized from the spec):
//! the schedule's tables are computed and the precision is resolved for the device.

use crate::diffusion::optimizer::AdamWConfig;
use crate::diffusion::schedule::Schedule;
use crate::diffusion::target::Target;
use crate::diffusion::weighting::Weighting;
use msnr::nets::NetParams;
use msnr::stages::params::Source;
pub use msnr::stages::train::Precision;
use msnr::stages::train::{LoaderChoice, TrainParams};
use msnr::stages::{StageError, StageSpec};

/// Everything the training loop needs besides the data and the net.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// The training dataset.
    pub data: Source,
    /// The network as written (built once the data's shape is known).
    pub net: NetParams,
    /// What the net predicts.
    pub target: Target,
    /// The loss weighting.
    pub weighting: Weighting,
    /// The noise schedule.
    pub schedule: Schedule,
    /// `AdamW` hyperparameters.
    pub adamw: AdamWConfig,
    /// EMA decay.
    pub ema: f64,
    /// EMA warmup (diffusers' `min(decay, (1 + k) / (10 + k))`).
    pub ema_warmup: bool,
    /// Images per step (all ranks together).
    pub batch: i64,
    /// Data-parallel processes (see [`super::ddp`]).
    pub devices: u64,
    /// Optimizer steps.
    pub steps: u64,
    /// Forward precision.
    pub precision: Precision,
    /// Seed of initialization and of every random draw.
    pub seed: u64,
    /// Random horizontal flips.
    pub flip: bool,
    /// Probability of replacing a label by the null label (classifier-free guidance).
    pub label_dropout: f64,
    /// Max global gradient norm (0: no clipping).
    pub grad_clip: f64,
    /// Steps between checkpoints.
    pub checkpoint_every: u64,
    /// Steps between log records.
    pub log_every: u64,
    /// How batches reach the device (never changes the result).
    pub loader: LoaderChoice,
}

impl TrainConfig {
    /// The settings of `spec`'s typed parameters on `spec`'s device.
    ///
    /// # Errors
    /// Unreadable typed parameters, or (for a spec built outside a pipeline) a value the
    /// checker would have refused.
    pub fn from_spec(spec: &StageSpec) -> Result<Self, StageError> {
        let p: TrainParams = spec.typed()?;
        let schedule = p.schedule.build().map_err(|e| StageError::param("schedule", e.to_string()))?;
        let precision = p.precision.resolve(&spec.device).map_err(|m| StageError::param("precision", m))?;
        let batch = i64::try_from(p.batch).map_err(|_| StageError::param("batch", "too large"))?;
        Ok(Self {
            data: p.data,
            net: p.net,
            target: p.target,
            weighting: p.weighting,
            schedule,
            adamw: p.optimizer,
            ema: p.ema,
            ema_warmup: p.ema_warmup,
            batch,
            devices: p.devices,
            steps: p.steps,
            precision,
            seed: p.seed,
            flip: p.flip,
            label_dropout: p.label_dropout,
            grad_clip: p.grad_clip,
            checkpoint_every: p.checkpoint_every,
            log_every: p.log_every,
            loader: p.loader,
        })
    }
}
