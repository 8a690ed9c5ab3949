//! The two crop recipes of the diffusion literature, each matching its
//! reference Pillow code pixel for pixel (within [`resample`](super::resample)'s one level).

use crate::lang::Value;

use super::raster::{Raster, Window};
use super::resample::{resize, resize_window, Filter};

/// How a photo becomes a `size x size` training image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CropRecipe {
    /// `ScoreSDE`'s `CelebA` recipe: central `center x center` crop, then an
    /// antialiased bicubic resize.
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
    /// Reads `scoresde { center = N }` or `adm { }`.
    ///
    /// # Errors
    /// A message saying what is wrong with the value.
    pub fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Ctor { name, args } if name == "scoresde" => {
                let center = args.get("center").and_then(Value::as_int).ok_or("`scoresde` needs `center = <int>`")?;
                let center = usize::try_from(center).ok().filter(|&c| c > 0);
                Ok(Self::ScoreSde { center: center.ok_or("`center` must be positive")? })
            }
            Value::Ctor { name, .. } if name == "adm" => Ok(Self::Adm),
            Value::Ctor { name, .. } => Err(format!("unknown crop recipe `{name}` (expected `scoresde` or `adm`)")),
            other => Err(format!("expected a crop recipe (`scoresde {{ center = 140 }}` or `adm {{}}`), got {other}")),
        }
    }

    /// The part of a `width x height` image the recipe reads, when not all of it: the
    /// `ScoreSDE` center crop (images too small for it are read whole, so that
    /// [`Self::apply`] names their size). [`Self::apply`] gives the same result on that
    /// window as on the whole image.
    #[must_use]
    pub fn window(self, width: usize, height: usize) -> Option<Window> {
        match self {
            Self::ScoreSde { center } if width >= center && height >= center => {
                Some(Window { left: (width - center) / 2, top: (height - center) / 2, width: center, height: center })
            }
            Self::ScoreSde { .. } | Self::Adm => None,
        }
    }

    /// Applies the recipe to `image`, giving a `size x size` raster.
    ///
    /// # Errors
    /// When the image is smaller than the `ScoreSDE` center crop.
    pub fn apply(self, image: &Raster, size: usize) -> Result<Raster, String> {
        match self {
            Self::ScoreSde { center } => score_sde(image, center, size),
            Self::Adm => Ok(adm(image, size)),
        }
    }
}

/// `ScoreSDE` (Song et al. 2021) `CelebA` preprocessing, in Pillow:
/// `img.crop(((w - c) // 2, (h - c) // 2, (w - c) // 2 + c, (h - c) // 2 + c)).resize((size, size), Image.BICUBIC)`.
fn score_sde(image: &Raster, center: usize, size: usize) -> Result<Raster, String> {
    let (w, h) = (image.width, image.height);
    if w < center || h < center {
        return Err(format!("image is {w}x{h}, smaller than the center crop {center}x{center}"));
    }
    if (w, h) == (center, center) {
        return Ok(resize(image, size, size, Filter::Bicubic)); // already the window (see `window`)
    }
    let cropped = image.crop((w - center) / 2, (h - center) / 2, center, center);
    Ok(resize(&cropped, size, size, Filter::Bicubic))
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
fn adm(image: &Raster, size: usize) -> Raster {
    let mut halved: Option<Raster> = None;
    loop {
        let img = halved.as_ref().unwrap_or(image);
        if img.width.min(img.height) < 2 * size {
            break;
        }
        halved = Some(resize(img, img.width / 2, img.height / 2, Filter::Box));
    }
    let img = halved.as_ref().unwrap_or(image);
    let (w, h) = (img.width, img.height);
    let (rw, rh) = (scaled_side(w, size, w.min(h)), scaled_side(h, size, w.min(h)));
    resize_window(img, (rw, rh), Filter::Bicubic, ((rw - size) / 2, (rh - size) / 2, size, size))
}

/// Python's `round(x * (size / short))`: float math, ties to even.
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn scaled_side(x: usize, size: usize, short: usize) -> usize {
    let scale = size as f64 / short as f64;
    (x as f64 * scale).round_ties_even() as usize
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn reads_recipe_values() {
        let args = BTreeMap::from([("center".to_owned(), Value::Int(140))]);
        let v = Value::Ctor { name: "scoresde".into(), args };
        assert_eq!(CropRecipe::from_value(&v), Ok(CropRecipe::ScoreSde { center: 140 }));
        let v = Value::Ctor { name: "adm".into(), args: BTreeMap::new() };
        assert_eq!(CropRecipe::from_value(&v), Ok(CropRecipe::Adm));
        let v = Value::Ctor { name: "zoom".into(), args: BTreeMap::new() };
        assert!(CropRecipe::from_value(&v).unwrap_err().contains("unknown crop recipe `zoom`"));
    }

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
        let w = recipe.window(181, 223).unwrap();
        assert_eq!(w, Window { left: 20, top: 41, width: 140, height: 140 });
        let window = img.crop(w.left, w.top, w.width, w.height);
        assert_eq!(recipe.apply(&window, 64).unwrap(), recipe.apply(&img, 64).unwrap());
        assert_eq!(recipe.window(139, 500), None);
        assert_eq!(CropRecipe::Adm.window(500, 375), None);
    }

    #[test]
    fn small_image_fails_score_sde_with_sizes() {
        let img = Raster::new(100, 120, 1, vec![0; 12_000]);
        let err = CropRecipe::ScoreSde { center: 140 }.apply(&img, 64).unwrap_err();
        assert_eq!(err, "image is 100x120, smaller than the center crop 140x140");
    }

    #[test]
    fn adm_output_has_the_target_size() {
        let img = Raster::new(301, 199, 3, vec![9; 301 * 199 * 3]);
        let out = CropRecipe::Adm.apply(&img, 64).unwrap();
        assert_eq!((out.width, out.height), (64, 64));
    }
}
