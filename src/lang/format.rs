//! The canonical formatter behind `msnr fmt`: two-space indents, one field per
//! line in blocks that were multi-line (or do not fit in 100 columns), `{ a = 1,
//! b = 2 }` otherwise, at most one blank line kept between elements, literals
//! as written, and every `#` comment kept (own-line or trailing). Idempotent:
//! every layout choice depends only on what the formatter itself preserves.

use super::ast::{
    Body, Docs, Expr, ExprKind, Field, File, Item, KindDecl, ParamSig, StageDecl, SweepDecl, TypeDecl, TypeExpr,
    TypeExprKind, VariantDecl,
};
use super::comments::{self, Comment};
use super::diagnostic::Diagnostics;
use super::parser;
use super::source::{SourceId, Sources};

/// Widest line the formatter joins a block into.
const WIDTH: usize = 100;

/// Formats a whole file.
///
/// # Errors
/// The syntax errors of `text` (nothing is formatted then).
pub fn format(text: &str) -> Result<String, Diagnostics> {
    format_named("<input>", text)
}

/// [`format`], with syntax errors shown against the file name `name`. A leading UTF-8 byte
/// order mark is kept, and so are CRLF line breaks when the file's first line break is one
/// (the formatted text then uses CRLF throughout).
///
/// # Errors
/// The syntax errors of `text` (nothing is formatted then).
pub fn format_named(name: &str, text: &str) -> Result<String, Diagnostics> {
    let (bom, body) = match text.strip_prefix(BOM) {
        Some(rest) => (BOM, rest),
        None => ("", text),
    };
    let crlf = body.find('\n').is_some_and(|i| body[..i].ends_with('\r'));
    let formatted =
        if crlf { format_lf(name, &body.replace("\r\n", "\n"))?.replace('\n', "\r\n") } else { format_lf(name, body)? };
    Ok(format!("{bom}{formatted}"))
}

/// The UTF-8 byte order mark some editors put first.
const BOM: &str = "\u{feff}";

/// Formats text without a byte order mark, writing LF line breaks.
fn format_lf(name: &str, text: &str) -> Result<String, Diagnostics> {
    let mut sources = Sources::default();
    let id: SourceId = sources.add(name.into(), name.into(), text.to_string());
    let file = parser::parse_file(&sources, id)?;
    let mut p =
        Printer { text, comments: comments::scan(text), next: 0, out: String::new(), last: 0, indent: 0, fresh: true };
    p.file(&file);
    Ok(p.out)
}

/// The output being built and the comments not yet placed.
struct Printer<'t> {
    text: &'t str,
    comments: Vec<Comment>,
    next: usize,
    out: String,
    /// Source offset of the end of the last thing printed.
    last: usize,
    indent: usize,
    /// Nothing printed yet in the current block.
    fresh: bool,
}

impl Printer<'_> {
    fn file(&mut self, file: &File) {
        for item in &file.items {
            self.item(item);
        }
        self.leading(self.text.len());
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Use(u) => {
                self.docs(&u.docs, u.span.start);
                self.line(&format!("use {}", self.src(u.path_span.start, u.path_span.end)), u.span.end);
            }
            Item::Param(p) => {
                self.docs(&p.docs, p.span.start);
                self.expr_lines(&format!("param {} = ", p.name.name), &p.value, "");
            }
            Item::Stage(s) => self.stage(s),
            Item::Sweep(s) => self.sweep(s),
            Item::Type(t) => self.type_decl(t),
            Item::Kind(k) => self.kind_decl(k),
        }
    }

    fn stage(&mut self, s: &StageDecl) {
        self.docs(&s.docs, s.span.start);
        let head = format!("stage {} = {}", s.name.name, s.kind.name);
        self.body(&head, &s.body, "");
    }

    fn sweep(&mut self, s: &SweepDecl) {
        self.docs(&s.docs, s.span.start);
        let vars: Vec<String> =
            s.vars.iter().map(|v| format!("{} in {}", v.name.name, self.inline(&v.domain))).collect();
        let brace = self.brace_after(s.vars.last().map_or(s.span.start, |v| v.domain.span.end));
        self.open(&format!("sweep {}", vars.join(", ")), "{", brace);
        for st in &s.stages {
            self.stage(st);
        }
        self.close("}", s.span.end, "");
    }

    fn type_decl(&mut self, t: &TypeDecl) {
        self.docs(&t.docs, t.span.start);
        let brace = self.brace_after(t.name.span.end);
        self.open(&format!("type {}", t.name.name), "{", brace);
        for v in &t.variants {
            self.variant(v);
        }
        self.close("}", t.span.end, "");
    }

    fn variant(&mut self, v: &VariantDecl) {
        self.docs(&v.docs, v.span.start);
        let brace = self.brace_after(v.name.span.end);
        self.sigs(&v.name.name, &v.params, brace, v.span.end);
    }

    fn kind_decl(&mut self, k: &KindDecl) {
        self.docs(&k.docs, k.span.start);
        let brace = self.brace_after(k.output.span.end);
        self.sigs(&format!("kind {} -> {}", k.name.name, k.output.name), &k.params, brace, k.span.end);
    }

    /// `head { sig, sig }` on one line when it fits and was one line, else one per line.
    fn sigs(&mut self, head: &str, params: &[ParamSig], brace: usize, end: usize) {
        if !self.must_break(brace, end) {
            let parts: Vec<String> =
                params.iter().filter(|p| p.docs.lines.is_empty()).map(|p| self.sig_inline(p)).collect();
            if parts.len() == params.len() {
                let line = if parts.is_empty() {
                    format!("{head} {{}}")
                } else {
                    format!("{head} {{ {} }}", parts.join(", "))
                };
                if self.fits(&line) {
                    self.line(&line, end);
                    return;
                }
            }
        }
        self.open(head, "{", brace);
        for p in params {
            self.docs(&p.docs, p.span.start);
            let prefix = format!("{}: {}", p.name.name, type_text(&p.ty));
            match &p.default {
                Some(d) => self.expr_lines(&format!("{prefix} = "), d, ""),
                None => self.line(&prefix, p.span.end),
            }
        }
        self.close("}", end, "");
    }

    fn sig_inline(&self, p: &ParamSig) -> String {
        let ty = type_text(&p.ty);
        match &p.default {
            Some(d) => format!("{}: {ty} = {}", p.name.name, self.inline(d)),
            None => format!("{}: {ty}", p.name.name),
        }
    }

    /// `head { fields }`: inline when it fits and was one line, else one field per line.
    fn body(&mut self, head: &str, body: &Body, suffix: &str) {
        if !self.must_break(body.span.start, body.span.end) {
            let line = format!("{head} {}{suffix}", self.body_inline(body));
            if self.fits(&line) {
                self.line(&line, body.span.end);
                return;
            }
        }
        self.open(head, "{", body.span.start);
        for f in &body.fields {
            self.field(f);
        }
        self.close("}", body.span.end, suffix);
    }

    fn field(&mut self, f: &Field) {
        self.leading(f.name.span.start);
        self.expr_lines(&format!("{} = ", f.name.name), &f.value, "");
    }

    /// `prefix value suffix`, breaking a constructor or list that cannot be inline.
    fn expr_lines(&mut self, prefix: &str, e: &Expr, suffix: &str) {
        match &e.kind {
            ExprKind::Ctor(name, body) => self.body(&format!("{prefix}{}", name.name), body, suffix),
            ExprKind::List(items) => {
                let line = format!("{prefix}{}{suffix}", self.inline(e));
                if !self.must_break(e.span.start, e.span.end) && self.fits(&line) {
                    self.line(&line, e.span.end);
                    return;
                }
                self.open(prefix.trim_end(), "[", e.span.start);
                for item in items {
                    self.leading(item.span.start);
                    self.expr_lines("", item, ",");
                }
                self.close("]", e.span.end, suffix);
            }
            _ => {
                let line = format!("{prefix}{}{suffix}", self.inline(e));
                self.line(&line, e.span.end);
            }
        }
    }

    /// An expression on one line.
    fn inline(&self, e: &Expr) -> String {
        match &e.kind {
            ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Str(_) => self.src(e.span.start, e.span.end).to_string(),
            ExprKind::Bool(b) => b.to_string(),
            ExprKind::None => "none".into(),
            ExprKind::Ident(n) => n.clone(),
            ExprKind::List(items) => {
                format!("[{}]", items.iter().map(|i| self.inline(i)).collect::<Vec<_>>().join(", "))
            }
            ExprKind::Ctor(name, body) => format!("{} {}", name.name, self.body_inline(body)),
            ExprKind::Instance(name, bindings) => {
                let parts: Vec<String> =
                    bindings.iter().map(|(v, e)| format!("{}={}", v.name, self.inline(e))).collect();
                format!("{}[{}]", name.name, parts.join(","))
            }
        }
    }

    fn body_inline(&self, body: &Body) -> String {
        if body.fields.is_empty() {
            return "{}".into();
        }
        let fields: Vec<String> =
            body.fields.iter().map(|f| format!("{} = {}", f.name.name, self.inline(&f.value))).collect();
        format!("{{ {} }}", fields.join(", "))
    }

    /// The source between `start` and `end` spans lines or holds a comment.
    fn must_break(&self, start: usize, end: usize) -> bool {
        self.text[start..end].contains('\n') || self.comments.iter().any(|c| c.start >= start && c.start < end)
    }

    fn fits(&self, line: &str) -> bool {
        self.indent * 2 + line.chars().count() <= WIDTH
    }

    fn src(&self, start: usize, end: usize) -> &str {
        &self.text[start..end]
    }

    /// The offset of the first `{` at or after `from`, outside comments.
    fn brace_after(&self, from: usize) -> usize {
        let mut i = from;
        while i < self.text.len() {
            match self.text.as_bytes()[i] {
                b'{' => return i,
                b'#' => i = self.text[i..].find('\n').map_or(self.text.len(), |p| i + p),
                _ => i += 1,
            }
        }
        from
    }

    fn docs(&mut self, docs: &Docs, start: usize) {
        self.leading(start);
        for line in &docs.lines {
            let text = if line.is_empty() { "///".to_string() } else { format!("/// {line}") };
            self.write_line(&text);
        }
    }

    /// Places the comments before `pos` on their own lines, keeping one blank
    /// line where the source had one or more.
    fn leading(&mut self, pos: usize) {
        while let Some(c) = self.comments.get(self.next).filter(|c| c.start < pos).cloned() {
            self.blank_if(c.start);
            self.write_line(&c.text);
            self.last = c.end;
            self.next += 1;
        }
        self.blank_if(pos);
    }

    fn blank_if(&mut self, pos: usize) {
        let gap = if self.last < pos { &self.text[self.last..pos] } else { "" };
        let pieces: Vec<&str> = gap.split('\n').collect();
        if !self.fresh && pieces.len() >= 3 && pieces[1..pieces.len() - 1].iter().any(|l| l.trim().is_empty()) {
            self.out.push('\n');
        }
    }

    /// One line of output ending at source offset `end`, with its trailing
    /// comment, then any comments from inside it on lines of their own.
    fn line(&mut self, content: &str, end: usize) {
        let mut inside = Vec::new();
        while let Some(c) = self.comments.get(self.next).filter(|c| c.start < end).cloned() {
            inside.push(c);
            self.next += 1;
        }
        let content = self.with_trailing(content.to_string(), end);
        self.write_line(&content);
        for c in inside {
            self.write_line(&c.text);
        }
        self.last = self.last.max(end);
    }

    /// Appends the comment that follows `end` on the same source line, if any.
    fn with_trailing(&mut self, mut content: String, end: usize) -> String {
        if let Some(c) =
            self.comments.get(self.next).filter(|c| c.start >= end && !self.text[end..c.start].contains('\n'))
        {
            content = format!("{content}  {}", c.text);
            self.last = c.end;
            self.next += 1;
        }
        content
    }

    /// `head {` (or `[`), with the comment after the bracket on its line.
    fn open(&mut self, head: &str, bracket: &str, at: usize) {
        let sep = if head.is_empty() { "" } else { " " };
        let content = self.with_trailing(format!("{head}{sep}{bracket}"), at + 1);
        self.write_line(&content);
        self.last = self.last.max(at + 1);
        self.indent += 1;
        self.fresh = true;
    }

    /// The comments left in the block, then the closing bracket.
    fn close(&mut self, bracket: &str, end: usize, suffix: &str) {
        self.leading(end.saturating_sub(1));
        self.indent -= 1;
        let content = self.with_trailing(format!("{bracket}{suffix}"), end);
        self.write_line(&content);
        self.last = self.last.max(end);
    }

    fn write_line(&mut self, content: &str) {
        for _ in 0..self.indent {
            self.out.push_str("  ");
        }
        self.out.push_str(content);
        self.out.push('\n');
        self.fresh = false;
    }
}

/// A type as written, canonically spaced.
fn type_text(t: &TypeExpr) -> String {
    match &t.kind {
        TypeExprKind::Named(n) => n.clone(),
        TypeExprKind::List(inner) => format!("list<{}>", type_text(inner)),
        TypeExprKind::Union(ts) => ts.iter().map(type_text).collect::<Vec<_>>().join(" | "),
        TypeExprKind::Optional(inner) => format!("{}?", type_text(inner)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_byte_order_mark_and_crlf_line_breaks() {
        let messy = "\u{feff}# digits\r\nstage d = mnist {   }\r\nstage m = train { data = d,\r\n steps = 5 }\r\n";
        let once = format(messy).unwrap();
        assert!(once.starts_with("\u{feff}# digits\r\n"), "{once:?}");
        assert_eq!(once.matches('\n').count(), once.matches("\r\n").count(), "{once:?}");
        assert_eq!(format(&once).unwrap(), once, "a formatted CRLF file stays as it is");
        assert_eq!(
            once.replace("\r\n", "\n").trim_start_matches('\u{feff}'),
            format(&messy.replace("\r\n", "\n")[3..]).unwrap()
        );
    }

    fn fmt(text: &str) -> String {
        let once = format(text).unwrap_or_else(|d| panic!("{}", d.render_plain()));
        assert_eq!(format(&once).unwrap(), once, "not idempotent on:\n{once}");
        once
    }

    #[test]
    fn table() {
        let cases: &[(&str, &str)] = &[
            ("param   gamma=5", "param gamma = 5\n"),
            ("stage d = mnist {}", "stage d = mnist {}\n"),
            ("stage d=mnist{count=100,}", "stage d = mnist { count = 100 }\n"),
            ("stage m = train {\ndata = d, steps = 500k\n}", "stage m = train {\n  data = d\n  steps = 500k\n}\n"),
            ("param a = 1\n\n\n\nparam b = 2", "param a = 1\n\nparam b = 2\n"),
            ("param a = 1 # one\n# alone\nparam b = 2", "param a = 1  # one\n# alone\nparam b = 2\n"),
            (
                "stage m = train { # head\n  steps = 1 # s\n  # end\n}",
                "stage m = train {  # head\n  steps = 1  # s\n  # end\n}\n",
            ),
            (
                "sweep g in [1,5] {\nstage m = x { w = min_snr{gamma=g} }\n}",
                "sweep g in [1, 5] {\n  stage m = x { w = min_snr { gamma = g } }\n}\n",
            ),
            ("param l = [\n1,\n2]", "param l = [\n  1,\n  2,\n]\n"),
            ("/// doc\nparam x = \"a\\n\"", "/// doc\nparam x = \"a\\n\"\n"),
            ("param x = m[g = 5]", "param x = m[g=5]\n"),
            ("kind k -> files { a: int = 1, b: str? }", "kind k -> files { a: int = 1, b: str? }\n"),
            (
                "type t {\n  a {}\n  b { x: list<int> | float = [1] }\n}",
                "type t {\n  a {}\n  b { x: list<int> | float = [1] }\n}\n",
            ),
            ("# only a comment", "# only a comment\n"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(fmt(input), *want, "input: {input:?}");
        }
    }

    #[test]
    fn breaks_long_lines() {
        let long = format!("stage d = download {{ url = \"{}\", extract = false }}", "x".repeat(90));
        let out = fmt(&long);
        assert!(out.starts_with("stage d = download {\n  url = "), "{out}");
    }

    #[test]
    fn keeps_comments_inside_inline_expressions() {
        let out = fmt("param x =\n  # why\n  5\nparam y = 1");
        assert!(out.contains("# why"), "{out}");
    }

    #[test]
    fn refuses_invalid_syntax() {
        assert!(format("stage = {").is_err());
    }
}
