//! TensorFlow's antialiased bilinear resize, `tf.image.resize(image, size, antialias=True)`
//! with its default method, as `ScoreSDE` prepares `CelebA` (`datasets.py`: the photo converted
//! to `float32` in `[0, 1]` by `tf.image.convert_image_dtype`, `central_crop`, `resize_small`).
//!
//! TF runs it as the `ScaleAndTranslate` op with the `triangle` kernel, scale `out / in` and no
//! translation (`tensorflow/core/kernels/image/scale_and_translate_op.cc`), which this module
//! follows operation for operation in `f32`:
//!
//! - `ComputeSpansCore`: output pixel `x` samples the input at `(x + 0.5) / scale`; when
//!   reducing, the triangle (radius 1) is stretched by `1 / scale`, so every input pixel counts;
//!   the span is the input pixels whose centers lie within the stretched radius (clamped to the
//!   image), and its weights are normalised to sum 1;
//! - `GatherRows` then `GatherColumns`: the vertical pass first, into an `f32` image of the
//!   output's height and the input's width, then the horizontal pass, each sum accumulated
//!   from 0 in span order.
//!
//! Same `f32` operations in the same order, so the same floats as TF (the crop tests find every
//! fixture pixel equal). msnr stores 8 bits: `round(255 x)` (ties to even), clamped to `0..=255`.

use super::Raster;

/// The `f32` value of an 8-bit level: `tf.image.convert_image_dtype(uint8 -> float32)`, which
/// casts, then multiplies by `1 / 255` rounded to `f32`.
#[allow(clippy::cast_possible_truncation)]
fn level(p: u8) -> f32 {
    f32::from(p) * (1.0_f64 / 255.0) as f32
}

/// The weights of one output pixel along one side: input pixels `start..start + weights.len()`.
#[derive(Clone, Debug, PartialEq)]
struct Span {
    start: usize,
    weights: Vec<f32>,
}

/// TF's `TriangleKernelFunc`: `1 - |x|` inside the radius 1, else 0.
fn triangle(x: f32) -> f32 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// `ComputeSpansCore(kernel = triangle, output_size, input_size, scale, translate = 0,
/// antialias = true)`, with `scale` as `tf.image.resize` computes it (`float32` division).
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn spans(in_size: usize, out_size: usize) -> Vec<Span> {
    let scale = out_size as f32 / in_size as f32;
    let inv_scale = (1.0 / f64::from(scale)) as f32;
    let kernel_scale = inv_scale.max(1.0);
    let one_over_kernel_scale = 1.0 / kernel_scale;
    let last = in_size as f32 - 1.0;
    (0..out_size)
        .map(|x| {
            let sample = (x as f32 + 0.5) * inv_scale;
            if sample < 0.0 || sample > in_size as f32 {
                return Span { start: 0, weights: Vec::new() }; // outside the source: no weights
            }
            // Clamped as integers in TF; in floats here (exact for image sides).
            let start = (sample - kernel_scale - 0.5).ceil().clamp(0.0, last) as usize;
            let end = (sample + kernel_scale - 0.5).floor().clamp(0.0, last) as usize + 1;
            let raw: Vec<f32> =
                (start..end).map(|s| triangle((s as f32 + 0.5 - sample) * one_over_kernel_scale)).collect();
            let total = raw.iter().fold(0.0_f32, |t, &w| t + w);
            let weights = if total.abs() >= 1000.0 * f32::MIN_POSITIVE {
                let inv_total = 1.0 / total;
                raw.into_iter().map(|w| w * inv_total).collect()
            } else {
                vec![0.0; raw.len()]
            };
            Span { start, weights }
        })
        .collect()
}

/// `tf.image.resize(image / 255, (height, width), antialias=True)` of an 8-bit image, as floats
/// (`height x width x channels`, interleaved).
///
/// # Panics
/// When a side of `image` or of the output is zero (callers check).
#[must_use]
pub fn resize_floats(image: &Raster, width: usize, height: usize) -> Vec<f32> {
    assert!(width > 0 && height > 0 && image.width > 0 && image.height > 0, "resize to and from non-empty images");
    let levels: Vec<f32> = image.data.iter().map(|&p| level(p)).collect();
    let rows = gather_rows(&levels, image.width * image.channels, &spans(image.height, height));
    gather_columns(&rows, image.width, image.channels, &spans(image.width, width))
}

/// [`resize_floats`] stored as 8 bits, `round(255 x)` clamped: what msnr keeps of TF's floats.
///
/// # Panics
/// When a side of `image` or of the output is zero (callers check).
#[must_use]
pub fn resize(image: &Raster, width: usize, height: usize) -> Raster {
    let data = resize_floats(image, width, height).into_iter().map(quantize).collect();
    Raster::new(width, height, image.channels, data)
}

/// `round(255 x)`, ties to even, clamped to a byte.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn quantize(x: f32) -> u8 {
    (x * 255.0).round_ties_even().clamp(0.0, 255.0) as u8
}

/// TF's `GatherRows`: output row `y` is the weighted sum of the input rows of span `y`, whole
/// rows of `stride` floats at a time.
fn gather_rows(image: &[f32], stride: usize, spans: &[Span]) -> Vec<f32> {
    let mut out = vec![0.0_f32; spans.len() * stride];
    for (span, row) in spans.iter().zip(out.chunks_exact_mut(stride)) {
        for (src, &w) in image[span.start * stride..].chunks_exact(stride).zip(&span.weights) {
            add_scaled(row, src, w);
        }
    }
    out
}

/// TF's `AddScaledVector`: `out += w * src`, element by element (a product, then a sum: Rust
/// never fuses them, and TF's CPU build gives the same floats).
fn add_scaled(out: &mut [f32], src: &[f32], w: f32) {
    out.iter_mut().zip(src).for_each(|(o, &s)| *o += w * s);
}

/// TF's `GatherColumns`: output pixel `x` of each row is the weighted sum of the row's pixels
/// of span `x`, per channel.
fn gather_columns(rows: &[f32], width: usize, channels: usize, spans: &[Span]) -> Vec<f32> {
    let stride = width * channels;
    let mut out = Vec::with_capacity(rows.len() / stride * spans.len() * channels);
    for row in rows.chunks_exact(stride) {
        for span in spans {
            let mut pixel = [0.0_f32; 4];
            let pixel = &mut pixel[..channels];
            for (src, &w) in row[span.start * channels..].chunks_exact(channels).zip(&span.weights) {
                add_scaled(pixel, src, w);
            }
            out.extend_from_slice(pixel);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[0, 0, 0, 255, 255, 0, 40, 80]` as a 1x8 gray image.
    fn ramp() -> Raster {
        Raster::new(8, 1, 1, vec![0, 0, 0, 255, 255, 0, 40, 80])
    }

    #[test]
    #[allow(clippy::float_cmp)] // the same f32 operations as TF: equal floats
    fn matches_tensorflow_on_a_ramp() {
        // TF 2.21: f = tf.image.convert_image_dtype(ramp as uint8 1x8x1, tf.float32);
        // tf.image.resize(f, [1, 3], antialias=True) and [1, 11] (an upscale: plain bilinear).
        assert_eq!(resize_floats(&ramp(), 3, 1), [0.078_947_395, 0.622_782_47, 0.231_682_12]);
        assert_eq!(resize(&ramp(), 3, 1).data, [20, 159, 59]);
        let up = [
            0.0,
            0.0,
            0.0,
            0.045_454_502,
            0.772_727_5,
            1.0,
            0.772_727_01,
            0.045_454_502,
            0.106_951_92,
            0.221_033_89,
            0.313_725_5,
        ];
        assert_eq!(resize_floats(&ramp(), 11, 1), up);
        assert_eq!(resize(&ramp(), 11, 1).data, [0, 0, 0, 12, 197, 255, 197, 12, 27, 56, 80]);
    }

    #[test]
    fn same_size_is_the_identity_and_a_flat_image_stays_flat() {
        assert_eq!(resize(&ramp(), 8, 1), ramp());
        let flat = Raster::new(9, 7, 3, vec![77; 9 * 7 * 3]);
        let out = resize(&flat, 4, 5);
        assert_eq!((out.width, out.height, out.channels), (4, 5, 3));
        assert!(out.data.iter().all(|&v| v == 77));
    }

    #[test]
    fn spans_stretch_the_triangle_when_reducing() {
        // 140 -> 64: radius 140 / 64 = 2.1875 input pixels, so 4 or 5 taps (3 where the
        // image's edge cuts the span), summing to 1.
        let spans = spans(140, 64);
        assert!(spans[1..63].iter().all(|s| (4..=5).contains(&s.weights.len())));
        assert_eq!((spans[0].weights.len(), spans[63].weights.len()), (3, 3));
        assert!(spans.iter().all(|s| (s.weights.iter().sum::<f32>() - 1.0).abs() < 1e-6));
        assert_eq!((spans[0].start, spans[63].start + spans[63].weights.len()), (0, 140));
    }
}
