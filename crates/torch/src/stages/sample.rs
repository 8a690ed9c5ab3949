//! The `sample` stage: draws `count` images from a `train` stage's model with one of
//! [`crate::diffusion::sampler`]'s samplers and writes them as a dataset artifact (u8 images
//! in `[0, 255]` from the model's `[-1, 1]`, as torchvision's `save_image`; a latent model's
//! samples are first divided by the VAE's scaling factor and decoded by its
//! [`AutoencoderKL`], as the seed does with the SD VAE) with their labels, plus
//! `grid.png` (the first 64 images, 8 per row) for people to look at. Image `i` depends
//! only on `(seed, i)`; memory is bounded by the batch. Runs in the worker (libtorch).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::vae_encode::load_vae;
use crate::diffusion::models::{self, load_weights, AutoencoderKL, Denoiser, NetContext, NetSpec};
use crate::diffusion::sampler::{self, draw_decoded, DrawConfig, Drawn, GuidedModel, Labels, SamplerConfig};
use crate::diffusion::schedule::Schedule;
use crate::diffusion::target::Target;
use msnr::data::{DType, DatasetWriter};
use msnr::lang::Value;
use msnr::stages::check::defaults_for;
use msnr::stages::params::{Reader, Shape};
use msnr::stages::sample::SampleParams;
use msnr::stages::train::TrainParams;
use msnr::stages::{KindParams, Reporter, StageError, StageResult, StageSpec};

/// Images in `grid.png`, and per row.
const GRID: (usize, usize) = (64, 8);

/// What the sampler needs of a trained model: its net, target, schedule and data facts.
struct Trained {
    /// Holds the net's parameters.
    _vs: VarStore,
    net: Box<dyn Denoiser>,
    target: Target,
    schedule: Schedule,
    /// `[channels, height, width]`.
    shape: [i64; 3],
    num_classes: i64,
    /// What the log should say about how the net is used (a longer time table).
    notes: Vec<String>,
}

/// Runs the stage.
///
/// # Errors
/// An unreadable model folder, a parameter the model cannot take (steps beyond its
/// schedule, guidance on an unconditional model, a label beyond its classes), or a
/// dataset that cannot be written.
pub fn run(spec: &StageSpec, reporter: &dyn Reporter) -> Result<StageResult, StageError> {
    let p: SampleParams = spec.typed()?;
    let device = if spec.device == "cuda" { Device::Cuda(0) } else { Device::Cpu };
    let trained = load_model(&spec.source_dir(&p.model)?, p.ema, device)?;
    for note in &trained.notes {
        reporter.log(note);
    }
    let cfg = sampler_config(&p);
    let sampler = sampler::build(&cfg, &trained.schedule).map_err(|e| param(&e))?;
    let precision = p.precision.resolve(&spec.device).map_err(|e| StageError::param("precision", e))?;
    let model = GuidedModel::new(trained.net.as_ref(), trained.target, &cfg, Kind::Float)
        .map_err(|e| param(&e))?
        .with_precision(precision);
    let labels = Labels::new(trained.num_classes, p.labels.clone()).map_err(|e| param(&e))?;
    let decoder = load_decoder(spec, &p, &trained, device)?;
    let image_shape = decoder.as_ref().map_or(trained.shape, |(_, vae)| decoded_shape(vae, trained.shape));
    let mut out = Output::create(&spec.out_dir, image_shape, trained.num_classes, p.count)?;
    let batch = usize::try_from(p.batch).map_err(|_| StageError::param("batch", "too large"))?;
    let kind = if device.is_cuda() { Kind::Float } else { Kind::Double };
    let draw_cfg = DrawConfig { seed: p.seed, batch, shape: trained.shape, device, kind };
    let decode = |x: &Tensor| match &decoder {
        Some((_, vae)) => vae.decode(&(x.to_kind(Kind::Float) / vae.config.scaling_factor)),
        None => x.shallow_clone(),
    };
    let started = Instant::now();
    tch::no_grad(|| {
        draw_decoded(sampler.as_ref(), &model, &labels, &draw_cfg, 0..p.count, &decode, |d| {
            out.push(&d)?;
            #[allow(clippy::cast_precision_loss)]
            let rate = (d.start + d.labels.len().max(1) as u64) as f64 / started.elapsed().as_secs_f64().max(1e-9);
            reporter.progress(out.done, p.count, &msnr::run::progress::rate(rate, "img"));
            Ok::<(), StageError>(())
        })
    })?;
    out.finish(&spec.out_dir)?;
    let mut metrics = BTreeMap::new();
    #[allow(clippy::cast_precision_loss)]
    metrics.insert("images".to_string(), p.count as f64);
    #[allow(clippy::cast_precision_loss)]
    metrics.insert("nfe".to_string(), sampler.nfe() as f64);
    Ok(StageResult { metrics, pins: BTreeMap::new() })
}

/// The VAE that decodes a latent model's samples (`vae`, `vae_config`), or `None` for a
/// pixel model.
///
/// # Errors
/// A latent model without `vae`, a `vae` on a pixel model, latent channels that differ,
/// or weights that do not load.
fn load_decoder(
    spec: &StageSpec,
    p: &SampleParams,
    trained: &Trained,
    device: Device,
) -> Result<Option<(VarStore, AutoencoderKL)>, StageError> {
    let channels = trained.shape[0];
    let pixels = matches!(channels, 1 | 3);
    match &p.vae {
        None if pixels => Ok(None),
        None => Err(StageError::param(
            "vae",
            format!("the model has {channels}-channel samples (latents): give the VAE that encoded its data"),
        )),
        Some(_) if pixels && channels != p.vae_config.latent_channels => {
            Err(StageError::param("vae", format!("the model is trained on {channels}-channel images, not latents")))
        }
        Some(source) if channels != p.vae_config.latent_channels => Err(StageError::param(
            "vae_config",
            format!("the VAE decodes {}-channel latents, the model's have {channels}", p.vae_config.latent_channels),
        )),
        Some(source) => load_vae(spec, source, &p.vae_config, device).map(Some),
    }
}

/// `[c, h, w]` of the images `vae` decodes from latents of `latent` `[c, h, w]`.
fn decoded_shape(vae: &AutoencoderKL, latent: [i64; 3]) -> [i64; 3] {
    let f = vae.config.factor();
    [vae.config.image_channels, latent[1] * f, latent[2] * f]
}

/// The library's sampler settings from the stage's parameters.
fn sampler_config(p: &SampleParams) -> SamplerConfig {
    let s = &p.sampler;
    SamplerConfig {
        kind: s.name.parse().unwrap_or_default(),
        steps: usize::try_from(s.steps).unwrap_or(usize::MAX),
        eta: s.eta,
        clip_x0: s.clip,
        guidance: p.guidance,
        guidance_interval: p.interval,
        sigma_min: s.sigma_min,
        sigma_max: s.sigma_max,
        rho: s.rho,
        ..SamplerConfig::default()
    }
}

fn param(e: &sampler::SamplerError) -> StageError {
    match e {
        sampler::SamplerError::Param { param, reason } => {
            StageError::param(&format!("sampler.{param}"), reason.clone())
        }
        sampler::SamplerError::GuidanceUnconditional(_) => StageError::param("guidance", e.to_string()),
        sampler::SamplerError::Label { .. } => StageError::param("labels", e.to_string()),
        sampler::SamplerError::UnknownSampler(_) => StageError::param("sampler", e.to_string()),
    }
}

/// Reads a `train` output folder: `config.json` (the stage's parameters and its data's
/// facts), then the net with `ema.safetensors` or `model.safetensors`.
fn load_model(dir: &Path, ema: bool, device: Device) -> Result<Trained, StageError> {
    let path = dir.join("config.json");
    let bad = |m: String| StageError::param("model", format!("{}: {m}", path.display()));
    msnr::cache::check_stored_file(&path).map_err(|e| StageError::param("model", e.to_string()))?;
    let text = std::fs::read_to_string(&path).map_err(|e| StageError::io(&path, e))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let written: BTreeMap<String, Value> =
        serde_json::from_value(json["params"].clone()).map_err(|e| bad(format!("params: {e}")))?;
    let mut params = defaults_for("train");
    params.extend(written);
    let none = |_: &str| Shape::UNKNOWN;
    let mut r = Reader::new(&params, &none, None);
    let got = TrainParams::read(&mut r);
    let train = r.finish(got).map_err(|errors| bad(format!("{}: {}", errors[0].param, errors[0].message)))?;
    let fact = |key: &str| json["data"][key].as_i64().ok_or_else(|| bad(format!("data.{key} is missing")));
    let shape = [fact("channels")?, fact("height")?, fact("width")?];
    let num_classes = fact("num_classes")?;
    let schedule = train.schedule.build().map_err(|e| bad(e.to_string()))?;
    let steps = i64::try_from(schedule.steps()).map_err(|_| bad("schedule too long".into()))?;
    let ctx = NetContext { image_size: shape[1], channels: shape[0], num_classes, steps };
    let vs = VarStore::new(device);
    let net_spec = NetSpec::new(&train.net, &ctx);
    let net = models::build(vs.root(), &net_spec).map_err(|e| bad(e.to_string()))?;
    let weights = dir.join(if ema { "ema.safetensors" } else { "model.safetensors" });
    load_weights(&vs, &weights).map_err(|e| bad(e.to_string()))?;
    let notes = time_table_note(&net_spec).into_iter().collect();
    Ok(Trained { _vs: vs, net, target: train.target, schedule, shape, num_classes, notes })
}

/// The log line for a ViT whose time table has more rows than the schedule has timesteps
/// (the seed's checkpoints: 4000 rows for T = 1000). Timesteps `0..T` index its first T rows
/// and the rest are never read, as in the seed's `scripts_vit/sampler_edm.py`, which loads
/// the table whole into a 4000-row `VisionTransformer` (zero-padding a shorter one, its
/// "hack for non-consistent time embedding length") and calls it at `c_noise` in `0..M`,
/// M = 1000 (its `Net.forward`).
fn time_table_note(spec: &NetSpec) -> Option<String> {
    let NetSpec::ViT(cfg) = spec else { return None };
    (cfg.time_table_rows() > cfg.steps).then(|| {
        format!(
            "the ViT's time table has {} rows for T = {} timesteps: timesteps 0..{} use its first {} rows and the \
             other {} are never read (as the seed's sampler_edm.py, which loads the same table)",
            cfg.time_table_rows(),
            cfg.steps,
            cfg.steps - 1,
            cfg.steps,
            cfg.time_table_rows() - cfg.steps
        )
    })
}

/// The dataset being written and the images kept for the grid.
struct Output {
    writer: DatasetWriter,
    grid: Vec<Vec<u8>>,
    done: u64,
}

impl Output {
    /// A u8 dataset of `count` images `[c, h, w]` with the model's classes.
    fn create(dir: &Path, shape: [i64; 3], num_classes: i64, count: u64) -> Result<Self, StageError> {
        let dims = shape.map(|d| usize::try_from(d).unwrap_or(0));
        let classes =
            if num_classes > 0 { (0..num_classes).map(|c| c.to_string()).collect() } else { vec!["sample".to_owned()] };
        let failed = |e: msnr::data::DataError| StageError::Failed(format!("writing the samples: {e}"));
        let writer = DatasetWriter::create(dir, dims, DType::U8, classes).map_err(failed)?;
        let count = usize::try_from(count).map_err(|_| StageError::param("count", "too large"))?;
        Ok(Self { writer: writer.expecting(count), grid: Vec::new(), done: 0 })
    }

    fn push(&mut self, d: &Drawn) -> Result<(), StageError> {
        let failed = |e: msnr::data::DataError| StageError::Failed(format!("writing the samples: {e}"));
        let rows = d.images.size()[0];
        for row in 0..rows {
            let label = d.labels.get(usize::try_from(row).unwrap_or(0)).copied().unwrap_or(0);
            let bytes: Vec<u8> = Vec::try_from(d.images.get(row).flatten(0, -1))
                .map_err(|e: tch::TchError| StageError::Failed(e.to_string()))?;
            if self.grid.len() < GRID.0 {
                self.grid.push(bytes.clone());
            }
            self.writer.push(&bytes, label).map_err(failed)?;
            self.done += 1;
        }
        Ok(())
    }

    fn finish(self, dir: &Path) -> Result<(), StageError> {
        let manifest = self.writer.manifest().clone();
        self.writer.finish().map_err(|e| StageError::Failed(format!("writing the samples: {e}")))?;
        if !self.grid.is_empty() {
            write_grid(&dir.join("grid.png"), &self.grid, manifest.channels, manifest.height, manifest.width)?;
        }
        Ok(())
    }
}

/// `images` (CHW bytes, 1 or 3 channels) tiled 8 per row with 2-pixel black borders (as
/// torchvision's `make_grid` pads), as an 8-bit PNG (gray or RGB).
fn write_grid(path: &Path, images: &[Vec<u8>], c: usize, h: usize, w: usize) -> Result<(), StageError> {
    let (cols, pad) = (GRID.1.min(images.len()), 2);
    let rows = images.len().div_ceil(cols);
    let (gw, gh) = (cols * (w + pad) + pad, rows * (h + pad) + pad);
    let mut pixels = vec![0u8; gw * gh * c];
    for (k, image) in images.iter().enumerate() {
        let (x0, y0) = (pad + (k % cols) * (w + pad), pad + (k / cols) * (h + pad));
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    pixels[((y0 + y) * gw + x0 + x) * c + ch] = image[(ch * h + y) * w + x];
                }
            }
        }
    }
    let color = if c == 1 { image::ExtendedColorType::L8 } else { image::ExtendedColorType::Rgb8 };
    let dims = (u32::try_from(gw).unwrap_or(u32::MAX), u32::try_from(gh).unwrap_or(u32::MAX));
    image::save_buffer(path, &pixels, dims.0, dims.1, color)
        .map_err(|e| StageError::Failed(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_tiles_images_with_borders() {
        let dir = tempfile::tempdir().unwrap();
        let images: Vec<Vec<u8>> = (0..3u8).map(|k| vec![50 * (k + 1); 4]).collect();
        write_grid(&dir.path().join("g.png"), &images, 1, 2, 2).unwrap();
        let png = image::open(dir.path().join("g.png")).unwrap().to_luma8();
        assert_eq!(png.dimensions(), (3 * 4 + 2, 4 + 2));
        assert_eq!((png.get_pixel(2, 2)[0], png.get_pixel(6, 3)[0], png.get_pixel(0, 0)[0]), (50, 100, 0));
    }
}
