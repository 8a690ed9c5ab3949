//! The streaming loader's prefetcher: a thread that gathers the items of the steps it is
//! asked for from the dataset's memory-mapped shards, in the order asked, into host tensors
//! (page-locked when the device is CUDA, so the training thread copies them without
//! blocking), through a queue of a few batches. What it holds is bounded by the queue and the
//! batch: the queue's batches, the one being gathered and the labels (8 bytes an item),
//! never the dataset's items. The shards' pages come from the page cache, which the kernel
//! reclaims under pressure.
//!
//! A failure (an index outside the dataset, a shard that cannot be read) is sent in place of
//! the batch and ends the thread; dropping the [`Prefetcher`] stops the thread and waits for
//! it, so nothing hangs whichever side stops first.

use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

use tch::{Kind, Tensor};

use msnr::data::reader::{Dataset, MappedShard};
use msnr::data::{DType, DataError};
use msnr::stages::StageError;

/// A dataset's shards, mapped for random access to its items, with every label in memory.
pub struct Shards {
    files: Vec<MappedShard>,
    /// The index of each shard's first item (ascending, `starts[0] == 0`).
    starts: Vec<usize>,
    labels: Vec<i64>,
    /// Channels, height, width of an item.
    shape: [i64; 3],
    kind: Kind,
}

impl Shards {
    /// Maps every shard of `data`, checking each as [`Dataset::read_shard`] does (its
    /// stored hash, its header, its labels).
    ///
    /// # Errors
    /// A shard that is missing, truncated, corrupted or holds a bad label, named.
    pub fn open(data: &Dataset) -> Result<Self, DataError> {
        let m = data.manifest();
        let mut files = Vec::with_capacity(m.shards.len());
        let (mut starts, mut labels) = (Vec::with_capacity(m.shards.len()), Vec::with_capacity(m.count));
        for i in 0..m.shards.len() {
            let (shard, shard_labels) = data.map_shard_items(i)?;
            starts.push(labels.len());
            labels.extend(shard_labels);
            files.push(shard);
        }
        let kind = match m.dtype {
            DType::U8 => Kind::Uint8,
            DType::F32 => Kind::Float,
        };
        let dim = |v: usize| i64::try_from(v).unwrap_or(i64::MAX); // the manifest bounds an item's size
        Ok(Self { files, starts, labels, shape: [dim(m.channels), dim(m.height), dim(m.width)], kind })
    }

    /// Number of items.
    #[must_use]
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no items.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes held in memory (the labels; the items stay in the mapped files).
    #[must_use]
    pub fn held_bytes(&self) -> usize {
        self.labels.len() * std::mem::size_of::<i64>()
    }

    /// The items at `indices` as one `[b, c, h, w]` CPU tensor of the dataset's dtype, and
    /// their labels (`[b]` int64).
    ///
    /// # Errors
    /// An index outside the dataset.
    pub fn gather(&self, indices: &[i64]) -> Result<(Tensor, Tensor), String> {
        let item_bytes = self.files.first().map_or(0, MappedShard::item_bytes);
        let mut bytes = Vec::with_capacity(indices.len() * item_bytes);
        let mut labels = Vec::with_capacity(indices.len());
        for &index in indices {
            let (shard, at) = self.locate(index)?;
            bytes.extend_from_slice(self.files[shard].item(at));
            labels.push(self.labels[self.starts[shard] + at]);
        }
        let [c, h, w] = self.shape;
        let b = i64::try_from(indices.len()).unwrap_or(i64::MAX);
        Ok((Tensor::from_data_size(&bytes, &[b, c, h, w], self.kind), Tensor::from_slice(&labels)))
    }

    /// The shard holding item `index` and the item's position in it.
    fn locate(&self, index: i64) -> Result<(usize, usize), String> {
        let n = self.len();
        let at = usize::try_from(index).ok().filter(|&i| i < n);
        let index = at.ok_or_else(|| format!("item index {index} outside the dataset's {n} items"))?;
        let shard = self.starts.partition_point(|&start| start <= index) - 1;
        Ok((shard, index - self.starts[shard]))
    }
}

/// One step's gathered batch on the host.
pub struct Gathered {
    /// The step it was asked for.
    pub step: u64,
    /// `[b, c, h, w]` items as stored (pinned when the device is CUDA).
    pub items: Tensor,
    /// `[b]` int64 labels (pinned when the device is CUDA).
    pub labels: Tensor,
}

/// A step's indices, asked of the prefetch thread.
struct Request {
    step: u64,
    indices: Vec<i64>,
}

/// The prefetch thread and its two queues: requests in (indices, a few steps ahead of
/// training), gathered batches out (at most `depth` waiting).
pub struct Prefetcher {
    requests: Option<Sender<Request>>,
    batches: Option<Receiver<Result<Gathered, String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Prefetcher {
    /// Starts the thread over `shards`, keeping at most `depth` gathered batches waiting;
    /// `pin` puts them in page-locked memory (for a non-blocking copy to CUDA).
    ///
    /// # Panics
    /// When the system cannot start a thread.
    #[must_use]
    pub fn spawn(shards: Shards, depth: usize, pin: bool) -> Self {
        let (requests, inbox) = mpsc::channel::<Request>();
        let (outbox, batches) = mpsc::sync_channel(depth.max(1));
        let thread = std::thread::Builder::new()
            .name("msnr-prefetch".into())
            .spawn(move || serve(&shards, &inbox, &outbox, pin))
            .expect("the prefetch thread starts");
        Self { requests: Some(requests), batches: Some(batches), thread: Some(thread) }
    }

    /// Asks for the items at `indices` as step `step`'s batch (answered in the order asked).
    ///
    /// # Errors
    /// When the thread has stopped (after a failure that [`Prefetcher::next`] reports).
    pub fn request(&self, step: u64, indices: Vec<i64>) -> Result<(), StageError> {
        let sent = self.requests.as_ref().is_some_and(|r| r.send(Request { step, indices }).is_ok());
        if sent {
            Ok(())
        } else {
            Err(StageError::Failed("the data prefetch thread has stopped".into()))
        }
    }

    /// The next gathered batch, waiting for it.
    ///
    /// # Errors
    /// The thread's failure, naming the file or index; or a thread that stopped.
    pub fn next(&self) -> Result<Gathered, StageError> {
        let received = self.batches.as_ref().map(Receiver::recv);
        match received {
            Some(Ok(Ok(batch))) => Ok(batch),
            Some(Ok(Err(message))) => Err(StageError::param("data", message)),
            _ => Err(StageError::Failed("the data prefetch thread stopped without an answer".into())),
        }
    }
}

impl Drop for Prefetcher {
    /// Closes both queues (a thread blocked on a full queue wakes up) and waits for the thread.
    fn drop(&mut self) {
        self.requests.take();
        self.batches.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread's loop: gathers each request in order until the requests close, the batches'
/// receiver is gone, or a request fails (its error is the last thing sent).
fn serve(shards: &Shards, inbox: &Receiver<Request>, outbox: &SyncSender<Result<Gathered, String>>, pin: bool) {
    for Request { step, indices } in inbox {
        let gathered = shards.gather(&indices).map(|(items, labels)| {
            let (items, labels) = if pin { (pinned(items), pinned(labels)) } else { (items, labels) };
            Gathered { step, items, labels }
        });
        let failed = gathered.is_err();
        let gathered = gathered.map_err(|e| format!("step {}: {e}", step + 1));
        if outbox.send(gathered).is_err() || failed {
            return;
        }
    }
}

/// `t` in page-locked memory, or `t` itself when pinning fails (the copy then blocks).
fn pinned(t: Tensor) -> Tensor {
    crate::shim::pin_memory(&t).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use msnr::data::DatasetWriter;

    use super::*;

    /// Ten 1x2x2 items, item `i` filled with `i`, label `i % 3`, in shards of three.
    fn dataset(dir: &Path) -> Dataset {
        let classes = vec!["a".into(), "b".into(), "c".into()];
        let mut w = DatasetWriter::create(dir, [1, 2, 2], DType::U8, classes).unwrap().with_shard_items(3);
        for i in 0..10u8 {
            w.push(&[i; 4], i64::from(i % 3)).unwrap();
        }
        w.finish().unwrap();
        Dataset::open(dir).unwrap()
    }

    fn firsts(items: &Tensor) -> Vec<u8> {
        Vec::<u8>::try_from(items.select(1, 0).select(1, 0).select(1, 0)).unwrap()
    }

    #[test]
    fn batches_come_in_the_order_asked_with_their_items_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        let prefetcher = Prefetcher::spawn(Shards::open(&dataset(dir.path())).unwrap(), 2, false);
        let asked: Vec<Vec<i64>> = vec![vec![0, 9, 3], vec![2, 2, 5], vec![8, 1, 6], vec![4, 7, 0]];
        for (step, indices) in (10..).zip(&asked) {
            prefetcher.request(step, indices.clone()).unwrap();
        }
        for (step, indices) in (10..).zip(&asked) {
            let got = prefetcher.next().unwrap();
            assert_eq!(got.step, step);
            assert_eq!(got.items.size(), [3, 1, 2, 2]);
            let want: Vec<u8> = indices.iter().map(|&i| u8::try_from(i).unwrap()).collect();
            assert_eq!(firsts(&got.items), want);
            assert_eq!(Vec::<i64>::try_from(&got.labels).unwrap(), indices.iter().map(|i| i % 3).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_failed_gather_is_reported_then_the_thread_stops_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let prefetcher = Prefetcher::spawn(Shards::open(&dataset(dir.path())).unwrap(), 2, false);
        for (step, indices) in [(0, vec![1, 2]), (1, vec![3, 10]), (2, vec![4, 5])] {
            prefetcher.request(step, indices).unwrap();
        }
        assert_eq!(prefetcher.next().unwrap().step, 0);
        let err = prefetcher.next().err().unwrap().to_string();
        assert_eq!(err, "parameter `data`: step 2: item index 10 outside the dataset's 10 items");
        let err = prefetcher.next().err().unwrap().to_string();
        assert!(err.contains("stopped"), "{err}");
        assert!(prefetcher.request(3, vec![0]).is_err(), "the thread is gone");
    }

    #[test]
    fn dropping_with_a_full_queue_stops_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let prefetcher = Prefetcher::spawn(Shards::open(&dataset(dir.path())).unwrap(), 1, false);
        for step in 0..8 {
            prefetcher.request(step, vec![0, 1, 2]).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(20)); // the thread blocks on the full queue
        drop(prefetcher); // joins: the test hangs if the thread stays blocked
    }

    #[test]
    fn a_truncated_or_missing_shard_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let data = dataset(dir.path());
        let shard = dir.path().join("shard-00001.safetensors");
        let bytes = std::fs::read(&shard).unwrap();
        std::fs::write(&shard, &bytes[..bytes.len() - 5]).unwrap();
        let err = Shards::open(&data).err().unwrap().to_string();
        assert!(err.contains("shard-00001.safetensors"), "{err}");
        std::fs::remove_file(&shard).unwrap();
        let err = Shards::open(&data).err().unwrap().to_string();
        assert!(err.contains("shard-00001.safetensors"), "{err}");
    }

    #[test]
    fn float_items_keep_their_values() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = DatasetWriter::create(dir.path(), [2, 1, 1], DType::F32, vec!["x".into()]).unwrap();
        w.push_f32(&[0.5, -1.25], 0).unwrap();
        w.push_f32(&[3.0, 1e-3], 0).unwrap();
        w.finish().unwrap();
        let shards = Shards::open(&Dataset::open(dir.path()).unwrap()).unwrap();
        let (items, _) = shards.gather(&[1, 0]).unwrap();
        assert_eq!(items.kind(), Kind::Float);
        assert_eq!(Vec::<f32>::try_from(items.reshape([-1])).unwrap(), [3.0, 1e-3, 0.5, -1.25]);
    }
}
