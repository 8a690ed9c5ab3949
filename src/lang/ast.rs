//! The syntax tree of one `.msnr` file, every node with its span. The parser
//! builds it, the analyzer and the formatter read it.

use super::source::Span;

/// A parsed file: its items in source order.
#[derive(Clone, Debug, PartialEq)]
pub struct File {
    /// Top-level declarations.
    pub items: Vec<Item>,
}

/// One top-level declaration.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// `use "file.msnr"`.
    Use(UseDecl),
    /// `param name = value`.
    Param(ParamDecl),
    /// `stage name = kind { ... }`.
    Stage(StageDecl),
    /// `sweep var in [...] { stage ... }`.
    Sweep(SweepDecl),
    /// `type name { variants }` (stdlib only).
    Type(TypeDecl),
    /// `kind name -> output { params }` (stdlib only).
    Kind(KindDecl),
}

/// A name with where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    /// The name.
    pub name: String,
    /// Its span.
    pub span: Span,
}

/// Doc comment lines (`///`), text after the marker with one leading space removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Docs {
    /// One entry per line.
    pub lines: Vec<String>,
}

impl Docs {
    /// The lines joined with newlines.
    #[must_use]
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

/// `use "path"`.
#[derive(Clone, Debug, PartialEq)]
pub struct UseDecl {
    /// Doc comments.
    pub docs: Docs,
    /// The decoded path string.
    pub path: String,
    /// The span of the string literal.
    pub path_span: Span,
    /// The whole declaration.
    pub span: Span,
}

/// `param name = value`.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamDecl {
    /// Doc comments.
    pub docs: Docs,
    /// The param's name.
    pub name: Ident,
    /// Its default value.
    pub value: Expr,
    /// The whole declaration.
    pub span: Span,
}

/// `stage name = kind { fields }`.
#[derive(Clone, Debug, PartialEq)]
pub struct StageDecl {
    /// Doc comments.
    pub docs: Docs,
    /// The stage's name.
    pub name: Ident,
    /// The stage kind.
    pub kind: Ident,
    /// The `{ ... }` body.
    pub body: Body,
    /// The whole declaration.
    pub span: Span,
}

/// A `{ name = value ... }` block.
#[derive(Clone, Debug, PartialEq)]
pub struct Body {
    /// Fields in source order.
    pub fields: Vec<Field>,
    /// From `{` to `}` inclusive.
    pub span: Span,
}

/// `name = value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    /// The parameter name.
    pub name: Ident,
    /// Its value.
    pub value: Expr,
}

/// `sweep a in [..], b in [..] { stages }`.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepDecl {
    /// Doc comments.
    pub docs: Docs,
    /// The variables, in order (the first varies slowest).
    pub vars: Vec<SweepVar>,
    /// The stages expanded per combination.
    pub stages: Vec<StageDecl>,
    /// The whole declaration.
    pub span: Span,
}

/// `name in [values]` (or `name in param`).
#[derive(Clone, Debug, PartialEq)]
pub struct SweepVar {
    /// The variable.
    pub name: Ident,
    /// The list literal, or an identifier naming a param that holds one.
    pub domain: Expr,
}

/// `type name { variants }`.
#[derive(Clone, Debug, PartialEq)]
pub struct TypeDecl {
    /// Doc comments.
    pub docs: Docs,
    /// The family's name.
    pub name: Ident,
    /// Its constructors.
    pub variants: Vec<VariantDecl>,
    /// The whole declaration.
    pub span: Span,
}

/// One constructor of a `type`.
#[derive(Clone, Debug, PartialEq)]
pub struct VariantDecl {
    /// Doc comments.
    pub docs: Docs,
    /// The constructor's name.
    pub name: Ident,
    /// Its parameters.
    pub params: Vec<ParamSig>,
    /// From the name to `}`.
    pub span: Span,
}

/// `kind name -> output { params }`.
#[derive(Clone, Debug, PartialEq)]
pub struct KindDecl {
    /// Doc comments.
    pub docs: Docs,
    /// The kind's name.
    pub name: Ident,
    /// The type of the stage's output.
    pub output: Ident,
    /// Its parameters.
    pub params: Vec<ParamSig>,
    /// The whole declaration.
    pub span: Span,
}

/// `name: type = default` in a declaration.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSig {
    /// Doc comments.
    pub docs: Docs,
    /// The parameter's name.
    pub name: Ident,
    /// Its type.
    pub ty: TypeExpr,
    /// Its default, if it has one.
    pub default: Option<Expr>,
    /// The whole signature.
    pub span: Span,
}

/// A type as written.
#[derive(Clone, Debug, PartialEq)]
pub struct TypeExpr {
    /// What it says.
    pub kind: TypeExprKind,
    /// Where.
    pub span: Span,
}

/// The shapes of a written type.
#[derive(Clone, Debug, PartialEq)]
pub enum TypeExprKind {
    /// A named type (`int`, `dataset`, `weighting`).
    Named(String),
    /// `list<T>`.
    List(Box<TypeExpr>),
    /// `A | B`.
    Union(Vec<TypeExpr>),
    /// `T?`.
    Optional(Box<TypeExpr>),
}

/// A value expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where.
    pub span: Span,
}

/// The shapes of a value expression.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// An integer, suffixes applied.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string, escapes decoded.
    Str(String),
    /// `true` or `false`.
    Bool(bool),
    /// `none`.
    None,
    /// `[a, b]`.
    List(Vec<Expr>),
    /// `name { fields }`.
    Ctor(Ident, Body),
    /// A bare name: a sweep variable, param, stage or nullary variant.
    Ident(String),
    /// `stage[var=value, ...]`: one instance of a swept stage.
    Instance(Ident, Vec<(Ident, Expr)>),
}
