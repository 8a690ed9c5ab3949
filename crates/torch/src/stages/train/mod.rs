//! The `train` stage: diffusion training of a ViT or ADM UNet on a dataset
//! artifact, with the Min-SNR-gamma weighting (Hang et al., ICCV 2023) and its
//! peers as a parameter. Runs in the worker (libtorch).
//!
//! One step (guided-diffusion's `training_losses` with the seed repo's
//! weighting): draw a batch (optional flip, label dropout), `t ~ U{0..T-1}`,
//! `eps ~ N(0, I)`, `x_t = alpha_t x0 + sigma_t eps`; loss = batch mean of
//! `factor(t) * mean((net(x_t, t, y) - target)^2)`; backward, clip, AdamW, EMA.
//! Every random draw of step `k` comes from a generator seeded with (seed, k),
//! so a run resumed from a checkpoint continues bit for bit on CPU.

pub mod autocast;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod ddp;
pub mod loader;
pub mod log;
pub mod stream;

use std::collections::BTreeMap;
use std::time::Instant;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use self::checkpoint::Parts;
use self::config::{Precision, TrainConfig};
use self::ddp::Group;
use self::loader::{Run, TrainLoader};
use self::log::{Log, Sums};
use crate::diffusion::ema::Ema;
use crate::diffusion::flat::FlatParams;
use crate::diffusion::loss::{loss, LossTerms};
use crate::diffusion::models::{self, Denoiser, NetContext, NetSpec};
use crate::diffusion::optimizer::AdamW;
use crate::diffusion::scaler::LossScaler;
use crate::diffusion::schedule::{OnDevice, ScheduleTensors};
use crate::diffusion::target::{q_sample, TargetOps};
use crate::diffusion::timesteps::TimestepSampler;
use crate::diffusion::weighting::FactorTable;
use msnr::stages::{Reporter, StageError, StageResult, StageSpec};

/// Runs the stage: trains, checkpointing into the work folder, and writes
/// `model.safetensors`, `ema.safetensors`, `config.json` and `log.jsonl`.
///
/// # Errors
/// A bad parameter, unreadable data, a net that cannot take the data, or a
/// non-finite loss (naming the step and the last finite loss).
pub fn run(spec: &StageSpec, reporter: &dyn Reporter) -> Result<StageResult, StageError> {
    let cfg = TrainConfig::from_spec(spec)?;
    let cuda = spec.device == "cuda";
    if cuda && !tch::Cuda::is_available() {
        return Err(StageError::Failed(
            "device is cuda, but libtorch finds no usable CUDA device (no NVIDIA driver, or a GPU \
             it cannot use); unset MSNR_DEVICE=cuda or set the stage's device = cpu"
                .into(),
        ));
    }
    let group = Group::join(cfg.devices, cuda)?;
    let lead = group.as_ref().is_none_or(Group::is_lead);
    let device = ddp::device(cuda, group.as_ref());
    let run = Run { device, batch: cfg.batch, end: cfg.steps };
    let data = TrainLoader::open(&spec.source_dir(&cfg.data)?, cfg.loader, run, reporter)?;
    let mut state = State::new(&cfg, &data, device)?;
    let start = match checkpoint::load(&spec.work_dir, &mut state.parts())? {
        Some(step) => {
            reporter.log(&format!("resuming from the checkpoint at step {step}"));
            step
        }
        None => continue_shorter(spec, &cfg, &data, &mut state, lead, reporter)?,
    };
    let State { mut vs, net, params, mut opt, mut ema, scaler, sums } = state;
    let (net, params, ranks) = (net.as_ref(), &params, group.as_ref());
    let mut trainer =
        Trainer { cfg: &cfg, data: &data, net, params, device, scaler, group: ranks, started: Instant::now() };
    // Ranks > 0 keep their (identical) log apart: only rank 0 writes into the work folder.
    let log_dir = if lead { spec.work_dir.clone() } else { spec.work_dir.join(format!("rank{}", ddp_rank(ranks))) };
    std::fs::create_dir_all(&log_dir).map_err(|e| StageError::io(&log_dir, e))?;
    let mut log = Log::open(&log_dir, start, sums)?;
    let last = trainer.train(start, &mut opt, &mut ema, &mut log, spec, &mut vs, reporter)?;
    if !lead {
        return Ok(StageResult { metrics: BTreeMap::new(), pins: BTreeMap::new() });
    }
    write_outputs(spec, &vs, params, &ema, &data, &log)?;
    if let Some(dir) = &spec.state_dir {
        // The final state, kept beside the entry: a longer run of this configuration starts here.
        let mut sums = log.sums();
        let parts = Parts { vs: &mut vs, opt: &mut opt, ema: &mut ema, scaler: &mut trainer.scaler, log: &mut sums };
        std::fs::create_dir_all(dir).map_err(|e| StageError::io(dir, e))?;
        checkpoint::save(dir, cfg.steps, &parts)?;
    }
    let mut metrics = BTreeMap::new();
    metrics.insert("loss".to_string(), last);
    #[allow(clippy::cast_precision_loss)]
    metrics.insert("parameters".to_string(), params.numel() as f64);
    #[allow(clippy::cast_precision_loss)]
    metrics.insert("steps".to_string(), cfg.steps as f64);
    if let Some(group) = group {
        group.finish()?;
    }
    Ok(StageResult { metrics, pins: BTreeMap::new() })
}

fn ddp_rank(group: Option<&Group>) -> usize {
    group.map_or(0, Group::rank)
}

/// The training state before the first step: the net, its flat parameters, the optimizer,
/// the EMA, the loss scaler and the log's sums, freshly initialized from the seed.
struct State {
    vs: VarStore,
    net: Box<dyn Denoiser>,
    params: FlatParams,
    opt: AdamW,
    ema: Ema,
    scaler: Option<LossScaler>,
    sums: Sums,
}

impl State {
    fn new(cfg: &TrainConfig, data: &TrainLoader, device: Device) -> Result<Self, StageError> {
        let vs = VarStore::new(device);
        let net = build_net(cfg, data, &vs)?;
        let params = FlatParams::new(&vs).map_err(|e| StageError::Failed(e.to_string()))?;
        let opt = AdamW::new(&params, cfg.adamw);
        let ema = Ema::new(&params, cfg.ema, cfg.ema_warmup);
        let scaler = (cfg.precision == Precision::Fp16).then(LossScaler::default);
        Ok(Self { vs, net, params, opt, ema, scaler, sums: Sums::default() })
    }

    fn parts(&mut self) -> Parts<'_> {
        Parts {
            vs: &mut self.vs,
            opt: &mut self.opt,
            ema: &mut self.ema,
            scaler: &mut self.scaler,
            log: &mut self.sums,
        }
    }
}

/// Starts from the final state of the stored shorter run the runner found
/// ([`StageSpec::continue_from`]), if any: loads its checkpoint and its log, and returns its
/// step. That run's last log record must fall on a `log_every` boundary (a run whose length
/// is not a multiple of `log_every` logged a partial record a longer run would not have), or
/// the result would differ from a run from scratch; then, and when its state cannot be read,
/// this run starts from scratch, saying why.
fn continue_shorter(
    spec: &StageSpec,
    cfg: &TrainConfig,
    data: &TrainLoader,
    state: &mut State,
    lead: bool,
    reporter: &dyn Reporter,
) -> Result<u64, StageError> {
    let Some(from) = &spec.continue_from else { return Ok(0) };
    if from.step % cfg.log_every != 0 {
        reporter.log(&format!(
            "not continuing `{}`: its {} steps are not a multiple of log_every = {}; training from scratch",
            from.name, from.step, cfg.log_every
        ));
        return Ok(0);
    }
    let loaded = checkpoint::load(&from.state_dir, &mut state.parts()).and_then(|step| {
        let log = spec.work_dir.join("log.jsonl");
        if lead {
            std::fs::copy(from.out_dir.join("log.jsonl"), &log).map_err(|e| StageError::io(&log, e))?;
        }
        Ok(step)
    });
    match loaded {
        Ok(Some(step)) if step == from.step => {
            reporter.log(&format!("continuing `{}` from step {step}", from.name));
            Ok(step)
        }
        other => {
            let why = match other {
                Err(e) => e.to_string(),
                Ok(step) => format!("its state is at step {step:?}, not {}", from.step),
            };
            reporter.log(&format!("not continuing `{}` ({why}); training from scratch", from.name));
            if lead {
                let _ = std::fs::remove_file(spec.work_dir.join("log.jsonl"));
            }
            *state = State::new(cfg, data, state.vs.device())?;
            Ok(0)
        }
    }
}

/// Builds the net for the data's shape, seeded with the stage's seed.
fn build_net(cfg: &TrainConfig, data: &TrainLoader, vs: &VarStore) -> Result<Box<dyn Denoiser>, StageError> {
    let [channels, h, w] = data.shape;
    if h != w {
        return Err(StageError::param("data", format!("the nets take square images; the data is {h}x{w}")));
    }
    let steps = i64::try_from(cfg.schedule.steps()).expect("schedule length fits i64");
    let ctx = NetContext { image_size: h, channels, num_classes: data.num_classes, steps };
    let model_err = |e: models::ModelError| {
        let (param, message) = e.into_param();
        StageError::param(&param, message)
    };
    let spec = NetSpec::new(&cfg.net, &ctx);
    tch::manual_seed(seed_i64(cfg.seed));
    models::build(vs.root(), &spec).map_err(model_err)
}

/// The training loop's fixed inputs.
struct Trainer<'a> {
    cfg: &'a TrainConfig,
    data: &'a TrainLoader,
    net: &'a dyn Denoiser,
    params: &'a FlatParams,
    device: Device,
    /// Loss scaling when training in float16.
    scaler: Option<LossScaler>,
    /// The data-parallel group, if `devices > 1`.
    group: Option<&'a Group>,
    started: Instant,
}

/// The losses, timesteps and unweighted MSEs of the steps since the last drain, kept on the
/// device so that a step never waits for the GPU: they are read (one transfer each), checked
/// and logged every [`Pending::MAX_STEPS`] steps at most, and always before a log record or a
/// checkpoint, so a non-finite loss still stops the stage, naming its step, before anything
/// of it is saved.
#[derive(Default)]
struct Pending {
    /// The first pending step (0-based).
    first: u64,
    loss: Vec<Tensor>,
    t: Vec<Tensor>,
    mse: Vec<Tensor>,
}

impl Pending {
    /// Steps kept before they are read anyway (bounds the device memory they hold).
    const MAX_STEPS: usize = 64;

    fn len(&self) -> usize {
        self.loss.len()
    }

    fn push(&mut self, step: u64, terms: &LossTerms, t: &Tensor) {
        if self.loss.is_empty() {
            self.first = step;
        }
        self.loss.push(terms.loss.detach());
        self.t.push(t.shallow_clone());
        self.mse.push(terms.mse.detach());
    }

    /// Reads the pending steps into `log` in order.
    ///
    /// # Errors
    /// The first non-finite loss, naming its (1-based) step and the last finite loss before it.
    fn drain(&mut self, log: &mut Log, steps_total: usize, group: Option<&Group>) -> Result<(), StageError> {
        if self.loss.is_empty() {
            return Ok(());
        }
        let stack = |parts: &[Tensor]| Tensor::stack(parts, 0).to_kind(Kind::Double);
        let (losses, ts, mses) = (stack(&self.loss), stack(&self.t), stack(&self.mse));
        // Data-parallel: the global batch's mean loss and every example's timestep and MSE.
        let (losses, ts, mses) = match group {
            Some(g) => (g.mean(&losses).map(|()| losses)?, g.gather_columns(&ts)?, g.gather_columns(&mses)?),
            None => (losses, ts, mses),
        };
        let losses = Vec::<f64>::try_from(losses.to_device(Device::Cpu)).unwrap_or_default();
        let (ts, mses) = (ts.to_kind(Kind::Int64).to_device(Device::Cpu), mses.to_device(Device::Cpu));
        for (i, &value) in losses.iter().enumerate() {
            if !value.is_finite() {
                return Err(StageError::Failed(format!(
                    "the loss became {value} at step {}; last finite loss: {}",
                    self.first + i as u64 + 1,
                    last_loss(log)
                )));
            }
            let row = i64::try_from(i).unwrap_or(i64::MAX);
            let t = Vec::<i64>::try_from(ts.get(row)).unwrap_or_default();
            let mse = Vec::<f64>::try_from(mses.get(row)).unwrap_or_default();
            log.add(value, &t, &mse, steps_total);
        }
        *self = Self::default();
        Ok(())
    }
}

/// The log's last finite loss, for error messages.
fn last_loss(log: &Log) -> String {
    log.last_loss().map_or_else(|| "none yet".to_string(), |v| format!("{v:.6}"))
}

/// One step's random draws.
struct Batch {
    x0: Tensor,
    y: Option<Tensor>,
    t: Tensor,
    eps: Tensor,
}

impl Trainer<'_> {
    /// Steps `start..steps`; returns the last logged loss.
    #[allow(clippy::too_many_arguments)]
    fn train(
        &mut self,
        start: u64,
        opt: &mut AdamW,
        ema: &mut Ema,
        log: &mut Log,
        spec: &StageSpec,
        vs: &mut VarStore,
        reporter: &dyn Reporter,
    ) -> Result<f64, StageError> {
        let schedule = self.cfg.schedule.to_device(self.device);
        let factors = FactorTable::new(&self.cfg.schedule, self.cfg.target, self.cfg.weighting).to_device(self.device);
        let mut last_logged = f64::NAN;
        let mut pending = Pending::default();
        for step in start..self.cfg.steps {
            let batch = self.draw(step)?;
            let (terms, apply) = self.step(&schedule, &factors, &batch)?;
            pending.push(step, &terms, &batch.t);
            // A float16 step with overflowing gradients is skipped (the scaler backs off).
            let lr = if apply { opt.step(self.params) } else { opt.lr_at(opt.step_count() + 1) };
            if apply {
                ema.update(self.params);
            }
            let done = step + 1;
            let log_now = done % self.cfg.log_every == 0 || done == self.cfg.steps;
            let checkpoint_now = done % self.cfg.checkpoint_every == 0 && done < self.cfg.steps;
            if log_now || checkpoint_now || pending.len() >= Pending::MAX_STEPS {
                pending.drain(log, self.cfg.schedule.steps(), self.group)?;
                // A finite loss can still come with non-finite gradients (no loss scaler to
                // skip them): never log, checkpoint or write such weights.
                if !self.params_finite() {
                    return Err(StageError::Failed(format!(
                        "the parameters became non-finite by step {done}; last finite loss: {}",
                        last_loss(log)
                    )));
                }
            }
            if log_now {
                last_logged = log.flush(done, lr)?.loss;
                self.report(done, start, last_logged, reporter);
            }
            if checkpoint_now && self.group.is_none_or(Group::is_lead) {
                let mut sums = log.sums();
                let parts = Parts { vs, opt, ema, scaler: &mut self.scaler, log: &mut sums };
                checkpoint::save(&spec.work_dir, done, &parts)?;
            }
        }
        Ok(last_logged)
    }

    /// Forward, loss, backward (loss-scaled in float16), clipping; returns the loss terms
    /// (still on the device: nothing here waits for the GPU, except float16's overflow check)
    /// and whether the optimizer may step (false when float16 gradients overflowed).
    fn step(
        &mut self,
        schedule: &ScheduleTensors,
        factors: &Tensor,
        b: &Batch,
    ) -> Result<(LossTerms, bool), StageError> {
        // The last step's gradients go before the forward pass, so they never share memory with
        // its activations.
        self.params.clear_grads();
        let x_t = q_sample(schedule, &b.x0, &b.eps, &b.t);
        let target = self.cfg.target.target(schedule, &b.x0, &b.eps, &b.t);
        let pred = autocast::forward(self.cfg.precision, || self.net.forward_t(&x_t, &b.t, b.y.as_ref(), true));
        let terms = loss(&pred, &target, &b.t, factors).map_err(|e| StageError::Failed(e.to_string()))?;
        if let Some(group) = self.group {
            group.before_backward(self.params)?;
        }
        match &self.scaler {
            Some(scaler) => scaler.scale_loss(&terms.loss).backward(),
            None => terms.loss.backward(),
        }
        match self.group {
            Some(group) => group.after_backward(self.params)?,
            None => self.params.attach_grads(),
        }
        let mut apply = true;
        if let Some(scaler) = &mut self.scaler {
            apply = scaler.unscale(self.params);
        }
        if apply && self.cfg.grad_clip > 0.0 {
            let _ = self.params.clip_grad_norm(self.cfg.grad_clip);
        }
        Ok((terms, apply))
    }

    /// Whether every trainable parameter is finite (one reduction; waits for the device).
    fn params_finite(&self) -> bool {
        tch::no_grad(|| self.params.data().isfinite().all().int64_value(&[]) != 0)
    }

    /// Step `k`'s batch, timesteps and noise, all from the generator seeded with (seed, k):
    /// data-parallel ranks draw the same global batch and keep their shard of it.
    fn draw(&self, step: u64) -> Result<Batch, StageError> {
        let seed = mix(self.cfg.seed, step);
        let (n, b, dev) = (self.data.len(), self.cfg.batch, self.device);
        let indices = |k: u64| {
            tch::manual_seed(seed_i64(generator_seed(self.cfg.seed, k)));
            Tensor::randint(n, [b], (Kind::Int64, dev))
        };
        let (mut x0, labels) = self.data.batch(step, &indices)?;
        if self.cfg.flip {
            let flip = Tensor::rand([b, 1, 1, 1], (Kind::Float, dev)).lt(0.5);
            x0 = x0.flip([3]).where_self(&flip, &x0);
        }
        let y = (self.net.num_classes() > 0).then(|| {
            let y = labels;
            let drop = Tensor::rand([b], (Kind::Float, dev)).lt(self.cfg.label_dropout);
            // A net without the null label's row trains without dropout (the checker refuses
            // dropout there), so nothing is dropped.
            match self.net.null_label() {
                Some(null) => y.masked_fill(&drop, null),
                None => y,
            }
        });
        let t =
            TimestepSampler::new(self.cfg.schedule.steps(), mix(seed, 1)).sample(usize::try_from(b).unwrap_or(1), dev);
        let eps = x0.randn_like();
        if let Some(group) = self.group {
            // The forward's own draws (dropout) differ between ranks, as each example's would.
            tch::manual_seed(seed_i64(mix(seed, 2 + u64::try_from(group.rank()).unwrap_or(0))));
            let (x0, t, eps) = (group.shard(&x0), group.shard(&t), group.shard(&eps));
            return Ok(Batch { x0, y: y.map(|y| group.shard(&y)), t, eps });
        }
        Ok(Batch { x0, y, t, eps })
    }

    #[allow(clippy::cast_precision_loss)]
    fn report(&self, done: u64, start: u64, loss: f64, reporter: &dyn Reporter) {
        let rate = (done - start) as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        reporter.progress(
            done,
            self.cfg.steps,
            &format!("loss {loss:.4}, {}", msnr::run::progress::rate(rate, "step")),
        );
    }
}

/// Writes the model artifact: raw and EMA weights (same names, so either loads
/// into the net), the resolved configuration, and the training log.
fn write_outputs(
    spec: &StageSpec,
    vs: &VarStore,
    params: &FlatParams,
    ema: &Ema,
    data: &TrainLoader,
    log: &Log,
) -> Result<(), StageError> {
    let out = &spec.out_dir;
    let failed =
        |what: &str, e: &dyn std::fmt::Display| StageError::Failed(format!("writing {what} in {}: {e}", out.display()));
    vs.save(out.join("model.safetensors")).map_err(|e| failed("model.safetensors", &e))?;
    let shadow = params.named_views(ema.shadow());
    Tensor::write_safetensors(&shadow, out.join("ema.safetensors")).map_err(|e| failed("ema.safetensors", &e))?;
    // Execution-only parameters (the loader) are not part of the result, nor is `devices = 1`
    // (left out of the key too: one-device artifacts keep the bytes they had before it existed).
    let one_device = |name: &str, v: &msnr::lang::Value| name == "devices" && v.as_int() == Some(1);
    let params: BTreeMap<&String, &msnr::lang::Value> = spec
        .params
        .iter()
        .filter(|(name, v)| !msnr::stages::kinds::execution_only("train", name) && !one_device(name, v))
        .collect();
    let config = serde_json::json!({
        "params": params,
        "data": { "channels": data.shape[0], "height": data.shape[1], "width": data.shape[2], "num_classes": data.num_classes },
    });
    let text = serde_json::to_string_pretty(&config).expect("config serializes");
    std::fs::write(out.join("config.json"), text).map_err(|e| StageError::io(out.join("config.json"), e))?;
    std::fs::copy(log.path(), out.join("log.jsonl")).map_err(|e| StageError::io(log.path(), e))?;
    Ok(())
}

/// SplitMix64's finalizer over `seed` and `k`: independent streams per step.
fn mix(seed: u64, k: u64) -> u64 {
    let mut z = seed ^ k.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Step `k`'s seed for libtorch's generator: mixed high bits over low 32 bits that differ for
/// every step (within 2^32 steps). The CPU generator, an mt19937, keeps only the low 32 bits of
/// its seed, so fully mixed seeds would collide by the birthday bound: about 29 pairs of steps
/// with the same batch, flips, label drops and noise in a 500k-step run.
#[allow(clippy::cast_possible_truncation)] // the low 32 bits are the point
fn generator_seed(seed: u64, k: u64) -> u64 {
    let low = (mix(seed, u64::MAX) as u32).wrapping_add(k as u32);
    (mix(seed, k) & !0xffff_ffff) | u64::from(low)
}

fn seed_i64(seed: u64) -> i64 {
    i64::from_ne_bytes(seed.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_step_seeds_the_cpu_generator_differently() {
        for seed in [0, 1, 42, u64::MAX] {
            let low: HashSet<u32> =
                (0..200_000).map(|k| u32::try_from(generator_seed(seed, k) & 0xffff_ffff).unwrap()).collect();
            assert_eq!(low.len(), 200_000, "seed {seed}: the low 32 bits (all an mt19937 keeps) repeat");
        }
        // Fully mixed 64-bit seeds, as before, repeat their low 32 bits within 200k steps.
        let mixed: HashSet<u64> = (0..200_000).map(|k| mix(0, k) & 0xffff_ffff).collect();
        assert!(mixed.len() < 200_000);
        assert_ne!(generator_seed(0, 5), generator_seed(1, 5), "the run's seed matters");
    }
}
