//! Feature statistics as `.npz` files with arrays `mu` and `sigma`: the format of
//! pytorch-fid's `--save-stats` and of `OpenAI`'s reference batches
//! (`VIRTUAL_imagenet256_labeled.npz`, whose other arrays, e.g. 10k images in `arr_0`,
//! are never read). Read and written with the `npyz` crate, one array at a time.

use std::path::Path;

use npyz::npz::{NpzArchive, NpzWriter};
use npyz::{NpyFile, Order, WriterBuilder};
use tch::Tensor;

use super::{MetricError, Statistics};

/// Reads `mu` (`[d]`) and `sigma` (`[d, d]`), float64 or float32, C or Fortran order.
///
/// # Errors
/// [`MetricError::File`] naming `path` when it cannot be read, lacks `mu` or `sigma` (the
/// message lists the arrays it has) or holds another type; [`MetricError::Mismatch`] or
/// [`MetricError::NotFinite`] as [`Statistics::new`].
pub fn read_statistics(path: &Path) -> Result<Statistics, MetricError> {
    let err = |message: String| MetricError::File { path: path.display().to_string(), message };
    let mut npz = NpzArchive::open(path).map_err(|e| err(e.to_string()))?;
    let names: Vec<String> = npz.array_names().map(String::from).collect();
    let mut array = |name: &str| -> Result<Tensor, MetricError> {
        let npy = npz.by_name(name).map_err(|e| err(format!("{name}: {e}")))?;
        let npy = npy.ok_or_else(|| err(format!("no array `{name}` (it has: {})", names.join(", "))))?;
        to_tensor(npy).map_err(|e| err(format!("{name}: {e}")))
    };
    let (mu, sigma) = (array("mu")?, array("sigma")?);
    Statistics::new(&mu, &sigma, 0, "reference statistics")
}

/// Writes `stats` as float64 `mu` and `sigma` (C order, uncompressed), readable by
/// pytorch-fid and numpy.
///
/// # Errors
/// [`MetricError::File`] naming `path` when it cannot be written.
pub fn write_statistics(stats: &Statistics, path: &Path) -> Result<(), MetricError> {
    let err = |e: std::io::Error| MetricError::File { path: path.display().to_string(), message: e.to_string() };
    let mut npz = NpzWriter::create(path).map_err(err)?;
    for (name, t) in [("mu", &stats.mu), ("sigma", &stats.sigma)] {
        let shape: Vec<u64> = t.size().iter().map(|&s| u64::try_from(s).unwrap_or(0)).collect();
        let values = Vec::<f64>::try_from(t.flatten(0, -1)).map_err(|e| err(std::io::Error::other(e.to_string())))?;
        // Stored, as np.savez: deflating 32 MB of float64 costs seconds and saves little. A
        // fixed entry time (zip's epoch, 1980-01-01), so equal statistics give equal bytes.
        let options = npyz::zip::write::FileOptions::default()
            .compression_method(npyz::zip::CompressionMethod::Stored)
            .last_modified_time(npyz::zip::DateTime::default());
        let mut w =
            npz.array::<f64>(name, options).map_err(err)?.default_dtype().shape(&shape).begin_nd().map_err(err)?;
        w.extend(values).map_err(err)?;
        w.finish().map_err(err)?;
    }
    npz.zip_writer().finish().map_err(|e| err(std::io::Error::other(e.to_string())))?;
    Ok(())
}

/// One array as a float64 tensor of its shape.
fn to_tensor<R: std::io::Read>(npy: NpyFile<R>) -> std::io::Result<Tensor> {
    let shape: Vec<i64> = npy.shape().iter().map(|&s| i64::try_from(s).unwrap_or(i64::MAX)).collect();
    let order = npy.order();
    let values: Vec<f64> = match npy.try_data::<f64>() {
        Ok(data) => data.collect::<std::io::Result<Vec<f64>>>()?,
        Err(npy) => match npy.try_data::<f32>() {
            Ok(data) => data.map(|v| v.map(f64::from)).collect::<std::io::Result<Vec<f64>>>()?,
            Err(npy) => {
                return Err(std::io::Error::other(format!(
                    "expected float64 or float32, found {}",
                    npy.dtype().descr()
                )))
            }
        },
    };
    let t = Tensor::from_slice(&values);
    Ok(match order {
        Order::C => t.view(shape.as_slice()),
        Order::Fortran => {
            // Fortran order is the C order of the reversed shape, transposed back.
            let reversed: Vec<i64> = shape.iter().rev().copied().collect();
            let axes: Vec<i64> = (0..reversed.len()).rev().map(|a| i64::try_from(a).unwrap_or(0)).collect();
            t.view(reversed.as_slice()).permute(axes.as_slice()).contiguous()
        }
    })
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    #[test]
    fn statistics_round_trip_and_missing_arrays_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ref.npz");
        let mu = Tensor::from_slice(&[1.0, -2.5]);
        let sigma = Tensor::from_slice(&[2.0, 0.5, 0.5, 1.0]).view([2, 2]);
        write_statistics(&Statistics::new(&mu, &sigma, 7, "x").unwrap(), &path).unwrap();
        let back = read_statistics(&path).unwrap();
        assert_eq!((back.mu, back.sigma), (mu, sigma));

        let other = dir.path().join("other.npz");
        Tensor::write_npz(&[("mu", Tensor::zeros([2], (Kind::Double, Device::Cpu)))], &other).unwrap();
        let err = read_statistics(&other).unwrap_err().to_string();
        assert!(err.ends_with("other.npz: no array `sigma` (it has: mu)"), "{err}");
        let err = read_statistics(&dir.path().join("absent.npz")).unwrap_err().to_string();
        assert!(err.contains("absent.npz: "), "{err}");
    }
}
