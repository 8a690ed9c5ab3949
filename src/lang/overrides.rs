//! `--set name=value` overrides: each value is parsed as an msnr expression
//! from its own pseudo file (`--set gamma`), so its errors render like any other.

use std::path::PathBuf;

use super::ast::Expr;
use super::codes;
use super::diagnostic::Diagnostic;
use super::parser;
use super::source::{Sources, Span};

/// One parsed override.
#[derive(Clone, Debug)]
pub struct Override {
    /// The param it sets.
    pub name: String,
    /// The span of the name in its pseudo file (for "no such param").
    pub name_span: Span,
    /// The new value.
    pub value: Expr,
}

/// Parses every override, adding a pseudo file per value to `sources`; a
/// later `--set` of the same name wins.
///
/// # Errors
/// Each unparsable value, as [`codes::BAD_OVERRIDE`].
pub fn parse(sources: &mut Sources, overrides: &[(String, String)]) -> Result<Vec<Override>, Vec<Diagnostic>> {
    let mut out: Vec<Override> = Vec::new();
    let mut errors = Vec::new();
    for (name, text) in overrides {
        let label = format!("--set {name}");
        let name_id = sources.add(PathBuf::from(format!("<{label}>")), "--set".into(), name.clone());
        let name_span = Span { source: name_id, start: 0, end: name.len() };
        let value_id = sources.add(PathBuf::from(format!("<{label}=>")), label.clone(), text.clone());
        match parser::parse_expr(sources, value_id) {
            Ok(value) => {
                out.retain(|o| o.name != *name);
                out.push(Override { name: name.clone(), name_span, value });
            }
            Err(d) => errors.extend(d.0.into_iter().map(|mut d| {
                d.message = format!("`{label}={text}`: {}", d.message);
                d.code = codes::BAD_OVERRIDE;
                if !text.trim_start().starts_with('"') {
                    d.help =
                        Some(format!("the value is an msnr expression; quote a string: --set {name}='\"{text}\"'"));
                }
                d
            })),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}
