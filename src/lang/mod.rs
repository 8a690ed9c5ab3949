//! The language front end: source files and spans, the pest grammar and
//! parser, the AST, the analyzer that checks a pipeline against the stdlib
//! declarations, and diagnostics rendered against whole named files.
//!
//! # The language in brief
//! ```text
//! # a comment                          /// a doc comment (on the next declaration)
//! use "std/celeba.msnr"                # import: relative to this file, or the embedded stdlib
//! param gamma = 5                      # overridable: --set gamma=10 (the value is an expression)
//! stage model = train {                # stage NAME = KIND { field = value ... }
//!   data = celeba64                    # a stage reference: an edge of the DAG
//!   net = unet { mults = [1, 2, 2] }   # a constructor of the family `net`, defaults filled
//!   target = eps                       # a nullary constructor
//!   steps = 500k                       # k = 1e3, M = 1e6; `_` separators; floats 1e-4, 0.5
//! }                                    # fields are separated by `,` or line breaks
//! sweep g in [1, 5], t in [eps, v] {   # one instance per combination: model[g=1,t=eps], ...
//!   stage m = train { data = celeba64, net = unet {}, steps = 1k, target = t, weighting = min_snr { gamma = g } }
//! }
//! stage s = sample { model = m[g=5,t=v], count = 1k }   # one instance, named from outside
//! ```
//! A bare name means, in order: a sweep variable, a param, a variant of the
//! expected family, a stage. A file sees its own declarations and those of the
//! files it imports (transitively). Ints widen to floats; strings become
//! absolute paths where a `path` or `files` is expected; `none` fills an
//! optional (`T?`) parameter. The stage kinds and constructor families are
//! declared in `stdlib/*.msnr` (`kind name -> output { .. }`, `type name { .. }`).
//!
//! The passes, each collecting all of its errors before stopping:
//! 1. [`loader`]: read the main file and its `use`s, parse each ([`parser`]);
//! 2. [`overrides`]: parse the `--set` values;
//! 3. [`analyzer`]: declarations, overrides, [`sweep`] expansion, and each
//!    stage's fields checked and resolved ([`eval`]) into a [`Pipeline`].
//!
//! Every error kind has a stable code in [`codes`].

pub mod analyzer;
pub mod ast;
pub mod codes;
pub mod comments;
pub mod diagnostic;
pub mod eval;
pub mod format;
pub mod literal;
pub mod loader;
pub mod overrides;
pub mod parser;
pub mod pipeline;
pub mod reference;
pub mod source;
pub mod stdlib;
pub mod suggest;
pub mod sweep;
pub mod syntax_error;
pub mod types;
pub mod value;
pub mod world;

use std::path::Path;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use format::{format, format_named};
pub use pipeline::{Pipeline, Stage};
pub use source::{SourceId, Sources, Span};
pub use stdlib::{stdlib, Stdlib};
pub use types::Type;
pub use value::Value;

/// Loads, checks and resolves the pipeline in `path`, with `--set name=value` overrides.
///
/// # Errors
/// Every error of the first pass that failed (syntax and imports, then analysis).
pub fn load(path: &Path, overrides: &[(String, String)]) -> Result<Pipeline, Diagnostics> {
    finish(loader::load_file(path), overrides)
}

/// [`load`] for a pipeline given as text, named `name`; imports resolve
/// against the working directory.
///
/// # Errors
/// As [`load`].
pub fn load_str(name: &str, text: &str, overrides: &[(String, String)]) -> Result<Pipeline, Diagnostics> {
    finish(loader::load_text(name, text), overrides)
}

/// Parses the overrides and analyzes the loaded files.
fn finish(
    loaded: Result<loader::Loaded, Diagnostics>,
    overrides: &[(String, String)],
) -> Result<Pipeline, Diagnostics> {
    let mut loaded = loaded?;
    let parsed = overrides::parse(&mut loaded.sources, overrides).map_err(Diagnostics)?;
    analyzer::analyze(&loaded, &parsed, stdlib())
}
