//! Turns a pest error into a diagnostic that says what was expected in words
//! ("expected `{`", "expected a value") and what was found instead.

use pest::error::{Error, ErrorVariant, InputLocation};

use super::codes;
use super::diagnostic::Diagnostic;
use super::parser::Rule;
use super::source::{SourceId, Sources, Span};

/// The diagnostic for a pest failure in file `id`.
#[must_use]
pub fn convert(sources: &Sources, id: SourceId, text: &str, error: &Error<Rule>) -> Diagnostic {
    let at = match error.location {
        InputLocation::Pos(p) | InputLocation::Span((p, _)) => p.min(text.len()),
    };
    let found = found(text, at);
    let expected = match &error.variant {
        ErrorVariant::ParsingError { positives, .. } => expected(positives),
        ErrorVariant::CustomError { message } => message.clone(),
    };
    let (shown, span, label) = if found.is_empty() {
        // At the end of the input: point at the last token, the input stops after it.
        let last = text.trim_end().char_indices().last().map_or(0, |(i, _)| i);
        let end = (last + 1).min(text.len());
        ("end of file".to_string(), Span { source: id, start: last, end }, format!("expected {expected} after this"))
    } else {
        let shown = if found == LINE_BREAK { "a line break".to_string() } else { format!("`{found}`") };
        let end = (at + found.len()).min(text.len());
        (shown, Span { source: id, start: at, end }, format!("expected {expected}"))
    };
    let d = Diagnostic::new(sources, codes::SYNTAX, format!("expected {expected}, found {shown}"), span, label);
    // A declaration keyword, or the end of the file, where a `}` could stand: a block left open.
    let declaration = matches!(found.as_str(), "" | "use" | "param" | "stage" | "sweep" | "type" | "kind");
    let open = if declaration && expected.contains("`}`") { unclosed_brace(&text[..at]) } else { None };
    match (open, found.as_str()) {
        (Some(brace), "sweep") if text[line_start(text, brace)..brace].trim_start().starts_with("sweep") => d
            .with_label(Span { source: id, start: brace, end: brace + 1 }, "inside this sweep")
            .with_help("a sweep cannot hold another sweep; for every combination of two variables write `sweep a in [..], b in [..] { .. }`"),
        (Some(brace), _) => {
            let (line, col) = line_col(text, brace);
            d.with_label(Span { source: id, start: brace, end: brace + 1 }, "opened here")
                .with_help(format!("unclosed `{{` opened at {line}:{col}: close it with `}}`"))
        }
        (None, "use" | "param" | "stage" | "sweep" | "in" | "type" | "kind" | "true" | "false" | "none") => {
            d.with_help(format!("`{found}` is a reserved word; choose another name"))
        }
        (None, word) => match other_help(word) {
            Some(help) => d.with_help(help),
            None => d,
        },
    }
}

/// Help for a token that starts no valid one: a non-ASCII letter, a number with a stray suffix.
fn other_help(found: &str) -> Option<String> {
    let first = found.chars().next()?;
    if !first.is_ascii() && first.is_alphabetic() {
        return Some("names are ASCII letters, digits and `_`, starting with a letter or `_`".into());
    }
    if first.is_ascii_digit() && found.chars().any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E') {
        return Some(format!(
            "`{found}` is no number: a number takes at most one suffix, `k` (thousand) or `M` (million), as in `500k`"
        ));
    }
    None
}

/// The byte offset of the innermost `{` that `text` leaves open (strings and comments skipped).
fn unclosed_brace(text: &str) -> Option<usize> {
    let mut open = Vec::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' => open.push(i),
            '}' => {
                open.pop();
            }
            '#' => {
                chars.by_ref().find(|&(_, c)| c == '\n');
            }
            '"' => {
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' | '\n' => break,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    open.pop()
}

/// The offset where the line holding `at` starts.
fn line_start(text: &str, at: usize) -> usize {
    text[..at].rfind('\n').map_or(0, |i| i + 1)
}

/// 1-based line and column (in characters) of byte offset `at`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let line = text[..at].matches('\n').count() + 1;
    (line, text[line_start(text, at)..at].chars().count() + 1)
}

/// What [`found`] calls a line break.
const LINE_BREAK: &str = "line break";

/// The token at `at`: a word, a number, or one character; empty at the end.
fn found(text: &str, at: usize) -> String {
    let rest = &text[at..];
    let word: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').take(24).collect();
    match rest.chars().next() {
        _ if !word.is_empty() => word,
        None => String::new(),
        Some('\n' | '\r') => LINE_BREAK.into(),
        Some(c) => c.to_string(),
    }
}

/// "`{`, `,` or a name" from the rules pest tried at the failure point.
fn expected(positives: &[Rule]) -> String {
    let mut words: Vec<&str> = Vec::new();
    // A number is tried only where any value may stand.
    let value_start = positives.contains(&Rule::number);
    if positives.contains(&Rule::kw_stage) && positives.contains(&Rule::kw_param) {
        words.push("a declaration (`use`, `param`, `stage` or `sweep`)");
    }
    for rule in positives {
        let word = match rule {
            Rule::number
            | Rule::string
            | Rule::kw_true
            | Rule::kw_false
            | Rule::kw_none
            | Rule::list
            | Rule::ctor
            | Rule::lbracket
            | Rule::ident
                if value_start =>
            {
                "a value"
            }
            Rule::kw_use
            | Rule::kw_param
            | Rule::kw_stage
            | Rule::kw_sweep
            | Rule::kw_type
            | Rule::kw_kind
            | Rule::doc
                if !words.is_empty() =>
            {
                continue
            }
            r => describe(*r),
        };
        if !words.contains(&word) {
            words.push(word);
        }
    }
    join(&words)
}

/// One rule in words.
fn describe(rule: Rule) -> &'static str {
    match rule {
        Rule::eq => "`=`",
        Rule::comma => "`,`",
        Rule::colon => "`:`",
        Rule::lbrace | Rule::body => "`{`",
        Rule::rbrace => "`}`",
        Rule::lbracket => "`[`",
        Rule::rbracket => "`]`",
        Rule::langle => "`<`",
        Rule::rangle => "`>`",
        Rule::arrow => "`->`",
        Rule::pipe => "`|`",
        Rule::question => "`?`",
        Rule::quote => "closing `\"`",
        Rule::kw_use => "`use`",
        Rule::kw_param => "`param`",
        Rule::kw_stage | Rule::stage_decl => "`stage`",
        Rule::kw_sweep => "`sweep`",
        Rule::kw_in => "`in`",
        Rule::kw_type => "`type`",
        Rule::kw_kind => "`kind`",
        Rule::kw_list | Rule::list_type => "`list`",
        Rule::ident | Rule::field | Rule::param_sig | Rule::variant | Rule::sweep_var | Rule::binding => "a name",
        Rule::string | Rule::string_text => "a string",
        Rule::doc | Rule::docs => "a doc comment",
        Rule::EOI => "end of file",
        _ => "a value",
    }
}

/// `a`, `a or b`, `a, b or c`.
fn join(words: &[&str]) -> String {
    match words {
        [] => "something else".into(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_words() {
        assert_eq!(join(&["`{`"]), "`{`");
        assert_eq!(join(&["`,`", "`}`", "a name"]), "`,`, `}` or a name");
    }

    #[test]
    fn finds_the_innermost_unclosed_brace_outside_strings_and_comments() {
        assert_eq!(unclosed_brace("a { b { c } "), Some(2));
        assert_eq!(unclosed_brace("a { \"{\" # {\n}"), None);
        assert_eq!(unclosed_brace("x = \"\\\"{\" {"), Some(10));
        assert_eq!(line_col("ab\ncd{", 5), (2, 3));
    }

    #[test]
    fn describes_found_tokens() {
        assert_eq!(found("abc def", 0), "abc");
        assert_eq!(found("{x", 0), "{");
        assert_eq!(found("x", 1), "");
        assert_eq!(found("\n", 0), "line break");
    }
}
