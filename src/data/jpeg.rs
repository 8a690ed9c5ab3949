//! JPEG decoding with libjpeg(-turbo), the decoder Pillow uses, so that
//! JPEG pixels are Pillow's bit for bit (default settings: `JDCT_ISLOW`
//! IDCT, fancy chroma upsampling). A safe wrapper over the C shim
//! `src/data/jpeg.c`, which `build.rs` compiles when `jpeglib.h` is found
//! (cfg `msnr_libjpeg`); without it JPEGs go through the `image` crate.

use std::ffi::{c_char, c_int, c_void, CStr};

use super::raster::Raster;

const OK: c_int = 0;
const NOT_HANDLED: c_int = 2;

/// Room for libjpeg's messages (`JMSG_LENGTH_MAX` is 200).
const MESSAGE_LEN: usize = 256;

type Alloc = unsafe extern "C" fn(ctx: *mut c_void, len: usize) -> *mut u8;

extern "C" {
    fn msnr_jpeg_decode(
        data: *const u8,
        len: usize,
        alloc: Alloc,
        ctx: *mut c_void,
        width: *mut usize,
        height: *mut usize,
        channels: *mut c_int,
        msg: *mut c_char,
        msg_len: usize,
    ) -> c_int;
}

/// Whether `bytes` start as a JPEG does (SOI marker, then another marker).
#[must_use]
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// Sizes the `Vec<u8>` at `ctx` to `len` bytes and returns its buffer, or
/// null when that much memory cannot be had.
///
/// # Safety
/// `ctx` must point to a live `Vec<u8>` that nothing else uses during the call.
unsafe extern "C" fn alloc_pixels(ctx: *mut c_void, len: usize) -> *mut u8 {
    // SAFETY: `decode` passes a pointer to its own local `Vec<u8>`, borrowed
    // mutably for the whole `msnr_jpeg_decode` call and not touched meanwhile.
    let pixels = unsafe { &mut *ctx.cast::<Vec<u8>>() };
    if pixels.try_reserve_exact(len).is_err() {
        return std::ptr::null_mut();
    }
    pixels.resize(len, 0);
    pixels.as_mut_ptr()
}

/// Decodes a JPEG held in memory to RGB (color JPEGs, as Pillow's mode "RGB")
/// or gray (one-component JPEGs, mode "L").
///
/// `Ok(None)` for JPEGs this does not handle (CMYK, YCCK), which the caller
/// decodes otherwise.
///
/// # Errors
/// libjpeg's message when the data is not a decodable JPEG, or
/// "image file is truncated" when it ends early (as Pillow says).
pub fn decode(bytes: &[u8]) -> Result<Option<Raster>, String> {
    let mut pixels: Vec<u8> = Vec::new();
    let (mut width, mut height, mut channels) = (0usize, 0usize, 0 as c_int);
    let mut message = [0 as c_char; MESSAGE_LEN];
    // SAFETY: `bytes` is valid for `bytes.len()` reads for the call; the C side
    // only reads it. `alloc_pixels` gets `&mut pixels` as its context, which
    // outlives the call and is not used here until it returns; the C side
    // writes at most the `len` bytes it asked `alloc_pixels` for. The out
    // pointers are to live locals, and `message` has `MESSAGE_LEN` bytes, which
    // the C side NUL-terminates (snprintf). libjpeg's own memory is freed by
    // `jpeg_destroy_decompress` on every path, errors (longjmp) included; the
    // longjmp never crosses a Rust frame (it stays inside `msnr_jpeg_decode`).
    let status = unsafe {
        msnr_jpeg_decode(
            bytes.as_ptr(),
            bytes.len(),
            alloc_pixels,
            (&raw mut pixels).cast::<c_void>(),
            &raw mut width,
            &raw mut height,
            &raw mut channels,
            message.as_mut_ptr(),
            MESSAGE_LEN,
        )
    };
    match status {
        OK => {
            let channels = usize::try_from(channels).map_err(|_| "libjpeg: bad component count".to_owned())?;
            if pixels.len() != width * height * channels {
                return Err(format!("libjpeg: {width}x{height}x{channels} does not fill {} bytes", pixels.len()));
            }
            Ok(Some(Raster::new(width, height, channels, pixels)))
        }
        NOT_HANDLED => Ok(None),
        _ => {
            // SAFETY: `message` is NUL-terminated: zeroed above and written by
            // snprintf, which always terminates within `MESSAGE_LEN`.
            let text = unsafe { CStr::from_ptr(message.as_ptr()) };
            let text = text.to_string_lossy();
            Err(if text.is_empty() { "libjpeg failed".to_owned() } else { text.into_owned() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_and_truncated_jpegs_are_errors() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data/modes/smooth420.jpg");
        let bytes = std::fs::read(path).unwrap();
        assert!(is_jpeg(&bytes));
        let full = decode(&bytes).unwrap().unwrap();
        assert_eq!((full.width, full.height, full.channels), (48, 40, 3));
        let err = decode(&bytes[..bytes.len() / 2]).unwrap_err();
        assert_eq!(err, "image file is truncated");
        let err = decode(&bytes[..20]).unwrap_err();
        assert_eq!(err, "image file is truncated");
        let mut garbled = bytes.clone();
        garbled[2..40].fill(0x17);
        let err = decode(&garbled).unwrap_err();
        assert!(!err.is_empty(), "{err}");
        assert!(!is_jpeg(b"\x89PNG"));
    }
}
