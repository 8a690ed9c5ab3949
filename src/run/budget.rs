//! The run's resource budget, as Snakemake's `--cores`: a number of CPU cores (and the
//! machine's GPUs) that the stages running at once share, so that concurrent stages never
//! oversubscribe the CPU. Each stage says what it needs ([`Need`]); the executor asks
//! [`Budget::grant`] which ready stages may start and with how many threads, and gives the
//! grant back when the stage ends.
//!
//! Every stage gets a share of the free cores: a torch worker runs with its intra-op
//! thread count set to it (`tch::set_num_threads`, `OMP_NUM_THREADS`), a stage running in
//! this process inside a rayon pool of that many threads. A stage that cannot use more
//! than one core (a download, the bundled digits) asks for one. A torch stage on CUDA also
//! takes GPUs, which no other stage shares (`CUDA_VISIBLE_DEVICES` names them): one, or a
//! data-parallel `train`'s `devices`.
//!
//! Stages that become ready together split the free cores evenly. A torch stage on CPU is
//! the exception: it always runs with the whole budget (waiting until every core is free),
//! because libtorch's CPU results depend on the intra-op thread count (a tiny training's
//! weights differ bitwise between 1 and 2 threads), and a key must always give the same
//! output on a machine (`msnr verify`). Such stages never oversubscribe the CPU either:
//! two CPU trainings of a sweep run one after the other, each with every core.

/// What one stage needs to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    /// At most this many cores are useful (`None`: as many as it is given).
    pub max_cores: Option<usize>,
    /// The GPUs it runs on (a torch stage whose device resolved to CUDA: 1, or its `devices`).
    pub gpus: usize,
    /// It needs the whole budget, every core, and runs alone (a torch stage on CPU).
    pub all_cores: bool,
}

impl Need {
    /// A stage that uses as many cores as it is given.
    pub const SHARE: Self = Self { max_cores: None, gpus: 0, all_cores: false };
    /// A stage that uses one core.
    pub const ONE: Self = Self { max_cores: Some(1), gpus: 0, all_cores: false };
    /// A torch stage on a GPU (plus its share of cores for the host side).
    pub const GPU: Self = Self { max_cores: None, gpus: 1, all_cores: false };
    /// A torch stage on CPU: every core, alone.
    pub const ALL: Self = Self { max_cores: None, gpus: 0, all_cores: true };
}

/// What a started stage was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Threads it may use (its intra-op / rayon thread count), at least 1.
    pub threads: usize,
    /// The GPUs it runs on (indices into the machine's visible GPUs), for a GPU stage.
    pub gpus: Vec<usize>,
}

/// The cores, GPUs and stage slots of one run, and how much of each is in use.
#[derive(Clone, Debug)]
pub struct Budget {
    /// Cores in all.
    cores: usize,
    /// Cores not granted to a running stage.
    free_cores: usize,
    /// Per GPU, whether a running stage holds it.
    gpu_busy: Vec<bool>,
    /// Stages that may still start (`--jobs` less the running ones).
    free_slots: usize,
}

impl Budget {
    /// A budget of `cores` (at least 1), `gpus` GPUs and at most `jobs` stages at once.
    #[must_use]
    pub fn new(cores: usize, gpus: usize, jobs: usize) -> Self {
        Self { cores: cores.max(1), free_cores: cores.max(1), gpu_busy: vec![false; gpus], free_slots: jobs.max(1) }
    }

    /// Which of the `ready` stages (in order of preference) start now, each with its grant:
    /// as many as there are free slots and cores (a GPU stage only while its GPUs are free, a
    /// stage that needs every core only alone, when all are free), the free cores split
    /// evenly among them (a one-core stage takes one; the first ones
    /// take the remainder). Returns (index into `ready`, grant) pairs, and takes what they
    /// were granted out of the budget.
    pub fn grant(&mut self, ready: &[Need]) -> Vec<(usize, Grant)> {
        let mut picked: Vec<(usize, Vec<usize>)> = Vec::new();
        let mut gpus = self.gpu_busy.clone();
        for (i, need) in ready.iter().enumerate() {
            if picked.len() >= self.free_slots.min(self.free_cores) {
                break;
            }
            if need.all_cores {
                if picked.is_empty() && self.free_cores == self.cores {
                    picked.push((i, Vec::new()));
                    break;
                }
                continue;
            }
            // Without a GPU to place it on (`MSNR_DEVICE=cuda` on a machine whose GPUs are not
            // listed), a GPU stage runs as any other: the device decides, not the budget. One
            // that needs more GPUs than there are takes them all, and its worker says so.
            let want = need.gpus.min(gpus.len());
            let free: Vec<usize> = (0..gpus.len()).filter(|&g| !gpus[g]).take(want).collect();
            if free.len() < want {
                continue;
            }
            for &g in &free {
                gpus[g] = true;
            }
            picked.push((i, free));
        }
        let threads = split(self.free_cores, &picked.iter().map(|&(i, _)| ready[i].max_cores).collect::<Vec<_>>());
        let grants: Vec<(usize, Grant)> =
            picked.into_iter().zip(threads).map(|((i, gpus), threads)| (i, Grant { threads, gpus })).collect();
        for (_, g) in &grants {
            self.take(g);
        }
        grants
    }

    /// Gives a finished stage's grant back.
    pub fn release(&mut self, grant: &Grant) {
        self.free_cores += grant.threads;
        self.free_slots += 1;
        self.mark(&grant.gpus, false);
    }

    fn take(&mut self, grant: &Grant) {
        self.free_cores -= grant.threads;
        self.free_slots -= 1;
        self.mark(&grant.gpus, true);
    }

    fn mark(&mut self, gpus: &[usize], busy: bool) {
        for &g in gpus {
            if let Some(b) = self.gpu_busy.get_mut(g) {
                *b = busy;
            }
        }
    }
}

/// Splits `cores` among stages with these caps (at least one each; the caller never
/// passes more stages than cores): capped stages take at most their cap, the others share
/// what is left evenly, the first ones taking the remainder.
fn split(cores: usize, caps: &[Option<usize>]) -> Vec<usize> {
    let mut given = vec![1; caps.len()];
    let mut left = cores.saturating_sub(caps.len());
    // Hand out the rest one core at a time, round robin, to the stages that can use it.
    while left > 0 {
        let mut gave = false;
        for (g, cap) in given.iter_mut().zip(caps) {
            if left > 0 && cap.is_none_or(|c| *g < c) {
                *g += 1;
                left -= 1;
                gave = true;
            }
        }
        if !gave {
            break;
        }
    }
    given
}

/// The machine's cores available to this process (its affinity mask and cgroup quota,
/// as [`std::thread::available_parallelism`] reads them), at least 1.
#[must_use]
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threads(grants: &[(usize, Grant)]) -> Vec<usize> {
        grants.iter().map(|(_, g)| g.threads).collect()
    }

    #[test]
    fn stages_ready_together_split_the_cores() {
        let mut b = Budget::new(2, 0, usize::MAX);
        assert_eq!(threads(&b.grant(&[Need::SHARE, Need::SHARE])), [1, 1]);
        let mut b = Budget::new(8, 0, usize::MAX);
        assert_eq!(threads(&b.grant(&[Need::SHARE, Need::SHARE, Need::SHARE])), [3, 3, 2]);
        assert!(b.grant(&[Need::SHARE]).is_empty(), "no core left");
    }

    #[test]
    fn a_lone_stage_gets_every_core_and_others_wait_for_it() {
        let mut b = Budget::new(4, 0, usize::MAX);
        let first = b.grant(&[Need::SHARE]);
        assert_eq!(threads(&first), [4]);
        assert!(b.grant(&[Need::SHARE]).is_empty());
        b.release(&first[0].1);
        assert_eq!(threads(&b.grant(&[Need::SHARE])), [4]);
    }

    #[test]
    fn more_stages_than_cores_start_one_thread_each_the_rest_wait() {
        let mut b = Budget::new(2, 0, usize::MAX);
        let grants = b.grant(&[Need::SHARE; 3]);
        assert_eq!(grants.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(threads(&grants), [1, 1]);
    }

    #[test]
    fn one_core_stages_leave_the_rest_to_the_others() {
        let mut b = Budget::new(8, 0, usize::MAX);
        assert_eq!(threads(&b.grant(&[Need::ONE, Need::SHARE, Need::ONE])), [1, 6, 1]);
        let mut b = Budget::new(8, 0, usize::MAX);
        assert_eq!(threads(&b.grant(&[Need::ONE])), [1]);
        assert_eq!(threads(&b.grant(&[Need::SHARE])), [7]);
    }

    #[test]
    fn jobs_caps_the_stages_at_once() {
        let mut b = Budget::new(4, 0, 1);
        let grants = b.grant(&[Need::SHARE, Need::SHARE]);
        assert_eq!(threads(&grants), [4], "--jobs 1: one stage, every core");
        assert!(b.grant(&[Need::SHARE]).is_empty());
    }

    #[test]
    fn gpu_stages_take_one_gpu_each() {
        let mut b = Budget::new(16, 2, usize::MAX);
        let grants = b.grant(&[Need::GPU, Need::GPU, Need::GPU, Need::SHARE]);
        let gpus: Vec<_> = grants.iter().map(|(i, g)| (*i, g.gpus.clone())).collect();
        assert_eq!(gpus, [(0, vec![0]), (1, vec![1]), (3, vec![])], "the third GPU stage waits");
        assert_eq!(threads(&grants), [6, 5, 5]);
        b.release(&grants[1].1);
        let again = b.grant(&[Need::GPU]);
        assert_eq!(again[0].1.gpus, [1]);
        assert_eq!(again[0].1.threads, 5);
    }

    #[test]
    fn a_data_parallel_stage_takes_its_devices_gpus_at_once() {
        let eight = Need { gpus: 8, ..Need::GPU };
        let mut b = Budget::new(16, 8, usize::MAX);
        let one = b.grant(&[Need::GPU]);
        assert!(b.grant(&[eight]).is_empty(), "waits for all eight");
        b.release(&one[0].1);
        let all = b.grant(&[eight, Need::GPU]);
        assert_eq!(all.len(), 1, "the one-GPU stage waits for it");
        assert_eq!(all[0].1.gpus, (0..8).collect::<Vec<_>>());
        let mut small = Budget::new(4, 2, usize::MAX);
        assert_eq!(small.grant(&[eight])[0].1.gpus, [0, 1], "more than the machine has: all of them");
    }

    #[test]
    fn cpu_torch_stages_run_alone_with_every_core() {
        let mut b = Budget::new(4, 0, usize::MAX);
        let grants = b.grant(&[Need::ALL, Need::ALL, Need::SHARE]);
        assert_eq!(grants, [(0, Grant { threads: 4, gpus: vec![] })], "the first alone, every core");
        assert!(b.grant(&[Need::ALL, Need::SHARE]).is_empty());
        b.release(&grants[0].1);
        let grants = b.grant(&[Need::SHARE]);
        assert_eq!(threads(&grants), [4]);
        assert!(b.grant(&[Need::ALL]).is_empty(), "waits until every core is free");
        b.release(&grants[0].1);
        assert_eq!(threads(&b.grant(&[Need::ALL])), [4]);
    }

    #[test]
    fn without_listed_gpus_a_gpu_stage_still_starts() {
        let mut b = Budget::new(4, 0, usize::MAX);
        assert_eq!(b.grant(&[Need::GPU]), [(0, Grant { threads: 4, gpus: vec![] })]);
    }
}
