//! Data-parallel training (`devices > 1`), PyTorch DDP's scheme over libtorch's own c10d. The
//! ranks meet at a c10d `TCPStore` that rank 0 serves, and join one process group
//! ([`crate::shim::c10d`]): NCCL on CUDA (the node's `r`-th rank on its GPU `r`, or on its only
//! GPU where the cluster binds one to each task), Gloo on the CPU.
//! They are started in one of two ways:
//! - **by rank 0, on one machine** (what `msnr run` does): the worker the runner started is
//!   rank 0; it binds the store on a free loopback port and starts ranks 1..N as copies of
//!   itself (same spec; [`ADDR_VAR`], [`PORT_VAR`] and [`RANK_VAR`] in the environment);
//! - **by a launcher, on one or many nodes** (`srun`, as the SLURM executor's batch script
//!   does, see `msnr::run::slurm`): every rank finds [`ADDR_VAR`] (rank 0's node) and
//!   [`PORT_VAR`] in its environment, and its rank, node-local rank and the task count in
//!   SLURM's (`SLURM_PROCID`, `SLURM_LOCALID`, `SLURM_NTASKS`), as torchrun's ranks find
//!   `MASTER_ADDR` and `RANK`.
//!
//! All build the same net from the same seed, draw the same global batch and each keep its
//! `batch / devices` share ([`Group::shard`]); the flat gradient buffer is averaged over the
//! ranks, so every rank takes the same optimizer step: on CUDA in buckets all-reduced while
//! the backward pass still runs, as DDP does ([`crate::shim::reducer`], [`BUCKET_VAR`]), on
//! the CPU in one all-reduce after it ([`Group::mean`]).
//! Only rank 0 writes the log, checkpoints and outputs; a resume loads rank 0's checkpoint on
//! every rank.
//!
//! A rank that dies fails its peers' next collective (connection closed) or, if it hangs,
//! the collective's timeout ([`TIMEOUT_VAR`], default [`DEFAULT_TIMEOUT`]); rank 0 then
//! names the rank and its own error message. Ranks rank 0 started die with it
//! (`PR_SET_PDEATHSIG`), and it kills them when it fails, so no process outlives the stage;
//! `srun --kill-on-bad-exit` does the same for the ranks it started.

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tch::{Device, TchError, Tensor};

use crate::diffusion::flat::FlatParams;
use crate::shim::c10d::{ProcessGroup, Store};
use crate::shim::reducer::Reducer;
use msnr::run::protocol::Event;
use msnr::run::worker::THREADS_VAR;
use msnr::stages::StageError;

/// The host of rank 0's store; set, it makes this process a rank that joins a group (rather
/// than rank 0 of one it starts).
pub const ADDR_VAR: &str = "MSNR_DDP_ADDR";
/// The port of rank 0's store.
pub const PORT_VAR: &str = "MSNR_DDP_PORT";
/// This process's rank, where `SLURM_PROCID` does not give it.
pub const RANK_VAR: &str = "MSNR_DDP_RANK";
/// Seconds a rendezvous or a collective waits for a silent rank before it fails.
pub const TIMEOUT_VAR: &str = "MSNR_DDP_TIMEOUT";
/// MiB of gradients per bucket all-reduced during the backward pass (PyTorch DDP's
/// `bucket_cap_mb`); 0: one all-reduce after it. Default: [`DEFAULT_BUCKET_MB`] on CUDA, 0 on
/// the CPU, where the ranks' compute already takes every core and buckets cost more than
/// they hide (3% slower, `benches/ddp_buckets.sh` on 2 cores).
pub const BUCKET_VAR: &str = "MSNR_DDP_BUCKET_MB";
/// [`BUCKET_VAR`]'s default on CUDA, DDP's.
pub const DEFAULT_BUCKET_MB: f64 = 25.0;
/// [`TIMEOUT_VAR`]'s default: longer than any step, short enough to free a hung node.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// The network interface Gloo's transport uses, as in PyTorch (default: the address this
/// node's host name resolves to).
const IFACE_VAR: &str = "GLOO_SOCKET_IFNAME";
/// Ranks that rank 0 starts meet on the loopback interface: one machine.
const LOOPBACK: &str = "127.0.0.1";

/// This process's place in a data-parallel group.
pub struct Group {
    rank: usize,
    /// The GPU it uses on CUDA (an index into the GPUs it sees).
    gpu: usize,
    /// Whether the ranks train on CUDA (NCCL: collectives on GPU tensors).
    cuda: bool,
    world: usize,
    backend: ProcessGroup,
    /// Kept alive for the group: c10d's store outlives the process group's use of it.
    _store: Store,
    /// Rank 0's children, ranks 1..N (empty on the others).
    peers: Mutex<Vec<Peer>>,
    /// Bytes of gradients per bucket (`None`: one all-reduce after the backward pass).
    bucket_bytes: Option<f64>,
    /// The gradient buckets' hooks, once the first backward pass comes.
    buckets: Mutex<Buckets>,
}

/// Where the gradient buckets are.
enum Buckets {
    /// No backward pass yet.
    Unset,
    /// The first backward pass: one bucket, all-reduced once every gradient is in, recording
    /// the order they came in.
    Recording(Reducer),
    /// Buckets of about the configured size along rank 0's recorded order: each all-reduced
    /// as soon as its gradients are in, while the backward pass goes on.
    Overlapped(Reducer),
}

impl Buckets {
    fn reducer(&self) -> Option<&Reducer> {
        match self {
            Self::Unset => None,
            Self::Recording(r) | Self::Overlapped(r) => Some(r),
        }
    }
}

/// A rank started by rank 0, with the last error line it reported.
struct Peer {
    rank: usize,
    child: Child,
    error: Arc<Mutex<Option<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Group {
    /// Joins (when [`ADDR_VAR`] is set) or starts (else, as rank 0) the group of `devices`
    /// processes, on CUDA (`cuda`: NCCL, one GPU each) or the CPU (Gloo); `None` for one device.
    ///
    /// # Errors
    /// A bad environment, fewer GPUs than ranks, a peer that cannot be started or never
    /// joins, named.
    pub fn join(devices: u64, cuda: bool) -> Result<Option<Self>, StageError> {
        if devices <= 1 {
            return Ok(None);
        }
        let world = usize::try_from(devices).map_err(|_| StageError::param("devices", "too large"))?;
        let timeout = timeout()?;
        let group = match std::env::var(ADDR_VAR) {
            Ok(addr) => Self::join_peer(&addr, world, cuda, timeout)?,
            Err(_) => Self::start_lead(world, cuda, timeout)?,
        };
        Ok(Some(group))
    }

    fn join_peer(addr: &str, world: usize, cuda: bool, timeout: Duration) -> Result<Self, StageError> {
        let env = Launched::read(world)?;
        let (rank, local) = (env.rank, env.local);
        let gpu = if cuda { pick_gpu(local, world)? } else { 0 };
        let failed =
            |e: TchError| StageError::Failed(format!("data-parallel rank {rank} cannot join rank 0 at {addr}: {e}"));
        let store = Store::new(addr, env.port, rank == 0, world, timeout).map_err(failed)?;
        // Rank 0's children bind the loopback interface, as it does; ranks on several nodes,
        // their own node's address.
        let host = if addr == LOOPBACK { LOOPBACK.to_string() } else { own_host_name() };
        let group = process_group(&store, &host, cuda, rank, world, timeout).map_err(failed)?;
        Ok(Self {
            rank,
            gpu,
            cuda,
            world,
            backend: group,
            _store: store,
            peers: Mutex::new(Vec::new()),
            bucket_bytes: bucket_bytes(cuda)?,
            buckets: Mutex::new(Buckets::Unset),
        })
    }

    fn start_lead(world: usize, cuda: bool, timeout: Duration) -> Result<Self, StageError> {
        if cuda {
            let visible = visible_gpus();
            if visible < world {
                return Err(too_few_gpus(world, world, visible));
            }
        }
        let threads = share_threads(world);
        let failed = |e: TchError| StageError::Failed(format!("data-parallel rank 0: {e}"));
        let store = Store::new(LOOPBACK, 0, true, world, timeout).map_err(failed)?;
        let mut peers = Vec::with_capacity(world - 1);
        for rank in 1..world {
            peers.push(Peer::spawn(rank, store.port(), threads)?);
        }
        let peers = Mutex::new(peers);
        match process_group(&store, LOOPBACK, cuda, 0, world, timeout) {
            Ok(backend) => Ok(Self {
                rank: 0,
                gpu: 0,
                cuda,
                world,
                backend,
                _store: store,
                peers,
                bucket_bytes: bucket_bytes(cuda)?,
                buckets: Mutex::new(Buckets::Unset),
            }),
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

    /// Before the backward pass: hands the gradient buckets a zeroed flat gradient buffer to
    /// fill as gradients come (the first pass creates them; see [`Buckets`]).
    ///
    /// # Errors
    /// Parameters the shim cannot hook.
    pub fn before_backward(&self, params: &FlatParams) -> Result<(), StageError> {
        if self.bucket_bytes.is_none() {
            return Ok(());
        }
        let failed = |e: TchError| StageError::Failed(format!("data-parallel gradient buckets: {e}"));
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*buckets, Buckets::Unset) {
            let layout = params.layout();
            *buckets = Buckets::Recording(self.reducer(params, &vec![0; layout.len()]).map_err(failed)?);
        }
        match buckets.reducer() {
            Some(reducer) => reducer.prepare(params.zeroed_grad()).map_err(failed),
            None => Ok(()),
        }
    }

    /// After the backward pass: the flat gradient buffer averaged over the ranks, by the
    /// buckets (waiting for the ones still running, starting the rest) or by one all-reduce.
    /// After the first pass, the buckets are laid along the order its gradients came in
    /// (rank 0's, so that every rank starts them in one order).
    ///
    /// # Errors
    /// A rank gone or silent past the timeout, named with its own message where it left one.
    pub fn after_backward(&self, params: &FlatParams) -> Result<(), StageError> {
        let Some(bytes) = self.bucket_bytes else {
            params.attach_grads();
            return self.mean(params.grad());
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(reducer) = buckets.reducer() else {
            return Err(StageError::Failed("data-parallel gradient buckets: no backward pass was prepared".into()));
        };
        reducer.finish().map_err(|e| {
            let hint = format!("{e} (gradient buckets; {BUCKET_VAR}=0 all-reduces once after the backward pass)");
            describe(&self.peers, &TchError::Torch(hint))
        })?;
        let _ = tch::no_grad(|| params.grad().shallow_clone().g_div_scalar_(to_i64(self.world)));
        if let Buckets::Recording(first) = &*buckets {
            let order = self.rank_0s(&first.order().map_err(|e| StageError::Failed(e.to_string()))?)?;
            let element = i64::try_from(params.grad().kind().elt_size_in_bytes()).unwrap_or(4);
            let numels: Vec<i64> = params.layout().iter().map(|l| l.2).collect();
            let bucket_of = buckets_along(&order, &numels, bytes, element);
            let failed = |e: TchError| StageError::Failed(format!("data-parallel gradient buckets: {e}"));
            *buckets = Buckets::Overlapped(self.reducer(params, &bucket_of).map_err(failed)?);
        }
        Ok(())
    }

    fn reducer(&self, params: &FlatParams, bucket_of: &[usize]) -> Result<Reducer, TchError> {
        let layout = params.layout();
        let vars: Vec<&Tensor> = layout.iter().map(|l| l.0).collect();
        let offsets: Vec<i64> = layout.iter().map(|l| l.1).collect();
        Reducer::new(&self.backend, &vars, &offsets, bucket_of)
    }

    /// Rank 0's `order` on every rank (one all-reduce: the others add zeros).
    fn rank_0s(&self, order: &[i64]) -> Result<Vec<i64>, StageError> {
        let t = Tensor::from_slice(order);
        let t = if self.is_lead() { t } else { t.zeros_like() };
        let t = t.to_device(device(self.cuda, Some(self)));
        self.sum(&t)?;
        Vec::<i64>::try_from(&t.to_device(Device::Cpu)).map_err(|e| StageError::Failed(e.to_string()))
    }

    fn sum(&self, t: &Tensor) -> Result<(), StageError> {
        self.backend.all_reduce_sum(t).map_err(|e| describe(&self.peers, &e))
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
            .env(ADDR_VAR, LOOPBACK)
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

/// The device of this rank: on CUDA the GPU [`pick_gpu`] chose when it joined, else the CPU.
#[must_use]
pub fn device(cuda: bool, group: Option<&Group>) -> Device {
    match (cuda, group) {
        (false, _) => Device::Cpu,
        (true, None) => Device::Cuda(0),
        (true, Some(group)) => Device::Cuda(group.gpu),
    }
}

/// The process group of this rank: NCCL on CUDA, else Gloo on `host` (or `GLOO_SOCKET_IFNAME`).
fn process_group(
    store: &Store,
    host: &str,
    cuda: bool,
    rank: usize,
    world: usize,
    timeout: Duration,
) -> Result<ProcessGroup, TchError> {
    if cuda {
        return ProcessGroup::nccl(store, rank, world, timeout);
    }
    let iface = std::env::var(IFACE_VAR).ok().filter(|i| !i.is_empty());
    ProcessGroup::gloo(store, host, iface.as_deref(), rank, world, timeout)
}

/// The GPU of the rank that is `local`-th on its node, among the `visible` ones: GPU `local`
/// where the rank sees its node's GPUs (`--gpus-per-node`, or rank 0's own), GPU 0 where it sees
/// only its own (a cluster that binds one GPU per task).
///
/// # Errors
/// More ranks on the node than GPUs, named.
fn gpu_of(local: usize, visible: usize, world: usize) -> Result<usize, StageError> {
    match visible {
        v if local < v => Ok(local),
        1 => Ok(0),
        v => Err(too_few_gpus(local + 1, world, v)),
    }
}

fn pick_gpu(local: usize, world: usize) -> Result<usize, StageError> {
    gpu_of(local, visible_gpus(), world)
}

fn visible_gpus() -> usize {
    usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
}

/// `devices = world` on CUDA needs `needed` GPUs on this node, and libtorch sees `visible`.
fn too_few_gpus(needed: usize, world: usize, visible: usize) -> StageError {
    let shown = std::env::var("CUDA_VISIBLE_DEVICES")
        .map_or_else(|_| String::new(), |v| format!(" (CUDA_VISIBLE_DEVICES={v})"));
    StageError::param(
        "devices",
        format!(
            "devices = {world} on cuda needs {needed} GPU(s) on this node, one per rank, but libtorch sees \
             {visible}{shown}: lower devices, or spread the ranks over nodes (msnr run --executor slurm, \
             `nodes` in msnr.toml)"
        ),
    )
}

/// A joining rank's place, from the environment: [`PORT_VAR`], and either [`RANK_VAR`] (a rank
/// that rank 0 started: on its node, its local rank is its rank) or SLURM's task variables
/// (`SLURM_PROCID`, `SLURM_LOCALID`, and `SLURM_NTASKS`, which must equal `devices`).
struct Launched {
    port: u16,
    rank: usize,
    local: usize,
}

impl Launched {
    fn read(world: usize) -> Result<Self, StageError> {
        let bad =
            |what: &str| StageError::Failed(format!("data-parallel rank: bad or missing {what} in the environment"));
        let number = |var: &str| std::env::var(var).ok().and_then(|v| v.trim().parse::<usize>().ok());
        let port = number(PORT_VAR).and_then(|p| u16::try_from(p).ok()).ok_or_else(|| bad(PORT_VAR))?;
        let (rank, local) = if let Some(rank) = number(RANK_VAR) {
            (rank, rank)
        } else {
            let rank = number("SLURM_PROCID").ok_or_else(|| bad(&format!("{RANK_VAR} or SLURM_PROCID")))?;
            if let Some(tasks) = number("SLURM_NTASKS").filter(|&t| t != world) {
                return Err(StageError::param(
                    "devices",
                    format!("devices = {world}, but SLURM started {tasks} task(s) for it (srun --ntasks)"),
                ));
            }
            (rank, number("SLURM_LOCALID").unwrap_or(rank))
        };
        if rank >= world {
            return Err(bad(&format!("rank {rank} (of {world})")));
        }
        Ok(Self { port, rank, local })
    }
}

/// This node's host name (Gloo's transport binds the address it resolves to).
fn own_host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if ok && end > 0 {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        LOOPBACK.to_string()
    }
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

/// Bytes per gradient bucket from [`BUCKET_VAR`] (MiB), else [`DEFAULT_BUCKET_MB`] on CUDA
/// and none on the CPU; `None` for 0.
fn bucket_bytes(cuda: bool) -> Result<Option<f64>, StageError> {
    let default = if cuda { DEFAULT_BUCKET_MB } else { 0.0 };
    let mb = env_number(BUCKET_VAR, |mb| mb >= 0.0, "a number of MiB (0: no buckets)")?.unwrap_or(default);
    Ok((mb > 0.0).then_some(mb * 1024.0 * 1024.0))
}

/// Each var's bucket: vars taken in `order` (var indices), a new bucket begun where the
/// current one would pass `bytes` (a var larger than that has a bucket of its own), as DDP
/// fills its buckets in the order gradients come.
fn buckets_along(order: &[i64], numels: &[i64], bytes: f64, element: i64) -> Vec<usize> {
    let mut bucket_of = vec![0; numels.len()];
    let (mut bucket, mut filled) = (0, 0.0);
    for &v in order {
        let Some(&n) = usize::try_from(v).ok().and_then(|v| numels.get(v)) else { continue };
        #[allow(clippy::cast_precision_loss)]
        let size = (n * element) as f64;
        if filled > 0.0 && filled + size > bytes {
            bucket += 1;
            filled = 0.0;
        }
        filled += size;
        bucket_of[usize::try_from(v).unwrap_or(0)] = bucket;
    }
    bucket_of
}

/// [`TIMEOUT_VAR`] in seconds, else [`DEFAULT_TIMEOUT`].
fn timeout() -> Result<Duration, StageError> {
    let seconds = env_number(TIMEOUT_VAR, |s| s > 0.0, "a positive number of seconds")?;
    Ok(seconds.map_or(DEFAULT_TIMEOUT, Duration::from_secs_f64))
}

/// The finite number in the environment variable `var` (`None` when unset), refused unless
/// `valid`, saying it should be `expected`.
fn env_number(var: &str, valid: impl Fn(f64) -> bool, expected: &str) -> Result<Option<f64>, StageError> {
    let Ok(v) = std::env::var(var) else { return Ok(None) };
    let n = v.parse::<f64>().ok().filter(|n| n.is_finite() && valid(*n));
    n.map(Some).ok_or_else(|| StageError::Failed(format!("{var}={v}: expected {expected}")))
}

fn to_i64(v: usize) -> i64 {
    i64::try_from(v).expect("ranks fit i64")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rank_takes_its_local_gpu_or_its_only_one() {
        assert_eq!(gpu_of(3, 8, 8).unwrap(), 3, "sees the node's GPUs");
        assert_eq!(gpu_of(3, 1, 8).unwrap(), 0, "the cluster bound one GPU to the task");
        let err = gpu_of(3, 2, 8).unwrap_err().to_string();
        assert!(err.contains("devices = 8") && err.contains("needs 4 GPU(s)") && err.contains("sees 2"), "{err}");
    }

    #[test]
    fn buckets_fill_in_the_order_gradients_come() {
        // Vars 0..4 of 10, 30, 30, 50 floats (40, 120, 120, 200 bytes), ready as 3, 1, 2, 0.
        let bucket_of = buckets_along(&[3, 1, 2, 0], &[10, 30, 30, 50], 250.0, 4);
        assert_eq!(bucket_of, [2, 1, 1, 0], "3 alone (200 + 120 > 250), then 1 and 2, then 0");
        assert_eq!(buckets_along(&[0, 1], &[1000, 1], 8.0, 4), [0, 1], "a var past the cap has its own");
    }

    #[test]
    fn one_device_is_no_group() {
        assert!(Group::join(1, false).unwrap().is_none());
    }
}
