//! Element types of torch storages, named as `torch.save` names them (`torch.FloatStorage`, ...).

use std::fmt;

/// The element type of a tensor (its storage's type in the pickle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// `torch.float32` (`torch.FloatStorage`).
    F32,
    /// `torch.float16` (`torch.HalfStorage`).
    F16,
    /// `torch.bfloat16` (`torch.BFloat16Storage`).
    BF16,
    /// `torch.float64` (`torch.DoubleStorage`).
    F64,
    /// `torch.int64` (`torch.LongStorage`).
    I64,
    /// `torch.int32` (`torch.IntStorage`).
    I32,
    /// `torch.int16` (`torch.ShortStorage`).
    I16,
    /// `torch.int8` (`torch.CharStorage`).
    I8,
    /// `torch.uint8` (`torch.ByteStorage`, also `torch.UntypedStorage`).
    U8,
    /// `torch.bool` (`torch.BoolStorage`), one byte per element, 0 or 1.
    Bool,
}

impl DType {
    /// Every element type, in declaration order.
    pub const ALL: [DType; 10] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::F64,
        DType::I64,
        DType::I32,
        DType::I16,
        DType::I8,
        DType::U8,
        DType::Bool,
    ];

    /// Bytes per element.
    #[must_use]
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// The element type of a storage class in module `torch` (`FloatStorage` -> `F32`).
    #[must_use]
    pub fn from_storage_name(name: &str) -> Option<DType> {
        Some(match name {
            "FloatStorage" => DType::F32,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "DoubleStorage" => DType::F64,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" | "UntypedStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        })
    }

    /// PyTorch's name for the element type (`float32`, `bfloat16`, ...).
    #[must_use]
    pub fn torch_name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F64 => "float64",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.torch_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_names_map_to_dtypes_with_their_sizes() {
        let table = [
            ("FloatStorage", 4),
            ("HalfStorage", 2),
            ("BFloat16Storage", 2),
            ("DoubleStorage", 8),
            ("LongStorage", 8),
            ("IntStorage", 4),
            ("ShortStorage", 2),
            ("CharStorage", 1),
            ("ByteStorage", 1),
            ("BoolStorage", 1),
        ];
        let dtypes: Vec<DType> = table.iter().map(|(n, _)| DType::from_storage_name(n).unwrap()).collect();
        assert_eq!(dtypes, DType::ALL);
        for ((_, size), dtype) in table.iter().zip(dtypes) {
            assert_eq!(dtype.size(), *size, "{dtype}");
        }
        assert_eq!(DType::from_storage_name("QInt8Storage"), None);
    }
}
