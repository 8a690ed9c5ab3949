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
