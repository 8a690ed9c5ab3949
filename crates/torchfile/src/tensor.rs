//! Tensors as the reader returns them: contiguous little-endian bytes with a dtype and shape,
//! and the gather that turns a strided view of a storage into that.

use half::{bf16, f16};

use crate::dtype::DType;

/// A tensor read from a checkpoint: row-major contiguous, little-endian.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tensor {
    /// Element type.
    pub dtype: DType,
    /// Size of each dimension (empty for a 0-d tensor).
    pub shape: Vec<usize>,
    /// `numel * dtype.size()` bytes, little-endian, row-major.
    pub data: Vec<u8>,
}

impl Tensor {
    /// Number of elements (1 for a 0-d tensor).
    #[must_use]
    pub fn numel(&self) -> usize {
        self.data.len() / self.dtype.size()
    }

    /// The elements converted to `f32` (integers and bools by value; `f64` rounded).
    #[must_use]
    pub fn to_f32(&self) -> Vec<f32> {
        #[allow(clippy::cast_possible_truncation)]
        self.to_f64().into_iter().map(|x| x as f32).collect()
    }

    /// The elements converted to `f64` (exact for every dtype except `i64` beyond 2^53).
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn to_f64(&self) -> Vec<f64> {
        let chunks = self.data.chunks_exact(self.dtype.size());
        match self.dtype {
            DType::F32 => chunks.map(|c| f64::from(f32::from_le_bytes(arr(c)))).collect(),
            DType::F16 => chunks.map(|c| f16::from_le_bytes(arr(c)).to_f64()).collect(),
            DType::BF16 => chunks.map(|c| bf16::from_le_bytes(arr(c)).to_f64()).collect(),
            DType::F64 => chunks.map(|c| f64::from_le_bytes(arr(c))).collect(),
            DType::I64 => chunks.map(|c| i64::from_le_bytes(arr(c)) as f64).collect(),
            DType::I32 => chunks.map(|c| f64::from(i32::from_le_bytes(arr(c)))).collect(),
            DType::I16 => chunks.map(|c| f64::from(i16::from_le_bytes(arr(c)))).collect(),
            DType::I8 => chunks.map(|c| f64::from(i8::from_le_bytes(arr(c)))).collect(),
            DType::U8 => chunks.map(|c| f64::from(c[0])).collect(),
            DType::Bool => chunks.map(|c| f64::from(u8::from(c[0] != 0))).collect(),
        }
    }
}

/// A fixed-size array from a chunk of exactly that size.
fn arr<const N: usize>(chunk: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(chunk);
    out
}

/// Why a view does not fit its storage.
pub(crate) type LayoutError = String;

/// Elements a view needs from its storage: 1 + offset + sum((size - 1) * stride), or 0
/// when it has no elements. Overflow is an error.
pub(crate) fn extent(offset: u64, shape: &[u64], stride: &[u64]) -> Result<u64, LayoutError> {
    if shape.contains(&0) {
        return Ok(0);
    }
    let overflow = || format!("size {shape:?} with stride {stride:?} at offset {offset} overflows");
    let mut last = offset;
    for (&size, &step) in shape.iter().zip(stride) {
        let reach = (size - 1).checked_mul(step).ok_or_else(overflow)?;
        last = last.checked_add(reach).ok_or_else(overflow)?;
    }
    last.checked_add(1).ok_or_else(overflow)
}

/// Number of elements of a shape, overflow-checked.
pub(crate) fn numel(shape: &[u64]) -> Option<u64> {
    shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d))
}

/// Copy the strided view `(offset, shape, stride)` of `storage` into contiguous bytes.
/// The caller has checked that `extent(...) * size <= storage.len()`.
pub(crate) fn gather(storage: &[u8], size: usize, offset: usize, shape: &[usize], stride: &[usize]) -> Vec<u8> {
    let numel: usize = shape.iter().product();
    let mut out = Vec::with_capacity(numel * size);
    if numel == 0 {
        return out;
    }
    let Some((&inner, outer)) = shape.split_last() else {
        out.extend_from_slice(&storage[offset * size..(offset + 1) * size]);
        return out;
    };
    let inner_stride = stride[stride.len() - 1];
    let mut index = vec![0usize; outer.len()];
    loop {
        let base = offset + index.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>();
        copy_row(&mut out, storage, size, base, inner, inner_stride);
        if !advance(&mut index, outer) {
            return out;
        }
    }
}

/// Append `count` elements starting at element `base`, `step` elements apart.
fn copy_row(out: &mut Vec<u8>, storage: &[u8], size: usize, base: usize, count: usize, step: usize) {
    if step == 1 {
        out.extend_from_slice(&storage[base * size..(base + count) * size]);
    } else {
        for i in 0..count {
            let at = (base + i * step) * size;
            out.extend_from_slice(&storage[at..at + size]);
        }
    }
}

/// Odometer increment of a multi-index over `shape`; false once it wraps around.
fn advance(index: &mut [usize], shape: &[usize]) -> bool {
    for (i, &n) in index.iter_mut().zip(shape).rev() {
        *i += 1;
        if *i < n {
            return true;
        }
        *i = 0;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn extent_counts_the_last_element_reached() {
        assert_eq!(extent(0, &[4, 6], &[6, 1]), Ok(24));
        assert_eq!(extent(8, &[2, 3], &[6, 1]), Ok(8 + 6 + 2 + 1));
        assert_eq!(extent(5, &[], &[]), Ok(6));
        assert_eq!(extent(99, &[0, 3], &[3, 1]), Ok(0));
        assert_eq!(extent(0, &[3, 2], &[0, 1]), Ok(2));
        assert!(extent(1, &[u64::MAX, 2], &[2, 1]).is_err());
        assert!(extent(u64::MAX, &[1], &[1]).is_err());
    }

    #[test]
    fn gather_transposes_slices_and_expands() {
        let storage = f32_bytes(&[0., 1., 2., 3., 4., 5.]);
        // [[0, 1, 2], [3, 4, 5]] transposed.
        assert_eq!(gather(&storage, 4, 0, &[3, 2], &[1, 3]), f32_bytes(&[0., 3., 1., 4., 2., 5.]));
        // Column 1 of the rows, as a slice with an offset.
        assert_eq!(gather(&storage, 4, 1, &[2], &[3]), f32_bytes(&[1., 4.]));
        // A 0-d view and an expanded row.
        assert_eq!(gather(&storage, 4, 5, &[], &[]), f32_bytes(&[5.]));
        assert_eq!(gather(&storage, 4, 1, &[2, 2], &[0, 1]), f32_bytes(&[1., 2., 1., 2.]));
        assert!(gather(&storage, 4, 0, &[2, 0], &[1, 1]).is_empty());
    }

    #[test]
    fn conversions_read_every_dtype() {
        let t = |dtype, data: Vec<u8>| Tensor { dtype, shape: vec![data.len() / DType::size(dtype)], data };
        assert_eq!(t(DType::F16, f16::from_f32(1.5).to_le_bytes().to_vec()).to_f32(), [1.5]);
        assert_eq!(t(DType::BF16, bf16::from_f32(-2.0).to_le_bytes().to_vec()).to_f32(), [-2.0]);
        assert_eq!(t(DType::I64, (-7i64).to_le_bytes().to_vec()).to_f64(), [-7.0]);
        assert_eq!(t(DType::I8, vec![0xff]).to_f32(), [-1.0]);
        assert_eq!(t(DType::U8, vec![0xff]).to_f32(), [255.0]);
        assert_eq!(t(DType::Bool, vec![0, 1]).to_f32(), [0.0, 1.0]);
        assert_eq!(t(DType::I16, vec![0, 0x80]).numel(), 1);
    }
}
