//! The fast path of box halving (ADM's `center_crop_arr` halves photos with `Image.BOX` until
//! they are small): a tap whose only non-zero weights are two adjacent 1/2s. Pillow's sum
//! `(HALF + a * 2^21 + b * 2^21) >> 22` is then `(a + b + 1) >> 1`, the rounded mean
//! (`pavgb`), so such taps are computed as byte averages: whole rows at a time vertically, runs
//! of adjacent pairs with a byte shuffle horizontally. Same bytes as the general passes.
//!
//! Halving an even side gives only such taps. An odd side (ImageNet's 375 or 333 rows, or a
//! portrait photo's width) does too, except near the middle: with `scale = n / (n / 2)`
//! slightly above 2, the taps carry a zero weight at one end and their pairs shift by one
//! pixel once, around where a single tap spans three pixels (weights 1/3), which is computed
//! with the general formula.

use std::ops::Range;

use super::{clip8, Raster, Tap, HALF};

impl Tap {
    /// The first of the two adjacent pixels this tap averages, when its only non-zero weights
    /// are two adjacent halves.
    pub(super) fn pair(&self) -> Option<usize> {
        let lead = self.weights.iter().take_while(|&&w| w == 0).count();
        let rest = &self.weights[lead..];
        let len = rest.iter().rposition(|&w| w != 0).map_or(0, |last| last + 1);
        (rest[..len] == [HALF, HALF]).then_some(self.start + lead)
    }
}

/// How a horizontal pass computes its output pixels.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Segment {
    /// Output pixels `out..out + len` average input pairs from column `src` on (`src + 2i`,
    /// `src + 2i + 1` for the `i`-th).
    Pairs { out: usize, len: usize, src: usize },
    /// Output pixel `.0` with the general formula.
    General(usize),
}

/// The taps as runs of pair means and single general taps, when at least three quarters of them
/// are pairs (otherwise the general pass is the faster one).
pub(super) fn segments(taps: &[Tap]) -> Option<Vec<Segment>> {
    let mut segments = Vec::new();
    let mut pairs = 0;
    for (i, tap) in taps.iter().enumerate() {
        match (tap.pair(), segments.last_mut()) {
            (Some(s), Some(Segment::Pairs { out, len, src })) if *out + *len == i && *src + 2 * *len == s => {
                *len += 1;
                pairs += 1;
            }
            (Some(s), _) => {
                segments.push(Segment::Pairs { out: i, len: 1, src: s });
                pairs += 1;
            }
            (None, _) => segments.push(Segment::General(i)),
        }
    }
    (4 * pairs >= 3 * taps.len()).then_some(segments)
}

/// Pillow's horizontal pass over the rows `rows` of `image` with [`segments`]' plan of `taps`;
/// `image` holds the columns from `x0` on.
pub(super) fn horizontal(image: &Raster, rows: Range<usize>, taps: &[Tap], segments: &[Segment], x0: usize) -> Raster {
    match image.channels {
        1 => horizontal_n::<1>(image, rows, taps, segments, x0),
        3 => horizontal_n::<3>(image, rows, taps, segments, x0),
        c => unreachable!("rasters have 1 or 3 channels, not {c}"),
    }
}

fn horizontal_n<const C: usize>(
    image: &Raster,
    rows: Range<usize>,
    taps: &[Tap],
    segments: &[Segment],
    x0: usize,
) -> Raster {
    let stride = image.width * C;
    let mut out = vec![0; rows.len() * taps.len() * C];
    for (y, out_row) in rows.clone().zip(out.chunks_exact_mut(taps.len() * C)) {
        let src = &image.data[y * stride..][..stride];
        for segment in segments {
            match *segment {
                Segment::Pairs { out, len, src: first } => {
                    pair_means::<C>(&src[(first - x0) * C..][..2 * len * C], &mut out_row[out * C..][..len * C]);
                }
                Segment::General(i) => {
                    let tap = &taps[i];
                    for ch in 0..C {
                        let pixels = src[(tap.start - x0) * C + ch..].iter().step_by(C);
                        let sum = tap.weights.iter().zip(pixels).fold(HALF, |s, (&w, &p)| s + w * i32::from(p));
                        out_row[i * C + ch] = clip8(sum);
                    }
                }
            }
        }
    }
    Raster::new(taps.len(), rows.len(), C, out)
}

/// `out[i * C + ch] = (src[2iC + ch] + src[2iC + C + ch] + 1) >> 1`: the means of adjacent
/// `C`-byte pixels.
fn pair_means<const C: usize>(src: &[u8], out: &mut [u8]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("ssse3") {
        // SAFETY: the CPU supports SSSE3, checked just above.
        done = unsafe { pair_means_ssse3::<C>(src, out) };
    }
    for (pair, o) in src[2 * done..].chunks_exact(2 * C).zip(out[done..].chunks_exact_mut(C)) {
        for ch in 0..C {
            o[ch] = mean(pair[ch], pair[C + ch]);
        }
    }
}

/// [`pair_means`] 16 input bytes at a time: two shuffles gather each pair's first and second
/// pixels (two RGB pairs or eight gray ones per load), `pavgb` averages them, and a 16-byte store
/// writes their means (the bytes after them are overwritten by the next step). Returns how many
/// output bytes are done; the caller finishes the rest.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3")]
#[allow(clippy::cast_ptr_alignment)] // `loadu`/`storeu` take unaligned pointers
unsafe fn pair_means_ssse3<const C: usize>(src: &[u8], out: &mut [u8]) -> usize {
    use std::arch::x86_64::{__m128i, _mm_avg_epu8, _mm_loadu_si128, _mm_shuffle_epi8, _mm_storeu_si128};
    let pairs = 16 / (2 * C);
    let (mut first, mut second) = ([0x80_u8; 16], [0x80_u8; 16]); // 0x80: a zero byte
    for j in 0..pairs {
        for ch in 0..C {
            // At most 2 * 8 + 1: every index fits a byte.
            #[allow(clippy::cast_possible_truncation)]
            let (a, b) = ((2 * j * C + ch) as u8, (2 * j * C + C + ch) as u8);
            (first[j * C + ch], second[j * C + ch]) = (a, b);
        }
    }
    // SAFETY (all loads and stores): the loop condition keeps each 16-byte access inside its slice.
    let (first, second) = unsafe { (_mm_loadu_si128(first.as_ptr().cast()), _mm_loadu_si128(second.as_ptr().cast())) };
    let mut done = 0;
    while 2 * done + 16 <= src.len() && done + 16 <= out.len() {
        unsafe {
            let v = _mm_loadu_si128(src.as_ptr().add(2 * done).cast::<__m128i>());
            let means = _mm_avg_epu8(_mm_shuffle_epi8(v, first), _mm_shuffle_epi8(v, second));
            _mm_storeu_si128(out.as_mut_ptr().add(done).cast::<__m128i>(), means);
        }
        done += pairs * C;
    }
    done
}

/// One output row of the vertical pass for a pair tap: the rounded means of two source rows
/// (which the compiler turns into `pavgb` over whole rows).
#[inline(always)] // so that `vertical_avx2` compiles it with AVX2
#[allow(clippy::inline_always)]
pub(super) fn average_rows(a: &[u8], b: &[u8], out: &mut [u8]) {
    out.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (&a, &b))| *o = mean(a, b));
}

/// `(a + b + 1) >> 1`.
#[inline(always)]
#[allow(clippy::inline_always)]
fn mean(a: u8, b: u8) -> u8 {
    // At most (255 + 255 + 1) >> 1 = 255: the cast keeps every value.
    #[allow(clippy::cast_possible_truncation)]
    let m = ((u16::from(a) + u16::from(b) + 1) >> 1) as u8;
    m
}

#[cfg(test)]
mod tests {
    use super::super::{coefficients, Filter};
    use super::*;

    #[test]
    fn even_halving_is_one_run_of_pairs() {
        assert_eq!(
            segments(&coefficients(40, 20, Filter::Box)),
            Some(vec![Segment::Pairs { out: 0, len: 20, src: 0 }])
        );
        assert_eq!(segments(&coefficients(40, 20, Filter::Bicubic)), None);
        assert_eq!(segments(&coefficients(40, 13, Filter::Box)), None);
    }

    #[test]
    fn odd_halving_shifts_its_pairs_once_around_a_general_tap() {
        // 375 rows -> 187: scale 2.005; tap 93 spans three rows (186, 187, 188) with weights 1/3.
        let taps = coefficients(375, 187, Filter::Box);
        assert_eq!(
            segments(&taps),
            Some(vec![
                Segment::Pairs { out: 0, len: 93, src: 0 },
                Segment::General(93),
                Segment::Pairs { out: 94, len: 93, src: 189 },
            ])
        );
        assert_eq!(taps[93].weights.iter().filter(|&&w| w != 0).count(), 3);
    }

    #[test]
    fn simd_and_scalar_means_agree() {
        let src: Vec<u8> = (0..301_u32).map(|i| u8::try_from(i * 89 % 256).unwrap()).collect();
        for c in [1, 3] {
            for len in [0, 1, 2, 5, 7, 8, 31, 50] {
                let mut out = vec![0; len * c];
                if c == 1 {
                    pair_means::<1>(&src[..2 * len], &mut out);
                } else {
                    pair_means::<3>(&src[..6 * len], &mut out);
                }
                let expected: Vec<u8> = (0..len * c)
                    .map(|k| mean(src[(k / c) * 2 * c + k % c], src[(k / c) * 2 * c + c + k % c]))
                    .collect();
                assert_eq!(out, expected, "{c} channels, {len} pixels");
            }
        }
    }
}
