//! [`Raster`]: one decoded 8-bit image, pixels interleaved row by row (HWC),
//! as Pillow and `numpy.asarray(img)` hold them.

/// A rectangle of an image, in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First column.
    pub left: usize,
    /// First row.
    pub top: usize,
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
}

/// Where a raster lies in the image it was decoded from: it holds the pixels from `origin` on
/// of an image of `size` (all of them, or the window a step asked for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// The column and row of the raster's first pixel in the image.
    pub origin: (usize, usize),
    /// The image's width and height.
    pub size: (usize, usize),
}

impl Region {
    /// All of a `width x height` image.
    #[must_use]
    pub fn whole(width: usize, height: usize) -> Self {
        Self { origin: (0, 0), size: (width, height) }
    }
}

/// An 8-bit image with 1 (L) or 3 (RGB) interleaved channels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Raster {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Channels per pixel.
    pub channels: usize,
    /// `height * width * channels` bytes, HWC order.
    pub data: Vec<u8>,
}

impl Raster {
    /// Wraps HWC `data`.
    ///
    /// # Panics
    /// When `data` does not hold `height * width * channels` bytes (a caller bug).
    #[must_use]
    pub fn new(width: usize, height: usize, channels: usize, data: Vec<u8>) -> Self {
        assert_eq!(data.len(), width * height * channels, "raster buffer size");
        Self { width, height, channels, data }
    }

    /// Builds a raster from one CHW item of a dataset.
    #[must_use]
    pub fn from_chw(chw: &[u8], channels: usize, height: usize, width: usize) -> Self {
        let plane = height * width;
        let data = (0..plane).flat_map(|p| (0..channels).map(move |c| chw[c * plane + p])).collect();
        Self::new(width, height, channels, data)
    }

    /// The pixels in CHW order (planar), as a dataset stores them.
    #[must_use]
    pub fn to_chw(&self) -> Vec<u8> {
        let c = self.channels;
        if c == 1 {
            return self.data.clone();
        }
        let plane = self.width * self.height;
        let mut out = vec![0; self.data.len()];
        if c == 3 {
            let (r, rest) = out.split_at_mut(plane);
            let (g, b) = rest.split_at_mut(plane);
            let planes = r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut());
            for (((r, g), b), px) in planes.zip(self.data.chunks_exact(3)) {
                (*r, *g, *b) = (px[0], px[1], px[2]);
            }
        } else {
            for (i, v) in self.data.iter().enumerate() {
                out[(i % c) * plane + i / c] = *v;
            }
        }
        out
    }

    /// This image cut to the window `window(width, height)` names, when it names one inside the
    /// image; else the image itself; with where the result lies in this image. (How decoders that
    /// decode whole images honour a window.)
    #[must_use]
    pub fn cut_to(self, window: &dyn Fn(usize, usize) -> Option<Window>) -> (Self, Region) {
        let size = (self.width, self.height);
        match window(self.width, self.height) {
            Some(w) if w.left + w.width <= self.width && w.top + w.height <= self.height => {
                (self.crop(w.left, w.top, w.width, w.height), Region { origin: (w.left, w.top), size })
            }
            _ => (self, Region::whole(size.0, size.1)),
        }
    }

    /// The `width x height` window whose top-left corner is `(left, top)`; like
    /// Pillow's `img.crop((left, top, left + width, top + height))` inside the image.
    ///
    /// # Panics
    /// When the window leaves the image (callers check first).
    #[must_use]
    pub fn crop(&self, left: usize, top: usize, width: usize, height: usize) -> Self {
        assert!(left + width <= self.width && top + height <= self.height, "crop window inside the image");
        let (row, c) = (self.width * self.channels, self.channels);
        let mut data = Vec::with_capacity(width * height * c);
        for y in top..top + height {
            data.extend_from_slice(&self.data[y * row + left * c..][..width * c]);
        }
        Self::new(width, height, self.channels, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chw_round_trip() {
        let r = Raster::new(2, 1, 3, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(r.to_chw(), vec![1, 4, 2, 5, 3, 6]);
        assert_eq!(Raster::from_chw(&r.to_chw(), 3, 1, 2), r);
    }

    #[test]
    fn crop_takes_the_window() {
        let r = Raster::new(3, 3, 1, (0..9).collect());
        assert_eq!(r.crop(1, 1, 2, 2).data, vec![4, 5, 7, 8]);
    }
}
