//! Resizing exactly as Pillow's `Image.resize((w, h), filter)` does for 8-bit
//! L and RGB images (no `box`, no `reducing_gap`), ported from Pillow's
//! `libImaging/Resample.c` (`ImagingResampleInner`, `precompute_coeffs`,
//! `normalize_coeffs_8bpc`, `ImagingResampleHorizontal_8bpc`/`Vertical_8bpc`):
//!
//! - a separable convolution, horizontal pass first, each with its own weights;
//! - antialiasing: when reducing by `scale > 1` the kernel is stretched by
//!   `scale` (support `filter.support * scale`), so every input pixel counts;
//! - weights are normalised to sum 1, then held as 22-bit fixed point
//!   (`PRECISION_BITS = 32 - 8 - 2`), and each pass rounds and clips to 8 bits.
//!
//! Same integer arithmetic, same bytes: the parity tests require equality.
//! (`fast_image_resize` follows the same scheme with 16-bit weights and differs
//! from Pillow by a level on ~20% of pixels, hence this port.)

use super::raster::Raster;

/// Fractional bits of the fixed-point weights (Pillow's `PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// The Pillow resampling filters the crop recipes use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// `Image.BOX`: each output pixel averages the input pixels it covers.
    Box,
    /// `Image.BICUBIC`: the cubic convolution kernel with `a = -0.5` (Keys 1981;
    /// Catmull-Rom), support 2.
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Self::Box => 0.5,
            Self::Bicubic => 2.0,
        }
    }

    /// Pillow's `box_filter` and `bicubic_filter`.
    fn weight(self, x: f64) -> f64 {
        match self {
            Self::Box => f64::from(u8::from(x > -0.5 && x <= 0.5)),
            Self::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// The fixed-point weights of one output pixel: input pixels `start..start + weights.len()`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Tap {
    start: usize,
    weights: Vec<i32>,
}

/// `image.resize((width, height), filter)` in Pillow; a same-size resize is a copy, as in Pillow.
///
/// # Panics
/// When a target side is zero (callers check).
#[must_use]
pub fn resize(image: &Raster, width: usize, height: usize, filter: Filter) -> Raster {
    assert!(width > 0 && height > 0, "resize to an empty image");
    let horizontal = (width != image.width).then(|| coefficients(image.width, width, filter));
    let vertical = (height != image.height).then(|| coefficients(image.height, height, filter));
    let mut out = match &horizontal {
        Some(taps) => horizontal_pass(image, taps),
        None => image.clone(),
    };
    if let Some(taps) = &vertical {
        out = vertical_pass(&out, taps);
    }
    out
}

/// Pillow's `precompute_coeffs(in_size, 0, in_size, out_size)` followed by
/// `normalize_coeffs_8bpc`.
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn coefficients(in_size: usize, out_size: usize, filter: Filter) -> Vec<Tap> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter.support() * filter_scale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's `(int)` truncation toward zero, then the clamps.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let raw: Vec<f64> =
                (xmin..xmax).map(|x| filter.weight((x as f64 - center + 0.5) / filter_scale)).collect();
            let total: f64 = raw.iter().sum();
            let norm = |w: f64| if total == 0.0 { w } else { w / total };
            let fixed = |w: f64| {
                let w = norm(w) * f64::from(1_u32 << PRECISION_BITS);
                (if w < 0.0 { w - 0.5 } else { w + 0.5 }) as i32
            };
            Tap { start: xmin, weights: raw.into_iter().map(fixed).collect() }
        })
        .collect()
}

/// Pillow's `clip8`: the rounded fixed-point sum as a byte.
#[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// The rounding offset every sum starts from (`1 << (PRECISION_BITS - 1)`).
const HALF: i32 = 1 << (PRECISION_BITS - 1);

fn horizontal_pass(image: &Raster, taps: &[Tap]) -> Raster {
    let c = image.channels;
    let mut out = Vec::with_capacity(taps.len() * image.height * c);
    for row in image.data.chunks_exact(image.width * c) {
        for tap in taps {
            let window = &row[tap.start * c..(tap.start + tap.weights.len()) * c];
            for ch in 0..c {
                let pixels = window.iter().skip(ch).step_by(c);
                let sum = pixels.zip(&tap.weights).fold(HALF, |s, (&p, &w)| s + i32::from(p) * w);
                out.push(clip8(sum));
            }
        }
    }
    Raster::new(taps.len(), image.height, c, out)
}

fn vertical_pass(image: &Raster, taps: &[Tap]) -> Raster {
    let row = image.width * image.channels;
    let mut out = Vec::with_capacity(taps.len() * row);
    let mut sums = vec![0_i32; row];
    for tap in taps {
        sums.fill(HALF);
        for (y, &w) in (tap.start..).zip(&tap.weights) {
            let src = &image.data[y * row..(y + 1) * row];
            sums.iter_mut().zip(src).for_each(|(s, &p)| *s += i32::from(p) * w);
        }
        out.extend(sums.iter().map(|&s| clip8(s)));
    }
    Raster::new(image.width, taps.len(), image.channels, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_halving_averages_pairs() {
        // Pillow: Image.frombytes("L", (4, 1), bytes([0, 10, 20, 40])).resize((2, 1), Image.BOX) -> [5, 30].
        let r = Raster::new(4, 1, 1, vec![0, 10, 20, 40]);
        assert_eq!(resize(&r, 2, 1, Filter::Box).data, vec![5, 30]);
    }

    #[test]
    fn bicubic_matches_pillow_on_a_ramp() {
        // Pillow 13: Image.frombytes("L", (8, 1), bytes([0, 0, 0, 255, 255, 0, 40, 80]))
        //   .resize((3, 1), Image.BICUBIC) -> [9, 171, 51] and .resize((11, 1), Image.BICUBIC)
        let r = Raster::new(8, 1, 1, vec![0, 0, 0, 255, 255, 0, 40, 80]);
        assert_eq!(resize(&r, 3, 1, Filter::Bicubic).data, vec![9, 171, 51]);
        let up = vec![0, 0, 0, 7, 209, 255, 208, 6, 17, 59, 82];
        assert_eq!(resize(&r, 11, 1, Filter::Bicubic).data, up);
    }

    #[test]
    fn constant_image_stays_constant() {
        let r = Raster::new(9, 7, 3, vec![77; 9 * 7 * 3]);
        let out = resize(&r, 4, 5, Filter::Bicubic);
        assert_eq!((out.width, out.height, out.channels), (4, 5, 3));
        assert!(out.data.iter().all(|&v| v == 77));
    }
}
