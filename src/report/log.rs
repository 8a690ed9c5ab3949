//! Reading a `train` output's `log.jsonl` (written by the worker's
//! `msnr_torch::stages::train::log`): one record per `log_every` steps with the
//! mean loss since the last record, the learning rate and the mean unweighted
//! MSE per timestep bucket (ten equal ranges of t, `null` where no sample fell).
//! The front end cannot link the worker crate, so the record is declared again
//! here with the same field names; a field added there is ignored here.

use std::path::Path;

use serde::Deserialize;

/// One line of `log.jsonl`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Record {
    /// Steps completed.
    pub step: u64,
    /// Mean weighted loss over the steps since the last record.
    pub loss: f64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Mean unweighted MSE per timestep bucket, from low t (little noise) to high t.
    pub mse_by_t: Vec<Option<f64>>,
}

/// Reads every record of a log.
///
/// # Errors
/// When the file cannot be read, or a line is not a record (naming the file and line).
pub fn read(path: &Path) -> Result<Vec<Record>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text).map_err(|(line, e)| format!("{}:{line}: not a training log record: {e}", path.display()))
}

/// Parses the lines of a log (blank lines skipped); the error carries the 1-based line number.
///
/// # Errors
/// The first line that is not a record.
pub fn parse(text: &str) -> Result<Vec<Record>, (usize, serde_json::Error)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| (i + 1, e)))
        .collect()
}

/// Exponential moving average with bias correction (as `TensorBoard`'s smoothing and Adam's
/// moments correct for the zero start): `m_k = a m_(k-1) + (1 - a) x_k`, shown as
/// `m_k / (1 - a^k)`, so the first point equals the first value. Non-finite values are
/// skipped (the average carries over them).
#[must_use]
pub fn ema(values: &[f64], decay: f64) -> Vec<f64> {
    let mut m = 0.0;
    let mut weight = 0.0;
    values
        .iter()
        .map(|&x| {
            if x.is_finite() {
                m = decay * m + (1.0 - decay) * x;
                weight = decay * weight + (1.0 - decay);
            }
            if weight > 0.0 {
                m / weight
            } else {
                f64::NAN
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records_with_empty_buckets_and_names_a_bad_line() {
        let text = "{\"step\":10,\"loss\":0.5,\"lr\":0.0001,\"mse_by_t\":[0.1,null]}\n\n\
                    {\"step\":20,\"loss\":0.25,\"lr\":0.0002,\"mse_by_t\":[0.05,0.9]}\n";
        let records = parse(text).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].mse_by_t, vec![Some(0.1), None]);
        assert_eq!(records[1].step, 20);
        let (line, _) = parse("{\"step\":1,\"loss\":1,\"lr\":0,\"mse_by_t\":[]}\nnot json\n").unwrap_err();
        assert_eq!(line, 2);
    }

    #[test]
    fn read_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        std::fs::write(&path, "{\"step\": \"x\"}\n").unwrap();
        let err = read(&path).unwrap_err();
        assert!(err.contains("log.jsonl:1: not a training log record"), "{err}");
    }

    #[test]
    fn ema_is_debiased_and_skips_non_finite_values() {
        let smooth = ema(&[2.0, f64::NAN, 4.0], 0.5);
        assert!((smooth[0] - 2.0).abs() < 1e-12, "first point is the first value");
        assert!((smooth[1] - 2.0).abs() < 1e-12, "NaN carries the average over");
        // m = 0.5 * (0.5 * 2) + 0.5 * 4 = 2.5, weight = 0.75: 10 / 3.
        assert!((smooth[2] - 10.0 / 3.0).abs() < 1e-12, "{}", smooth[2]);
        assert!(ema(&[f64::NAN], 0.9)[0].is_nan());
    }
}
