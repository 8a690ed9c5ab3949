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
//!
//! `TensorFlow`'s antialiased bilinear resize, which `ScoreSDE`'s `CelebA` recipe uses, is
//! [`scale_and_translate`].

mod pairs;
pub mod scale_and_translate;

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;
use std::rc::Rc;

use super::raster::{Raster, Region};

/// Fractional bits of the fixed-point weights (Pillow's `PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// The Pillow resampling filters the crop recipes use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    resize_window(image, (width, height), filter, (0, 0, width, height))
}

/// The `(left, top, w, h)` window of `resize(image, full.0, full.1, filter)`,
/// computing only the pixels inside it: each output pixel depends on its own
/// taps alone, so the bytes equal those of the full resize then a crop.
///
/// # Panics
/// When a side is zero or the window leaves the resized image (callers check).
#[must_use]
pub fn resize_window(
    image: &Raster,
    full: (usize, usize),
    filter: Filter,
    window: (usize, usize, usize, usize),
) -> Raster {
    resize_region(image, Region::whole(image.width, image.height), full, filter, window)
}

/// [`resize_window`] of an image of which `image` holds only a part (`region`), enough for the
/// window: the columns and rows [`source_span`] names for it.
///
/// # Panics
/// When a side is zero, the window leaves the resized image, or the window's taps read outside
/// `image` (callers check).
#[must_use]
pub fn resize_region(
    image: &Raster,
    region: Region,
    full: (usize, usize),
    filter: Filter,
    window: (usize, usize, usize, usize),
) -> Raster {
    let (left, top, w, h) = window;
    let (x0, y0) = region.origin;
    assert!(w > 0 && h > 0 && left + w <= full.0 && top + h <= full.1, "resize window inside the output");
    let columns = (full.0 != region.size.0).then(|| taps(region.size.0, full.0, filter, left..left + w));
    let rows = (full.1 != region.size.1).then(|| taps(region.size.1, full.1, filter, top..top + h));
    let (columns, rows) = (columns.as_ref().map(|(t, r)| &t[r.clone()]), rows.as_ref().map(|(t, r)| &t[r.clone()]));
    // Rows the vertical pass reads (all, or the window when there is none), in the image.
    let (first, last) = match rows {
        Some(taps) => (taps[0].start, taps.iter().map(|t| t.start + t.weights.len()).max().unwrap_or(0)),
        None => (top, top + h),
    };
    let band_rows = first - y0..last - y0;
    let band = match columns {
        Some(taps) => horizontal_pass(image, band_rows, taps, x0),
        None => image.crop(left - x0, band_rows.start, w, band_rows.len()),
    };
    match rows {
        Some(taps) => vertical_pass(&band, taps, first),
        None => band,
    }
}

/// The input pixels (columns or rows) that outputs `out` of resizing `in_size` pixels to
/// `out_size` read.
#[must_use]
pub fn source_span(in_size: usize, out_size: usize, filter: Filter, out: Range<usize>) -> Range<usize> {
    if in_size == out_size {
        return out; // a copy
    }
    let (taps, range) = taps(in_size, out_size, filter, out);
    let taps = &taps[range];
    let start = taps.iter().map(|t| t.start).min().unwrap_or(0);
    start..taps.iter().map(|t| t.start + t.weights.len()).max().unwrap_or(start)
}

/// The taps of outputs `range` of resizing `in_size` pixels to `out_size`, as taps and where
/// `range` lies in them: the remembered taps of the whole side ([`coefficients`]) when it is of
/// a usual length, else computed for `range` alone (ADM's resize of a panorama can have a side
/// of millions of pixels, of which its crop reads `size`).
fn taps(in_size: usize, out_size: usize, filter: Filter, range: Range<usize>) -> (Rc<[Tap]>, Range<usize>) {
    /// Output sides up to this long are remembered whole.
    const REMEMBERED_SIDE: usize = 1 << 16;
    if out_size <= REMEMBERED_SIDE {
        (coefficients(in_size, out_size, filter), range)
    } else {
        let len = range.len();
        (compute_coefficients(in_size, out_size, filter, range).into(), 0..len)
    }
}

/// [`compute_coefficients`] of a whole side, remembered per thread: a dataset's photos share a
/// few sizes, and computing the taps (an allocation each) cost about as much as halving a
/// photo's rows.
fn coefficients(in_size: usize, out_size: usize, filter: Filter) -> Rc<[Tap]> {
    /// Sizes remembered at most; past it the memory starts over.
    const CAPACITY: usize = 1024;
    type Memory = HashMap<(usize, usize, Filter), Rc<[Tap]>>;
    thread_local! {
        static MEMORY: RefCell<Memory> = RefCell::new(HashMap::new());
    }
    MEMORY.with_borrow_mut(|memory| {
        if memory.len() >= CAPACITY {
            memory.clear();
        }
        Rc::clone(
            memory
                .entry((in_size, out_size, filter))
                .or_insert_with(|| compute_coefficients(in_size, out_size, filter, 0..out_size).into()),
        )
    })
}

/// Pillow's `precompute_coeffs(in_size, 0, in_size, out_size)` followed by
/// `normalize_coeffs_8bpc`, for the outputs `outputs`.
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn compute_coefficients(in_size: usize, out_size: usize, filter: Filter, outputs: Range<usize>) -> Vec<Tap> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter.support() * filter_scale;
    outputs
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's `(int)` truncation toward zero and the clamp at 0 (a float to
            // `usize` cast saturates below at 0), then the clamp at `in_size`.
            let xmin = (center - support + 0.5) as usize;
            let xmax = ((center + support + 0.5) as usize).min(in_size);
            let raw: Vec<f64> = (xmin..xmax).map(|x| filter.weight((x as f64 - center + 0.5) / filter_scale)).collect();
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

/// Pillow's `ImagingResampleHorizontal_8bpc` over the rows `rows` of `image`,
/// computed as the vertical pass of the transposed band (the same sums, but
/// over whole rows, which vectorise), then transposed back; `image` holds the columns from `x0` on (a tap starting at column `x` reads `image` column
/// `x - x0`).
fn horizontal_pass(image: &Raster, rows: std::ops::Range<usize>, taps: &[Tap], x0: usize) -> Raster {
    if let Some(segments) = pairs::segments(taps) {
        return pairs::horizontal(image, rows, taps, &segments, x0);
    }
    // Only the columns the taps read are transposed (a window's taps read fewer).
    let lo = taps.iter().map(|t| t.start).min().unwrap_or(0);
    let hi = taps.iter().map(|t| t.start + t.weights.len()).max().unwrap_or(lo);
    let c = image.channels;
    let columns = transpose(&image.data, image.width, c, rows.clone(), lo - x0..hi - x0);
    let columns = Raster::new(rows.len(), hi - lo, c, columns);
    let out = vertical_pass(&columns, taps, lo);
    Raster::new(taps.len(), rows.len(), c, transpose(&out.data, out.width, c, 0..out.height, 0..out.width))
}

/// The `rows x cols` window of an image of `width`-pixel rows of `c`-byte pixels, transposed
/// (`cols.len()` rows of `rows.len()` pixels).
fn transpose(data: &[u8], width: usize, c: usize, rows: Range<usize>, cols: Range<usize>) -> Vec<u8> {
    match c {
        1 => transpose_n::<1>(data, width, rows, cols),
        3 => transpose_n::<3>(data, width, rows, cols),
        c => unreachable!("rasters have 1 or 3 channels, not {c}"),
    }
}

/// Blocked over `TILE` source rows, so both sides stream through the cache.
fn transpose_n<const C: usize>(data: &[u8], width: usize, rows: Range<usize>, cols: Range<usize>) -> Vec<u8> {
    const TILE: usize = 16;
    let (height, w) = (rows.len(), cols.len());
    let mut out = vec![0; height * w * C];
    let mut srcs: [&[u8]; TILE] = [&[]; TILE];
    for y0 in (0..height).step_by(TILE) {
        let tile = y0..(y0 + TILE).min(height);
        for (slot, y) in srcs.iter_mut().zip(tile.clone()) {
            *slot = &data[((rows.start + y) * width + cols.start) * C..][..w * C];
        }
        let srcs = &srcs[..tile.len()];
        for x in 0..w {
            let column = &mut out[(x * height + tile.start) * C..(x * height + tile.end) * C];
            for (src, dst) in srcs.iter().zip(column.chunks_exact_mut(C)) {
                dst.copy_from_slice(&src[x * C..][..C]);
            }
        }
    }
    out
}

/// Pillow's `ImagingResampleVertical_8bpc`, a whole output row at a time; `image` holds the
/// source rows from `first` on (a tap starting at row `r` reads `image` row `r - first`).
fn vertical_pass(image: &Raster, taps: &[Tap], first: usize) -> Raster {
    let stride = image.width * image.channels;
    let mut out = vec![0; taps.len() * stride];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { vertical_avx2(&image.data, stride, taps, first, &mut out) };
        return Raster::new(image.width, taps.len(), image.channels, out);
    }
    vertical(&image.data, stride, taps, first, &mut out);
    Raster::new(image.width, taps.len(), image.channels, out)
}

/// [`vertical`] compiled for AVX2 (8 lanes of `i32` multiply-add).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn vertical_avx2(data: &[u8], stride: usize, taps: &[Tap], first: usize, out: &mut [u8]) {
    vertical(data, stride, taps, first, out);
}

#[inline(always)] // so that `vertical_avx2` compiles it with AVX2
#[allow(clippy::inline_always)]
fn vertical(data: &[u8], stride: usize, taps: &[Tap], first: usize, out: &mut [u8]) {
    let mut sums = vec![0_i32; stride];
    for (tap, out_row) in taps.iter().zip(out.chunks_exact_mut(stride)) {
        if let Some(row) = tap.pair() {
            let rows = &data[(row - first) * stride..];
            pairs::average_rows(&rows[..stride], &rows[stride..2 * stride], out_row);
            continue;
        }
        sums.fill(HALF);
        for (src, &w) in data[(tap.start - first) * stride..].chunks_exact(stride).zip(&tap.weights) {
            sums.iter_mut().zip(src).for_each(|(s, &p)| *s += i32::from(p) * w);
        }
        out_row.iter_mut().zip(&sums).for_each(|(o, &s)| *o = clip8(s));
    }
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

    /// Pillow's two passes written plainly (`ImagingResampleHorizontal_8bpc`, then
    /// `ImagingResampleVertical_8bpc`, one pixel and channel at a time): what every fast path
    /// must reproduce.
    fn plain(image: &Raster, width: usize, height: usize, filter: Filter) -> Raster {
        let c = image.channels;
        let pass = |src: &[u8], (w, h): (usize, usize), taps: &[Tap], horizontal: bool| -> Vec<u8> {
            let (ow, oh) = if horizontal { (taps.len(), h) } else { (w, taps.len()) };
            let mut out = vec![0; ow * oh * c];
            for y in 0..oh {
                for x in 0..ow {
                    for ch in 0..c {
                        let tap = &taps[if horizontal { x } else { y }];
                        let at = |k: usize| if horizontal { (y * w + k) * c + ch } else { (k * w + x) * c + ch };
                        let sum = (0..tap.weights.len())
                            .fold(HALF, |s, k| s + tap.weights[k] * i32::from(src[at(tap.start + k)]));
                        out[(y * ow + x) * c + ch] = clip8(sum);
                    }
                }
            }
            out
        };
        let h = pass(&image.data, (image.width, image.height), &coefficients(image.width, width, filter), true);
        let v = pass(&h, (width, image.height), &coefficients(image.height, height, filter), false);
        Raster::new(width, height, c, v)
    }

    #[test]
    fn every_path_gives_pillows_bytes() {
        // Even and odd halvings (pair paths, with and without general taps), ADM's sizes, a
        // box reduction that is not a halving, and bicubic (the transposed general path).
        let cases = [
            ((40, 7), (20, 3), Filter::Box),
            ((41, 9), (20, 4), Filter::Box),
            ((501, 375), (250, 187), Filter::Box),
            ((375, 333), (187, 166), Filter::Box),
            ((250, 187), (125, 93), Filter::Box),
            ((37, 29), (11, 13), Filter::Box),
            ((125, 93), (86, 64), Filter::Bicubic),
            ((23, 17), (31, 9), Filter::Bicubic),
        ];
        for ((w, h), (ow, oh), filter) in cases {
            for c in [1, 3] {
                let data = (0..w * h * c).map(|i| u8::try_from((i * 97 + i / 7) % 256).unwrap()).collect();
                let image = Raster::new(w, h, c, data);
                let expected = plain(&image, ow, oh, filter);
                assert_eq!(resize(&image, ow, oh, filter), expected, "{w}x{h}x{c} -> {ow}x{oh} {filter:?}");
                let window = (ow / 4, oh / 3, ow / 2, oh / 2);
                let cut = expected.crop(window.0, window.1, window.2, window.3);
                assert_eq!(resize_window(&image, (ow, oh), filter, window), cut, "{w}x{h}x{c} window");
            }
        }
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
    fn window_equals_full_resize_then_crop() {
        let data: Vec<u8> = (0..23 * 17 * 3).map(|i| u8::try_from((i * 37) % 251).unwrap()).collect();
        let r = Raster::new(23, 17, 3, data);
        for (filter, (fw, fh)) in [(Filter::Bicubic, (9, 11)), (Filter::Box, (11, 8)), (Filter::Bicubic, (23, 6))] {
            let full = resize(&r, fw, fh, filter);
            let window = resize_window(&r, (fw, fh), filter, (2, 1, fw - 4, fh - 3));
            assert_eq!(window, full.crop(2, 1, fw - 4, fh - 3));
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let r = Raster::new(9, 7, 3, vec![77; 9 * 7 * 3]);
        let out = resize(&r, 4, 5, Filter::Bicubic);
        assert_eq!((out.width, out.height, out.channels), (4, 5, 3));
        assert!(out.data.iter().all(|&v| v == 77));
    }
}
