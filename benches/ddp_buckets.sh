#!/usr/bin/env bash
# benches/ddp_buckets.sh: a data-parallel `train` (devices = 2, Gloo on the CPU) with its
# gradients all-reduced in buckets during the backward pass (MSNR_DDP_BUCKET_MB, DDP's overlap)
# against one all-reduce after it (MSNR_DDP_BUCKET_MB=0), alternating runs, each from an empty
# store; prints each pair's wall times and the median ratio. The two give the same bits (the ddp integration test checks it); only the time may
# differ. On a 2-core machine both ranks' compute takes every core, so little can overlap:
# the figure that matters is on GPUs (see benches/RESULTS.md's multi-GPU plan).
#
#   benches/ddp_buckets.sh [PAIRS] [BUCKET_MB]    # default 3 pairs, 1 MiB buckets
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
msnr="$root/target/release/msnr"
[ -x "$msnr" ] || { echo "build first: ./msnrw test --no-run" >&2; exit 1; }
pairs="${1:-3}" bucket="${2:-1}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# A seed ViT of about 10M parameters (40 MB of gradients: about 40 buckets of 1 MiB).
pipeline='stage d = mnist { count = 512 }
stage m = train { data = d, net = vit { depth = 6, width = 384, heads = 6, patch = 4 }, batch = 32, steps = 30, devices = 2, log_every = 10 }
'
# Wall seconds of one fresh run (the data stage and start-up, the same on both sides, included).
train_seconds() {
  local dir="$work/$1"
  rm -rf "$dir" && mkdir -p "$dir/.msnr" && printf '%s' "$pipeline" > "$dir/p.msnr"
  local t0 t1
  t0=$(date +%s.%N)
  MSNR_DDP_BUCKET_MB="$2" "$msnr" run "$dir/p.msnr" >/dev/null 2>&1
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); buckets of $bucket MiB vs one all-reduce"
ratios=()
for i in $(seq "$pairs"); do
  a=$(train_seconds buckets "$bucket")
  b=$(train_seconds after 0)
  ratios+=("$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", a / b }')")
  echo "pair $i: buckets $a s, after the backward pass $b s, ratio ${ratios[-1]}"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{ r[NR] = $1 } END { printf "median ratio (buckets / after): %s\n", r[int((NR + 1) / 2)] }'
