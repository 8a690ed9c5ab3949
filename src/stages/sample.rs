//! The `sample` kind's parameters: `stdlib/sample.msnr` typed and checked here, before
//! anything runs (the sampler's ranges, guidance, the interval, labels, the VAE that
//! decodes a latent model). Sampling itself
//! runs in the worker (`msnr_torch::stages::sample`, on `msnr_torch::diffusion::sampler`),
//! which deserializes this struct.

use serde::{Deserialize, Serialize};

use super::kinds::KindParams;
use super::params::{Ctor, ParamError, Positive, Reader, Shape, Source};
use super::train::{read_precision, PrecisionChoice};
use crate::lang::Value;
use crate::nets::VaeConfig;

/// The `sampler` parameter: a method and its settings (unused fields keep their defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplerParams {
    /// `heun`, `euler`, `ddim` or `ddpm`.
    pub name: String,
    /// Number of steps (>= 2 for heun/euler; ddim/ddpm: at most the schedule's T, checked by the worker).
    pub steps: u64,
    /// Karras grid exponent (heun/euler).
    pub rho: f64,
    /// Smallest sigma (heun/euler).
    pub sigma_min: f64,
    /// Largest sigma (heun/euler).
    pub sigma_max: f64,
    /// DDIM's eta in [0, 1].
    pub eta: f64,
    /// Clip the x0 prediction to [-1, 1] (ddim/ddpm).
    pub clip: bool,
}

/// The `sample` kind's parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleParams {
    /// The `train` stage whose model is sampled.
    pub model: Source,
    /// The sampling method.
    pub sampler: SamplerParams,
    /// Images to draw (>= 1).
    pub count: u64,
    /// Classifier-free guidance scale (1: off).
    pub guidance: f64,
    /// Guidance applies for integer timesteps in `[t_from, t_to]`; `None`: everywhere.
    pub interval: Option<(i64, i64)>,
    /// Class labels, image `i` taking `labels[i % len]`; empty: uniform at random.
    pub labels: Vec<i64>,
    /// Images per batch (>= 1).
    pub batch: u64,
    /// Seed of every image's noise and label.
    pub seed: u64,
    /// Sample the EMA weights (else the raw ones).
    pub ema: bool,
    /// The VAE weights that decode a latent model's samples.
    pub vae: Option<Source>,
    /// That VAE's architecture and scaling factor.
    pub vae_config: VaeConfig,
    /// The net's forward precision as written.
    pub precision: PrecisionChoice,
}

impl KindParams for SampleParams {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let model = r.source("model");
        let sampler = read_sampler(r);
        let count = r.int("count", 1..);
        let guidance = r.float("guidance", f64::MIN..);
        let interval = read_interval(r);
        let labels = read_labels(r);
        let batch = r.int("batch", 1..);
        let seed = r.int("seed", 0..);
        let ema = r.bool("ema");
        let vae = r.opt_source("vae");
        let vae_config = VaeConfig::read(r, "vae_config");
        let precision = read_precision(r);
        if let (Some(vae), Some(config)) = (&vae, &vae_config) {
            check_decoder(r, vae.is_some(), config);
        }
        Some(Self {
            model: model?,
            sampler: sampler?,
            count: count?.unsigned_abs(),
            guidance: guidance?,
            interval,
            labels: labels?,
            batch: batch?.unsigned_abs(),
            seed: seed?.unsigned_abs(),
            ema: ema?,
            vae: vae?,
            vae_config: vae_config?,
            precision: precision?,
        })
    }

    fn shape(&self, r: &Reader<'_>) -> Shape {
        let model = r.input_shape("model");
        match (self.vae.is_some(), model.latent_factor) {
            (true, Some(f)) => Shape::images(
                u32::try_from(self.vae_config.image_channels).ok(),
                model.size.map(|(h, w)| (h * f, w * f)),
            ),
            _ => Shape::images(model.channels, model.size),
        }
    }
}

/// A decoder that cannot decode the model's samples: a latent model without `vae`, a
/// `vae` on a pixel model, or latents of another channel count or spatial factor.
fn check_decoder(r: &mut Reader<'_>, has_vae: bool, config: &VaeConfig) {
    let model = r.input_shape("model");
    let factor = config.factor();
    let error = match (model.latent_factor, model.channels) {
        (Some(_), _) if !has_vae => Some((
            "vae",
            "the model is trained on VAE latents: give the VAE that encoded them (`vae = ...`) to decode its samples"
                .to_owned(),
        )),
        (None, Some(c)) if has_vae => Some(("vae", format!("the model is trained on {c}-channel images, not latents"))),
        (Some(_), Some(c)) if i64::from(c) != config.latent_channels => Some((
            "vae_config",
            format!("the VAE decodes {}-channel latents, the model's latents have {c}", config.latent_channels),
        )),
        (Some(f), _) if i64::from(f) != factor => Some((
            "vae_config",
            format!("the VAE's latents are 1/{factor} of the image side, the model's were encoded at 1/{f}"),
        )),
        _ => None,
    };
    if let Some((param, message)) = error {
        let help = if model.latent_factor.is_some() {
            "decode with the same `vae` and `vae_config` as the `vae_encode` stage of the model's data"
        } else {
            "leave `vae` out: a model trained on images samples images"
        };
        r.fail::<()>(ParamError::new(param, message).with_help(help));
    }
}

fn read_sampler(r: &mut Reader<'_>) -> Option<SamplerParams> {
    let c = r.ctor("sampler")?;
    let karras = matches!(c.name, "heun" | "euler");
    if !karras && !matches!(c.name, "ddim" | "ddpm") {
        return r.fail(ParamError::new("sampler", format!("unknown sampler `{}`", c.name)));
    }
    let steps = r.arg_int(c, "steps", if karras { 2.. } else { 1.. });
    let grid = if karras { read_grid(r, c) } else { Some((7.0, 0.002, 80.0)) };
    let eta = if c.name == "ddim" { r.arg_float(c, "eta", 0.0..=1.0) } else { Some(0.0) };
    let clip = if karras { Some(false) } else { r.arg_bool(c, "clip") };
    let (rho, sigma_min, sigma_max) = grid?;
    Some(SamplerParams {
        name: c.name.to_owned(),
        steps: steps?.unsigned_abs(),
        rho,
        sigma_min,
        sigma_max,
        eta: eta?,
        clip: clip?,
    })
}

/// `rho`, `sigma_min`, `sigma_max` of a heun/euler sampler.
fn read_grid<'a>(r: &mut Reader<'a>, c: Ctor<'a>) -> Option<(f64, f64, f64)> {
    let rho = r.arg_float(c, "rho", Positive);
    let sigma_min = r.arg_float(c, "sigma_min", Positive);
    let sigma_max = r.arg_float(c, "sigma_max", Positive);
    let (sigma_min, sigma_max) = (sigma_min?, sigma_max?);
    if sigma_min >= sigma_max {
        return r.arg_fail(c, "sigma_min", format!("must be below sigma_max = {sigma_max}, got {sigma_min}"));
    }
    Some((rho?, sigma_min, sigma_max))
}

/// `t_from`/`t_to`: both -1 (`None`: no interval) or `0 <= t_from <= t_to`. A bad pair is
/// recorded in `r` (so the whole read fails) and read as `None`.
fn read_interval(r: &mut Reader<'_>) -> Option<(i64, i64)> {
    let (from, to) = (r.int("t_from", -1..), r.int("t_to", -1..));
    match (from?, to?) {
        (-1, -1) => None,
        (from, to) if from >= 0 && from <= to => Some((from, to)),
        (from, to) => r.fail(
            ParamError::new("t_from", format!("[{from}, {to}] is not an interval of timesteps"))
                .with_help("give 0 <= t_from <= t_to, or leave both at -1 to guide every step"),
        ),
    }
}

/// `labels`: a list of class indices (their range is checked against the model's classes
/// by the worker).
fn read_labels(r: &mut Reader<'_>) -> Option<Vec<i64>> {
    match r.value("labels")? {
        Value::List(items) => {
            let labels: Option<Vec<i64>> = items.iter().map(Value::as_int).collect();
            match labels {
                Some(l) if l.iter().all(|x| *x >= 0) => Some(l),
                _ => r.fail(ParamError::new("labels", "expected a list of class indices (integers >= 0)")),
            }
        }
        other => r.fail(ParamError::new("labels", format!("expected a list of class indices, found {other}"))),
    }
}
