//! The train stage's parameters, read from the resolved spec into typed values.
//! Names and defaults are the stdlib's (`stdlib/train.msnr`).

use std::str::FromStr;

use crate::diffusion::optimizer::AdamWConfig;
use crate::diffusion::schedule::Schedule;
use crate::diffusion::target::Target;
use crate::diffusion::weighting::Weighting;
use msnr::lang::Value;
use msnr::stages::{StageError, StageSpec};

/// Mixed precision of the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// Plain float32 (always on CPU).
    Fp32,
    /// bfloat16 autocast (CUDA).
    Bf16,
    /// float16 autocast (CUDA).
    Fp16,
}

/// Everything the training loop needs besides the data and the net.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// The network's `net` value (built once the data's shape is known).
    pub net: Value,
    /// What the net predicts.
    pub target: Target,
    /// The loss weighting.
    pub weighting: Weighting,
    /// The noise schedule.
    pub schedule: Schedule,
    /// AdamW hyperparameters.
    pub adamw: AdamWConfig,
    /// EMA decay.
    pub ema: f64,
    /// EMA warmup (diffusers' `min(decay, (1 + k) / (10 + k))`).
    pub ema_warmup: bool,
    /// Images per step.
    pub batch: i64,
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
}

impl TrainConfig {
    /// Reads and checks every parameter.
    ///
    /// # Errors
    /// A parameter with an unusable value, named.
    pub fn from_spec(spec: &StageSpec) -> Result<Self, StageError> {
        Ok(Self {
            net: spec.param("net")?.clone(),
            target: target(spec)?,
            weighting: weighting(spec)?,
            schedule: schedule(spec)?,
            adamw: adamw(spec)?,
            ema: unit_interval(spec, "ema")?,
            ema_warmup: spec.bool("ema_warmup")?,
            batch: positive(spec, "batch")?,
            steps: positive(spec, "steps")?.unsigned_abs(),
            precision: precision(spec)?,
            seed: spec.seed,
            flip: spec.bool("flip")?,
            label_dropout: unit_interval(spec, "label_dropout")?,
            grad_clip: non_negative(spec, "grad_clip")?,
            checkpoint_every: positive(spec, "checkpoint_every")?.unsigned_abs(),
            log_every: positive(spec, "log_every")?.unsigned_abs(),
        })
    }
}

/// The constructor name and arguments of parameter `name`.
fn ctor<'a>(
    spec: &'a StageSpec,
    name: &str,
) -> Result<(&'a str, &'a std::collections::BTreeMap<String, Value>), StageError> {
    match spec.param(name)? {
        Value::Ctor { name: n, args } => Ok((n, args)),
        other => Err(StageError::param(name, format!("expected a constructor value, found {other}"))),
    }
}

fn arg_f64(args: &std::collections::BTreeMap<String, Value>, param: &str, name: &str) -> Result<f64, StageError> {
    args.get(name).and_then(Value::as_f64).ok_or_else(|| StageError::param(param, format!("`{name}` must be a number")))
}

fn target(spec: &StageSpec) -> Result<Target, StageError> {
    let (name, _) = ctor(spec, "target")?;
    Target::from_str(name).map_err(|e| StageError::param("target", e.to_string()))
}

fn weighting(spec: &StageSpec) -> Result<Weighting, StageError> {
    let (name, args) = ctor(spec, "weighting")?;
    let gamma = || arg_f64(args, "weighting", "gamma");
    let w = match name {
        "constant" => Weighting::Constant,
        "snr" => Weighting::Snr,
        "inv_snr" => Weighting::InvSnr,
        "min_snr" => Weighting::MinSnr(gamma()?),
        "max_snr" => Weighting::MaxSnr(gamma()?),
        "soft_min_snr" => Weighting::SoftMinSnr(gamma()?),
        other => return Err(StageError::param("weighting", format!("unknown weighting `{other}`"))),
    };
    w.validate().map_err(|e| StageError::param("weighting", e.to_string()))
}

fn schedule(spec: &StageSpec) -> Result<Schedule, StageError> {
    let (name, args) = ctor(spec, "schedule")?;
    let steps = args.get("steps").and_then(Value::as_int).and_then(|s| usize::try_from(s).ok()).filter(|&s| s > 0);
    let steps = steps.ok_or_else(|| StageError::param("schedule", "`steps` must be a positive integer"))?;
    let made = match name {
        "linear" => Schedule::linear(steps),
        "cosine" => Schedule::cosine(steps),
        other => return Err(StageError::param("schedule", format!("unknown schedule `{other}`"))),
    };
    made.map_err(|e| StageError::param("schedule", e.to_string()))
}

fn adamw(spec: &StageSpec) -> Result<AdamWConfig, StageError> {
    let (name, args) = ctor(spec, "optimizer")?;
    if name != "adamw" {
        return Err(StageError::param("optimizer", format!("unknown optimizer `{name}`")));
    }
    let betas: Vec<f64> = match args.get("betas") {
        Some(Value::List(items)) => items.iter().filter_map(Value::as_f64).collect(),
        _ => Vec::new(),
    };
    let [b1, b2] = betas[..] else {
        return Err(StageError::param("optimizer", "`betas` must be a list of two numbers"));
    };
    let warmup = args.get("warmup").and_then(Value::as_int).and_then(|w| u64::try_from(w).ok());
    let config = AdamWConfig {
        lr: arg_f64(args, "optimizer", "lr")?,
        betas: (b1, b2),
        eps: arg_f64(args, "optimizer", "eps")?,
        weight_decay: arg_f64(args, "optimizer", "weight_decay")?,
        warmup: warmup.ok_or_else(|| StageError::param("optimizer", "`warmup` must be a non-negative integer"))?,
    };
    let ok = config.lr > 0.0
        && (0.0..1.0).contains(&b1)
        && (0.0..1.0).contains(&b2)
        && config.eps > 0.0
        && config.weight_decay >= 0.0;
    if ok {
        Ok(config)
    } else {
        Err(StageError::param("optimizer", "needs lr > 0, betas in [0, 1), eps > 0 and weight_decay >= 0"))
    }
}

fn precision(spec: &StageSpec) -> Result<Precision, StageError> {
    let (name, _) = ctor(spec, "precision")?;
    let cuda = spec.device == "cuda";
    match (name, cuda) {
        ("auto" | "bf16", true) => Ok(Precision::Bf16),
        ("fp16", true) => Ok(Precision::Fp16),
        ("auto" | "fp32", _) => Ok(Precision::Fp32),
        (other, false) => {
            Err(StageError::param("precision", format!("`{other}` autocast needs CUDA; use auto or fp32 on CPU")))
        }
        (other, true) => Err(StageError::param("precision", format!("unknown precision `{other}`"))),
    }
}

fn positive(spec: &StageSpec, name: &str) -> Result<i64, StageError> {
    let v = spec.int(name)?;
    if v > 0 {
        Ok(v)
    } else {
        Err(StageError::param(name, format!("must be positive, got {v}")))
    }
}

fn non_negative(spec: &StageSpec, name: &str) -> Result<f64, StageError> {
    let v = spec.float(name)?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(StageError::param(name, format!("must be a finite number >= 0, got {v}")))
    }
}

fn unit_interval(spec: &StageSpec, name: &str) -> Result<f64, StageError> {
    let v = spec.float(name)?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(StageError::param(name, format!("must be in [0, 1], got {v}")))
    }
}
