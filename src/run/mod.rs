//! Running a pipeline: the executor (its stages on this machine or as SLURM jobs) (topological, independent stages in
//! parallel within a budget of cores and GPUs), progress reporting, the device probe, Ctrl-C and resuming, and
//! the protocol between the front end and the `msnr-worker` process that runs
//! libtorch stages.

pub mod budget;
pub mod continuation;
pub mod device;
pub mod executor;
pub mod interrupt;
pub mod keys;
pub mod launcher;
pub mod progress;
pub mod project;
pub mod protocol;
pub mod resume;
pub mod roots;
pub mod slurm;
pub mod worker;
