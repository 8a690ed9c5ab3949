//! `#` comments recovered from the text (the grammar skips them) so the
//! formatter can put them back: each with its position and whether code
//! precedes it on its line.

/// One `#` comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    /// Byte offset of the `#`.
    pub start: usize,
    /// Byte offset of the end of the line (exclusive).
    pub end: usize,
    /// The comment's text from `#`, trailing blanks removed.
    pub text: String,
    /// Code precedes it on the same line.
    pub trailing: bool,
}

/// Every `#` comment of `text`, outside strings and `///` doc lines.
#[must_use]
pub fn scan(text: &str) -> Vec<Comment> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut line_has_code) = (0, false);
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => line_has_code = false,
            b'"' => {
                i = skip_string(bytes, i);
                line_has_code = true;
                continue;
            }
            b'/' if text[i..].starts_with("///") => {
                i = line_end(bytes, i);
                continue;
            }
            b'#' => {
                let end = line_end(bytes, i);
                out.push(Comment { start: i, end, text: text[i..end].trim_end().to_string(), trailing: line_has_code });
                i = end;
                continue;
            }
            b if !b.is_ascii_whitespace() => line_has_code = true,
            _ => {}
        }
        i += 1;
    }
    out
}

/// The offset after the string literal opening at `i`.
fn skip_string(bytes: &[u8], mut i: usize) -> usize {
    i += 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            b'\n' => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The offset of the line break ending the line at `i` (or the end).
fn line_end(bytes: &[u8], i: usize) -> usize {
    bytes[i..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |p| i + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_comments_outside_strings_and_docs() {
        let text = "# a\nstage x = y { s = \"#no\" } # b\n/// doc #no\n  # c  \n";
        let got: Vec<(String, bool)> = scan(text).into_iter().map(|c| (c.text, c.trailing)).collect();
        assert_eq!(got, vec![("# a".into(), false), ("# b".into(), true), ("# c".into(), false)]);
    }

    #[test]
    fn handles_escaped_quotes() {
        let text = "x = \"a\\\"#\" # real";
        assert_eq!(scan(text).len(), 1);
        assert_eq!(scan(text)[0].text, "# real");
    }
}
