//! Running a pipeline: the executor (topological, independent stages in
//! parallel), progress reporting, the device probe, and the protocol between
//! the front end and the `msnr-worker` process that runs libtorch stages.

pub mod device;
pub mod executor;
pub mod keys;
pub mod progress;
pub mod project;
pub mod protocol;
pub mod roots;
pub mod worker;
