//! What a pipeline's recorded results say, for people: the experiment table (one row per
//! stage instance that recorded metrics, grouped into metric-versus-steps series across a
//! sweep), how many training steps each series needs to reach a value, and the renderings
//! that `msnr compare`, `plot` and `report` print or draw. Reads the lockfile and the
//! store; runs nothing.

pub mod reach;
pub mod table;

pub use reach::{reach, Goal, Reached};
pub use table::{Experiment, Row, Series};
