//! The language front end: source files and spans, the pest grammar and
//! parser, the AST, the analyzer that checks a pipeline against the stdlib
//! declarations, and diagnostics rendered against whole named files.

pub mod diagnostic;
pub mod pipeline;
pub mod source;
pub mod value;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use pipeline::{Pipeline, Stage};
pub use source::{SourceId, Sources, Span};
pub use value::Value;
