//! Data-parallel training (`devices > 1`), PyTorch DDP's scheme over libtorch's own c10d:
//! the worker the runner started is rank 0; it binds a c10d `TCPStore` on a free loopback
//! port and starts ranks 1..N as copies of itself (same spec, the rank and port in the
//! environment). All join one Gloo process group ([`crate::shim::c10d`]), build the same net
//! from the same seed, draw the same global batch and each keep its `batch / devices` share
//! ([`Group::shard`]); after backward, the flat gradient buffer is averaged in one
//! all-reduce ([`Group::mean`]), so every rank takes the same optimizer step. Only rank 0
//! writes the log, checkpoints and outputs; a resume loads rank 0's checkpoint on every rank.
//!
//! A rank that dies fails its peers' next collective (connection closed) or, if it hangs,
//! the collective's timeout ([`TIMEOUT_VAR`], default [`DEFAULT_TIMEOUT`]); rank 0 then
//! names the rank and its own error message. Ranks 1..N die with rank 0 (`PR_SET_PDEATHSIG`),
//! and rank 0 kills them when it fails, so no process outlives the stage.

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tch::{Device, TchError, Tensor};

use crate::shim::c10d::{Gloo, Store};
use msnr::run::protocol::Event;
use msnr::run::worker::THREADS_VAR;
use msnr::stages::StageError;

/// The environment variable that makes a worker rank `r` (> 0) of a group.
pub const RANK_VAR: &str = "MSNR_DDP_RANK";
/// The environment variable with rank 0's store port, for ranks > 0.
pub const PORT_VAR: &str = "MSNR_DDP_PORT";
/// Seconds a rendezvous or a collective waits for a silent rank before it fails.
pub const TIMEOUT_VAR: &str = "MSNR_DDP_TIMEOUT";
/// [`TIMEOUT_VAR`]'s default: longer than any step, short enough to free a hung node.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// The ranks meet on the loopback interface: one machine.
const HOST: &str = "127.0.0.1";

/// This process's place in a data-parallel group.
pub struct Group {
    rank: usize,
    world: usize,
    gloo: Gloo,
    /// Kept alive for the group: c10d's store outlives the process group's use of it.
    _store: Store,
    /// Rank 0's children, ranks 1..N (empty on the others).
    peers: Mutex<Vec<Peer>>,
}

/// A rank started by rank 0, with the last error line it reported.
struct Peer {
    rank: usize,
    child: Child,
    error: Arc<Mutex<Option<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Group {
    /// Joins (rank > 0, from the environment) or starts (rank 0) the group of `devices`
    /// processes; `None` for one device.
    ///
    /// # Errors
    /// A bad environment, a peer that cannot be started or never joins, named.
    pub fn join(devices: u64) -> Result<Option<Self>, StageError> {
        if devices <= 1 {
            return Ok(None);
        }
        let world = usize::try_from(devices).map_err(|_| StageError::param("devices", "too large"))?;
        let timeout = timeout()?;
        let group = match std::env::var(RANK_VAR) {
            Ok(rank) => Self::join_peer(&rank, world, timeout)?,
            Err(_) => Self::start_lead(world, timeout, share_threads(world))?,
        };
        Ok(Some(group))
    }

    fn join_peer(rank: &str, world: usize, timeout: Duration) -> Result<Self, StageError> {
        let bad = |what: &str| StageError::Failed(format!("data-parallel rank: bad {what} in the environment"));
        let rank: usize = rank.parse().map_err(|_| bad(RANK_VAR))?;
        let port: u16 = std::env::var(PORT_VAR).ok().and_then(|p| p.parse().ok()).ok_or_else(|| bad(PORT_VAR))?;
        let failed = |e: TchError| StageError::Failed(format!("data-parallel rank {rank} cannot join rank 0: {e}"));
        let store = Store::new(HOST, port, false, world, timeout).map_err(failed)?;
        let gloo = Gloo::new(&store, HOST, rank, world, timeout).map_err(failed)?;
        Ok(Self { rank, world, gloo, _store: store, peers: Mutex::new(Vec::new()) })
    }

    fn start_lead(world: usize, timeout: Duration, threads: usize) -> Result<Self, StageError> {
        let failed = |e: TchError| StageError::Failed(format!("data-parallel rank 0: {e}"));
        let store = Store::new(HOST, 0, true, world, timeout).map_err(failed)?;
        let mut peers = Vec::with_capacity(world - 1);
        for rank in 1..world {
            peers.push(Peer::spawn(rank, store.port(), threads)?);
        }
        let peers = Mutex::new(peers);
        match Gloo::new(&store, HOST, 0, world, timeout) {
            Ok(gloo) => Ok(Self { rank: 0, world, gloo, _store: store, peers }),
            Err(e) => Err(describe(&peers, &e)),
        }
    }

    /// This process's rank (0 writes the outputs).
    #[must_use]
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Whether this is rank 0, the one that writes the log, checkpoints and outputs.
    #[must_use]
    pub fn is_lead(&self) -> bool {
        self.rank == 0
    }

    /// This rank's share of a global batch (dimension 0 of `t`): rows
    /// `rank * n / world .. (rank + 1) * n / world`, the ranks in order.
    pub fn shard(&self, t: &Tensor) -> Tensor {
        let local = t.size()[0] / to_i64(self.world);
        t.narrow(0, to_i64(self.rank) * local, local)
    }

    /// Replaces `t` in place by its mean over the ranks (c10d all-reduce, sum, then divided by
    /// the world size, as DDP averages gradients).
    ///
    /// # Errors
    /// A rank gone or silent past the timeout, named with its own message where it left one.
    pub fn mean(&self, t: &Tensor) -> Result<(), StageError> {
        self.sum(t)?;
        let _ = tch::no_grad(|| t.shallow_clone().g_div_scalar_(to_i64(self.world)));
        Ok(())
    }

    /// `[steps, local]` rows of every rank side by side, `[steps, world * local]` in rank order
    /// (each rank's columns in place, zeros elsewhere, summed).
    ///
    /// # Errors
    /// As [`Group::mean`].
    pub fn gather_columns(&self, t: &Tensor) -> Result<Tensor, StageError> {
        let (steps, local) = (t.size()[0], t.size()[1]);
        let all = Tensor::zeros([steps, local * to_i64(self.world)], (t.kind(), t.device()));
        all.narrow(1, to_i64(self.rank) * local, local).copy_(t);
        self.sum(&all)?;
        Ok(all)
    }

    fn sum(&self, t: &Tensor) -> Result<(), StageError> {
        self.gloo.all_reduce_sum(t).map_err(|e| describe(&self.peers, &e))
    }

    /// Rank 0 waits for ranks 1..N to end after the last step.
    ///
    /// # Errors
    /// A rank that failed at the end, with its message.
    pub fn finish(mut self) -> Result<(), StageError> {
        let peers = self.peers.get_mut().unwrap_or_else(PoisonError::into_inner);
        for peer in peers.iter_mut() {
            let status = peer.child.wait().map_err(|e| StageError::Failed(e.to_string()))?;
            if !status.success() {
                return Err(StageError::Failed(format!("data-parallel rank {}", peer.describe(status))));
            }
        }
        Ok(())
    }
}

impl Drop for Group {
    /// Ranks still running when rank 0 leaves (it failed) are killed and reaped.
    fn drop(&mut self) {
        let peers = self.peers.get_mut().unwrap_or_else(PoisonError::into_inner);
        for peer in peers.iter_mut() {
            if matches!(peer.child.try_wait(), Ok(None)) {
                let _ = peer.child.kill();
            }
            let _ = peer.child.wait();
            if let Some(reader) = peer.reader.take() {
                let _ = reader.join();
            }
        }
    }
}

impl Peer {
    /// Starts rank `rank` as a copy of this worker (same executable and spec argument).
    fn spawn(rank: usize, port: u16, threads: usize) -> Result<Self, StageError> {
        let exe = std::env::current_exe().map_err(|e| StageError::Failed(format!("data-parallel rank {rank}: {e}")))?;
        let mut cmd = Command::new(exe);
        cmd.args(std::env::args_os().skip(1))
            .env(RANK_VAR, rank.to_string())
            .env(PORT_VAR, port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        for var in [THREADS_VAR, "OMP_NUM_THREADS", "MKL_NUM_THREADS"] {
            cmd.env(var, threads.to_string());
        }
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGKILL this child
        // when its parent (rank 0) exits, so a killed rank 0 leaves no rank behind.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child =
            cmd.spawn().map_err(|e| StageError::Failed(format!("cannot start data-parallel rank {rank}: {e}")))?;
        let error = Arc::new(Mutex::new(None));
        let stdout = child.stdout.take().expect("stdout was piped");
        let sink = Arc::clone(&error);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(Event::Error(message)) = Event::parse(&line) {
                    *sink.lock().expect("error lock") = Some(message);
                }
            }
        });
        Ok(Self { rank, child, error, reader: Some(reader) })
    }

    /// "N failed: its message", or how it died.
    fn describe(&mut self, status: ExitStatus) -> String {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        match (self.error.lock().expect("error lock").clone(), status.signal()) {
            (Some(message), _) => format!("{} failed: {message}", self.rank),
            (None, Some(signal)) => format!("{} was killed by signal {signal}", self.rank),
            (None, None) => format!("{} exited with {status}", self.rank),
        }
    }
}

/// The error of a failed collective: on rank 0, the first rank found to have exited (given a
/// few seconds to do so), with its own message; else c10d's message.
fn describe(peers: &Mutex<Vec<Peer>>, e: &TchError) -> StageError {
    let mut peers = peers.lock().expect("peers lock");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !peers.is_empty() && Instant::now() < deadline {
        for peer in peers.iter_mut() {
            if let Ok(Some(status)) = peer.child.try_wait() {
                let rank = peer.describe(status);
                return StageError::Failed(format!("data-parallel rank {rank} (rank 0: {e})"));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    StageError::Failed(format!(
        "data-parallel training: a collective failed (no rank exited: one may hang past the \
         {TIMEOUT_VAR} timeout): {e}"
    ))
}

/// The device of this rank: GPU `rank` on CUDA (checked to exist), else the CPU.
///
/// # Errors
/// Fewer GPUs visible than `devices`.
pub fn device(cuda: bool, group: Option<&Group>) -> Result<Device, StageError> {
    let Some(group) = group else { return Ok(if cuda { Device::Cuda(0) } else { Device::Cpu }) };
    if !cuda {
        return Ok(Device::Cpu);
    }
    let visible = usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
    if visible < group.world {
        return Err(StageError::param(
            "devices",
            format!(
                "devices = {} on cuda, but libtorch sees {visible} GPU(s) (msnr run places a stage on \
                 one GPU for now: train on the CPU, or with devices = 1)",
                group.world
            ),
        ));
    }
    Ok(Device::Cuda(group.rank))
}

/// Splits rank 0's intra-op threads (`MSNR_THREADS`, else the cores) among the ranks: sets
/// its own and returns each rank's share.
fn share_threads(world: usize) -> usize {
    let total = std::env::var(THREADS_VAR)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    let share = (total / world).max(1);
    tch::set_num_threads(i32::try_from(share).unwrap_or(1));
    share
}

/// [`TIMEOUT_VAR`] in seconds, else [`DEFAULT_TIMEOUT`].
fn timeout() -> Result<Duration, StageError> {
    match std::env::var(TIMEOUT_VAR) {
        Err(_) => Ok(DEFAULT_TIMEOUT),
        Ok(v) => v
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| StageError::Failed(format!("{TIMEOUT_VAR}={v}: expected a positive number of seconds"))),
    }
}

fn to_i64(v: usize) -> i64 {
    i64::try_from(v).expect("ranks fit i64")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_device_is_no_group() {
        assert!(Group::join(1).unwrap().is_none());
    }
}
