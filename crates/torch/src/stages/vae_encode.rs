//! The `vae_encode` stage: a dataset of u8 images through Stable Diffusion's VAE encoder
//! ([`AutoencoderKL`]) into a dataset of float32 latents times the scaling factor, labels
//! kept, plus `vae.json` (the VAE's configuration). The posterior mean, or a draw whose
//! noise for item `i` depends only on `(seed, i)`; with `flip`, item `count + i` is item
//! `i` flipped horizontally. Shard by shard and batch by batch: memory is bounded by a
//! source shard and a batch, and the latents stream to their shards as they come.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::fid::single_file;
use crate::diffusion::models::AutoencoderKL;
use crate::diffusion::sampler::ImageNoise;
use msnr::data::{DType, Dataset, DatasetWriter, Images};
use msnr::nets::VaeConfig;
use msnr::stages::params::Source;
use msnr::stages::vae_encode::{PosteriorChoice, VaeEncodeParams};
use msnr::stages::{Reporter, StageError, StageResult, StageSpec};

/// The file the VAE's configuration is written to, beside the latents.
pub const VAE_JSON: &str = "vae.json";

/// Runs the stage.
///
/// # Errors
/// Unreadable or unmatched weights, images the VAE cannot encode, or a dataset that
/// cannot be read or written.
pub fn run(spec: &StageSpec, reporter: &dyn Reporter) -> Result<StageResult, StageError> {
    let p: VaeEncodeParams = spec.typed()?;
    let device = if spec.device == "cuda" { Device::Cuda(0) } else { Device::Cpu };
    let (_vs, vae) = load_vae(spec, &p.vae, &p.config, device)?;
    let source = open_images(&spec.source_dir(&p.images)?, &p.config)?;
    let passes: &[bool] = if p.flip { &[false, true] } else { &[false] };
    let count = source.manifest().count;
    let mut out = create_output(&spec.out_dir, &source, &p.config, count * passes.len())?;
    let total = (count * passes.len()) as u64;
    let batch = usize::try_from(p.batch).unwrap_or(usize::MAX);
    let started = Instant::now();
    let shape = item_shape(&source);
    let mut done = 0u64;
    for &flip in passes {
        let mut first = if flip { count as u64 } else { 0 };
        for shard in 0..source.manifest().shards.len() {
            let items = source.read_shard(shard).map_err(|e| StageError::param("images", e.to_string()))?;
            let Images::U8(bytes) = &items.images else { unreachable!("checked by open_images") };
            for (chunk, labels) in bytes.chunks(batch * source.manifest().item_len()).zip(items.labels.chunks(batch)) {
                let latents = encode(&vae, &p, &Batch { bytes: chunk, shape, flip, first }, device);
                push(&mut out, &latents, labels)?;
                first += labels.len() as u64;
                done += labels.len() as u64;
                #[allow(clippy::cast_precision_loss)]
                let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
                reporter.progress(done, total, &format!("{rate:.1} images/s"));
            }
        }
    }
    out.finish().map_err(|e| StageError::Failed(format!("writing the latents: {e}")))?;
    write_config(&spec.out_dir, &p.config)?;
    let mut metrics = BTreeMap::new();
    #[allow(clippy::cast_precision_loss)]
    metrics.insert("latents".to_owned(), done as f64);
    Ok(StageResult { metrics, pins: BTreeMap::new() })
}

/// The VAE of `config` with the weights `source` names (a safetensors file, or a folder
/// holding `diffusion_pytorch_model.safetensors` or one `.safetensors` file).
///
/// # Errors
/// A missing or unreadable file, or weights that do not match `config`, against `vae`.
pub fn load_vae(
    spec: &StageSpec,
    source: &Source,
    config: &VaeConfig,
    device: Device,
) -> Result<(VarStore, AutoencoderKL), StageError> {
    let dir = spec.source_dir(source)?;
    let diffusers = dir.join("diffusion_pytorch_model.safetensors");
    let path = if diffusers.is_file() { diffusers } else { single_file(&dir, &["safetensors"])? };
    AutoencoderKL::load(&path, config, device).map_err(|e| StageError::param("vae", e.to_string()))
}

/// The source dataset, if the VAE can encode its items.
fn open_images(dir: &Path, config: &VaeConfig) -> Result<Dataset, StageError> {
    let data = Dataset::open(dir).map_err(|e| StageError::param("images", e.to_string()))?;
    let m = data.manifest();
    if m.dtype != DType::U8 {
        return Err(StageError::param("images", "expected 8-bit images, found a float dataset (latents?)"));
    }
    let fact = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    config
        .check_images(Some(fact(m.channels)), Some((fact(m.height), fact(m.width))))
        .map_err(|e| StageError::param("images", e))?;
    Ok(data)
}

/// `[c, h, w]` of the source's items.
fn item_shape(source: &Dataset) -> [i64; 3] {
    let m = source.manifest();
    [m.channels, m.height, m.width].map(|d| i64::try_from(d).unwrap_or(i64::MAX))
}

fn create_output(dir: &Path, source: &Dataset, config: &VaeConfig, count: usize) -> Result<DatasetWriter, StageError> {
    let m = source.manifest();
    let f = usize::try_from(config.factor()).unwrap_or(1);
    let latent = usize::try_from(config.latent_channels).unwrap_or(0);
    DatasetWriter::create(dir, [latent, m.height / f, m.width / f], DType::F32, m.classes.clone())
        .map(|w| w.expecting(count))
        .map_err(|e| StageError::Failed(format!("writing the latents: {e}")))
}

/// One batch of source items.
struct Batch<'a> {
    /// `n * c * h * w` bytes.
    bytes: &'a [u8],
    /// `[c, h, w]` of an item.
    shape: [i64; 3],
    /// Flip each image horizontally before encoding.
    flip: bool,
    /// The output index of the first item (keys its noise).
    first: u64,
}

/// The scaled latents of a batch, `[n, latent, h/f, w/f]` float32 on the CPU: images
/// from `[0, 255]` to `[-1, 1]` (`x / 127.5 - 1`, as `train` scales them), encoded, the
/// mean or `mean + std * noise`, times `scaling_factor`.
fn encode(vae: &AutoencoderKL, p: &VaeEncodeParams, batch: &Batch<'_>, device: Device) -> Tensor {
    let [channels, height, width] = batch.shape;
    let x = Tensor::from_slice(batch.bytes).view([-1, channels, height, width]).to_device(device);
    let x = x.to_kind(Kind::Float) / 127.5 - 1.0;
    let x = if batch.flip { x.flip([3]) } else { x };
    let posterior = tch::no_grad(|| vae.encode(&x));
    let z = match p.posterior {
        PosteriorChoice::Mean => posterior.mean,
        PosteriorChoice::Draw { seed } => {
            let rows = u64::try_from(x.size()[0]).unwrap_or(0);
            let noise = ImageNoise { seed, ids: batch.first..batch.first + rows };
            let shape = posterior.mean.size();
            posterior.sample(&noise.initial(&shape[1..]).to_kind(Kind::Float).to_device(device))
        }
    };
    (z * p.config.scaling_factor).to_device(Device::Cpu)
}

fn push(out: &mut DatasetWriter, latents: &Tensor, labels: &[i64]) -> Result<(), StageError> {
    let values: Vec<f32> =
        Vec::try_from(latents.flatten(0, -1)).map_err(|e: tch::TchError| StageError::Failed(e.to_string()))?;
    let per_item = values.len() / labels.len().max(1);
    for (item, &label) in values.chunks(per_item).zip(labels) {
        out.push_f32(item, label).map_err(|e| StageError::Failed(format!("writing the latents: {e}")))?;
    }
    Ok(())
}

/// `vae.json`: the configuration that made the latents (for people and later stages).
fn write_config(dir: &Path, config: &VaeConfig) -> Result<(), StageError> {
    let path = dir.join(VAE_JSON);
    let text = serde_json::to_string_pretty(config).map_err(|e| StageError::Failed(e.to_string()))?;
    std::fs::write(&path, text + "\n").map_err(|e| StageError::io(&path, e))
}

#[cfg(test)]
mod tests {
    use tch::nn::VarStore;

    use super::*;

    fn params(posterior: PosteriorChoice) -> VaeEncodeParams {
        let config = VaeConfig {
            block_out_channels: vec![8, 8],
            layers_per_block: 1,
            norm_num_groups: 4,
            ..VaeConfig::default()
        };
        VaeEncodeParams {
            images: Source::Path(".".into()),
            vae: Source::Path(".".into()),
            config,
            posterior,
            flip: false,
            batch: 4,
        }
    }

    /// Items 1..4 encoded in one batch and as a batch starting at item 2.
    fn latents(p: &VaeEncodeParams, flip: bool) -> (Tensor, Tensor) {
        tch::manual_seed(0);
        let vs = VarStore::new(Device::Cpu);
        let vae = AutoencoderKL::new(&vs.root(), &p.config);
        let bytes: Vec<u8> = (0..4 * 3 * 4 * 4).map(|i| u8::try_from(i * 7 % 256).unwrap()).collect();
        let shape = [3, 4, 4];
        let all = encode(&vae, p, &Batch { bytes: &bytes, shape, flip, first: 0 }, Device::Cpu);
        let tail = encode(&vae, p, &Batch { bytes: &bytes[2 * 48..], shape, flip, first: 2 }, Device::Cpu);
        (all, tail)
    }

    #[test]
    fn a_draw_depends_on_the_item_not_the_batch() {
        let (all, tail) = latents(&params(PosteriorChoice::Draw { seed: 5 }), false);
        assert_eq!(all.size(), [4, 4, 2, 2]);
        assert!(all.narrow(0, 2, 2).allclose(&tail, 1e-6, 1e-6, false));
        let (mean, _) = latents(&params(PosteriorChoice::Mean), false);
        assert!(!mean.allclose(&all, 1e-3, 1e-3, false), "a draw is not the mean");
    }

    #[test]
    fn the_mean_is_scaled_and_flips_change_it() {
        let p = params(PosteriorChoice::Mean);
        let (mean, tail) = latents(&p, false);
        assert!(mean.narrow(0, 2, 2).allclose(&tail, 1e-6, 1e-6, false));
        let unscaled =
            latents(&VaeEncodeParams { config: VaeConfig { scaling_factor: 1.0, ..p.config.clone() }, ..p }, false);
        assert!((unscaled.0 * 0.18215).allclose(&mean, 1e-6, 1e-6, false));
        let (flipped, _) = latents(&params(PosteriorChoice::Mean), true);
        assert!(!flipped.allclose(&mean, 1e-3, 1e-3, false));
    }
}
