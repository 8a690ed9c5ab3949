//! The `train` kind's parameters: every value of `stdlib/train.msnr` typed and checked
//! here, before anything runs (ranges, combinations such as `fp16` on a CPU, a net that
//! cannot take its dataset). The training loop itself runs in the worker
//! (`msnr_torch::stages::train`), which deserializes this struct.

use serde::{Deserialize, Serialize};

use super::kinds::KindParams;
use super::params::{ParamError, Positive, Reader, Shape, Source};
use crate::diffusion::adamw::AdamWConfig;
use crate::diffusion::schedule::NamedSchedule;
use crate::diffusion::target::Target;
use crate::diffusion::weighting::Weighting;
use crate::lang::{codes, Value};
use crate::nets::{check_net, check_net_widths, NetParams};

/// The `precision` parameter as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrecisionChoice {
    /// bf16 autocast on CUDA, fp32 on CPU.
    Auto,
    /// Full single precision.
    Fp32,
    /// bfloat16 autocast (CUDA only).
    Bf16,
    /// float16 autocast with loss scaling (CUDA only).
    Fp16,
}

/// Mixed precision of the forward pass, resolved for a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// Plain float32 (always on CPU).
    Fp32,
    /// bfloat16 autocast (CUDA).
    Bf16,
    /// float16 autocast (CUDA).
    Fp16,
}

impl PrecisionChoice {
    /// The precision on `device` (`cpu` or `cuda`).
    ///
    /// # Errors
    /// An autocast precision asked for on the CPU.
    pub fn resolve(self, device: &str) -> Result<Precision, String> {
        match (self, device == "cuda") {
            (Self::Auto | Self::Bf16, true) => Ok(Precision::Bf16),
            (Self::Fp16, true) => Ok(Precision::Fp16),
            (Self::Auto | Self::Fp32, _) => Ok(Precision::Fp32),
            (Self::Bf16 | Self::Fp16, false) => {
                Err(format!("`{}` autocast needs CUDA, but the stage runs on the CPU", self.name()))
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Fp32 => "fp32",
            Self::Bf16 => "bf16",
            Self::Fp16 => "fp16",
        }
    }
}

/// The `loader` parameter: how batches reach the training device. Every choice gives the
/// same batches and the same result for a seed, so it is left out of the cache key
/// ([`super::kinds::EXECUTION_ONLY`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoaderChoice {
    /// Resident when the dataset takes at most `share` of the device's free memory (of the
    /// host's available memory on a CPU), else streaming.
    Auto {
        /// The share of the memory the dataset may take, in (0, 1].
        share: f64,
    },
    /// The whole dataset on the training device.
    Resident,
    /// Batches gathered from the memory-mapped shards by a prefetch thread.
    Stream {
        /// Batches gathered ahead of the step that uses them (>= 1).
        prefetch: u64,
    },
}

impl Default for LoaderChoice {
    /// The stdlib's default, `auto { share = 0.5 }`.
    fn default() -> Self {
        Self::Auto { share: 0.5 }
    }
}

/// The `train` kind's parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainParams {
    /// The training dataset's stage.
    pub data: Source,
    /// The denoising network as written (built once the data's shape is known).
    pub net: NetParams,
    /// What the net predicts.
    pub target: Target,
    /// The loss weighting.
    pub weighting: Weighting,
    /// The noise schedule.
    pub schedule: NamedSchedule,
    /// `AdamW`'s settings.
    pub optimizer: AdamWConfig,
    /// EMA decay, in [0, 1).
    pub ema: f64,
    /// EMA warmup (diffusers' `min(decay, (1 + k) / (10 + k))`).
    pub ema_warmup: bool,
    /// Images per step (>= 1), the global batch when data-parallel.
    pub batch: u64,
    /// Data-parallel processes (>= 1, dividing `batch`); see `msnr_torch`'s `train::ddp`.
    #[serde(default = "one")]
    pub devices: u64,
    /// Optimizer steps (>= 1).
    pub steps: u64,
    /// Forward precision as written; resolved for the device by [`PrecisionChoice::resolve`].
    pub precision: PrecisionChoice,
    /// Seed of initialization and of every random draw.
    pub seed: u64,
    /// Random horizontal flips.
    pub flip: bool,
    /// Probability of replacing a label by the null label, in [0, 1).
    pub label_dropout: f64,
    /// Max global gradient norm (0: no clipping).
    pub grad_clip: f64,
    /// Steps between checkpoints (>= 1).
    pub checkpoint_every: u64,
    /// Steps between log records (>= 1).
    pub log_every: u64,
    /// How batches reach the device (never changes the result).
    #[serde(default)]
    pub loader: LoaderChoice,
}

impl KindParams for TrainParams {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let data = r.source("data");
        let net = NetParams::read(r, "net");
        let target = read_target(r);
        let weighting = read_weighting(r);
        let schedule = read_schedule(r);
        let optimizer = read_adamw(r);
        let ema = r.float("ema", 0.0..1.0);
        let ema_warmup = r.bool("ema_warmup");
        let batch = r.int("batch", 1..);
        let devices = r.int("devices", 1..);
        if let (Some(batch), Some(devices)) = (batch, devices) {
            if batch % devices != 0 {
                let message = format!("batch = {batch} does not split evenly among devices = {devices}");
                let help = "each device takes batch / devices examples: use a batch that is a multiple of devices";
                r.fail::<()>(ParamError::new("devices", message).with_help(help));
            }
        }
        let steps = r.int("steps", 1..);
        let precision = read_precision(r);
        let seed = r.int("seed", 0..);
        let flip = r.bool("flip");
        if flip == Some(true) && r.input_shape("data").latent_factor.is_some() {
            let message = "flips latents, which are not the latents of flipped images";
            let help = "encode a flipped copy instead: `vae_encode { flip = true }`, and train with flip = false";
            r.fail::<()>(ParamError::new("flip", message).with_help(help));
        }
        let label_dropout = r.float("label_dropout", 0.0..1.0);
        let grad_clip = r.float("grad_clip", 0.0..);
        let checkpoint_every = r.int("checkpoint_every", 1..);
        let log_every = r.int("log_every", 1..);
        let loader = read_loader(r);
        if let (Some(opt), Some(steps)) = (&optimizer, steps) {
            if opt.warmup > steps.unsigned_abs() {
                let message = format!("{} warmup steps exceed the {steps} training steps", opt.warmup);
                r.fail::<()>(ParamError::new("optimizer.warmup", message).with_help("use warmup <= steps"));
            }
        }
        if let Some(net) = &net {
            check_net_fits_data(r, net);
            if matches!(net, NetParams::Vit { null_class: false, .. }) && label_dropout.is_some_and(|p| p > 0.0) {
                let message = "label dropout needs the null label's row, but the net has `null_class = false`";
                let help = "set `null_class = true` in the net, or `label_dropout = 0`";
                r.fail::<()>(ParamError::new("label_dropout", message).with_help(help));
            }
        }
        Some(Self {
            data: data?,
            net: net?,
            target: target?,
            weighting: weighting?,
            schedule: schedule?,
            optimizer: optimizer?,
            ema: ema?,
            ema_warmup: ema_warmup?,
            batch: batch?.unsigned_abs(),
            devices: devices?.unsigned_abs(),
            steps: steps?.unsigned_abs(),
            precision: precision?,
            seed: seed?.unsigned_abs(),
            flip: flip?,
            label_dropout: label_dropout?,
            grad_clip: grad_clip?,
            checkpoint_every: checkpoint_every?.unsigned_abs(),
            log_every: log_every?.unsigned_abs(),
            loader: loader?,
        })
    }

    /// A model has its data's shape (channels, size, and whether they are latents).
    fn shape(&self, r: &Reader<'_>) -> Shape {
        r.input_shape("data")
    }
}

/// `devices`' default, for specs written before the parameter existed.
fn one() -> u64 {
    1
}

/// Reads the `target` parameter (`eps {}`, `x0 {}`, `v {}`).
pub(crate) fn read_target(r: &mut Reader<'_>) -> Option<Target> {
    let c = r.ctor("target")?;
    match c.name.parse::<Target>() {
        Ok(target) => Some(target),
        Err(e) => r.fail(ParamError::new("target", e.to_string())),
    }
}

fn read_weighting(r: &mut Reader<'_>) -> Option<Weighting> {
    let c = r.ctor("weighting")?;
    Some(match c.name {
        "constant" => Weighting::Constant,
        "snr" => Weighting::Snr,
        "inv_snr" => Weighting::InvSnr,
        "min_snr" => Weighting::MinSnr(r.arg_float(c, "gamma", Positive)?),
        "max_snr" => Weighting::MaxSnr(r.arg_float(c, "gamma", Positive)?),
        "soft_min_snr" => Weighting::SoftMinSnr(r.arg_float(c, "gamma", Positive)?),
        other => return r.fail(ParamError::new("weighting", format!("unknown weighting `{other}`"))),
    })
}

/// Reads the `schedule` parameter and checks that it builds.
pub(crate) fn read_schedule(r: &mut Reader<'_>) -> Option<NamedSchedule> {
    let c = r.ctor("schedule")?;
    let steps = usize::try_from(r.arg_int(c, "steps", 1..)?).ok()?;
    let named = match c.name {
        "linear" => NamedSchedule::Linear { steps },
        "cosine" => NamedSchedule::Cosine { steps },
        other => return r.fail(ParamError::new("schedule", format!("unknown schedule `{other}`"))),
    };
    match named.build() {
        Ok(_) => Some(named),
        Err(e) => r.arg_fail(c, "steps", format!("gives no usable schedule: {e}")),
    }
}

fn read_adamw(r: &mut Reader<'_>) -> Option<AdamWConfig> {
    let c = r.ctor("optimizer")?;
    if c.name != "adamw" {
        return r.fail(ParamError::new("optimizer", format!("unknown optimizer `{}`", c.name)));
    }
    let lr = r.arg_float(c, "lr", Positive);
    let betas = r.arg_floats(c, "betas");
    let eps = r.arg_float(c, "eps", Positive);
    let weight_decay = r.arg_float(c, "weight_decay", 0.0..);
    let warmup = r.arg_int(c, "warmup", 0..);
    let betas = match betas?[..] {
        [b1, b2] if (0.0..1.0).contains(&b1) && (0.0..1.0).contains(&b2) => (b1, b2),
        ref other => return r.arg_fail(c, "betas", format!("must be two numbers in [0, 1), got {other:?}")),
    };
    Some(AdamWConfig { lr: lr?, betas, eps: eps?, weight_decay: weight_decay?, warmup: warmup?.unsigned_abs() })
}

fn read_loader(r: &mut Reader<'_>) -> Option<LoaderChoice> {
    let c = r.ctor("loader")?;
    Some(match c.name {
        "auto" => match r.arg_float(c, "share", Positive)? {
            share if share <= 1.0 => LoaderChoice::Auto { share },
            share => return r.arg_fail(c, "share", format!("must be in (0, 1], got {share}")),
        },
        "resident" => LoaderChoice::Resident,
        "stream" => LoaderChoice::Stream { prefetch: r.arg_int(c, "prefetch", 1..)?.unsigned_abs() },
        other => return r.fail(ParamError::new("loader", format!("unknown loader `{other}`"))),
    })
}

/// The `precision` parameter, refused where it needs CUDA and the stage runs on the CPU.
pub(crate) fn read_precision(r: &mut Reader<'_>) -> Option<PrecisionChoice> {
    let c = r.ctor("precision")?;
    let choice = match c.name {
        "auto" => PrecisionChoice::Auto,
        "fp32" => PrecisionChoice::Fp32,
        "bf16" => PrecisionChoice::Bf16,
        "fp16" => PrecisionChoice::Fp16,
        other => return r.fail(ParamError::new("precision", format!("unknown precision `{other}`"))),
    };
    if let Some(device) = r.device() {
        if let Err(m) = choice.resolve(device) {
            let help = "use precision = auto or fp32 on a CPU, or run on a GPU (device = cuda)";
            return r.fail(ParamError::new("precision", m).with_help(help));
        }
    }
    Some(choice)
}

/// A dataset whose shape is known and that `net` cannot take.
fn check_net_fits_data(r: &mut Reader<'_>, net: &NetParams) {
    let shape = r.input_shape("data");
    let (Some(channels), Some((h, w))) = (shape.channels, shape.size) else {
        if let Err((param, message)) = check_net_widths(net) {
            r.fail::<()>(ParamError::new(param, message));
        }
        return;
    };
    let name = match r.value("data") {
        Some(Value::Stage(s)) => s.clone(),
        _ => "data".to_owned(),
    };
    let error = if h == w {
        check_net(net, h, channels).err()
    } else {
        Some(("data".to_owned(), format!("the nets take square images; `{name}` is {h}x{w}")))
    };
    if let Some((param, message)) = error {
        let message = format!("{message} (`{name}` gives {channels}x{h}x{w})");
        let help = "change the net's parameters or the data's size (crop) so they fit";
        r.fail::<()>(ParamError::new(param, message).with_help(help).with_code(codes::DATA_DOES_NOT_FIT_NET));
    }
}
