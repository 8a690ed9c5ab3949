//! The two crop recipes of the diffusion literature, each matching its reference code: ADM's
//! Pillow calls byte for byte, `ScoreSDE`'s `TensorFlow` resize to its floats, stored as 8 bits.

use serde::{Deserialize, Serialize};

use super::raster::{Raster, Region, Window};
use super::resample::{resize_region, scale_and_translate, source_span, Filter};

/// How a photo becomes a `size x size` training image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CropRecipe {
    /// `ScoreSDE`'s `CelebA` recipe: central `center x center` crop, then `TensorFlow`'s
    /// antialiased bilinear resize, stored as `round(255 x)`.
    #[serde(rename = "scoresde")]
    ScoreSde {
        /// Side of the central crop (140 for `CelebA`).
        center: usize,
    },
    /// ADM's `center_crop_arr` (guided-diffusion `image_datasets.py`): box-halve
    /// while the short side is at least twice the target, bicubic-resize the short
    /// side to the target, then center-crop.
    Adm,
}

impl CropRecipe {
    /// The part of a `width x height` image the recipe reads into a `size x size` output, when
    /// not all of it: the `ScoreSDE` center crop (images too small for it are read whole, so
    /// that [`Self::apply`] names their size), or the pixels ADM's halvings and resize reach
    /// for its center crop (a photo's middle, plus the filters' reach). [`Self::apply`] gives
    /// the same result on that window as on the whole image.
    #[must_use]
    pub fn window(self, width: usize, height: usize, size: usize) -> Option<Window> {
        let window = match self {
            Self::ScoreSde { center } if width >= center && height >= center => {
                Window { left: (width - center) / 2, top: (height - center) / 2, width: center, height: center }
            }
            Self::ScoreSde { .. } => return None,
            Self::Adm => AdmPlan::new(width, height, size)?.reads[0],
        };
        (window != Window { left: 0, top: 0, width, height }).then_some(window)
    }

    /// Applies the recipe to `image`, which holds `region` of a photo (all of it, or at least
    /// [`Self::window`]), giving a `size x size` raster.
    ///
    /// # Errors
    /// When the image is smaller than the `ScoreSDE` center crop, or `size` is zero.
    pub fn apply(self, image: &Raster, region: Region, size: usize) -> Result<Raster, String> {
        match self {
            Self::ScoreSde { center } => score_sde(image, region, center, size),
            Self::Adm => adm(image, region, size),
        }
    }
}

/// `ScoreSDE` (Song et al. 2021) `CelebA` preprocessing, `datasets.py` of `score_sde`:
/// ```python
/// img = tf.image.convert_image_dtype(img, tf.float32)      # x / 255
/// img = central_crop(img, 140)      # crop_to_bounding_box(img, (h - c) // 2, (w - c) // 2, c, c)
/// img = resize_small(img, size)     # tf.image.resize(img, [size, size], antialias=True)
/// ```
/// `resize_small` resizes the short side to `round(c * (size / c))`, which is `size` for the
/// square crop, with the default method, bilinear ([`scale_and_translate`]). Its floats are
/// stored as `round(255 x)`.
fn score_sde(image: &Raster, region: Region, center: usize, size: usize) -> Result<Raster, String> {
    let (w, h) = region.size;
    if w < center || h < center {
        return Err(format!("image is {w}x{h}, smaller than the center crop {center}x{center}"));
    }
    if size == 0 {
        return Err("size must be positive".to_owned());
    }
    // The crop in `image`'s own pixels (it holds at least the crop; see `window`).
    let left = ((w - center) / 2).checked_sub(region.origin.0);
    let top = ((h - center) / 2).checked_sub(region.origin.1);
    match (left, top) {
        (Some(0), Some(0)) if (image.width, image.height) == (center, center) => {
            Ok(scale_and_translate::resize(image, size, size))
        }
        (Some(x), Some(y)) if x + center <= image.width && y + center <= image.height => {
            Ok(scale_and_translate::resize(&image.crop(x, y, center, center), size, size))
        }
        _ => Err(format!("the decoded part of the {w}x{h} image misses pixels of the center crop")),
    }
}

/// guided-diffusion `center_crop_arr(pil_image, image_size)`:
/// ```python
/// while min(*pil_image.size) >= 2 * image_size:
///     pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
/// scale = image_size / min(*pil_image.size)
/// pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
/// arr = np.array(pil_image)
/// crop_y = (arr.shape[0] - image_size) // 2
/// crop_x = (arr.shape[1] - image_size) // 2
/// return arr[crop_y : crop_y + image_size, crop_x : crop_x + image_size]
/// ```
/// Each step computes only the pixels the center crop depends on ([`AdmPlan`]).
fn adm(image: &Raster, region: Region, size: usize) -> Result<Raster, String> {
    let (w, h) = region.size;
    let plan = AdmPlan::new(w, h, size).ok_or("size must be positive")?;
    let reads = &plan.reads[0];
    let (x0, y0) = region.origin;
    let inside = x0 <= reads.left
        && y0 <= reads.top
        && reads.left + reads.width <= x0 + image.width
        && reads.top + reads.height <= y0 + image.height;
    if !inside {
        return Err(format!("the decoded part of the {w}x{h} image misses pixels the ADM crop reads"));
    }
    let mut current: Option<Raster> = None;
    let mut at = region;
    for (i, pair) in plan.sizes.windows(2).enumerate() {
        let next = plan.reads[i + 1];
        let window = (next.left, next.top, next.width, next.height);
        let src = current.as_ref().unwrap_or(image);
        current = Some(resize_region(src, at, pair[1], Filter::Box, window));
        at = Region { origin: (next.left, next.top), size: pair[1] };
    }
    let crop = plan.crop;
    let src = current.as_ref().unwrap_or(image);
    Ok(resize_region(src, at, plan.resized, Filter::Bicubic, (crop.left, crop.top, crop.width, crop.height)))
}

/// ADM's steps for a `width x height` photo and what each reads.
#[derive(Debug, PartialEq, Eq)]
struct AdmPlan {
    /// The photo's size, then the size after each box halving.
    sizes: Vec<(usize, usize)>,
    /// The bicubic resize's size (short side `size`).
    resized: (usize, usize),
    /// The center crop of the resized image.
    crop: Window,
    /// For each entry of `sizes`, the pixels of that image the crop depends on.
    reads: Vec<Window>,
}

impl AdmPlan {
    /// `None` when `size` is zero.
    fn new(width: usize, height: usize, size: usize) -> Option<Self> {
        if size == 0 || width == 0 || height == 0 {
            return None;
        }
        let mut sizes = vec![(width, height)];
        while let Some(&(w, h)) = sizes.last().filter(|(w, h)| *w.min(h) >= 2 * size) {
            sizes.push((w / 2, h / 2));
        }
        let (w, h) = *sizes.last()?;
        let resized = (scaled_side(w, size, w.min(h)), scaled_side(h, size, w.min(h)));
        let crop = Window { left: (resized.0 - size) / 2, top: (resized.1 - size) / 2, width: size, height: size };
        // Backwards from the crop: each step's input pixels its needed outputs read.
        let span = |from: (usize, usize), to: (usize, usize), filter, out: Window| {
            let xs = source_span(from.0, to.0, filter, out.left..out.left + out.width);
            let ys = source_span(from.1, to.1, filter, out.top..out.top + out.height);
            Window { left: xs.start, top: ys.start, width: xs.len(), height: ys.len() }
        };
        let mut reads = vec![span((w, h), resized, Filter::Bicubic, crop)];
        for pair in sizes.windows(2).rev() {
            let needed = *reads.last()?;
            reads.push(span(pair[0], pair[1], Filter::Box, needed));
        }
        reads.reverse();
        Some(Self { sizes, resized, crop, reads })
    }
}

/// Python's `round(x * (size / short))`: float math, ties to even.
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn scaled_side(x: usize, size: usize, short: usize) -> usize {
    let scale = size as f64 / short as f64;
    (x as f64 * scale).round_ties_even() as usize
}

#[cfg(test)]
mod tests {
    use super::super::resample::resize;
    use super::*;

    #[test]
    fn adm_sides_round_half_to_even_like_python() {
        // round(5 * 64 / 128) = round(2.5) = 2 in Python 3.
        assert_eq!(scaled_side(5, 64, 128), 2);
        assert_eq!(scaled_side(7, 64, 128), 4);
    }

    #[test]
    fn score_sde_gives_the_same_image_from_its_window() {
        let data = (0..181 * 223 * 3).map(|i| u8::try_from(i * 7 % 251).unwrap()).collect();
        let img = Raster::new(181, 223, 3, data);
        let recipe = CropRecipe::ScoreSde { center: 140 };
        let w = recipe.window(181, 223, 64).unwrap();
        assert_eq!(w, Window { left: 20, top: 41, width: 140, height: 140 });
        let window = img.crop(w.left, w.top, w.width, w.height);
        let placed = Region { origin: (20, 41), size: (181, 223) };
        let whole = recipe.apply(&img, Region::whole(181, 223), 64).unwrap();
        assert_eq!(recipe.apply(&window, placed, 64).unwrap(), whole);
        let plain = scale_and_translate::resize(&img.crop(20, 41, 140, 140), 64, 64);
        assert_eq!(whole, plain);
        assert_eq!(recipe.window(139, 500, 64), None);
    }

    /// ADM's `center_crop_arr` step by step on whole images: what the planned, windowed
    /// version must give.
    fn adm_plain(image: &Raster, size: usize) -> Raster {
        let mut img = image.clone();
        while img.width.min(img.height) >= 2 * size {
            img = resize(&img, img.width / 2, img.height / 2, Filter::Box);
        }
        let short = img.width.min(img.height);
        let (w, h) = (scaled_side(img.width, size, short), scaled_side(img.height, size, short));
        let img = resize(&img, w, h, Filter::Bicubic);
        img.crop((w - size) / 2, (h - size) / 2, size, size)
    }

    #[test]
    fn adm_reads_only_its_window_and_gives_the_plain_recipes_bytes() {
        // Landscape and portrait, even and odd sides, no halving, one, two and three, and a
        // panorama whose resized side (96000) is too long to remember its taps whole.
        let sizes =
            [(500, 375), (375, 500), (333, 500), (501, 377), (640, 480), (90, 70), (129, 300), (1100, 130), (3000, 2)];
        for (w, h) in sizes {
            let data = (0..w * h * 3).map(|i| u8::try_from((i * 131 + i / 997) % 256).unwrap()).collect();
            let img = Raster::new(w, h, 3, data);
            for size in [64, 32] {
                let expected = adm_plain(&img, size);
                let whole = CropRecipe::Adm.apply(&img, Region::whole(w, h), size).unwrap();
                assert_eq!(whole, expected, "{w}x{h} -> {size}, whole");
                let Some(win) = CropRecipe::Adm.window(w, h, size) else {
                    continue;
                };
                let part = img.crop(win.left, win.top, win.width, win.height);
                let placed = Region { origin: (win.left, win.top), size: (w, h) };
                assert_eq!(CropRecipe::Adm.apply(&part, placed, size).unwrap(), expected, "{w}x{h} -> {size}, {win:?}");
                // A part that misses a pixel the crop reads is refused, not misread.
                let short = img.crop(win.left + 1, win.top, win.width - 1, win.height);
                let shifted = Region { origin: (win.left + 1, win.top), size: (w, h) };
                assert!(CropRecipe::Adm.apply(&short, shifted, size).unwrap_err().contains("misses pixels"));
            }
        }
        // A landscape photo's window drops its sides; a portrait's, its top and bottom.
        let landscape = CropRecipe::Adm.window(500, 375, 64).unwrap();
        assert!(landscape.top == 0 && landscape.height == 375 && landscape.width < 400, "{landscape:?}");
        let portrait = CropRecipe::Adm.window(375, 500, 64).unwrap();
        assert!(portrait.left == 0 && portrait.width == 375 && portrait.height < 400, "{portrait:?}");
        assert_eq!(CropRecipe::Adm.window(64, 64, 64), None);
    }

    #[test]
    fn small_image_fails_score_sde_with_sizes() {
        let img = Raster::new(100, 120, 1, vec![0; 12_000]);
        let err = CropRecipe::ScoreSde { center: 140 }.apply(&img, Region::whole(100, 120), 64).unwrap_err();
        assert_eq!(err, "image is 100x120, smaller than the center crop 140x140");
    }

    #[test]
    fn adm_output_has_the_target_size() {
        let img = Raster::new(301, 199, 3, vec![9; 301 * 199 * 3]);
        let out = CropRecipe::Adm.apply(&img, Region::whole(301, 199), 64).unwrap();
        assert_eq!((out.width, out.height), (64, 64));
    }
}
