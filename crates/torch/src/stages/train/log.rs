//! The training log, `log.jsonl`: one record per `log_every` steps with the
//! mean loss, the learning rate, and the mean unweighted MSE per timestep
//! bucket (ten equal ranges of t), since the Min-SNR argument is about how
//! timesteps conflict. Kept in the work folder so a resumed run continues it;
//! the sums since the last record travel in each checkpoint ([`Sums`]), so a
//! checkpoint between two records resumes to the same records.

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

/// What the log has gathered since its last record, and the last finite loss seen.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sums {
    loss_sum: f64,
    steps: u64,
    bucket_sum: [f64; BUCKETS],
    bucket_n: [u64; BUCKETS],
    last: Option<f64>,
}

/// [`Sums`] as a checkpoint stores them: each `f64` by its bits, so a resumed run adds to
/// exactly the same values (JSON's decimal floats need not read back to the same bits).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SavedSums {
    loss_sum: u64,
    steps: u64,
    bucket_sum: [u64; BUCKETS],
    bucket_n: [u64; BUCKETS],
    last: Option<u64>,
}

impl From<Sums> for SavedSums {
    fn from(s: Sums) -> Self {
        Self {
            loss_sum: s.loss_sum.to_bits(),
            steps: s.steps,
            bucket_sum: s.bucket_sum.map(f64::to_bits),
            bucket_n: s.bucket_n,
            last: s.last.map(f64::to_bits),
        }
    }
}

impl From<SavedSums> for Sums {
    fn from(s: SavedSums) -> Self {
        Self {
            loss_sum: f64::from_bits(s.loss_sum),
            steps: s.steps,
            bucket_sum: s.bucket_sum.map(f64::from_bits),
            bucket_n: s.bucket_n,
            last: s.last.map(f64::from_bits),
        }
    }
}

/// Accumulates per-step values between records.
pub struct Log {
    path: PathBuf,
    sums: Sums,
}

impl Log {
    /// Opens the log in `work`, dropping records past `resumed_step` (from a run that died after
    /// its last checkpoint), with the sums that checkpoint saved (default when starting afresh).
    ///
    /// # Errors
    /// When the file cannot be read or rewritten.
    pub fn open(work: &Path, resumed_step: u64, sums: Sums) -> Result<Self, StageError> {
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
        Ok(Self { path, sums })
    }

    /// Adds one step: its (finite) loss and each sample's timestep and unweighted MSE.
    pub fn add(&mut self, loss: f64, t: &[i64], mse: &[f64], steps_total: usize) {
        let sums = &mut self.sums;
        sums.loss_sum += loss;
        sums.steps += 1;
        sums.last = Some(loss);
        for (&ti, &m) in t.iter().zip(mse) {
            let b = usize::try_from(ti).unwrap_or(0) * BUCKETS / steps_total.max(1);
            sums.bucket_sum[b.min(BUCKETS - 1)] += m;
            sums.bucket_n[b.min(BUCKETS - 1)] += 1;
        }
    }

    /// The last loss added (before a resume too), if any.
    #[must_use]
    pub fn last_loss(&self) -> Option<f64> {
        self.sums.last
    }

    /// The sums since the last record, for a checkpoint.
    #[must_use]
    pub fn sums(&self) -> Sums {
        self.sums
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
        let sums = &self.sums;
        let mse_by_t = (0..BUCKETS)
            .map(|b| (sums.bucket_n[b] > 0).then(|| sums.bucket_sum[b] / sums.bucket_n[b] as f64))
            .collect();
        let record = Record { step, loss: sums.loss_sum / sums.steps.max(1) as f64, lr, mse_by_t };
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|e| StageError::io(&self.path, e))?;
        writeln!(file, "{}", serde_json::to_string(&record).expect("records serialize"))
            .map_err(|e| StageError::io(&self.path, e))?;
        self.sums = Sums { last: self.sums.last, ..Sums::default() };
        Ok(record)
    }

    /// The log file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_survive_a_checkpoint_bit_for_bit_and_a_record_keeps_the_last_loss() {
        let work = tempfile::tempdir().unwrap();
        let mut log = Log::open(work.path(), 0, Sums::default()).unwrap();
        // Values whose shortest decimal forms are long: the saved bits must come back exactly.
        log.add(0.1 + 0.2, &[3, 950], &[1.0 / 3.0, 2.0_f64.sqrt()], 1000);
        log.add(1e-17 + 0.7, &[10], &[std::f64::consts::PI], 1000);
        let saved = serde_json::to_string(&SavedSums::from(log.sums())).unwrap();
        let back: Sums = serde_json::from_str::<SavedSums>(&saved).unwrap().into();
        assert_eq!(back, log.sums());
        let mut resumed = Log::open(work.path(), 0, back).unwrap();
        assert_eq!(resumed.flush(2, 1e-4).unwrap(), log.flush(2, 1e-4).unwrap());
        assert_eq!(log.last_loss(), Some(1e-17 + 0.7), "kept across records");
        assert_eq!(log.sums(), Sums { last: Some(1e-17 + 0.7), ..Sums::default() });
    }
}
