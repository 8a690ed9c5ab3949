//! How `train`'s batches reach the device (the `loader` parameter): resident (the whole
//! dataset on the device, [`TrainData`]: the fastest where it fits) or streamed (a
//! [`Prefetcher`] gathers each step's items from the memory-mapped shards a few steps
//! ahead: memory bounded by the batch and the queue).
//!
//! Both give step `k` the same batch. The indices of step `k` are the first draw of the
//! generator seeded for `k` (`draw(k)`, from the training loop). Streaming draws the indices
//! of steps ahead of training the same way, before the training loop reseeds for its own
//! step, so every later draw of the step (flips, label drops, noise, dropout) sees the
//! generator exactly as in resident mode; the two modes train the same model bit for bit.
//! On CUDA the indices drawn ahead come to the host in chunks of [`CHUNK`] steps, one
//! synchronization each.

use std::cell::Cell;
use std::path::Path;

use tch::{Device, Kind, Tensor};

use super::data::TrainData;
use super::stream::{Prefetcher, Shards};
use msnr::data::reader::Dataset;
use msnr::stages::train::LoaderChoice;
use msnr::stages::{Reporter, StageError};

/// Steps whose indices are drawn ahead at once (on CUDA, one device-to-host copy each).
pub const CHUNK: u64 = 32;

/// The step's indices: the first draw of the generator seeded for that step.
pub type DrawIndices<'a> = &'a dyn Fn(u64) -> Tensor;

/// The training data, resident or streamed.
pub struct TrainLoader {
    /// Channels, height, width.
    pub shape: [i64; 3],
    /// Classes; 0 or 1 class trains an unconditional net.
    pub num_classes: i64,
    len: i64,
    source: Source,
}

enum Source {
    Resident(TrainData),
    Stream(Stream),
}

/// The streaming state: the prefetcher and how far ahead its requests go.
struct Stream {
    prefetcher: Prefetcher,
    device: Device,
    /// Batches kept ahead of training.
    depth: u64,
    /// The last step to ask for (the training's `steps`).
    end: u64,
    /// The first step not yet asked for (`None` before the first batch).
    asked: Cell<Option<u64>>,
    /// Bytes of one batch's items and labels.
    batch_bytes: usize,
    labels_bytes: usize,
}

/// What the loader needs of the training run besides the data.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    /// Where the batches go.
    pub device: Device,
    /// Items per step.
    pub batch: i64,
    /// The step after the last (`steps`).
    pub end: u64,
}

impl TrainLoader {
    /// Opens the dataset at `dir` as `choice` says, logging which loader it uses and why.
    ///
    /// # Errors
    /// An unreadable, corrupted or empty dataset, named.
    pub fn open(dir: &Path, choice: LoaderChoice, run: Run, reporter: &dyn Reporter) -> Result<Self, StageError> {
        let data = Dataset::open(dir).map_err(|e| StageError::param("data", e.to_string()))?;
        let m = data.manifest();
        if m.count == 0 {
            return Err(StageError::param("data", "the dataset is empty"));
        }
        let num_classes = if m.classes.len() > 1 { to_i64(m.classes.len()) } else { 0 };
        let shape = [to_i64(m.channels), to_i64(m.height), to_i64(m.width)];
        let len = to_i64(m.count);
        let bytes = u64::try_from(m.count * m.item_bytes()).unwrap_or(u64::MAX);
        let (stream, why) = decide(choice, bytes, run.device);
        let source = if let Some(depth) = stream {
            reporter.log(&format!("loader: stream, {depth} batches ahead ({why})"));
            let shards = Shards::open(&data).map_err(|e| StageError::param("data", e.to_string()))?;
            Source::Stream(Stream::new(shards, depth, run, m.item_bytes()))
        } else {
            reporter.log(&format!("loader: resident ({why})"));
            Source::Resident(TrainData::load(dir, run.device)?)
        };
        Ok(Self { shape, num_classes, len, source })
    }

    /// Number of items.
    #[must_use]
    pub fn len(&self) -> i64 {
        self.len
    }

    /// True when there are no items (never, after [`TrainLoader::open`]).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether batches are streamed from the shards.
    #[must_use]
    pub fn is_streaming(&self) -> bool {
        matches!(self.source, Source::Stream(_))
    }

    /// Bytes of data the loader holds: the dataset (resident), or the queue's batches, the
    /// one being gathered, the one in use and the labels (streaming).
    #[must_use]
    pub fn held_bytes(&self) -> usize {
        match &self.source {
            Source::Resident(d) => tensor_bytes(&d.images) + tensor_bytes(&d.labels),
            Source::Stream(s) => (usize::try_from(s.depth).unwrap_or(usize::MAX) + 2) * s.batch_bytes + s.labels_bytes,
        }
    }

    /// Step `step`'s items (float32 on the device, images scaled to [-1, 1]) and labels,
    /// at the indices `draw(step)`; called once per step, in order. `draw` seeds the
    /// generator for its step, so the generator is left as `draw(step)` leaves it.
    ///
    /// # Errors
    /// A batch the prefetcher could not gather (the file or index named).
    pub fn batch(&self, step: u64, draw: DrawIndices<'_>) -> Result<(Tensor, Tensor), StageError> {
        match &self.source {
            Source::Resident(data) => {
                let idx = draw(step);
                Ok((data.batch(&idx), data.labels.index_select(0, &idx)))
            }
            Source::Stream(stream) => {
                stream.ask_ahead(step, draw)?;
                let _ = draw(step); // the generator as resident mode leaves it
                stream.take(step)
            }
        }
    }
}

impl Stream {
    fn new(shards: Shards, depth: u64, run: Run, item_bytes: usize) -> Self {
        let labels_bytes = shards.held_bytes();
        let b = usize::try_from(run.batch).unwrap_or(usize::MAX);
        let pin = run.device.is_cuda();
        let prefetcher = Prefetcher::spawn(shards, usize::try_from(depth).unwrap_or(usize::MAX), pin);
        let batch_bytes = b * (item_bytes + std::mem::size_of::<i64>());
        Self { prefetcher, device: run.device, depth, end: run.end, asked: Cell::new(None), batch_bytes, labels_bytes }
    }

    /// Keeps the prefetcher's requests at least `depth` steps ahead of `step`: when they
    /// fall short, asks for the next [`CHUNK`] steps (indices drawn here, one host copy).
    fn ask_ahead(&self, step: u64, draw: DrawIndices<'_>) -> Result<(), StageError> {
        let from = self.asked.get().unwrap_or(step);
        if from > step + self.depth || from >= self.end {
            return Ok(());
        }
        let to = (from + CHUNK.max(self.depth + 1)).min(self.end);
        let rows: Vec<Tensor> = (from..to).map(draw).collect();
        let host = Tensor::stack(&rows, 0).to_device(Device::Cpu);
        let b = host.size()[1];
        let indices = Vec::<i64>::try_from(host.reshape([-1])).map_err(|e| StageError::Failed(e.to_string()))?;
        for (k, row) in (from..to).zip(indices.chunks(usize::try_from(b).unwrap_or(1))) {
            self.prefetcher.request(k, row.to_vec())?;
        }
        self.asked.set(Some(to));
        Ok(())
    }

    /// The gathered batch of `step`, on the device and in the model's range.
    fn take(&self, step: u64) -> Result<(Tensor, Tensor), StageError> {
        let got = self.prefetcher.next()?;
        if got.step != step {
            let message = format!("the prefetcher answered step {} for step {}", got.step + 1, step + 1);
            return Err(StageError::Failed(message));
        }
        let items = got.items.to_device_(self.device, got.items.kind(), true, false);
        let labels = got.labels.to_device_(self.device, Kind::Int64, true, false);
        Ok((to_model_range(items), labels))
    }
}

/// Items as float32 in the model's range: `uint8` images scaled from 0..255 to [-1, 1],
/// latents as stored (the same arithmetic as [`TrainData::batch`]).
fn to_model_range(items: Tensor) -> Tensor {
    if items.kind() == Kind::Uint8 {
        items.to_kind(Kind::Float) / 127.5 - 1.0
    } else {
        items
    }
}

/// The loader for `choice` and a dataset of `bytes`: `Some(depth)` to stream with `depth`
/// batches ahead, `None` for resident; and why, for the log.
fn decide(choice: LoaderChoice, bytes: u64, device: Device) -> (Option<u64>, String) {
    const AUTO_DEPTH: u64 = 4;
    let size = human(bytes);
    match choice {
        LoaderChoice::Resident => (None, "loader = resident".into()),
        LoaderChoice::Stream { prefetch } => (Some(prefetch), "loader = stream".into()),
        LoaderChoice::Auto { share } => {
            let (memory, of) = if device.is_cuda() {
                (crate::shim::cuda_free_memory(), "the GPU's free memory")
            } else {
                (host_available_memory(), "the host's available memory")
            };
            let percent = share * 100.0;
            #[allow(clippy::cast_precision_loss)] // a budget, not an exact count
            let fits = memory.map(|memory| (bytes as f64 <= share * memory as f64, human(memory)));
            match fits {
                Some((true, memory)) => (None, format!("auto: the dataset's {size} fit {percent}% of {of}, {memory}")),
                Some((false, memory)) => {
                    (Some(AUTO_DEPTH), format!("auto: the dataset's {size} exceed {percent}% of {of}, {memory}"))
                }
                None => (Some(AUTO_DEPTH), format!("auto: {of} is unknown, the dataset takes {size}")),
            }
        }
    }
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn host_available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `bytes` in GiB or MiB, for messages.
#[allow(clippy::cast_precision_loss)]
fn human(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

fn tensor_bytes(t: &Tensor) -> usize {
    t.numel() * t.kind().elt_size_in_bytes()
}

fn to_i64(v: usize) -> i64 {
    i64::try_from(v).expect("dataset dimensions fit in i64")
}

#[cfg(test)]
mod tests {
    use msnr::data::{DType, DatasetWriter};
    use msnr::stages::spec::Silent;

    use super::*;
    use crate::testing::alone_in_a_child;

    #[test]
    fn streamed_batches_and_the_generator_after_them_equal_the_resident_ones() {
        if alone_in_a_child(
            "stages::train::loader::tests::streamed_batches_and_the_generator_after_them_equal_the_resident_ones",
        ) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let classes = vec!["a".into(), "b".into()];
        let mut w = DatasetWriter::create(dir.path(), [3, 4, 4], DType::U8, classes).unwrap().with_shard_items(7);
        for i in 0..50u8 {
            w.push(&[i.wrapping_mul(37); 48], i64::from(i % 2)).unwrap();
        }
        w.finish().unwrap();
        let run = Run { device: Device::Cpu, batch: 6, end: 70 };
        let open = |choice| TrainLoader::open(dir.path(), choice, run, &Silent).unwrap();
        let (resident, stream) = (open(LoaderChoice::Resident), open(LoaderChoice::Stream { prefetch: 2 }));
        assert!(stream.is_streaming() && !resident.is_streaming());
        let draw = |k: u64| {
            tch::manual_seed(i64::try_from(k).unwrap() + 1000);
            Tensor::randint(50, [6], (Kind::Int64, Device::Cpu))
        };
        // Starting mid-run, as a resumed run does, and past the first chunk of indices.
        for step in 5..70 {
            let (a, la) = resident.batch(step, &draw).unwrap();
            let after_a = Tensor::rand([3], (Kind::Float, Device::Cpu));
            let (b, lb) = stream.batch(step, &draw).unwrap();
            let after_b = Tensor::rand([3], (Kind::Float, Device::Cpu));
            assert!(a.equal(&b) && la.equal(&lb), "step {step}");
            assert!(after_a.equal(&after_b), "step {step}: the generator after the batch differs");
        }
        assert_eq!(resident.held_bytes(), 50 * 48 + 50 * 8);
        assert_eq!(stream.held_bytes(), 4 * 6 * (48 + 8) + 50 * 8, "queue of 2, one gathering, one in use, labels");
    }

    #[test]
    fn auto_streams_what_does_not_fit_its_share_and_says_why() {
        let (choice, why) = decide(LoaderChoice::Auto { share: 1e-12 }, 1 << 20, Device::Cpu);
        assert_eq!(choice, Some(4), "{why}");
        assert!(
            why.starts_with("auto: the dataset's 1.0 MiB exceed 0.0000000001% of the host's available memory"),
            "{why}"
        );
        let (choice, why) = decide(LoaderChoice::Auto { share: 0.5 }, 1024, Device::Cpu);
        assert_eq!(choice, None, "{why}");
        assert!(why.contains("fit 50% of the host's available memory"), "{why}");
        assert_eq!(decide(LoaderChoice::Resident, u64::MAX, Device::Cpu).0, None);
        assert_eq!(decide(LoaderChoice::Stream { prefetch: 3 }, 1, Device::Cpu).0, Some(3));
        assert_eq!(human(3 << 30), "3.0 GiB");
    }
}
