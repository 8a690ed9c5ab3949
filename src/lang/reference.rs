//! The stdlib as a Markdown reference (stage kinds, then constructor
//! families), for `msnr doc` and the README's stage reference.

use std::fmt::Write as _;

use super::stdlib::{Param, Stdlib};

impl Stdlib {
    /// Every stage kind and type family with its documentation and a table of
    /// parameters (name, type, default, description).
    #[must_use]
    pub fn reference_markdown(&self) -> String {
        let mut out = String::from("## Stage kinds\n");
        for k in &self.kinds {
            let _ = write!(out, "\n### `{}` -> `{}`\n\n{}\n", k.name, k.output, k.doc);
            params_table(&mut out, &k.params);
        }
        out.push_str("\n## Types\n");
        for t in &self.types {
            let _ = write!(out, "\n### `{}`\n\n{}\n", t.name, t.doc);
            for v in &t.variants {
                let _ = write!(out, "\n- `{}`: {}\n", v.name, v.doc.replace('\n', " "));
                if !v.params.is_empty() {
                    params_table(&mut out, &v.params);
                }
            }
        }
        out
    }
}

/// A Markdown table of parameters; required ones show "required" as default.
fn params_table(out: &mut String, params: &[Param]) {
    if params.is_empty() {
        return;
    }
    out.push_str("\n| parameter | type | default | description |\n|---|---|---|---|\n");
    for p in params {
        let default = p.default.as_ref().map_or_else(|| "required".to_string(), |d| format!("`{d}`"));
        let ty = p.ty.to_string().replace('|', "\\|");
        let doc = p.doc.replace('\n', " ").replace('|', "\\|");
        let _ = writeln!(out, "| `{}` | `{ty}` | {default} | {doc} |", p.name);
    }
}

#[cfg(test)]
mod tests {
    use super::super::stdlib::stdlib;

    #[test]
    fn lists_every_kind_type_and_parameter() {
        let md = stdlib().reference_markdown();
        for k in &stdlib().kinds {
            assert!(md.contains(&format!("### `{}` -> `{}`", k.name, k.output)), "{}", k.name);
        }
        assert!(md.contains("| `steps` | `int` | required |"));
        assert!(md.contains("| `gamma` | `float` | `5.0` |"));
        assert!(md.contains("| `schedule` | `schedule` | `cosine { steps = 1000 }` |"));
        assert!(md.contains("| `images` | `files \\| dataset` | required |"));
    }
}
