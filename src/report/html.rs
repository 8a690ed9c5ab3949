//! HTML helpers: escaping every user string (stage names, parameter values,
//! metric names) and embedding images as `data:` URIs, so the report is one
//! file that opens from disk with no server and no network.

use std::path::Path;

use base64::Engine as _;

/// `text` with `&`, `<`, `>`, `"` and `'` replaced by entities: safe in element
/// content and in quoted attribute values.
#[must_use]
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A PNG file as a `data:image/png;base64,...` URI.
///
/// # Errors
/// When the file cannot be read.
pub fn png_data_uri(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
        assert_eq!(escape("m[w=min_snr { gamma = 5 }]"), "m[w=min_snr { gamma = 5 }]");
    }

    #[test]
    fn data_uri_is_base64_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        std::fs::write(&path, b"\x89PNG").unwrap();
        assert_eq!(png_data_uri(&path).unwrap(), "data:image/png;base64,iVBORw==");
        assert!(png_data_uri(&dir.path().join("none.png")).unwrap_err().contains("none.png"));
    }
}
