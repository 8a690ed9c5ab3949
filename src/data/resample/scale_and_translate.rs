//! `TensorFlow`'s antialiased bilinear resize, `tf.image.resize(image, size, antialias=True)`
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

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::Raster;

/// `1 / 255` rounded to `f32`: `tf.image.convert_image_dtype(uint8 -> float32)` casts each
/// level, then multiplies by it.
#[allow(clippy::cast_possible_truncation)]
const LEVEL: f32 = (1.0_f64 / 255.0) as f32;

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

/// [`spans`], remembered per thread: a dataset's photos share a few sizes, and computing the
/// spans (an allocation each) took a tenth of a 140 -> 64 resize.
fn remembered_spans(in_size: usize, out_size: usize) -> Rc<[Span]> {
    /// Sizes remembered at most; past it the memory starts over.
    const CAPACITY: usize = 1024;
    type Memory = HashMap<(usize, usize), Rc<[Span]>>;
    thread_local! {
        static MEMORY: RefCell<Memory> = RefCell::new(HashMap::new());
    }
    MEMORY.with_borrow_mut(|memory| {
        if memory.len() >= CAPACITY {
            memory.clear();
        }
        Rc::clone(memory.entry((in_size, out_size)).or_insert_with(|| spans(in_size, out_size).into()))
    })
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
    let rows = gather_rows(&image.data, image.width * image.channels, &remembered_spans(image.height, height));
    let columns = remembered_spans(image.width, width);
    match image.channels {
        1 => gather_columns::<1>(&rows, image.width, &columns),
        3 => gather_columns::<3>(&rows, image.width, &columns),
        c => unreachable!("rasters have 1 or 3 channels, not {c}"),
    }
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

/// `round(255 x)`, ties to even, clamped to a byte. Adding `1.5 * 2^23`, where `f32`s are 1
/// apart, rounds `255 x` to an integer in the default rounding mode (ties to even, as
/// `round_ties_even`), which the low bits of the sum then hold (for `|255 x| <= 2^22`; the
/// resize's outputs lie in `[0, 1]` up to rounding): no library call, and it vectorises
/// (`round_ties_even` and a float clamp took a third of the resize's time).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]
fn quantize(x: f32) -> u8 {
    const ROUND: f32 = 12_582_912.0;
    let level = (x * 255.0 + ROUND).to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    level.clamp(0, 255) as u8
}

/// TF's `GatherRows` over the 8-bit image's levels (`p * LEVEL`, as `convert_image_dtype` made
/// them): output row `y` is the weighted sum of the input rows of span `y`, whole rows of
/// `stride` values at a time, accumulated from 0 in span order.
fn gather_rows(image: &[u8], stride: usize, spans: &[Span]) -> Vec<f32> {
    let mut out = vec![0.0_f32; spans.len() * stride];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { rows_avx2(image, stride, spans, &mut out) };
        return out;
    }
    rows(image, stride, spans, &mut out);
    out
}

/// [`rows`] compiled for AVX2 (8 lanes of `f32`; products and sums stay separate, as without it:
/// the `fma` feature is not enabled, and Rust never fuses them).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rows_avx2(image: &[u8], stride: usize, spans: &[Span], out: &mut [f32]) {
    rows(image, stride, spans, out);
}

#[inline(always)] // so that `rows_avx2` compiles it with AVX2
#[allow(clippy::inline_always)]
fn rows(image: &[u8], stride: usize, spans: &[Span], out: &mut [f32]) {
    for (span, row) in spans.iter().zip(out.chunks_exact_mut(stride)) {
        for (src, &w) in image[span.start * stride..].chunks_exact(stride).zip(&span.weights) {
            // TF's `AddScaledVector`: `out += w * x`, element by element.
            row.iter_mut().zip(src).for_each(|(o, &p)| *o += w * (f32::from(p) * LEVEL));
        }
    }
}

/// TF's `GatherColumns`: output pixel `x` of each row is the weighted sum of the row's `C`-value
/// pixels of span `x`, per channel. A span at a time, down every row: the rows' sums are
/// independent, so they overlap in the processor.
fn gather_columns<const C: usize>(rows: &[f32], width: usize, spans: &[Span]) -> Vec<f32> {
    let stride = width * C;
    let out_stride = spans.len() * C;
    let mut out = vec![0.0_f32; rows.len() / stride * out_stride];
    for (x, span) in spans.iter().enumerate() {
        let taps = span.weights.len();
        for (row, out_row) in rows.chunks_exact(stride).zip(out.chunks_exact_mut(out_stride)) {
            let mut pixel = [0.0_f32; C];
            for (src, &w) in row[span.start * C..][..taps * C].chunks_exact(C).zip(&span.weights) {
                pixel.iter_mut().zip(src).for_each(|(o, &v)| *o += w * v);
            }
            out_row[x * C..][..C].copy_from_slice(&pixel);
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
            0.772_727,
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
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    fn quantize_rounds_ties_to_even_and_clamps() {
        let plain = |x: f32| (x * 255.0).round_ties_even().clamp(0.0, 255.0) as u8;
        // Exact halves (255 x = 2.5, 3.5, ...) and a fine sweep past both ends.
        let halves = (0..255).map(|k| (k as f32 + 0.5) / 255.0);
        let sweep = (-20_000..=1_020_000).map(|i| i as f32 * 1e-6);
        for x in halves.chain(sweep).chain([-3.0, 7.5, f32::MIN_POSITIVE, 1.0]) {
            assert_eq!(quantize(x), plain(x), "{x}");
        }
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
