//! Resizing as Pillow's `Image.resize((w, h), filter)` does (no `box`, no
//! `reducing_gap`): a separable convolution, horizontal pass first, whose kernel
//! support grows with the reduction factor (antialiasing), with 8-bit rounding
//! between the passes (Pillow `libImaging/Resample.c`, `ImagingResample`).
//!
//! `fast_image_resize` implements that same scheme (its coefficients follow
//! Pillow's `precompute_coeffs`); it keeps 16-bit fixed-point weights where
//! Pillow keeps 22 bits, so an output byte can differ from Pillow's by one
//! level. `tests/integration/data.rs` pins the agreement on real photos.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::raster::Raster;

/// The Pillow resampling filters the crop recipes use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// `Image.BOX`: each output pixel averages the input pixels it covers.
    Box,
    /// `Image.BICUBIC`: the cubic convolution kernel with `a = -0.5` (Catmull-Rom; Keys 1981).
    Bicubic,
}

impl Filter {
    fn convolution(self) -> FilterType {
        match self {
            Self::Box => FilterType::Box,
            Self::Bicubic => FilterType::CatmullRom,
        }
    }
}

/// `image.resize((width, height), filter)` in Pillow; a same-size resize is a copy, as in Pillow.
///
/// # Panics
/// When a size is zero or the raster has other than 1 or 3 channels (callers check).
#[must_use]
pub fn resize(image: &Raster, width: usize, height: usize, filter: Filter) -> Raster {
    if (image.width, image.height) == (width, height) {
        return image.clone();
    }
    let pixel = if image.channels == 1 { PixelType::U8 } else { PixelType::U8x3 };
    let dim = |v: usize| u32::try_from(v).expect("image sides fit in u32");
    let src = ImageRef::new(dim(image.width), dim(image.height), &image.data, pixel).expect("raster buffer size");
    let mut dst = Image::new(dim(width), dim(height), pixel);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter.convolution()));
    Resizer::new().resize(&src, &mut dst, &options).expect("same pixel type, non-empty sizes");
    Raster::new(width, height, image.channels, dst.into_vec())
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
    fn constant_image_stays_constant_under_bicubic() {
        let r = Raster::new(9, 7, 3, vec![77; 9 * 7 * 3]);
        let out = resize(&r, 4, 5, Filter::Bicubic);
        assert_eq!((out.width, out.height, out.channels), (4, 5, 3));
        assert!(out.data.iter().all(|&v| v == 77));
    }
}
