//! What a pipeline's recorded results say, for people: the experiment table (one row per
//! stage instance that recorded metrics, grouped into metric-versus-steps series across a
//! sweep), how many training steps each series needs to reach a value, and the renderings
//! that `msnr compare`, `plot` and `report` print or draw. Reads the lockfile and the
//! store; runs nothing.
//!
//! - [`table`]: the experiment table and its metric-versus-steps series;
//! - [`reach`]: the steps a series needs to reach a value;
//! - [`log`]: a `train` output's `log.jsonl`;
//! - [`gather`]: the logs, metrics and grids of a pipeline that has run;
//! - [`chart`]: one line chart drawn with plotters, to PNG and SVG;
//! - [`plots`]: which charts `msnr plot` draws;
//! - [`dag`]: the stage graph as inline SVG, laid out by topological layers;
//! - [`html`]: escaping and `data:` URIs;
//! - [`page`]: the report page (`msnr report`).

pub mod chart;
pub mod dag;
pub mod gather;
pub mod html;
pub mod log;
pub mod page;
pub mod plots;
pub mod reach;
pub mod table;

pub use reach::{reach, Goal, Reached};
pub use table::{Experiment, Row, Series};
