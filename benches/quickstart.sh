#!/usr/bin/env bash
# benches/quickstart.sh: wall time of `msnr run --report pipelines/quickstart.msnr` from an empty
# store with a warm build (the README's first command after its first build), against
# issue 15's budget of 10 minutes on a 2-core CPU; then the second run, which must be all
# cached. Run from the repository root after `./msnrw test --no-run` (or any build):
#
#   benches/quickstart.sh            # prints both wall times and the verdict
#
# The pipeline is copied into a temporary project, so the committed lockfile is untouched.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
msnr="$root/target/release/msnr"
[ -x "$msnr" ] || { echo "build first: ./msnrw test --no-run" >&2; exit 1; }
project="$(mktemp -d)"
trap 'rm -rf "$project"' EXIT
mkdir "$project/.msnr"
cp "$root/pipelines/quickstart.msnr" "$project/"
export PATH="$root/.venv/bin:$PATH"
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
t0=$(date +%s.%N)
"$msnr" run --report "$project/quickstart.msnr" 2>&1 | grep -E "done in|FAILED|ran,|report.html" || true
t1=$(date +%s.%N)
"$msnr" run "$project/quickstart.msnr" 2>&1 | tail -1
t2=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN {
  printf "first run:  %.1f s (budget 600 s: %s)\n", b - a, (b - a <= 600) ? "within" : "OVER"
  printf "second run: %.1f s (all cached)\n", c - b }'
"$msnr" compare "$project/quickstart.msnr" --reach classifier_distance=baseline
