//! What a download URL names: a remote `http(s)` resource or a local file
//! (`file://`), and the file name the output gets when it is not extracted.

use std::path::PathBuf;

/// Where the bytes of a download come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// An `http://` or `https://` URL, fetched with resume and retries.
    Http(String),
    /// A `file://` URL: a local file read in place.
    File(PathBuf),
}

impl Source {
    /// Parses `url`.
    ///
    /// # Errors
    /// A message naming what is wrong: an unsupported scheme, a `file://` URL
    /// with a remote host or a relative path.
    pub fn parse(url: &str) -> Result<Self, String> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!("`{url}` is not a URL (expected http://, https:// or file://)"));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "http" | "https" if !rest.is_empty() => Ok(Self::Http(url.to_owned())),
            "file" => file_path(rest).map(Self::File),
            "http" | "https" => Err(format!("`{url}` has no host")),
            other => Err(format!("unsupported URL scheme `{other}` in `{url}` (expected http, https or file)")),
        }
    }
}

/// The local path of a `file://` URL, given what follows `file://`.
fn file_path(rest: &str) -> Result<PathBuf, String> {
    let path = rest.strip_prefix("localhost").unwrap_or(rest);
    if !path.starts_with('/') {
        return Err(format!(
            "`file://{rest}` must name an absolute local path (`file:///abs/path`), not a host or relative path"
        ));
    }
    Ok(PathBuf::from(percent_decode(strip_query(path))))
}

/// The name of the downloaded file: the last segment of the URL's path,
/// percent-decoded, or `download` when the path does not end in a usable name.
#[must_use]
pub fn file_name(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = strip_query(after_scheme);
    let last = path.rsplit('/').next().unwrap_or_default();
    let name = percent_decode(last);
    let usable = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']);
    if usable && path.contains('/') {
        name
    } else {
        "download".to_owned()
    }
}

/// `s` without its query (`?...`) and fragment (`#...`).
fn strip_query(s: &str) -> &str {
    s.split(['?', '#']).next().unwrap_or_default()
}

/// Decodes `%XX` escapes (RFC 3986 section 2.1); invalid escapes stay as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // Two hex digits exactly (`from_str_radix` alone would take "+1").
        let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        let hex = hex.and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schemes() {
        assert_eq!(Source::parse("https://h/a.zip"), Ok(Source::Http("https://h/a.zip".into())));
        assert_eq!(Source::parse("HTTP://h/a"), Ok(Source::Http("HTTP://h/a".into())));
        assert_eq!(Source::parse("file:///tmp/a%20b.tar"), Ok(Source::File("/tmp/a b.tar".into())));
        assert_eq!(Source::parse("file://localhost/x"), Ok(Source::File("/x".into())));
        assert!(Source::parse("ftp://h/a").unwrap_err().contains("unsupported URL scheme `ftp`"));
        assert!(Source::parse("file://host/x").unwrap_err().contains("absolute local path"));
        assert!(Source::parse("a.zip").unwrap_err().contains("not a URL"));
        assert!(Source::parse("https://").unwrap_err().contains("no host"));
    }

    #[test]
    fn names_files() {
        let cases = [
            ("https://h/d/img_align_celeba.zip", "img_align_celeba.zip"),
            ("https://h/r/main/x.tar.gz?download=true", "x.tar.gz"),
            ("https://h/a%20b.bin#frag", "a b.bin"),
            ("https://h/", "download"),
            ("https://h", "download"),
            ("https://h/%2e%2e", "download"),
            ("https://h/a%2Fb", "download"),
            ("file:///tmp/w.pth", "w.pth"),
        ];
        for (url, name) in cases {
            assert_eq!(file_name(url), name, "{url}");
        }
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("a%41%zz%4"), "aA%zz%4");
        assert_eq!(percent_decode("%+1%-1%2f"), "%+1%-1/", "two hex digits exactly");
    }
}
