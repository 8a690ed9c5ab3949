#!/usr/bin/env bash
# Starts a one-node SLURM cluster on this machine for the SLURM test
# (tests/integration/slurm.rs): installs Debian's `slurm-wlm` and `munge` when
# missing, writes a minimal slurm.conf (one node, this host, its CPUs), starts
# munged, slurmctld and slurmd, and waits until `sinfo` shows the node idle.
# Does nothing when such a cluster already answers. Needs root and apt-get (as on
# CI's Debian machines); wherever any of this fails it says why and exits 0, and
# the SLURM test then skips with a message (it fails when CI is set).
set -uo pipefail

say() { echo "tests/setup/slurm.sh: $*" >&2; }
give_up() { say "$* (the SLURM test will skip; it fails when CI is set)"; exit 0; }

node_idle() { sinfo -h -o '%t' 2>/dev/null | grep -Eq '^(idle|mix|alloc)'; }

if command -v sinfo >/dev/null 2>&1 && node_idle; then
  exit 0
fi
[ "$(id -u)" = 0 ] || give_up "not root: cannot install or start SLURM"
command -v apt-get >/dev/null 2>&1 || give_up "no apt-get: install slurm-wlm and munge yourself"

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  say "installing Debian's slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge; } >&2 || give_up "apt-get could not install slurm-wlm and munge"
fi

host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.8 }' /proc/meminfo)
conf=/etc/slurm/slurm.conf
mkdir -p /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm /run/munge
if [ ! -f "$conf" ] || grep -q '^# msnr test cluster' "$conf"; then
  cat >"$conf" <<EOF
# msnr test cluster (tests/setup/slurm.sh): one node, this machine.
ClusterName=msnr
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=600
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
else
  say "keeping the existing $conf (not written by this script)"
fi

if [ ! -f /etc/munge/munge.key ]; then
  if command -v mungekey >/dev/null 2>&1; then mungekey --create >&2; else
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null; fi
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null
chmod 0400 /etc/munge/munge.key 2>/dev/null
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged >&2 2>&1 || /usr/sbin/munged --force >&2 2>&1 || give_up "munged does not start"
fi

pgrep -x slurmctld >/dev/null || slurmctld >&2 || give_up "slurmctld does not start (see /var/log/slurm/slurmctld.log)"
pgrep -x slurmd >/dev/null || slurmd >&2 || give_up "slurmd does not start (see /var/log/slurm/slurmd.log)"

for _ in $(seq 60); do
  if node_idle; then
    say "SLURM is up: $(sinfo -h -o '%N %c CPUs %t' 2>/dev/null)"
    exit 0
  fi
  # A node that came back after a restart may stay down until resumed.
  scontrol update nodename="$host" state=resume >/dev/null 2>&1
  sleep 1
done
give_up "the node did not become idle in 60 s: $(sinfo -h 2>&1 | head -3)"
