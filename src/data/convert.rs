//! Decoding an image file and converting it to RGB or L exactly as Pillow's
//! `Image.open(path).convert("RGB" | "L")` does.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageFormat, ImageReader};

use super::error::DataError;
use super::raster::{Raster, Region, Window};

/// Pillow's grayscale of one RGB pixel: ITU-R 601-2 luma,
/// `L = R * 299/1000 + G * 587/1000 + B * 114/1000`, which Pillow computes in
/// 16-bit fixed point and rounds (`L24` in Pillow's `libImaging/Convert.c`:
/// `(R*19595 + G*38470 + B*7471 + 0x8000) >> 16`).
#[must_use]
#[allow(clippy::cast_possible_truncation)] // the weights sum to 65536, so L <= 255
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16) as u8
}

/// Decodes `path` (PNG or JPEG, told by content, else by extension) into `channels` (1 or 3) channels.
///
/// JPEGs (content starting `FF D8 FF`) decode with libjpeg-turbo as in Pillow
/// when the build found it (see [`super::jpeg`]), other files with the `image` crate.
///
/// # Errors
/// When the file cannot be read or is not a decodable image; the message names it.
pub fn decode(path: &Path, channels: usize) -> Result<Raster, DataError> {
    Ok(decode_window(path, channels, &|_, _| None)?.0)
}

/// Like [`decode`], but gives only the window `window(width, height)` names (all of the image
/// when it names none). JPEGs then decode only that window (see [`super::jpeg::decode_window`]),
/// other formats decode whole and are cropped. With where the raster lies in the image.
///
/// # Errors
/// As [`decode`].
pub fn decode_window(
    path: &Path,
    channels: usize,
    window: &(dyn Fn(usize, usize) -> Option<Window> + Sync),
) -> Result<(Raster, Region), DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    #[cfg(msnr_libjpeg)]
    if super::jpeg::is_jpeg(&bytes) {
        match super::jpeg::decode_window(&bytes, window) {
            Ok(Some((raster, region))) => return Ok((convert(libjpeg_image(raster), channels), region)),
            Ok(None) => {} // CMYK / YCCK: the image crate converts those
            Err(e) => return Err(DataError::invalid(path, format!("cannot decode image: {e}"))),
        }
    }
    let color_type = png_color_type(&bytes);
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| DataError::io(path, e))?;
    if reader.format().is_none() {
        if let Ok(format) = ImageFormat::from_path(path) {
            reader.set_format(format);
        }
    }
    let mut image = reader.decode().map_err(|e| DataError::invalid(path, format!("cannot decode image: {e}")))?;
    if let DynamicImage::ImageLumaA16(la) = &image {
        if color_type == Some(0) {
            // A 16-bit gray PNG whose tRNS chunk the decoder expanded to alpha: Pillow opens
            // it as plain `I;16` (the transparency stays in `info`).
            let gray =
                image::ImageBuffer::from_fn(la.width(), la.height(), |x, y| image::Luma([la.get_pixel(x, y).0[0]]));
            image = DynamicImage::ImageLuma16(gray);
        }
    }
    Ok(convert(image, channels).cut_to(window))
}

/// libjpeg's RGB or gray raster as an image (no copy).
#[cfg(msnr_libjpeg)]
fn libjpeg_image(raster: Raster) -> DynamicImage {
    let (w, h) = (u32::try_from(raster.width), u32::try_from(raster.height));
    let (w, h) = (w.expect("libjpeg widths fit u32"), h.expect("libjpeg heights fit u32"));
    let image = if raster.channels == 1 {
        image::GrayImage::from_raw(w, h, raster.data).map(DynamicImage::ImageLuma8)
    } else {
        image::RgbImage::from_raw(w, h, raster.data).map(DynamicImage::ImageRgb8)
    };
    image.expect("the shim checks that pixels fill width x height x channels")
}

/// Converts a decoded image to L (`channels == 1`) or RGB (otherwise) as
/// Pillow's `convert` does: alpha is dropped, gray is replicated to RGB, RGB
/// becomes L by [`luma`]. 16-bit color and gray+alpha samples keep their high
/// byte (Pillow reads them with raw modes `RGB;16B`, `LA;16B`); 16-bit gray is
/// Pillow's mode `I;16`, whose conversion to L or RGB clips at 255.
#[must_use]
pub fn convert(image: DynamicImage, channels: usize) -> Raster {
    let (w, h) = (image.width() as usize, image.height() as usize);
    match (gray(&image), channels) {
        (Some(l), 1) => Raster::new(w, h, 1, l),
        (Some(l), _) => Raster::new(w, h, 3, l.iter().flat_map(|&v| [v, v, v]).collect()),
        (None, 1) => Raster::new(w, h, 1, rgb(image).chunks_exact(3).map(|p| luma(p[0], p[1], p[2])).collect()),
        (None, _) => Raster::new(w, h, 3, rgb(image)),
    }
}

/// The gray samples of a gray image (alpha dropped), `None` for a color one.
fn gray(image: &DynamicImage) -> Option<Vec<u8>> {
    match image {
        DynamicImage::ImageLuma8(g) => Some(g.as_raw().clone()),
        DynamicImage::ImageLumaA8(g) => Some(g.pixels().map(|p| p.0[0]).collect()),
        DynamicImage::ImageLuma16(g) => Some(g.pixels().map(|p| clip_to_byte(p.0[0])).collect()),
        DynamicImage::ImageLumaA16(g) => Some(g.pixels().map(|p| high_byte(p.0[0])).collect()),
        _ => None,
    }
}

/// The RGB samples of a color image (alpha dropped).
fn rgb(image: DynamicImage) -> Vec<u8> {
    match image {
        DynamicImage::ImageRgb16(im) => im.as_raw().iter().map(|&v| high_byte(v)).collect(),
        DynamicImage::ImageRgba16(im) => im.pixels().flat_map(|p| [0, 1, 2].map(|c| high_byte(p.0[c]))).collect(),
        other => other.into_rgb8().into_raw(),
    }
}

fn high_byte(v: u16) -> u8 {
    v.to_be_bytes()[0]
}

/// Pillow's `I;16` to `L`: values above 255 become 255.
fn clip_to_byte(v: u16) -> u8 {
    u8::try_from(v).unwrap_or(u8::MAX)
}

/// A PNG's color type (IHDR byte 25: 0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA).
fn png_color_type(bytes: &[u8]) -> Option<u8> {
    (bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.get(12..16) == Some(b"IHDR")).then(|| bytes.get(25).copied())?
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayAlphaImage, RgbImage, RgbaImage};

    #[test]
    fn luma_matches_pillow_fixed_point() {
        // Pillow 13: Image.new("RGB", (1, 1), c).convert("L").getpixel((0, 0)).
        assert_eq!(luma(255, 255, 255), 255);
        assert_eq!(luma(255, 0, 0), 76);
        assert_eq!(luma(0, 255, 0), 150);
        assert_eq!(luma(0, 0, 255), 29);
        assert_eq!(luma(10, 200, 30), 124);
    }

    #[test]
    fn rgba_drops_alpha_and_gray_replicates() {
        let rgba = DynamicImage::ImageRgba8(RgbaImage::from_raw(1, 1, vec![10, 200, 30, 7]).unwrap());
        assert_eq!(convert(rgba.clone(), 3).data, vec![10, 200, 30]);
        assert_eq!(convert(rgba.clone(), 1).data, vec![124]);
        let la = DynamicImage::ImageLumaA8(GrayAlphaImage::from_raw(1, 1, vec![42, 0]).unwrap());
        assert_eq!(convert(la.clone(), 3).data, vec![42, 42, 42]);
        assert_eq!(convert(la.clone(), 1).data, vec![42]);
    }

    #[test]
    fn sixteen_bit_gray_clips_as_pillows_i16_and_gray_alpha_keeps_the_high_byte() {
        // Pillow 13: Image.fromarray(np.array([[0, 100, 255, 256, 1000, 65535]], np.uint16))
        //   saved as PNG, reopened (mode I;16), .convert("L") -> [0, 100, 255, 255, 255, 255].
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("depth.png");
        let values = [0_u16, 100, 255, 256, 1000, 65535];
        image::ImageBuffer::<image::Luma<u16>, _>::from_raw(6, 1, values.to_vec()).unwrap().save(&path).unwrap();
        assert_eq!(png_color_type(&std::fs::read(&path).unwrap()), Some(0));
        assert_eq!(decode(&path, 1).unwrap().data, [0, 100, 255, 255, 255, 255]);
        assert_eq!(decode(&path, 3).unwrap().data[..6], [0, 0, 0, 100, 100, 100]);
        // A true 16-bit gray+alpha PNG: Pillow's LA;16B keeps the high byte.
        let la = dir.path().join("la.png");
        image::ImageBuffer::<image::LumaA<u16>, _>::from_raw(2, 1, vec![0x1234, 9, 0xFF00, 9])
            .unwrap()
            .save(&la)
            .unwrap();
        assert_eq!(png_color_type(&std::fs::read(&la).unwrap()), Some(4));
        assert_eq!(decode(&la, 1).unwrap().data, [0x12, 0xFF]);
    }

    #[test]
    fn corrupt_and_foreign_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.png");
        std::fs::write(&text, "not an image").unwrap();
        let err = decode(&text, 3).unwrap_err().to_string();
        assert!(err.contains("notes.png: cannot decode image") && err.contains("PNG signature"), "{err}");
        let png = dir.path().join("cut.png");
        RgbImage::new(8, 8).save(&png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        std::fs::write(&png, &bytes[..bytes.len() / 2]).unwrap();
        let err = decode(&png, 3).unwrap_err().to_string();
        assert!(err.contains("cut.png") && err.contains("cannot decode"), "{err}");
    }

    #[test]
    #[cfg(msnr_libjpeg)]
    fn corrupt_and_truncated_jpegs_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data/modes/smooth420.jpg");
        let bytes = std::fs::read(fixture).unwrap();
        let cut = dir.path().join("cut.jpg");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let err = decode(&cut, 3).unwrap_err().to_string();
        assert!(err.contains("cut.jpg: cannot decode image: image file is truncated"), "{err}");
        // A JPEG start then garbage, under a name that says PNG: content decides.
        let garbled = dir.path().join("garbled.png");
        std::fs::write(&garbled, [&[0xFF, 0xD8, 0xFF][..], &[0x17; 64]].concat()).unwrap();
        let err = decode(&garbled, 1).unwrap_err().to_string();
        assert!(err.contains("garbled.png: cannot decode image: "), "{err}");
        eprintln!("{err}");
    }
}
