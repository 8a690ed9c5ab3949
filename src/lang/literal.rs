//! Decoding of number and string literals: `500k`, `1_000`, `1e-4`, and
//! backslash escapes.

use super::ast::ExprKind;
use super::codes;

/// Decodes a number token (already matched by the grammar) into an int or a float.
///
/// # Errors
/// The code and message of an overflow, an out-of-range float, or a suffix on a float.
pub fn number(text: &str) -> Result<ExprKind, (&'static str, String)> {
    let clean: String = text.chars().filter(|&c| c != '_').collect();
    let (digits, scale) = match clean.as_bytes().last() {
        Some(b'k') => (&clean[..clean.len() - 1], Some(1_000_i64)),
        Some(b'M') => (&clean[..clean.len() - 1], Some(1_000_000_i64)),
        _ => (clean.as_str(), None),
    };
    if digits.contains(['.', 'e', 'E']) {
        if scale.is_some() {
            return Err((codes::BAD_NUMBER, format!("`{text}`: the `k` and `M` suffixes apply to integers only")));
        }
        return match digits.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(ExprKind::Float(f)),
            _ => Err((codes::BAD_NUMBER, format!("`{text}` is out of range for a float"))),
        };
    }
    let overflow = || (codes::INT_OVERFLOW, format!("`{text}` does not fit in a 64-bit integer"));
    let base: i64 = digits.parse().map_err(|_| overflow())?;
    match scale {
        Some(k) => base.checked_mul(k).map(ExprKind::Int).ok_or_else(overflow),
        None => Ok(ExprKind::Int(base)),
    }
}

/// Decodes the escapes of a string literal's inner text: `\n`, `\t`, `\r`,
/// `\0`, `\\`, `\"` and `\u{hex}`.
///
/// # Errors
/// The byte offset and length of the first bad escape with a message.
pub fn unescape(raw: &str) -> Result<String, (usize, usize, String)> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some((_, e)) = chars.next() else { return Err((i, 1, "a string cannot end in `\\`".into())) };
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            '0' => out.push('\0'),
            '\\' | '"' => out.push(e),
            'u' => out.push(unicode(raw, i, &mut chars)?),
            _ => return Err((i, 1 + e.len_utf8(), format!("unknown escape `\\{e}`"))),
        }
    }
    Ok(out)
}

/// The `{hex}` part of a `\u{hex}` escape starting at byte `start`.
fn unicode(
    raw: &str,
    start: usize,
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
) -> Result<char, (usize, usize, String)> {
    let rest = &raw[start..];
    let end = rest.find('}').filter(|_| rest[2..].starts_with('{'));
    let Some(end) = end else { return Err((start, 2, "expected `\\u{hex}`".into())) };
    let hex = &rest[3..end];
    while chars.next_if(|&(j, _)| j <= start + end).is_some() {}
    u32::from_str_radix(hex, 16).ok().filter(|_| !hex.is_empty() && hex.len() <= 6).and_then(char::from_u32).ok_or((
        start,
        end + 1,
        format!("`\\u{{{hex}}}` is not a unicode scalar value"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        let cases: &[(&str, ExprKind)] = &[
            ("0", ExprKind::Int(0)),
            ("500k", ExprKind::Int(500_000)),
            ("2M", ExprKind::Int(2_000_000)),
            ("1_000", ExprKind::Int(1000)),
            ("-3", ExprKind::Int(-3)),
            ("1e-4", ExprKind::Float(1e-4)),
            ("0.5", ExprKind::Float(0.5)),
            ("5.0", ExprKind::Float(5.0)),
            ("-9223372036854775808", ExprKind::Int(i64::MIN)),
        ];
        for (text, want) in cases {
            assert_eq!(&number(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn bad_numbers() {
        for (text, code) in [
            ("9223372036854775808", codes::INT_OVERFLOW),
            ("9223372036854776k", codes::INT_OVERFLOW),
            ("9300000000000M", codes::INT_OVERFLOW),
            ("1.5k", codes::BAD_NUMBER),
            ("1e999", codes::BAD_NUMBER),
        ] {
            assert_eq!(number(text).unwrap_err().0, code, "{text}");
        }
    }

    #[test]
    fn escapes() {
        assert_eq!(unescape(r#"a\nb\t\"q\"\\"#).unwrap(), "a\nb\t\"q\"\\");
        assert_eq!(unescape(r"\u{e9}t\u{1F600}").unwrap(), "ét\u{1F600}");
        assert_eq!(unescape(r"x\q").unwrap_err().0, 1);
        assert!(unescape(r"\u{110000}").is_err());
        assert!(unescape(r"\u{}").is_err());
        assert!(unescape(r"\u00e9").is_err());
        assert!(unescape("\\").is_err());
    }
}
