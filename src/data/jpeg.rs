//! JPEG decoding with libjpeg(-turbo), the decoder Pillow uses, so that
//! JPEG pixels are Pillow's bit for bit (default settings: `JDCT_ISLOW`
//! IDCT, fancy chroma upsampling). A safe wrapper over the C shim
//! `src/data/jpeg.c`, which `build.rs` compiles when `jpeglib.h` is found
//! (cfg `msnr_libjpeg`); without it JPEGs go through the `image` crate.
//! [`decode_window`] decodes only the part of the image a crop keeps, with the
//! same pixels as a full decode.

use std::ffi::{c_char, c_int, c_void, CStr};

use super::raster::{Raster, Region, Window};

const OK: c_int = 0;
const NOT_HANDLED: c_int = 2;

/// Room for libjpeg's messages (`JMSG_LENGTH_MAX` is 200).
const MESSAGE_LEN: usize = 256;

type Alloc = unsafe extern "C" fn(ctx: *mut c_void, len: usize) -> *mut u8;
type Want = unsafe extern "C" fn(ctx: *mut c_void, width: usize, height: usize, window: *mut usize) -> c_int;

extern "C" {
    fn msnr_jpeg_decode(
        data: *const u8,
        len: usize,
        alloc: Alloc,
        want: Option<Want>,
        ctx: *mut c_void,
        windowed: *mut c_int,
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

/// What the C side's callbacks share: the pixel buffer and the caller's window choice.
struct Ctx<'a> {
    pixels: Vec<u8>,
    window: &'a dyn Fn(usize, usize) -> Option<Window>,
    /// Where the window the C side asked for lies (it decodes whole files that lack the EOI
    /// marker, and everything when libjpeg cannot crop, without asking; and whole, after
    /// asking, progressive files that libjpeg will smooth: then `windowed` says so).
    placed: Option<Region>,
}

/// Sizes the pixel buffer of the [`Ctx`] at `ctx` to `len` bytes and returns it,
/// or null when that much memory cannot be had.
///
/// # Safety
/// `ctx` must point to a live [`Ctx`] that nothing else uses during the call.
unsafe extern "C" fn alloc_pixels(ctx: *mut c_void, len: usize) -> *mut u8 {
    // SAFETY: `decode_window` passes a pointer to its own local `Ctx`, borrowed
    // mutably for the whole `msnr_jpeg_decode` call and not touched meanwhile.
    let ctx = unsafe { &mut *ctx.cast::<Ctx<'_>>() };
    if ctx.pixels.try_reserve_exact(len).is_err() {
        return std::ptr::null_mut();
    }
    ctx.pixels.resize(len, 0);
    ctx.pixels.as_mut_ptr()
}

/// Asks the [`Ctx`] at `ctx` which window of a `width x height` image to decode;
/// writes it to `window[0..4]` (left, top, width, height) and returns 1, or 0 for all.
///
/// # Safety
/// As [`alloc_pixels`]; `window` must be valid for 4 writes.
unsafe extern "C" fn want_window(ctx: *mut c_void, width: usize, height: usize, window: *mut usize) -> c_int {
    // SAFETY: as in `alloc_pixels`.
    let ctx = unsafe { &mut *ctx.cast::<Ctx<'_>>() };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (ctx.window)(width, height))) {
        Ok(Some(w)) => {
            ctx.placed = Some(Region { origin: (w.left, w.top), size: (width, height) });
            // SAFETY: the C side passes a `size_t[4]`.
            let out = unsafe { std::slice::from_raw_parts_mut(window, 4) };
            out.copy_from_slice(&[w.left, w.top, w.width, w.height]);
            1
        }
        _ => 0,
    }
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
    Ok(decode_window(bytes, &|_, _| None)?.map(|(raster, _)| raster))
}

/// Like [`decode`], but `window(width, height)` may name the only part of the
/// image needed: the result is then that window, pixel for pixel as in a full
/// decode, and the rows below it are never decoded; with where it lies in the
/// image. (A file that does not end with the EOI marker is decoded whole, so
/// truncation is still reported.)
///
/// # Errors
/// As [`decode`], or a window outside the image.
pub fn decode_window(
    bytes: &[u8],
    window: &dyn Fn(usize, usize) -> Option<Window>,
) -> Result<Option<(Raster, Region)>, String> {
    let mut ctx = Ctx { pixels: Vec::new(), window, placed: None };
    let (mut width, mut height, mut channels, mut windowed) = (0usize, 0usize, 0 as c_int, 0 as c_int);
    let mut message = [0 as c_char; MESSAGE_LEN];
    // SAFETY: `bytes` is valid for `bytes.len()` reads for the call; the C side
    // only reads it. `alloc_pixels` and `want_window` get `&mut ctx` as their
    // context, which outlives the call and is not used here until it returns;
    // the C side writes at most the `len` bytes it asked `alloc_pixels` for. The out
    // pointers are to live locals, and `message` has `MESSAGE_LEN` bytes, which
    // the C side NUL-terminates (snprintf). libjpeg's own memory is freed by
    // `jpeg_destroy_decompress` on every path, errors (longjmp) included; the
    // longjmp never crosses a Rust frame (it stays inside `msnr_jpeg_decode`).
    let status = unsafe {
        msnr_jpeg_decode(
            bytes.as_ptr(),
            bytes.len(),
            alloc_pixels,
            Some(want_window),
            (&raw mut ctx).cast::<c_void>(),
            &raw mut windowed,
            &raw mut width,
            &raw mut height,
            &raw mut channels,
            message.as_mut_ptr(),
            MESSAGE_LEN,
        )
    };
    let (pixels, placed) = (ctx.pixels, ctx.placed);
    match status {
        OK => {
            let channels = usize::try_from(channels).map_err(|_| "libjpeg: bad component count".to_owned())?;
            if pixels.len() != width * height * channels {
                return Err(format!("libjpeg: {width}x{height}x{channels} does not fill {} bytes", pixels.len()));
            }
            let raster = Raster::new(width, height, channels, pixels);
            // Decoded whole without asking: cut it here.
            Ok(Some(match placed {
                Some(region) if windowed != 0 => (raster, region),
                _ => raster.cut_to(window),
            }))
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
    use std::path::PathBuf;

    use super::*;

    fn fixture(name: &str) -> PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data/modes").join(name)
    }

    fn window(left: usize, top: usize, width: usize, height: usize) -> Window {
        Window { left, top, width, height }
    }

    /// Every column range with a few row ranges, and every row range with a few column
    /// ranges (among them 2-pixel ones at both edges, a single chroma column in 4:2:0).
    fn windows(w: usize, h: usize) -> Vec<Window> {
        let mut out = Vec::new();
        for left in 0..w {
            for width in 1..=w - left {
                for (top, height) in [(0, h), (0, 1), (h / 3, h / 4), (h - 2, 2)] {
                    out.push(window(left, top, width, height));
                }
            }
        }
        for top in 0..h {
            for height in 1..=h - top {
                for (left, width) in [(0, w), (0, 2), (w / 2 - 1, 3), (w - 2, 2)] {
                    out.push(window(left, top, width, height));
                }
            }
        }
        out
    }

    extern "C" {
        fn msnr_jpeg_encode_for_tests(
            rgb: *const u8,
            w: u32,
            h: u32,
            h_samp: c_int,
            v_samp: c_int,
            progressive: c_int,
            out: *mut *mut u8,
            out_len: *mut std::ffi::c_ulong,
        ) -> c_int;
        fn free(p: *mut c_void);
    }

    /// `rgb` (`w x h`) as a JPEG with luma sampled `h_samp x v_samp` times the chroma.
    fn encode(rgb: &[u8], w: u32, h: u32, (h_samp, v_samp): (c_int, c_int), progressive: bool) -> Vec<u8> {
        let (mut out, mut len) = (std::ptr::null_mut(), 0);
        // SAFETY: `rgb` holds w * h * 3 bytes; the shim mallocs `out`, which is copied, then freed.
        unsafe {
            let ok = msnr_jpeg_encode_for_tests(
                rgb.as_ptr(),
                w,
                h,
                h_samp,
                v_samp,
                c_int::from(progressive),
                &raw mut out,
                &raw mut len,
            );
            assert_eq!(ok, 1, "encoding");
            let bytes = std::slice::from_raw_parts(out, usize::try_from(len).unwrap()).to_vec();
            free(out.cast());
            bytes
        }
    }

    #[test]
    fn windows_of_every_chroma_sampling_have_the_pixels_of_the_full_decode() {
        // A textured 53x45 image in the samplings Pillow cannot write: 4:4:0 (1x2), 4:1:1 (4x1),
        // 4:1:0 (4x2); baseline and progressive.
        let (w, h) = (53_u32, 45_u32);
        let rgb: Vec<u8> =
            (0..w * h * 3).map(|i| u8::try_from((i * 37 + (i / 159) * 91 + i % 7 * 29) % 256).unwrap()).collect();
        for sampling in [(1, 2), (4, 1), (4, 2)] {
            for progressive in [false, true] {
                let bytes = encode(&rgb, w, h, sampling, progressive);
                let full = decode(&bytes).unwrap().unwrap();
                for win in windows(full.width, full.height) {
                    let (got, _) = decode_window(&bytes, &|_, _| Some(win)).unwrap().unwrap();
                    let what = format!("{sampling:?} progressive {progressive}: window {win:?}");
                    assert!(got == full.crop(win.left, win.top, win.width, win.height), "{what} differs");
                }
            }
        }
    }

    #[test]
    fn every_window_has_the_pixels_of_the_full_decode() {
        for name in ["cat420", "cat420p", "cat422", "cat422p", "cat444", "cat444p", "smooth420", "smoothgray"] {
            let bytes = std::fs::read(fixture(&format!("{name}.jpg"))).unwrap();
            let full = decode(&bytes).unwrap().unwrap();
            if name.starts_with("cat") {
                let pillow = image::open(fixture(&format!("{name}-RGB.png"))).unwrap().to_rgb8();
                assert_eq!(full.data, pillow.into_raw(), "{name}: full decode is Pillow's");
            }
            for w in windows(full.width, full.height) {
                let (got, region) = decode_window(&bytes, &|_, _| Some(w)).unwrap().unwrap();
                assert!(got == full.crop(w.left, w.top, w.width, w.height), "{name}: window {w:?} differs");
                assert_eq!(region, Region { origin: (w.left, w.top), size: (full.width, full.height) });
            }
        }
    }

    #[test]
    fn mutated_jpegs_decode_or_fail_cleanly_whole_and_by_window() {
        // 3000 mutants (byte changes, inserted markers, cuts) of two fixtures through both paths:
        // each must give pixels of the expected size or an error, never crash.
        let mut state = 0x5eed_u64;
        let mut next = move |n: usize| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            usize::try_from((z ^ (z >> 31)) % n as u64).unwrap()
        };
        for name in ["cat420.jpg", "cat444p.jpg"] {
            let bytes = std::fs::read(fixture(name)).unwrap();
            for _ in 0..1500 {
                let mut m = bytes.clone();
                match next(3) {
                    0 => (0..=next(8)).for_each(|_| {
                        let at = next(m.len());
                        m[at] = u8::try_from(next(256)).unwrap();
                    }),
                    1 => {
                        let at = next(m.len());
                        m.splice(at..at, [0xFF, u8::try_from(0xC0 + next(64)).unwrap()]);
                    }
                    _ => m.truncate(next(m.len())),
                }
                let center = |w: usize, h: usize| (w > 4 && h > 4).then(|| window(w / 4, h / 4, w / 2, h / 2));
                // Both paths survive every mutant; where both decode, the window holds the
                // whole decode's pixels (libjpeg recovers from corrupt data the same way, and a
                // progressive file with incomplete coefficients is decoded whole: see jpeg.c).
                if let (Ok(Some((part, region))), Ok(Some(whole))) = (decode_window(&m, &center), decode(&m)) {
                    let (x, y) = region.origin;
                    assert!(part == whole.crop(x, y, part.width, part.height), "a mutant's window differs");
                }
            }
        }
    }

    #[test]
    fn an_image_over_the_pixel_limit_is_refused_before_decoding() {
        // cat420.jpg with its frame header (SOF0: FF C0, length, precision, height, width) claiming
        // 65500 x 65500 pixels: 12.9 GB of RGB, over Pillow's decompression-bomb limit.
        let mut bytes = std::fs::read(fixture("cat420.jpg")).unwrap();
        let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).expect("a baseline frame header");
        bytes[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xDC, 0xFF, 0xDC]);
        for result in [decode(&bytes).map(|_| ()), decode_window(&bytes, &|_, _| None).map(|_| ())] {
            let err = result.unwrap_err();
            assert!(err.contains("65500x65500 pixels is over the limit"), "{err}");
        }
    }

    #[test]
    fn a_window_never_hides_truncation_or_leaves_the_image() {
        let bytes = std::fs::read(fixture("cat420.jpg")).unwrap();
        let top_rows = |_, _| Some(window(0, 0, 61, 8));
        // The missing bytes hold rows below the window: still reported, as Pillow does.
        let cut = &bytes[..bytes.len() - 200];
        assert_eq!(decode_window(cut, &top_rows).unwrap_err(), "image file is truncated");
        // A complete file without the EOI marker (trailing bytes) decodes whole, then is cropped.
        let mut trailing = bytes.clone();
        trailing.extend_from_slice(b"trailing");
        let full = decode(&bytes).unwrap().unwrap();
        let (got, region) = decode_window(&trailing, &top_rows).unwrap().unwrap();
        assert_eq!((got, region), (full.crop(0, 0, 61, 8), Region { origin: (0, 0), size: (61, 83) }));
        let err = decode_window(&bytes, &|_, _| Some(window(60, 0, 2, 8))).unwrap_err();
        assert_eq!(err, "window 2x8 at (60, 0) outside the 61x83 image");
    }

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
