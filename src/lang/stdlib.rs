//! The standard library: the stage kinds and constructor families declared in
//! `stdlib/*.msnr`, embedded in the binary and parsed with the same parser.
//! Helper files (`std/celeba.msnr`) hold ordinary params and stages that a
//! pipeline may `use`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;

use super::analyzer::Analyzer;
use super::ast::{self, Item, TypeExpr, TypeExprKind};
use super::codes;
use super::diagnostic::{Diagnostic, Diagnostics};
use super::parser;
use super::source::{SourceId, Sources, Span};
use super::types::Type;
use super::value::Value;

/// The embedded files, by the name a `use "std/<name>"` gives.
pub const FILES: &[(&str, &str)] = &[
    ("data.msnr", include_str!("../../stdlib/data.msnr")),
    ("train.msnr", include_str!("../../stdlib/train.msnr")),
    ("sample.msnr", include_str!("../../stdlib/sample.msnr")),
    ("checkpoint.msnr", include_str!("../../stdlib/checkpoint.msnr")),
    ("fid.msnr", include_str!("../../stdlib/fid.msnr")),
    ("classifier.msnr", include_str!("../../stdlib/classifier.msnr")),
    ("celeba.msnr", include_str!("../../stdlib/celeba.msnr")),
    ("weights.msnr", include_str!("../../stdlib/weights.msnr")),
];

/// The embedded text of `std/<name>`, if there is such a file.
#[must_use]
pub fn file(name: &str) -> Option<&'static str> {
    FILES.iter().find(|(n, _)| *n == name).map(|(_, text)| *text)
}

/// Every declared stage kind and constructor family.
#[derive(Debug)]
pub struct Stdlib {
    /// Stage kinds in declaration order.
    pub kinds: Vec<KindSig>,
    /// Constructor families in declaration order.
    pub types: Vec<TypeFamily>,
}

/// A stage kind's signature.
#[derive(Clone, Debug)]
pub struct KindSig {
    /// The kind's name (`train`).
    pub name: String,
    /// Its documentation (Markdown).
    pub doc: String,
    /// The type of its output (`model`).
    pub output: String,
    /// Its parameters in declaration order.
    pub params: Vec<Param>,
}

/// A constructor family (`type weighting { ... }`).
#[derive(Clone, Debug)]
pub struct TypeFamily {
    /// The family's name.
    pub name: String,
    /// Its documentation.
    pub doc: String,
    /// Its constructors in declaration order.
    pub variants: Vec<Variant>,
}

/// One constructor of a family.
#[derive(Clone, Debug)]
pub struct Variant {
    /// The constructor's name (`min_snr`).
    pub name: String,
    /// Its documentation.
    pub doc: String,
    /// Its parameters.
    pub params: Vec<Param>,
}

/// One declared parameter of a kind or constructor.
#[derive(Clone, Debug)]
pub struct Param {
    /// Its name.
    pub name: String,
    /// Its documentation.
    pub doc: String,
    /// Its type.
    pub ty: Type,
    /// Its default; `None` when the parameter is required. An optional
    /// parameter (`T?`) without a written default defaults to [`Value::None`].
    pub default: Option<Value>,
}

impl Stdlib {
    /// The stage kind named `name`.
    #[must_use]
    pub fn kind(&self, name: &str) -> Option<&KindSig> {
        self.kinds.iter().find(|k| k.name == name)
    }

    /// The family named `name`.
    #[must_use]
    pub fn family(&self, name: &str) -> Option<&TypeFamily> {
        self.types.iter().find(|t| t.name == name)
    }

    /// The families that have a constructor named `name`.
    pub fn families_with(&self, name: &str) -> impl Iterator<Item = &TypeFamily> + '_ {
        let name = name.to_string();
        self.types.iter().filter(move |t| t.variant(&name).is_some())
    }

    /// Parses and checks the embedded files.
    ///
    /// # Errors
    /// Any error in the embedded declarations (a bug in `stdlib/`, caught by the tests).
    pub fn build() -> Result<Self, Diagnostics> {
        let mut sources = Sources::default();
        let ids: Vec<SourceId> = FILES
            .iter()
            .map(|(name, text)| {
                sources.add(PathBuf::from(format!("<stdlib>/{name}")), format!("std/{name}"), (*text).to_string())
            })
            .collect();
        let mut files = Vec::new();
        let mut errors = Vec::new();
        for id in ids {
            match parser::parse_file(&sources, id) {
                Ok(f) => files.push(f),
                Err(d) => errors.extend(d.0),
            }
        }
        let mut builder = Builder { sources: &sources, errors, names: Names::collect(&files) };
        let mut lib = Stdlib { kinds: Vec::new(), types: Vec::new() };
        let mut defaults = Vec::new();
        for item in files.iter().flat_map(|f| &f.items) {
            builder.declare(item, &mut lib, &mut defaults);
        }
        builder.fill_defaults(&mut lib, &defaults);
        if builder.errors.is_empty() {
            Ok(lib)
        } else {
            Err(Diagnostics(builder.errors))
        }
    }
}

impl TypeFamily {
    /// The constructor named `name`.
    #[must_use]
    pub fn variant(&self, name: &str) -> Option<&Variant> {
        self.variants.iter().find(|v| v.name == name)
    }
}

/// The stdlib, built once.
///
/// # Panics
/// If the embedded declarations have errors (a unit test keeps them clean).
pub fn stdlib() -> &'static Stdlib {
    static LIB: OnceLock<Stdlib> = OnceLock::new();
    LIB.get_or_init(|| {
        Stdlib::build().unwrap_or_else(|d| panic!("the embedded stdlib is invalid:\n{}", d.render_plain()))
    })
}

/// The declared type names, known before any type expression is resolved.
struct Names {
    families: BTreeSet<String>,
    artifacts: BTreeSet<String>,
}

impl Names {
    fn collect(files: &[ast::File]) -> Self {
        let (mut families, mut artifacts) = (BTreeSet::new(), BTreeSet::new());
        for item in files.iter().flat_map(|f| &f.items) {
            match item {
                Item::Type(t) => families.insert(t.name.name.clone()),
                Item::Kind(k) => artifacts.insert(k.output.name.clone()),
                _ => false,
            };
        }
        Self { families, artifacts }
    }
}

/// Where a default expression goes once the whole library is known:
/// (kind or family index, variant index, param index) and the expression.
type DefaultSlot = (Owner, usize, ast::Expr);

/// The declaration owning a parameter.
#[derive(Clone, Copy)]
enum Owner {
    Kind(usize),
    Variant(usize, usize),
}

struct Builder<'a> {
    sources: &'a Sources,
    errors: Vec<Diagnostic>,
    names: Names,
}

impl Builder<'_> {
    fn declare(&mut self, item: &Item, lib: &mut Stdlib, defaults: &mut Vec<DefaultSlot>) {
        match item {
            Item::Kind(k) => {
                let owner = Owner::Kind(lib.kinds.len());
                let params = self.params(&k.params, owner, defaults);
                self.check_unique(lib.kinds.iter().map(|k| k.name.as_str()), &k.name);
                lib.kinds.push(KindSig {
                    name: k.name.name.clone(),
                    doc: k.docs.text(),
                    output: k.output.name.clone(),
                    params,
                });
            }
            Item::Type(t) => {
                let family = lib.types.len();
                self.check_unique(lib.types.iter().map(|t| t.name.as_str()), &t.name);
                let variants = (t.variants.iter().enumerate())
                    .map(|(i, v)| Variant {
                        name: v.name.name.clone(),
                        doc: v.docs.text(),
                        params: self.params(&v.params, Owner::Variant(family, i), defaults),
                    })
                    .collect();
                lib.types.push(TypeFamily { name: t.name.name.clone(), doc: t.docs.text(), variants });
            }
            _ => {}
        }
    }

    fn check_unique<'n>(&mut self, mut existing: impl Iterator<Item = &'n str>, name: &ast::Ident) {
        if existing.any(|n| n == name.name) {
            let d = Diagnostic::new(
                self.sources,
                codes::DUPLICATE,
                format!("`{}` is declared twice", name.name),
                name.span,
                "again here",
            );
            self.errors.push(d);
        }
    }

    fn params(&mut self, sigs: &[ast::ParamSig], owner: Owner, defaults: &mut Vec<DefaultSlot>) -> Vec<Param> {
        let mut out = Vec::new();
        for (i, sig) in sigs.iter().enumerate() {
            let ty = self.resolve(&sig.ty).unwrap_or(Type::Str);
            let default = match (&sig.default, &ty) {
                (Some(e), _) => {
                    defaults.push((owner, i, e.clone()));
                    None
                }
                (None, Type::Optional(_)) => Some(Value::None),
                (None, _) => None,
            };
            out.push(Param { name: sig.name.name.clone(), doc: sig.docs.text(), ty, default });
        }
        out
    }

    /// The [`Type`] a written type names.
    fn resolve(&mut self, t: &TypeExpr) -> Option<Type> {
        Some(match &t.kind {
            TypeExprKind::Named(n) => self.named(n, t.span)?,
            TypeExprKind::List(inner) => Type::List(Box::new(self.resolve(inner)?)),
            TypeExprKind::Optional(inner) => Type::Optional(Box::new(self.resolve(inner)?)),
            TypeExprKind::Union(ts) => Type::Union(ts.iter().map(|t| self.resolve(t)).collect::<Option<_>>()?),
        })
    }

    fn named(&mut self, name: &str, span: Span) -> Option<Type> {
        if let Some(t) = Type::primitive(name) {
            return Some(t);
        }
        if self.names.families.contains(name) {
            return Some(Type::Family(name.to_string()));
        }
        if self.names.artifacts.contains(name) {
            return Some(Type::Artifact(name.to_string()));
        }
        let d =
            Diagnostic::new(self.sources, codes::UNKNOWN_TYPE, format!("unknown type `{name}`"), span, "not a type");
        self.errors.push(d);
        None
    }

    /// Evaluates every written default against its declared type: the
    /// constructors' first, so a kind's constructor default finds them filled.
    fn fill_defaults(&mut self, lib: &mut Stdlib, defaults: &[DefaultSlot]) {
        let variants_first = defaults.iter().filter(|d| matches!(d.0, Owner::Variant(..)));
        for (owner, i, expr) in variants_first.chain(defaults.iter().filter(|d| matches!(d.0, Owner::Kind(_)))) {
            let ty = match *owner {
                Owner::Kind(k) => lib.kinds[k].params[*i].ty.clone(),
                Owner::Variant(f, v) => lib.types[f].variants[v].params[*i].ty.clone(),
            };
            let mut analyzer = Analyzer::for_stdlib(lib, self.sources);
            let value = analyzer.eval_default(expr, &ty);
            self.errors.extend(analyzer.into_errors());
            let slot = match *owner {
                Owner::Kind(k) => &mut lib.kinds[k].params[*i],
                Owner::Variant(f, v) => &mut lib.types[f].variants[v].params[*i],
            };
            slot.default = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_stdlib_is_valid() {
        if let Err(d) = Stdlib::build() {
            panic!("{}", d.render_plain());
        }
    }

    #[test]
    fn everything_is_documented() {
        let lib = stdlib();
        for k in &lib.kinds {
            assert!(!k.doc.is_empty(), "kind {}", k.name);
            for p in &k.params {
                assert!(!p.doc.is_empty(), "kind {} param {}", k.name, p.name);
            }
        }
        for t in &lib.types {
            assert!(!t.doc.is_empty(), "type {}", t.name);
            for v in &t.variants {
                assert!(!v.doc.is_empty(), "variant {}", v.name);
                for p in &v.params {
                    assert!(!p.doc.is_empty(), "variant {} param {}", v.name, p.name);
                }
            }
        }
    }

    #[test]
    fn defaults_are_resolved() {
        let lib = stdlib();
        let train = lib.kind("train").unwrap();
        let schedule = train.params.iter().find(|p| p.name == "schedule").unwrap();
        let Some(Value::Ctor { name, args }) = &schedule.default else { panic!("{:?}", schedule.default) };
        assert_eq!(name, "cosine");
        assert_eq!(args["steps"], Value::Int(1000));
        let ema = train.params.iter().find(|p| p.name == "ema").unwrap();
        assert_eq!(ema.default, Some(Value::Float(0.9999)));
        let steps = train.params.iter().find(|p| p.name == "steps").unwrap();
        assert_eq!(steps.default, None);
        let w = lib.family("weighting").unwrap().variant("min_snr").unwrap();
        assert_eq!(w.params[0].default, Some(Value::Float(5.0)));
        let sha = lib.kind("download").unwrap().params.iter().find(|p| p.name == "sha256").unwrap();
        assert_eq!(sha.default, Some(Value::None));
    }
}
