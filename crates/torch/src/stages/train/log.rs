//! The training log, `log.jsonl`: one record per `log_every` steps with the
//! mean loss, the learning rate, and the mean unweighted MSE per timestep
//! bucket (ten equal ranges of t), since the Min-SNR argument is about how
//! timesteps conflict. Kept in the work folder so a resumed run continues it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use msnr::stages::StageError;

/// Timestep buckets per record.
pub const BUCKETS: usize = 10;

/// One line of `log.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// Steps completed.
    pub step: u64,
    /// Mean weighted loss over the steps since the last record.
    pub loss: f64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Mean unweighted MSE per timestep bucket (`null` where no sample fell).
    pub mse_by_t: Vec<Option<f64>>,
}

/// Accumulates per-step values between records.
pub struct Log {
    path: PathBuf,
    loss_sum: f64,
    steps: u64,
    bucket_sum: [f64; BUCKETS],
    bucket_n: [u64; BUCKETS],
}

impl Log {
    /// Opens the log in `work`, dropping records past `resumed_step` (from a run that died after its last checkpoint).
    ///
    /// # Errors
    /// When the file cannot be read or rewritten.
    pub fn open(work: &Path, resumed_step: u64) -> Result<Self, StageError> {
        let path = work.join("log.jsonl");
        let kept: String = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|l| serde_json::from_str::<Record>(l).is_ok_and(|r| r.step <= resumed_step))
            .fold(String::new(), |mut kept, l| {
                kept.push_str(l);
                kept.push('\n');
                kept
            });
        std::fs::write(&path, kept).map_err(|e| StageError::io(&path, e))?;
        Ok(Self { path, loss_sum: 0.0, steps: 0, bucket_sum: [0.0; BUCKETS], bucket_n: [0; BUCKETS] })
    }

    /// Adds one step: its loss and each sample's timestep and unweighted MSE.
    pub fn add(&mut self, loss: f64, t: &[i64], mse: &[f64], steps_total: usize) {
        self.loss_sum += loss;
        self.steps += 1;
        for (&ti, &m) in t.iter().zip(mse) {
            let b = usize::try_from(ti).unwrap_or(0) * BUCKETS / steps_total.max(1);
            self.bucket_sum[b.min(BUCKETS - 1)] += m;
            self.bucket_n[b.min(BUCKETS - 1)] += 1;
        }
    }

    /// Writes a record for the steps since the last one and returns it.
    ///
    /// # Errors
    /// When the file cannot be appended to.
    ///
    /// # Panics
    /// Never: records always serialize.
    #[allow(clippy::cast_precision_loss)]
    pub fn flush(&mut self, step: u64, lr: f64) -> Result<Record, StageError> {
        let mse_by_t = (0..BUCKETS)
            .map(|b| (self.bucket_n[b] > 0).then(|| self.bucket_sum[b] / self.bucket_n[b] as f64))
            .collect();
        let record = Record { step, loss: self.loss_sum / self.steps.max(1) as f64, lr, mse_by_t };
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|e| StageError::io(&self.path, e))?;
        writeln!(file, "{}", serde_json::to_string(&record).expect("records serialize"))
            .map_err(|e| StageError::io(&self.path, e))?;
        *self = Self {
            path: std::mem::take(&mut self.path),
            loss_sum: 0.0,
            steps: 0,
            bucket_sum: [0.0; BUCKETS],
            bucket_n: [0; BUCKETS],
        };
        Ok(record)
    }

    /// The log file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}
