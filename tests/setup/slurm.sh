#!/usr/bin/env bash
# Starts a SLURM cluster on this machine for the SLURM test
# (tests/integration/slurm.rs): installs Debian's `slurm-wlm` and `munge` when
# missing, writes a minimal slurm.conf (partition `debug`: one node, this host, its
# CPUs; partition `multi`: two one-CPU nodes `msnr-n1`, `msnr-n2`, each a slurmd of
# its own on this host, `slurmd -N NAME`, for data-parallel ranks on two nodes),
# starts munged, slurmctld and the three slurmd, and waits until `sinfo` shows the
# nodes idle. Does nothing when such a cluster already answers. Needs root and apt-get (as on
# CI's Debian machines); wherever any of this fails it says why and exits 0, and
# the SLURM test then skips with a message (it fails when CI is set).
set -uo pipefail

say() { echo "tests/setup/slurm.sh: $*" >&2; }
give_up() { say "$* (the SLURM test will skip; it fails when CI is set)"; exit 0; }

idle() { sinfo -h -p "$1" -o '%t' 2>/dev/null | grep -Eq '^(idle|mix|alloc)$'; }
nodes_idle() { idle debug && idle multi; }

if command -v sinfo >/dev/null 2>&1 && nodes_idle; then
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
# msnr test cluster (tests/setup/slurm.sh): this machine, as one node and as two.
ClusterName=msnr
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd.%n
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.%n.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.%n.log
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
NodeName=msnr-n1 NodeHostname=$host NodeAddr=127.0.0.1 Port=17001 CPUs=1 RealMemory=$((mem_mb / 2)) State=UNKNOWN
NodeName=msnr-n2 NodeHostname=$host NodeAddr=127.0.0.1 Port=17002 CPUs=1 RealMemory=$((mem_mb / 2)) State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=multi Nodes=msnr-n1,msnr-n2 MaxTime=INFINITE State=UP
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

# (Re)start the daemons on this configuration (one that answers on an older one lacks `multi`).
pkill -x slurmd 2>/dev/null; pkill -x slurmctld 2>/dev/null
for _ in $(seq 20); do { pgrep -x slurmd || pgrep -x slurmctld; } >/dev/null || break; sleep 0.5; done
slurmctld >&2 || give_up "slurmctld does not start (see /var/log/slurm/slurmctld.log)"
for node in "$host" msnr-n1 msnr-n2; do
  mkdir -p "/var/lib/slurm/slurmd.$node"
  slurmd -N "$node" >&2 || give_up "slurmd -N $node does not start (see /var/log/slurm/slurmd.$node.log)"
done

for _ in $(seq 60); do
  if nodes_idle; then
    say "SLURM is up: $(sinfo -h -o '%P %N %c CPUs %t' 2>/dev/null | tr '\n' ';')"
    exit 0
  fi
  # A node that came back after a restart may stay down until resumed.
  for node in "$host" msnr-n1 msnr-n2; do
    scontrol update nodename="$node" state=resume >/dev/null 2>&1
  done
  sleep 1
done
give_up "the nodes did not become idle in 60 s: $(sinfo -h 2>&1 | head -3)"
