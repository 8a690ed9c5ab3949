//! Diagnostics: one error with labelled spans into a whole named file and a
//! help line; a pass collects them all into [`Diagnostics`].

use std::fmt;
use std::sync::Arc;

use miette::{LabeledSpan, NamedSource};

use super::source::{Sources, Span};

/// One error of the front end, graph validation or planning.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// The headline, e.g. "unknown parameter `gama` for stage kind `train`".
    pub message: String,
    /// A stable code, e.g. `msnr::unknown_parameter` (one per error kind).
    pub code: &'static str,
    /// The file the labels point into.
    pub source: NamedSource<Arc<String>>,
    /// Labelled spans; the first is the primary one.
    pub labels: Vec<LabeledSpan>,
    /// A help line ("did you mean `gamma`?").
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic with one primary label at `span`.
    #[must_use]
    pub fn new(
        sources: &Sources,
        code: &'static str,
        message: impl Into<String>,
        span: Span,
        label: impl Into<String>,
    ) -> Self {
        Self {
            message: message.into(),
            code,
            source: sources.named(span.source),
            labels: vec![LabeledSpan::new_primary_with_span(Some(label.into()), span.range())],
            help: None,
        }
    }

    /// Adds a secondary label (must be in the same file as the primary one).
    #[must_use]
    pub fn with_label(mut self, span: Span, label: impl Into<String>) -> Self {
        self.labels.push(LabeledSpan::new_with_span(Some(label.into()), span.range()));
        self
    }

    /// Sets the help line.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

impl miette::Diagnostic for Diagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(self.labels.iter().cloned()))
    }
}

/// All errors of one pass, reported together.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Renders every diagnostic as plain text (no colour), as the snapshot tests and non-tty output see it.
    ///
    /// # Panics
    /// Never: rendering into a `String` cannot fail.
    #[must_use]
    pub fn render_plain(&self) -> String {
        let handler =
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor()).with_width(100);
        let mut out = String::new();
        for d in &self.0 {
            handler.render_report(&mut out, d).expect("rendering to a String cannot fail");
        }
        out
    }

    /// True when nothing was reported.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error(s)", self.0.len())
    }
}

impl std::error::Error for Diagnostics {}

impl miette::Diagnostic for Diagnostics {
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        Some(Box::new(self.0.iter().map(|d| d as &dyn miette::Diagnostic)))
    }
}
