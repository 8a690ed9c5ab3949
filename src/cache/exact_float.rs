//! Serde helpers that keep every `f64` exact in JSON. `serde_json` already
//! writes finite floats in their shortest round-trip form, but turns NaN and
//! the infinities into `null` (which then fails to read back, and would make
//! NaN, +inf and -inf collide in a cache key). These helpers write the
//! non-finite values as the strings `"NaN"`, `"inf"` and `"-inf"` instead.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserializer, Serializer};

/// Serialize one float (`#[serde(with = "exact_float")]`).
///
/// # Errors
/// Only those of the serializer.
#[allow(clippy::trivially_copy_pass_by_ref)]
pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    match non_finite_name(*x) {
        Some(name) => s.serialize_str(name),
        None => s.serialize_f64(*x),
    }
}

/// Deserialize one float written by [`serialize`] (plain numbers are accepted too).
///
/// # Errors
/// When the value is neither a number nor one of the non-finite names.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    d.deserialize_any(FloatVisitor)
}

/// `"NaN"`, `"inf"` or `"-inf"` for a non-finite float.
fn non_finite_name(x: f64) -> Option<&'static str> {
    if x.is_nan() {
        Some("NaN")
    } else if x.is_infinite() {
        Some(if x > 0.0 { "inf" } else { "-inf" })
    } else {
        None
    }
}

/// Accepts any JSON number, or a non-finite name.
struct FloatVisitor;

impl Visitor<'_> for FloatVisitor {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, \"NaN\", \"inf\" or \"-inf\"")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        match v {
            "NaN" => Ok(f64::NAN),
            "inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
        }
    }
}

/// The same for a map of named floats (metrics): `#[serde(with = "exact_float::map")]`.
pub mod map {
    use super::{BTreeMap, Deserializer, SerializeMap, Serializer};
    use serde::Deserialize;

    /// A float that (de)serializes through the parent module.
    #[derive(serde::Serialize, Deserialize)]
    struct Exact(#[serde(with = "super")] f64);

    /// Serialize a map of floats.
    ///
    /// # Errors
    /// Only those of the serializer.
    pub fn serialize<S: Serializer>(m: &BTreeMap<String, f64>, s: S) -> Result<S::Ok, S::Error> {
        let mut out = s.serialize_map(Some(m.len()))?;
        for (k, v) in m {
            out.serialize_entry(k, &Exact(*v))?;
        }
        out.end()
    }

    /// Deserialize a map of floats.
    ///
    /// # Errors
    /// When a value is not a float.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
        let m = BTreeMap::<String, Exact>::deserialize(d)?;
        Ok(m.into_iter().map(|(k, v)| (k, v.0)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug)]
    struct One(#[serde(with = "super")] f64);

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Metrics(#[serde(with = "super::map")] BTreeMap<String, f64>);

    fn round_trip(x: f64) -> (String, f64) {
        let json = serde_json::to_string(&One(x)).unwrap();
        let back: One = serde_json::from_str(&json).unwrap();
        (json, back.0)
    }

    #[test]
    fn finite_values_are_exact() {
        for x in [0.1, 1e-4, 5.0, -0.0, f64::MIN_POSITIVE, 0.1 + 0.2, 1e300] {
            let (_, back) = round_trip(x);
            assert_eq!(back.to_bits(), x.to_bits(), "{x}");
        }
        assert_eq!(round_trip(5.0).0, "5.0");
    }

    #[test]
    fn non_finite_values_are_distinct_strings() {
        assert_eq!(round_trip(f64::NAN).0, "\"NaN\"");
        assert!(round_trip(f64::NAN).1.is_nan());
        assert_eq!(round_trip(f64::INFINITY), ("\"inf\"".into(), f64::INFINITY));
        assert_eq!(round_trip(f64::NEG_INFINITY), ("\"-inf\"".into(), f64::NEG_INFINITY));
        assert!(serde_json::from_str::<One>("\"nope\"").is_err());
    }

    #[test]
    fn maps_round_trip() {
        let m = Metrics(BTreeMap::from([("fid".into(), 7.99), ("loss".into(), f64::INFINITY)]));
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"fid":7.99,"loss":"inf"}"#);
        assert_eq!(serde_json::from_str::<Metrics>(&json).unwrap(), m);
    }
}
