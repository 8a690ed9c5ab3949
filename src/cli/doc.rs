//! `msnr doc`: the reference of the built-in stage kinds and constructor types,
//! rendered from the stdlib declarations (so it is always what the analyzer checks).

use std::fmt::Write as _;

use crate::lang::stdlib::{Param, Stdlib};

/// The whole reference, or the entry of one kind or type.
///
/// # Errors
/// When `name` is neither a stage kind nor a type, with the known names.
pub(super) fn reference(lib: &Stdlib, name: Option<&str>) -> Result<String, String> {
    if name == Some("sweep") {
        return Ok(SWEEP.to_string());
    }
    let mut out = String::new();
    let mut found = false;
    for kind in lib.kinds.iter().filter(|k| name.is_none_or(|n| n == k.name)) {
        found = true;
        let _ = writeln!(out, "stage kind `{}` -> {}\n{}", kind.name, kind.output, indent(&kind.doc, 2));
        params(&mut out, &kind.params, 2);
        out.push('\n');
    }
    for family in lib.types.iter().filter(|t| name.is_none_or(|n| n == t.name || t.variant(n).is_some())) {
        found = true;
        let _ = writeln!(out, "type `{}`\n{}", family.name, indent(&family.doc, 2));
        for v in &family.variants {
            let fields: Vec<&str> = v.params.iter().map(|p| p.name.as_str()).collect();
            let body = if fields.is_empty() { "{}".to_string() } else { format!("{{ {} }}", fields.join(", ")) };
            let _ = writeln!(out, "  {} {body}\n{}", v.name, indent(&v.doc, 4));
            params(&mut out, &v.params, 4);
        }
        out.push('\n');
    }
    if found {
        if name.is_none() {
            out.push_str(SWEEP);
        }
        return Ok(out);
    }
    let mut names: Vec<&str> =
        lib.kinds.iter().map(|k| k.name.as_str()).chain(lib.types.iter().map(|t| t.name.as_str())).collect();
    names.push("sweep");
    names.sort_unstable();
    Err(format!("`{}` is neither a stage kind nor a type; known: {}", name.unwrap_or_default(), names.join(", ")))
}

/// The whole reference as Markdown, for README.md's "Stage reference" section (a test
/// keeps the README's copy equal to this): per stage kind a table of its parameters, per
/// type a table of its variants.
#[must_use]
pub fn markdown(lib: &Stdlib) -> String {
    let mut out = String::from("### Stage kinds\n\n");
    for kind in &lib.kinds {
        let _ = writeln!(out, "#### `{}` -> `{}`\n\n{}\n", kind.name, kind.output, prose(&kind.doc));
        if kind.params.is_empty() {
            continue;
        }
        out.push_str("| parameter | type | default | meaning |\n|---|---|---|---|\n");
        for p in &kind.params {
            let _ = writeln!(
                out,
                "| `{}` | `{}` | {} | {} |",
                p.name,
                cell(&p.ty.to_string()),
                default(p),
                cell(&prose(&p.doc))
            );
        }
        out.push('\n');
    }
    out.push_str("### Types\n\n");
    for family in &lib.types {
        let _ = writeln!(out, "#### `{}`\n\n{}\n", family.name, prose(&family.doc));
        out.push_str("| variant | parameters | meaning |\n|---|---|---|\n");
        for v in &family.variants {
            let fields: Vec<String> = v
                .params
                .iter()
                .map(|p| {
                    format!("`{}: {}`{}: {}", p.name, cell(&p.ty.to_string()), default_suffix(p), cell(&prose(&p.doc)))
                })
                .collect();
            let _ = writeln!(out, "| `{}` | {} | {} |", v.name, fields.join("<br>"), cell(&prose(&v.doc)));
        }
        out.push('\n');
    }
    out
}

/// A doc comment as one Markdown paragraph per blank-line-separated block.
fn prose(doc: &str) -> String {
    let paragraphs: Vec<String> = doc
        .split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect();
    paragraphs.join("\n\n")
}

/// Text that sits in a table cell: no line breaks, `|` escaped.
fn cell(text: &str) -> String {
    text.replace("\n\n", "<br>").replace('\n', " ").replace('|', "\\|")
}

fn default(p: &Param) -> String {
    p.default.as_ref().map_or_else(|| "required".to_string(), |d| format!("`{}`", cell(&d.to_string())))
}

fn default_suffix(p: &Param) -> String {
    p.default.as_ref().map_or_else(|| " (required)".to_string(), |d| format!(" = `{}`", cell(&d.to_string())))
}

/// `msnr doc sweep`: sweeps are language, not stdlib, so their entry is written here.
const SWEEP: &str = "\
sweep VAR in [VALUES] { stage ... }
  One instance of each stage inside per value, named by its binding: `m[g=5]`.
  Unchanged upstream stages are shared; a stage outside refers to one instance
  as `m[g=5]`. A sweep cannot hold another sweep: for every combination of two
  (or more) variables, list them in one sweep, the first varying slowest:
    sweep g in [1, 5], t in [eps, v] { stage m = train { ..., target = t } }
  gives m[g=1,t=eps], m[g=1,t=v], m[g=5,t=eps], m[g=5,t=v]. A domain may be a
  param holding a list (`--set gs=[1,2,3]`). Two instances whose parameters
  resolve to equal values (`min_snr {}` and `min_snr { gamma = 5 }`) are an error.
";

fn params(out: &mut String, params: &[Param], at: usize) {
    for p in params {
        let default = p.default.as_ref().map_or_else(|| " (required)".to_string(), |d| format!(" = {d}"));
        let _ = writeln!(out, "{:at$}  {}: {}{default}\n{}", "", p.name, p.ty, indent(&p.doc, at + 4));
    }
}

fn indent(text: &str, by: usize) -> String {
    text.lines().map(|l| format!("{:by$}{l}", "")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEGIN: &str = "<!-- msnr doc --markdown -->\n";
    const END: &str = "<!-- end msnr doc --markdown -->";

    /// README.md's stage reference is `msnr doc --markdown`'s output: regenerate it with
    /// `msnr doc --markdown` between the marker comments when the stdlib changes.
    #[test]
    fn readme_stage_reference_is_the_generated_one() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let start = readme.find(BEGIN).expect("README.md has the begin marker") + BEGIN.len();
        let end = readme[start..].find(END).expect("README.md has the end marker") + start;
        let expected = markdown(crate::lang::stdlib());
        assert!(
            readme[start..end] == expected,
            "README.md's stage reference differs from `msnr doc --markdown`: run\n  \
             ./msnrw doc --markdown\nand paste its output between `{}` and `{END}`",
            BEGIN.trim_end()
        );
    }

    #[test]
    fn markdown_cells_escape_pipes_and_keep_one_line() {
        assert_eq!(cell("samples | dataset"), "samples \\| dataset");
        assert_eq!(prose("one\ntwo\n\nthree"), "one two\n\nthree");
        let md = markdown(crate::lang::stdlib());
        assert!(md.contains("#### `train` -> `model`"));
        assert!(md.contains("| `steps` | `int` | required |"), "required parameters say so");
        assert!(md.contains("| `min_snr` |"), "weighting variants listed");
        assert!(md.lines().filter(|l| l.starts_with('|')).all(|l| l.ends_with('|')), "every table row is whole");
    }
}
