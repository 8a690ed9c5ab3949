//! Checking an expression against a declared type and resolving it to a
//! [`Value`]: names (sweep variable, param, nullary variant, stage, in that
//! order), int-to-float widening, path resolution, constructor arguments with
//! defaults, and stage references (the edges of the DAG).

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use super::analyzer::Analyzer;
use super::ast::{Body, Expr, ExprKind, Ident, StageDecl};
use super::codes;
use super::diagnostic::Diagnostic;
use super::source::{SourceId, Span};
use super::stdlib::Param;
use super::suggest;
use super::sweep::{params_of, render};
use super::types::{Type, FILES};
use super::value::Value;

/// How many substitutions (param in param, sweep value) may nest.
const MAX_SUBST: usize = 32;

/// Where an expression is evaluated.
#[derive(Clone, Copy, Debug)]
pub struct Scope {
    /// The file whose declarations are visible.
    pub file: SourceId,
    /// The sweep and instance the expression is in, if any.
    pub sweep: Option<(usize, usize)>,
    /// The use site that led here through a param or sweep variable.
    pub origin: Option<Span>,
    /// Substitutions so far.
    pub depth: usize,
}

/// What a name means where it is used.
enum Lookup<'a> {
    /// A sweep variable: its value in this instance.
    Var(&'a Expr, (usize, usize, String)),
    /// A param: its (possibly overridden) value.
    Param(&'a Expr),
    /// A stage.
    Stage(&'a StageDecl, Option<usize>),
    /// Declared, but in a file the user did not import.
    Hidden(SourceId),
    /// Nothing.
    Missing,
}

/// The rough form of an expression, names followed, used to pick among a
/// union's alternatives and to say what was found.
#[derive(Clone, Debug, PartialEq)]
enum Shape {
    Int,
    Float,
    Str,
    Bool,
    None,
    List,
    Ctor(String),
    Name(String),
    Stage(String, Option<String>),
}

impl Shape {
    fn describe(&self) -> String {
        match self {
            Self::Int => "an integer".into(),
            Self::Float => "a float".into(),
            Self::Str => "a string".into(),
            Self::Bool => "a boolean".into(),
            Self::None => "`none`".into(),
            Self::List => "a list".into(),
            Self::Ctor(n) => format!("constructor `{n}`"),
            Self::Name(n) => format!("`{n}`"),
            Self::Stage(n, Some(out)) => format!("stage `{n}` (its output is `{out}`)"),
            Self::Stage(n, None) => format!("stage `{n}`"),
        }
    }
}

impl<'a> Analyzer<'a> {
    /// Checks `expr` against `ty` and resolves it; `None` after reporting an error.
    pub(super) fn eval(&mut self, expr: &Expr, ty: &Type, sc: Scope) -> Option<Value> {
        match ty {
            Type::Optional(inner) => {
                if self.shape(expr, sc) == Shape::None {
                    Some(Value::None)
                } else {
                    self.eval(expr, inner, sc)
                }
            }
            Type::Union(_) => {
                let shape = self.shape(expr, sc);
                let alts = ty.alternatives();
                if let Some(alt) = alts.iter().find(|t| self.fits(&shape, t)) {
                    return self.eval(expr, alt, sc);
                }
                match shape {
                    Shape::Name(_) | Shape::Ctor(_) => {
                        let first = alts.iter().find(|t| matches!(t, Type::Family(_))).unwrap_or(&alts[0]);
                        self.eval(expr, first, sc)
                    }
                    _ => self.mismatch(expr, ty, &shape, sc),
                }
            }
            _ => self.eval_one(expr, ty, sc),
        }
    }

    /// [`Analyzer::eval`] for a type that is neither a union nor optional.
    fn eval_one(&mut self, expr: &Expr, ty: &Type, sc: Scope) -> Option<Value> {
        match (&expr.kind, ty) {
            (ExprKind::Ident(name), _) => self.ident(name, expr, ty, sc),
            (ExprKind::Instance(base, bindings), _) => self.instance(base, bindings, expr.span, ty, sc),
            (ExprKind::Int(i), Type::Int) => Some(Value::Int(*i)),
            #[allow(clippy::cast_precision_loss)]
            (ExprKind::Int(i), Type::Float) => Some(Value::Float(*i as f64)),
            (ExprKind::Float(f), Type::Float) => Some(Value::Float(*f)),
            (ExprKind::Str(s), Type::Str) => Some(Value::Str(s.clone())),
            (ExprKind::Str(s), Type::Path) => Some(Value::Path(self.path(s, expr.span.source))),
            (ExprKind::Str(s), Type::Artifact(a)) if a == FILES => Some(Value::Path(self.path(s, expr.span.source))),
            (ExprKind::Bool(b), Type::Bool) => Some(Value::Bool(*b)),
            (ExprKind::List(items), Type::List(inner)) => {
                let values: Vec<Option<Value>> = items.iter().map(|e| self.eval(e, inner, sc)).collect();
                values.into_iter().collect::<Option<Vec<_>>>().map(Value::List)
            }
            (ExprKind::Ctor(name, body), Type::Family(f)) => self.ctor(name, body, f, sc),
            _ => {
                let shape = self.shape(expr, sc);
                self.mismatch(expr, ty, &shape, sc)
            }
        }
    }

    /// A bare name: sweep variable, param, nullary variant of the expected type, stage.
    fn ident(&mut self, name: &str, expr: &Expr, ty: &Type, sc: Scope) -> Option<Value> {
        match self.lookup(name, sc) {
            Lookup::Var(value, key) => {
                let v = self.subst(value, ty, sc, expr.span)?;
                self.binding_values.entry(key).or_insert_with(|| v.clone());
                Some(v)
            }
            Lookup::Param(value) => self.param(name, value, expr.span, ty, sc),
            _ if self.variant_of(ty, name) => {
                let Type::Family(f) = ty else { unreachable!("variant_of checks for a family") };
                let empty = Body { fields: Vec::new(), span: expr.span };
                self.ctor(&Ident { name: name.to_string(), span: expr.span }, &empty, f, sc)
            }
            Lookup::Stage(decl, sweep) => self.stage_ref(decl, sweep, expr.span, ty, sc),
            Lookup::Hidden(file) => {
                let file = self.sources.get(file).name.clone();
                let msg = format!("`{name}` is not defined in this file");
                let d = Diagnostic::new(self.sources, codes::UNDEFINED, msg, expr.span, "not in scope")
                    .with_help(format!("`{name}` is declared in {file}, which this file does not import"));
                self.report(d, sc)
            }
            Lookup::Missing => self.undefined(name, expr.span, ty, sc),
        }
    }

    /// A param's value, substituted at its use (with a guard against self-reference).
    fn param(&mut self, name: &str, value: &Expr, span: Span, ty: &Type, sc: Scope) -> Option<Value> {
        if self.active.iter().any(|a| a == name) {
            let chain = format!("{} -> {name}", self.active.join(" -> "));
            let msg = format!("param `{name}` refers to itself");
            let d = Diagnostic::new(self.sources, codes::PARAM_CYCLE, msg, span, "refers back here")
                .with_help(format!("the chain is {chain}"));
            return self.report(d, sc);
        }
        self.active.push(name.to_string());
        let v = self.subst(value, ty, sc, span);
        self.active.pop();
        if let Some(v) = &v {
            self.param_values.entry(name.to_string()).or_insert_with(|| v.clone());
        }
        v
    }

    /// Evaluates a param's or sweep variable's expression where it was written.
    fn subst(&mut self, value: &Expr, ty: &Type, sc: Scope, use_span: Span) -> Option<Value> {
        if sc.depth >= MAX_SUBST {
            let d = Diagnostic::new(
                self.sources,
                codes::TOO_DEEP,
                "params refer to each other too deeply",
                use_span,
                "here",
            );
            return self.report(d, sc);
        }
        let inner =
            Scope { file: value.span.source, sweep: None, origin: sc.origin.or(Some(use_span)), depth: sc.depth + 1 };
        self.eval(value, ty, inner)
    }

    fn lookup(&self, name: &str, sc: Scope) -> Lookup<'a> {
        if let Some((s, i)) = sc.sweep {
            let instance = &self.world.sweeps[s].instances[i];
            if let Some(b) = instance.bindings.iter().find(|b| b.name == name) {
                return Lookup::Var(b.expr, (s, i, name.to_string()));
            }
        }
        let param = self.world.params.get(name).map(|p| (p.decl.span.source, Lookup::Param(p.value)));
        let stage = self.world.stages.get(name).map(|s| (s.decl.span.source, Lookup::Stage(s.decl, s.sweep)));
        match param.or(stage) {
            Some((file, found)) if self.world.sees(sc.file, file) => found,
            Some((file, _)) => Lookup::Hidden(file),
            None => Lookup::Missing,
        }
    }

    fn variant_of(&self, ty: &Type, name: &str) -> bool {
        matches!(ty, Type::Family(f) if self.stdlib.family(f).is_some_and(|fam| fam.variant(name).is_some()))
    }

    fn undefined(&mut self, name: &str, span: Span, ty: &Type, sc: Scope) -> Option<Value> {
        if let Type::Family(f) = ty {
            return self.unknown_variant(name, span, f, false, sc);
        }
        let mut names: Vec<&str> = Vec::new();
        if let Some((s, i)) = sc.sweep {
            names.extend(self.world.sweeps[s].instances[i].bindings.iter().map(|b| b.name.as_str()));
        }
        names.extend(self.world.params.keys().map(String::as_str));
        names.extend(self.world.stages.keys().map(String::as_str));
        let msg = format!("`{name}` is not defined");
        let mut d = Diagnostic::new(
            self.sources,
            codes::UNDEFINED,
            msg,
            span,
            "no stage, param or sweep variable of this name",
        );
        if let Some(c) = suggest::closest(name, names) {
            d = d.with_help(format!("did you mean `{c}`?"));
        } else if let Type::Str | Type::Path = ty {
            d = d.with_help(format!("a string needs quotes: \"{name}\""));
        } else {
            d = d.with_help(format!(
                "declare it (`param {name} = ...` or `stage {name} = ...`), or `use` the file that does"
            ));
        }
        self.report(d, sc)
    }

    /// A name (`braces`: a constructor `name { .. }`) that `family` does not have.
    fn unknown_variant(&mut self, name: &str, span: Span, family: &str, braces: bool, sc: Scope) -> Option<Value> {
        let variants: Vec<&str> =
            self.stdlib.family(family).map_or(Vec::new(), |f| f.variants.iter().map(|v| v.name.as_str()).collect());
        let elsewhere = self.stdlib.families_with(name).next().is_some() || self.world.stages.contains_key(name);
        let (code, msg) = match (elsewhere, braces) {
            (true, _) => (codes::TYPE_MISMATCH, format!("`{name}` is not a `{family}`")),
            (false, true) => (codes::UNKNOWN_CONSTRUCTOR, format!("unknown `{family}` constructor `{name}`")),
            (false, false) => (codes::UNKNOWN_VARIANT, format!("unknown `{family}` variant `{name}`")),
        };
        let mut d = Diagnostic::new(self.sources, code, msg, span, format!("expected a `{family}`"));
        if self.stdlib.kind(name).is_some() {
            d = d.with_help(format!(
                "`{name}` is a stage kind: declare `stage x = {name} {{ ... }}` and refer to it as `x`"
            ));
        } else if let Some(help) = suggest::help(name, &format!("the `{family}` variants are"), &variants) {
            d = d.with_help(help);
        }
        self.report(d, sc)
    }

    /// A reference to a stage: its instance name (the same instance inside a
    /// sweep), checked against the expected artifact type; recorded as an edge.
    fn stage_ref(&mut self, decl: &StageDecl, sweep: Option<usize>, span: Span, ty: &Type, sc: Scope) -> Option<Value> {
        let base = &decl.name.name;
        let name = match (sweep, sc.sweep) {
            (None, _) => base.clone(),
            (Some(s), Some((cur, i))) if s == cur => format!("{base}{}", self.world.sweeps[s].instances[i].suffix),
            (Some(_), _) => return self.swept_outside(base, span, sc),
        };
        self.reference(name, decl, span, ty, sc)
    }

    /// Checks a resolved stage reference's output type and records the edge.
    fn reference(&mut self, name: String, decl: &StageDecl, span: Span, ty: &Type, sc: Scope) -> Option<Value> {
        let output = self.stdlib.kind(&decl.kind.name).map(|k| k.output.clone());
        let fits = match (&output, ty) {
            (None, _) => true,
            (Some(out), Type::Artifact(want)) => out == want,
            _ => false,
        };
        if !fits {
            let shape = Shape::Stage(name, output);
            let expr = Expr { kind: ExprKind::Ident(decl.name.name.clone()), span };
            return self.mismatch(&expr, ty, &shape, sc);
        }
        self.refs.push((name.clone(), sc.origin.unwrap_or(span)));
        Some(Value::Stage(name))
    }

    fn swept_outside(&mut self, base: &str, span: Span, sc: Scope) -> Option<Value> {
        let names: Vec<String> = self.world.instance_names(base).iter().map(|n| format!("`{n}`")).collect();
        let msg = format!("`{base}` is a swept stage; refer to one of its instances");
        let d = Diagnostic::new(
            self.sources,
            codes::SWEPT_REFERENCE,
            msg,
            span,
            "swept stage referenced outside its sweep",
        )
        .with_help(format!("its instances are {}", names.join(", ")));
        self.report(d, sc)
    }

    /// `m[g=5]`: one named instance of a swept stage.
    fn instance(
        &mut self,
        base: &Ident,
        bindings: &[(Ident, Expr)],
        span: Span,
        ty: &Type,
        sc: Scope,
    ) -> Option<Value> {
        let Lookup::Stage(decl, sweep) = self.lookup(&base.name, sc) else {
            return self.undefined(&base.name, base.span, &Type::Str, sc);
        };
        let parts: Vec<String> = {
            let params = params_of(&self.world, sc.file);
            bindings.iter().map(|(v, e)| format!("{}={}", v.name, render(e, &params))).collect()
        };
        let name = format!("{}[{}]", base.name, parts.join(","));
        if sweep.is_none() {
            let msg = format!("stage `{}` is not swept", base.name);
            let d = Diagnostic::new(self.sources, codes::SWEPT_REFERENCE, msg, span, "no instances")
                .with_help(format!("refer to it as `{}`", base.name));
            return self.report(d, sc);
        }
        if !self.world.instance_names(&base.name).contains(&name) {
            let names: Vec<String> = self.world.instance_names(&base.name).iter().map(|n| format!("`{n}`")).collect();
            let msg = format!("swept stage `{}` has no instance `{name}`", base.name);
            let d = Diagnostic::new(self.sources, codes::SWEPT_REFERENCE, msg, span, "no such instance")
                .with_help(format!("its instances are {}", names.join(", ")));
            return self.report(d, sc);
        }
        self.reference(name, decl, span, ty, sc)
    }

    /// `name { fields }` of family `family`.
    fn ctor(&mut self, name: &Ident, body: &Body, family: &str, sc: Scope) -> Option<Value> {
        let stdlib = self.stdlib;
        let Some(variant) = stdlib.family(family).and_then(|f| f.variant(&name.name)) else {
            let braces = body.span != name.span;
            return self.unknown_variant(&name.name, name.span, family, braces, sc);
        };
        let owner = format!("`{}` (type `{family}`)", name.name);
        let args = self.args(&variant.params, body, sc, &owner, name.span)?;
        Some(Value::Ctor { name: name.name.clone(), args })
    }

    /// The fields of a stage or constructor body against the declared
    /// parameters: unknown and repeated fields, values, defaults, missing ones.
    pub(super) fn args(
        &mut self,
        params: &[Param],
        body: &Body,
        sc: Scope,
        owner: &str,
        at: Span,
    ) -> Option<BTreeMap<String, Value>> {
        let mut out = BTreeMap::new();
        let mut seen: HashMap<&str, &Ident> = HashMap::new();
        let mut ok = true;
        for field in &body.fields {
            if let Some(prev) = seen.get(field.name.name.as_str()) {
                let msg = format!("parameter `{}` is given more than once", field.name.name);
                let d = Diagnostic::new(self.sources, codes::DUPLICATE, msg, field.name.span, "given again here")
                    .with_label(prev.span, "first given here");
                self.report(d, sc);
                ok = false;
                continue;
            }
            seen.insert(&field.name.name, &field.name);
            let Some(param) = params.iter().find(|p| p.name == field.name.name) else {
                self.unknown_parameter(&field.name, params, owner, sc);
                ok = false;
                continue;
            };
            match self.eval(&field.value, &param.ty, sc) {
                Some(v) => drop(out.insert(param.name.clone(), v)),
                None => ok = false,
            }
        }
        for p in params.iter().filter(|p| !seen.contains_key(p.name.as_str())) {
            if let Some(v) = &p.default {
                out.insert(p.name.clone(), v.clone());
            } else {
                self.missing(p, owner, at, sc);
                ok = false;
            }
        }
        ok.then_some(out)
    }

    fn unknown_parameter(&mut self, name: &Ident, params: &[Param], owner: &str, sc: Scope) {
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        let msg = format!("unknown parameter `{}` of {owner}", name.name);
        let mut d = Diagnostic::new(self.sources, codes::UNKNOWN_PARAMETER, msg, name.span, "not a parameter");
        let help = suggest::help(&name.name, "its parameters are", &names)
            .unwrap_or_else(|| format!("{owner} takes no parameters"));
        d = d.with_help(help);
        self.report(d, sc);
    }

    fn missing(&mut self, p: &Param, owner: &str, at: Span, sc: Scope) {
        let msg = format!("missing parameter `{}` of {owner}", p.name);
        let doc = p.doc.lines().next().unwrap_or_default();
        let d = Diagnostic::new(self.sources, codes::MISSING_PARAMETER, msg, at, format!("needs `{}`", p.name))
            .with_help(format!("add `{} = ...` ({}): {doc}", p.name, p.ty));
        self.report(d, sc);
    }

    /// Reports a value of the wrong type.
    fn mismatch(&mut self, expr: &Expr, ty: &Type, found: &Shape, sc: Scope) -> Option<Value> {
        let msg = format!("expected `{ty}`, found {}", found.describe());
        let d = Diagnostic::new(self.sources, codes::TYPE_MISMATCH, msg, expr.span, format!("expected `{ty}`"));
        let help = match (found, ty) {
            (Shape::Ctor(n), _) if self.stdlib.kind(n).is_some() => {
                format!("`{n}` is a stage kind: declare `stage x = {n} {{ ... }}` and refer to it as `x`")
            }
            (Shape::None, _) => "only optional parameters (`T?`) accept `none`".to_string(),
            (Shape::Float, Type::Int) => "write a whole number".to_string(),
            (Shape::Str, Type::Artifact(a)) => {
                format!("a string is accepted only where `{FILES}` is; `{a}` needs a stage")
            }
            (Shape::Str, Type::Int | Type::Float) => "write the number without quotes".to_string(),
            (Shape::Stage(name, Some(out)), Type::Artifact(a)) => format!(
                "stage `{name}` gives a `{out}`; refer to a stage whose kind gives a `{a}` (`msnr doc` lists each \
                 kind's output)"
            ),
            _ => format!("this parameter takes a `{ty}` (`msnr doc` lists every parameter's type)"),
        };
        let d = d.with_help(help);
        self.report(d, sc)
    }

    /// Pushes `d`, labelling the use site when it came through a param in the same file.
    fn report(&mut self, mut d: Diagnostic, sc: Scope) -> Option<Value> {
        if let Some(origin) = sc.origin {
            let primary = d.labels.first().map(miette::LabeledSpan::offset);
            if d.source.name() == self.sources.get(origin.source).name && primary != Some(origin.start) {
                d = d.with_label(origin, "used here");
            }
        }
        self.push(d);
        None
    }

    fn fits(&self, shape: &Shape, ty: &Type) -> bool {
        match (shape, ty) {
            (_, Type::Optional(inner)) => *shape == Shape::None || self.fits(shape, inner),
            (_, Type::Union(ts)) => ts.iter().any(|t| self.fits(shape, t)),
            (Shape::Int, Type::Int | Type::Float)
            | (Shape::Float, Type::Float)
            | (Shape::Str, Type::Str | Type::Path)
            | (Shape::Bool, Type::Bool)
            | (Shape::List, Type::List(_)) => true,
            (Shape::Str, Type::Artifact(a)) => a == FILES,
            (Shape::Ctor(n) | Shape::Name(n), Type::Family(_)) => self.variant_of(ty, n),
            (Shape::Stage(_, out), Type::Artifact(a)) => out.as_ref().is_none_or(|o| o == a),
            _ => false,
        }
    }

    /// The form of `expr`, following params and sweep variables.
    fn shape(&self, expr: &Expr, sc: Scope) -> Shape {
        match &expr.kind {
            ExprKind::Int(_) => Shape::Int,
            ExprKind::Float(_) => Shape::Float,
            ExprKind::Str(_) => Shape::Str,
            ExprKind::Bool(_) => Shape::Bool,
            ExprKind::None => Shape::None,
            ExprKind::List(_) => Shape::List,
            ExprKind::Ctor(n, _) => Shape::Ctor(n.name.clone()),
            ExprKind::Instance(n, _) => self.stage_shape(&n.name),
            ExprKind::Ident(n) => {
                let inner = |e: &Expr| Scope { file: e.span.source, sweep: None, origin: None, depth: sc.depth + 1 };
                match self.lookup(n, sc) {
                    _ if sc.depth >= MAX_SUBST => Shape::Name(n.clone()),
                    Lookup::Var(e, _) | Lookup::Param(e) => self.shape(e, inner(e)),
                    Lookup::Stage(..) => self.stage_shape(n),
                    Lookup::Hidden(_) | Lookup::Missing => Shape::Name(n.clone()),
                }
            }
        }
    }

    fn stage_shape(&self, name: &str) -> Shape {
        let output =
            self.world.stages.get(name).and_then(|s| self.stdlib.kind(&s.decl.kind.name)).map(|k| k.output.clone());
        Shape::Stage(name.to_string(), output)
    }

    /// A value as written, without a declared type (params nobody uses,
    /// sweep values): ints stay ints, constructors keep only their written fields.
    pub(super) fn untyped(&self, expr: &Expr, sc: Scope) -> Value {
        match &expr.kind {
            ExprKind::Int(i) => Value::Int(*i),
            ExprKind::Float(f) => Value::Float(*f),
            ExprKind::Str(s) => Value::Str(s.clone()),
            ExprKind::Bool(b) => Value::Bool(*b),
            ExprKind::None => Value::None,
            ExprKind::List(items) => Value::List(items.iter().map(|e| self.untyped(e, sc)).collect()),
            ExprKind::Ctor(n, body) => {
                let args = body.fields.iter().map(|f| (f.name.name.clone(), self.untyped(&f.value, sc))).collect();
                Value::Ctor { name: n.name.clone(), args }
            }
            ExprKind::Instance(..) => Value::Stage(render(expr, &params_of(&self.world, sc.file))),
            ExprKind::Ident(n) => {
                let inner = |e: &Expr| Scope { file: e.span.source, sweep: None, origin: None, depth: sc.depth + 1 };
                match self.lookup(n, sc) {
                    _ if sc.depth >= MAX_SUBST => Value::Str(n.clone()),
                    Lookup::Var(e, _) | Lookup::Param(e) => self.untyped(e, inner(e)),
                    Lookup::Stage(..) => Value::Stage(n.clone()),
                    Lookup::Hidden(_) | Lookup::Missing => Value::Ctor { name: n.clone(), args: BTreeMap::new() },
                }
            }
        }
    }

    /// A path string resolved against the folder of the file it was written in.
    fn path(&self, text: &str, file: SourceId) -> PathBuf {
        normalize(&self.world.base(file).join(text))
    }
}

/// Removes `.` and resolves `..` lexically (no file system access).
#[must_use]
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => drop(out.pop()),
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_lexically() {
        let cases = [
            ("/a/b/../c/./d", "/a/c/d"),
            ("/a/../../b", "/b"),
            ("/x/./y/", "/x/y"),
            ("../../x", "../../x"),
            ("a/../../b", "../b"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(Path::new(input)), PathBuf::from(want), "{input}");
        }
    }
}
