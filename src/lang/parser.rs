//! The parser: runs the pest grammar (`grammar/msnr.pest`) and builds the
//! [`ast`](super::ast) with spans, decoding literals on the way. Literal
//! problems (bad escapes, overflowing `k`/`M` suffixes, missing separators) are
//! collected, so one parse reports all of them.

use pest::iterators::Pair;
use pest::Parser as _;

use super::ast::{
    Body, Docs, Expr, ExprKind, Field, File, Ident, Item, KindDecl, ParamDecl, ParamSig, StageDecl, SweepDecl,
    SweepVar, TypeDecl, TypeExpr, TypeExprKind, UseDecl, VariantDecl,
};
use super::codes;
use super::diagnostic::{Diagnostic, Diagnostics};
use super::literal;
use super::source::{SourceId, Sources, Span};
use super::syntax_error;

/// The pest parser generated from `grammar/msnr.pest`.
#[derive(pest_derive::Parser)]
#[grammar = "../grammar/msnr.pest"]
pub struct MsnrParser;

/// Deepest bracket nesting accepted; deeper input is refused before parsing
/// so no recursive pass can exhaust the stack.
pub const MAX_DEPTH: usize = 48;

/// Parses a whole file.
///
/// # Errors
/// Every syntax and literal error found in the file.
pub fn parse_file(sources: &Sources, id: SourceId) -> Result<File, Diagnostics> {
    let text = sources.get(id).text.clone();
    let pair = run(sources, id, &text, Rule::file)?;
    let mut b = Builder { sources, id, errors: Vec::new() };
    let items = pair.into_inner().filter(|p| p.as_rule() != Rule::EOI).map(|p| b.item(p)).collect();
    b.finish(File { items })
}

/// Parses a standalone expression (a `--set` value).
///
/// # Errors
/// Every syntax and literal error found in the text.
///
/// # Panics
/// Never: the grammar's `expr_only` rule always holds an expression.
pub fn parse_expr(sources: &Sources, id: SourceId) -> Result<Expr, Diagnostics> {
    let text = sources.get(id).text.clone();
    let pair = run(sources, id, &text, Rule::expr_only)?;
    let mut b = Builder { sources, id, errors: Vec::new() };
    let inner = pair.into_inner().next().expect("grammar: expr_only holds an expr");
    let expr = b.expr(inner);
    b.finish(expr)
}

/// Runs pest on `text` after the nesting check.
fn run<'t>(sources: &Sources, id: SourceId, text: &'t str, rule: Rule) -> Result<Pair<'t, Rule>, Diagnostics> {
    if let Some(at) = too_deep(text) {
        let span = Span { source: id, start: at, end: at + 1 };
        let d = Diagnostic::new(sources, codes::TOO_DEEP, "brackets nested too deeply", span, "too deep")
            .with_help(format!("at most {MAX_DEPTH} levels of `{{`, `[` and `<` are allowed"));
        return Err(Diagnostics(vec![d]));
    }
    match MsnrParser::parse(rule, text) {
        Ok(mut pairs) => Ok(pairs.next().expect("pest returns the top rule")),
        Err(e) => Err(Diagnostics(vec![syntax_error::convert(sources, id, text, &e)])),
    }
}

/// The offset of the first bracket nested deeper than [`MAX_DEPTH`], skipping
/// strings and comments.
fn too_deep(text: &str) -> Option<usize> {
    let (mut depth, mut in_str, mut in_comment, mut escaped) = (0usize, false, false, false);
    for (i, c) in text.char_indices() {
        if in_comment {
            in_comment = c != '\n';
        } else if in_str {
            in_str = escaped || (c != '"' && c != '\n');
            escaped = !escaped && c == '\\';
        } else {
            match c {
                '#' => in_comment = true,
                '"' => in_str = true,
                '{' | '[' | '<' => depth += 1,
                '}' | ']' | '>' => depth = depth.saturating_sub(1),
                _ => {}
            }
            if depth > MAX_DEPTH {
                return Some(i);
            }
        }
    }
    None
}

/// Turns pest pairs into AST nodes, collecting literal errors.
struct Builder<'a> {
    sources: &'a Sources,
    id: SourceId,
    errors: Vec<Diagnostic>,
}

impl Builder<'_> {
    fn finish<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(Diagnostics(self.errors))
        }
    }

    fn span(&self, pair: &Pair<'_, Rule>) -> Span {
        Span { source: self.id, start: pair.as_span().start(), end: trimmed_end(pair) }
    }

    fn error(&mut self, code: &'static str, message: impl Into<String>, span: Span, label: &str) {
        self.errors.push(Diagnostic::new(self.sources, code, message, span, label));
    }

    fn item(&mut self, pair: Pair<'_, Rule>) -> Item {
        match pair.as_rule() {
            Rule::use_decl => Item::Use(self.use_decl(pair)),
            Rule::param_decl => Item::Param(self.param_decl(pair)),
            Rule::stage_decl => Item::Stage(self.stage_decl(pair)),
            Rule::sweep_decl => Item::Sweep(self.sweep_decl(pair)),
            Rule::type_decl => Item::Type(self.type_decl(pair)),
            Rule::kind_decl => Item::Kind(self.kind_decl(pair)),
            r => unreachable!("grammar: unexpected item {r:?}"),
        }
    }

    /// The meaningful children: punctuation and keywords dropped.
    fn parts(pair: Pair<'_, Rule>) -> Vec<Pair<'_, Rule>> {
        pair.into_inner().filter(|p| !is_token(p.as_rule())).collect()
    }

    fn docs(pair: Pair<'_, Rule>) -> Docs {
        let line = |d: Pair<'_, Rule>| {
            let text = d.into_inner().next().map_or("", |t| t.as_str());
            text.strip_prefix(' ').unwrap_or(text).trim_end().to_string()
        };
        Docs { lines: pair.into_inner().map(line).collect() }
    }

    fn ident(&self, pair: &Pair<'_, Rule>) -> Ident {
        Ident { name: pair.as_str().to_string(), span: self.span(pair) }
    }

    fn use_decl(&mut self, pair: Pair<'_, Rule>) -> UseDecl {
        let span = self.span(&pair);
        let mut parts = Self::parts(pair).into_iter();
        let docs = Self::docs(parts.next().expect("grammar: docs"));
        let lit = parts.next().expect("grammar: use path");
        let path_span = self.span(&lit);
        let path = self.string(lit);
        UseDecl { docs, path, path_span, span }
    }

    fn param_decl(&mut self, pair: Pair<'_, Rule>) -> ParamDecl {
        let span = self.span(&pair);
        let mut parts = Self::parts(pair).into_iter();
        let docs = Self::docs(parts.next().expect("grammar: docs"));
        let name = self.ident(&parts.next().expect("grammar: param name"));
        let value = self.expr(parts.next().expect("grammar: param value"));
        ParamDecl { docs, name, value, span }
    }

    fn stage_decl(&mut self, pair: Pair<'_, Rule>) -> StageDecl {
        let span = self.span(&pair);
        let mut parts = Self::parts(pair).into_iter();
        let docs = Self::docs(parts.next().expect("grammar: docs"));
        let name = self.ident(&parts.next().expect("grammar: stage name"));
        let kind = self.ident(&parts.next().expect("grammar: stage kind"));
        let body = self.body(parts.next().expect("grammar: stage body"));
        StageDecl { docs, name, kind, body, span }
    }

    fn sweep_decl(&mut self, pair: Pair<'_, Rule>) -> SweepDecl {
        let span = self.span(&pair);
        let mut parts = Self::parts(pair).into_iter();
        let docs = Self::docs(parts.next().expect("grammar: docs"));
        let (mut vars, mut stages) = (Vec::new(), Vec::new());
        for p in parts {
            if p.as_rule() == Rule::sweep_var {
                let mut inner = Self::parts(p).into_iter();
                let name = self.ident(&inner.next().expect("grammar: sweep variable"));
                let domain = self.expr(inner.next().expect("grammar: sweep domain"));
                vars.push(SweepVar { name, domain });
            } else {
                stages.push(self.stage_decl(p));
            }
        }
        SweepDecl { docs, vars, stages, span }
    }

    fn type_decl(&mut self, pair: Pair<'_, Rule>) -> TypeDecl {
        let span = self.span(&pair);
        let mut parts = Self::parts(pair).into_iter();
        let docs = Self::docs(parts.next().expect("grammar: docs"));
        let name = self.ident(&parts.next().expect("grammar: type name"));
        let variants = parts.map(|p| self.variant(p)).collect();
        TypeDecl { docs, name, variants, span }
    }

    fn variant(&mut self, pair: Pair<'_, Rule>) -> VariantDecl {
        let span = self.span(&pair);
        let children: Vec<_> = pair.into_inner().collect();
        let mut parts = children.iter().filter(|p| !is_token(p.as_rule())).cloned();
        let docs = Self::docs(parts.next().expect("grammar: docs"));
        let name = self.ident(&parts.next().expect("grammar: variant name"));
        let params = self.param_sigs(&children);
        VariantDecl { docs, name, params, span }
    }

    fn kind_decl(&mut self, pair: Pair<'_, Rule>) -> KindDecl {
        let span = self.span(&pair);
        let children: Vec<_> = pair.into_inner().collect();
        let mut parts = children.iter().filter(|p| !is_token(p.as_rule())).cloned();
        let docs = Self::docs(parts.next().expect("grammar: docs"));
        let name = self.ident(&parts.next().expect("grammar: kind name"));
        let output = self.ident(&parts.next().expect("grammar: kind output"));
        let params = self.param_sigs(&children);
        KindDecl { docs, name, output, params, span }
    }

    /// The `param_sig` children, checking each pair is separated by `,` or a line break.
    fn param_sigs(&mut self, children: &[Pair<'_, Rule>]) -> Vec<ParamSig> {
        self.check_separators(children, Rule::param_sig);
        children.iter().filter(|p| p.as_rule() == Rule::param_sig).map(|p| self.param_sig(p.clone())).collect()
    }

    fn param_sig(&mut self, pair: Pair<'_, Rule>) -> ParamSig {
        let span = self.span(&pair);
        let mut parts = Self::parts(pair).into_iter();
        let docs = Self::docs(parts.next().expect("grammar: docs"));
        let name = self.ident(&parts.next().expect("grammar: param name"));
        let ty = self.type_expr(parts.next().expect("grammar: param type"));
        let default = parts.next().map(|p| self.expr(p));
        ParamSig { docs, name, ty, default, span }
    }

    fn type_expr(&mut self, pair: Pair<'_, Rule>) -> TypeExpr {
        let span = self.span(&pair);
        let children: Vec<_> = pair.into_inner().collect();
        let optional = children.iter().any(|p| p.as_rule() == Rule::question);
        let mut atoms: Vec<TypeExpr> = children
            .into_iter()
            .filter(|p| matches!(p.as_rule(), Rule::ident | Rule::list_type))
            .map(|p| self.type_atom(p))
            .collect();
        let mut kind = if atoms.len() == 1 { atoms.remove(0).kind } else { TypeExprKind::Union(atoms) };
        if optional {
            kind = TypeExprKind::Optional(Box::new(TypeExpr { kind, span }));
        }
        TypeExpr { kind, span }
    }

    fn type_atom(&mut self, pair: Pair<'_, Rule>) -> TypeExpr {
        let span = self.span(&pair);
        if pair.as_rule() == Rule::ident {
            return TypeExpr { kind: TypeExprKind::Named(pair.as_str().to_string()), span };
        }
        let inner = Self::parts(pair).into_iter().next().expect("grammar: list element type");
        TypeExpr { kind: TypeExprKind::List(Box::new(self.type_expr(inner))), span }
    }

    fn body(&mut self, pair: Pair<'_, Rule>) -> Body {
        let span = self.span(&pair);
        let children: Vec<_> = pair.into_inner().collect();
        self.check_separators(&children, Rule::field);
        let fields = children.into_iter().filter(|p| p.as_rule() == Rule::field).map(|p| self.field(p)).collect();
        Body { fields, span }
    }

    /// Two consecutive `rule` children need a `,` or a line break between them.
    fn check_separators(&mut self, children: &[Pair<'_, Rule>], rule: Rule) {
        for w in children.windows(2) {
            if w[0].as_rule() == rule && w[1].as_rule() == rule {
                let (end, start) = (trimmed_end(&w[0]), w[1].as_span().start());
                let gap = &w[0].get_input()[end..start];
                if !gap.contains('\n') {
                    let span = Span { source: self.id, start, end: w[1].as_span().end().min(start + 1) };
                    self.error(
                        codes::SYNTAX,
                        "expected `,` or a line break",
                        span,
                        "expected `,` or a line break before this",
                    );
                }
            }
        }
    }

    fn field(&mut self, pair: Pair<'_, Rule>) -> Field {
        let mut parts = Self::parts(pair).into_iter();
        let name = self.ident(&parts.next().expect("grammar: field name"));
        let value = self.expr(parts.next().expect("grammar: field value"));
        Field { name, value }
    }

    fn expr(&mut self, pair: Pair<'_, Rule>) -> Expr {
        let span = self.span(&pair);
        let kind = match pair.as_rule() {
            Rule::number => self.number(&pair),
            Rule::string => ExprKind::Str(self.string(pair)),
            Rule::kw_true => ExprKind::Bool(true),
            Rule::kw_false => ExprKind::Bool(false),
            Rule::kw_none => ExprKind::None,
            Rule::ident => ExprKind::Ident(pair.as_str().to_string()),
            Rule::list => ExprKind::List(Self::parts(pair).into_iter().map(|p| self.expr(p)).collect()),
            Rule::ctor => {
                let mut parts = Self::parts(pair).into_iter();
                let name = self.ident(&parts.next().expect("grammar: constructor name"));
                ExprKind::Ctor(name, self.body(parts.next().expect("grammar: constructor body")))
            }
            Rule::instance => self.instance(pair),
            r => unreachable!("grammar: unexpected expression {r:?}"),
        };
        Expr { kind, span }
    }

    fn instance(&mut self, pair: Pair<'_, Rule>) -> ExprKind {
        let mut parts = Self::parts(pair).into_iter();
        let name = self.ident(&parts.next().expect("grammar: instance name"));
        let bindings = parts
            .map(|b| {
                let mut inner = Self::parts(b).into_iter();
                let var = self.ident(&inner.next().expect("grammar: binding name"));
                (var, self.expr(inner.next().expect("grammar: binding value")))
            })
            .collect();
        ExprKind::Instance(name, bindings)
    }

    fn number(&mut self, pair: &Pair<'_, Rule>) -> ExprKind {
        match literal::number(pair.as_str()) {
            Ok(kind) => kind,
            Err((code, message)) => {
                let span = self.span(pair);
                self.error(code, message, span, "this number");
                ExprKind::Int(0)
            }
        }
    }

    fn string(&mut self, pair: Pair<'_, Rule>) -> String {
        let text = pair.into_inner().find(|p| p.as_rule() == Rule::string_text).expect("grammar: string text");
        let base = text.as_span().start();
        match literal::unescape(text.as_str()) {
            Ok(s) => s,
            Err((offset, len, message)) => {
                let span = Span { source: self.id, start: base + offset, end: base + offset + len };
                self.error(codes::BAD_ESCAPE, message, span, "this escape");
                String::new()
            }
        }
    }
}

/// Where `pair`'s last token ends. Pest counts the blanks and comments skipped
/// before an optional part that then matched nothing as part of the rule, so
/// the end is taken from the innermost last child instead.
fn trimmed_end(pair: &Pair<'_, Rule>) -> usize {
    match pair.clone().into_inner().last() {
        Some(child) => trimmed_end(&child),
        None => pair.as_span().end(),
    }
}

/// Punctuation and keywords, which carry no content once parsed.
fn is_token(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::eq
            | Rule::comma
            | Rule::colon
            | Rule::lbrace
            | Rule::rbrace
            | Rule::lbracket
            | Rule::rbracket
            | Rule::langle
            | Rule::rangle
            | Rule::arrow
            | Rule::pipe
            | Rule::question
            | Rule::quote
            | Rule::kw_use
            | Rule::kw_param
            | Rule::kw_stage
            | Rule::kw_sweep
            | Rule::kw_in
            | Rule::kw_type
            | Rule::kw_kind
            | Rule::kw_list
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<File, Diagnostics> {
        let mut sources = Sources::default();
        let id = sources.add("t.msnr".into(), "t.msnr".into(), text.to_string());
        parse_file(&sources, id)
    }

    fn param_value(text: &str) -> ExprKind {
        let file = parse(text).unwrap_or_else(|d| panic!("{text}: {}", d.render_plain()));
        let Some(Item::Param(p)) = file.items.into_iter().next() else { panic!("{text}: not a param") };
        p.value.kind
    }

    #[test]
    fn accepts_and_rejects() {
        let cases: &[(&str, Option<&str>)] = &[
            ("", None),
            ("# only a comment\n", None),
            ("use \"std/celeba.msnr\"", None),
            ("param gamma = 5", None),
            ("stage d = mnist {}", None),
            ("stage d = mnist { count = 1, }", None),
            ("stage d = mnist {\n count = 1\n}", None),
            ("stage m = t { a = 1\n b = 2, c = 3 }", None),
            ("sweep g in [1, 5], w in ws { stage m = t { g = g } }", None),
            ("kind k -> files { a: int = 1, b: list<float>?, c: files | dataset }", None),
            ("type t { /// doc\n a {} b { x: int } }", None),
            ("stage m = t { a = 1 b = 2 }", Some(codes::SYNTAX)),
            ("stage m = t", Some(codes::SYNTAX)),
            ("stage in = t {}", Some(codes::SYNTAX)),
            ("param x = ", Some(codes::SYNTAX)),
            ("param x = \"open", Some(codes::SYNTAX)),
            ("param x = 5abc", Some(codes::SYNTAX)),
            ("param x = \"\\q\"", Some(codes::BAD_ESCAPE)),
            ("param x = 99999999999999999999", Some(codes::INT_OVERFLOW)),
            ("param x = 1.5M", Some(codes::BAD_NUMBER)),
            ("sweep g in 5 { }", Some(codes::SYNTAX)),
        ];
        for (text, want) in cases {
            let got = parse(text).err().map(|d| d.0[0].code);
            assert_eq!(got, *want, "{text:?}");
        }
    }

    #[test]
    fn literals() {
        let cases: &[(&str, ExprKind)] = &[
            ("param x = 500k", ExprKind::Int(500_000)),
            ("param x = -1e-4", ExprKind::Float(-1e-4)),
            ("param x = \"a\\tb\"", ExprKind::Str("a\tb".into())),
            ("param x = true", ExprKind::Bool(true)),
            ("param x = none", ExprKind::None),
            ("param x = eps", ExprKind::Ident("eps".into())),
            ("param x = nonexistent", ExprKind::Ident("nonexistent".into())),
        ];
        for (text, want) in cases {
            assert_eq!(&param_value(text), want, "{text}");
        }
    }

    #[test]
    fn structures() {
        let ExprKind::List(items) = param_value("param x = [1, [2], min_snr { gamma = 5 },]") else { panic!() };
        assert_eq!(items.len(), 3);
        assert!(matches!(&items[2].kind, ExprKind::Ctor(n, b) if n.name == "min_snr" && b.fields.len() == 1));
        let ExprKind::Instance(n, b) = param_value("param x = m[g=5, w=constant]") else { panic!() };
        assert_eq!((n.name.as_str(), b.len()), ("m", 2));
    }

    /// Regression: pest counted the blanks skipped before an optional `?` as
    /// part of `param_sig`, so a line break looked missing between fields.
    #[test]
    fn regression_optional_type_swallowed_the_line_break() {
        assert!(parse("kind k -> files {\n  a: str?\n  /// doc\n  b: str?\n  c: int\n}").is_ok());
    }

    #[test]
    fn spans_end_at_the_last_token() {
        let file = parse("kind k -> files {\n  a: int?   # c\n  b: str\n}").unwrap();
        let Item::Kind(k) = &file.items[0] else { panic!() };
        assert_eq!(k.params[0].span.end, "kind k -> files {\n  a: int?".len());
        assert_eq!(
            k.params[0].ty.kind,
            TypeExprKind::Optional(Box::new(TypeExpr {
                kind: TypeExprKind::Named("int".into()),
                span: k.params[0].ty.span
            }))
        );
    }

    #[test]
    fn docs_are_kept() {
        let file = parse("/// Line one.\n///\n/// Line three.\nparam x = 1").unwrap();
        let Item::Param(p) = &file.items[0] else { panic!() };
        assert_eq!(p.docs.lines, vec!["Line one.", "", "Line three."]);
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let text = format!("param x = {}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(parse(&text).unwrap_err().0[0].code, codes::TOO_DEEP);
    }
}
