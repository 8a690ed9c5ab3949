#!/usr/bin/env bash
# The GPU checks of issue 4, as one prepared script.
#
#   benches/gpu_check.sh prepare   # here (CPU machine): build, copy what the GPU machine needs into gpu/
#   benches/gpu_check.sh run       # there (device tool, carry ["gpu"]): the checks, one JSON line each
#
# `run` does, on the same card in one call: msnr's ViT-S/2 and ViT-B/2 training step (bf16, batch 256)
# against the PyTorch eager reference (ref_vit_minsnr.py, shared/bench), alternating (B twice), the
# forward / forward+backward / optimizer phases of ViT-B/2 on both sides (vit_phases.py), their
# GPU kernels side by side (Chrome traces of 5 steps each, trace_summary.py), and a
# CUDA train stage through `msnr run` in bf16 and in fp16 with loss scaling (worker, autocast, checkpoints), with
# the MNIST UNet and with a small seed ViT. Record the figures and the card in benches/RESULTS.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "${1:-}" in
  prepare)
    cd "$root"
    grep -qx '/gpu/' .git/info/exclude || echo '/gpu/' >> .git/info/exclude
    ./msnrw --version >/dev/null
    export LIBTORCH_USE_PYTORCH=1 PATH="$root/.venv/bin:$PATH" MSNR_PYTHON="$root/.venv/bin/python"
    cargo bench -p msnr-torch --no-run --bench vit_step 2>&1 | tail -1
    rm -rf gpu && mkdir -p gpu
    cp target/release/msnr target/release/msnr-worker gpu/
    cp "$(ls -t target/release/deps/vit_step-* | grep -v '\.d$' | head -1)" gpu/vit_step
    strip gpu/msnr gpu/msnr-worker gpu/vit_step   # debug info would exceed what a device call carries
    cp -L /usr/lib/x86_64-linux-gnu/libjpeg.so.62 gpu/ 2>/dev/null || true   # the front end links it
    cp ../shared/bench/ref_vit_minsnr.py crates/torch/benches/vit_phases.py crates/torch/benches/trace_summary.py gpu/
    readelf -d gpu/vit_step gpu/msnr-worker | grep -c 'libtorch_cuda' | grep -qx 2 || { echo "vit_step or msnr-worker lacks libtorch_cuda: it would time the CPU" >&2; exit 1; }
    du -sh gpu
    ;;
  run)
    # Everything goes to $OUT/gpu_check.log as it happens (and each command has its own
    # timeout), so a hang or the call's time limit still leaves the lines measured so far.
    set +e
    cd "$root/gpu"
    log="${OUT:-/tmp}/gpu_check.log"
    lib="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib"
    export LD_LIBRARY_PATH="$lib:$root/gpu" MSNR_DEVICE=cuda
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >> "$log"
    # Peak GPU memory per process as nvidia-smi sees it (context + caching allocator, sampled every
    # 100 ms): the same yardstick for both sides, unlike torch.cuda.max_memory_allocated.
    peak() {
      local limit=$1; shift
      nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > /tmp/mem.log 2>/dev/null & local sampler=$!
      timeout "$limit" "$@" 2>/tmp/err.log | grep '^{' >> "$log"; local rc=${PIPESTATUS[0]}
      kill "$sampler"; grep -v '^\[W' /tmp/err.log | tail -3 >> "$log"
      echo "{\"rc\": $rc, \"peak_gpu_mib\": $(sort -n /tmp/mem.log | tail -1), \"cmd\": \"$*\"}" >> "$log"
    }
    for c in B S B; do
      peak 60 ./vit_step --configs "$c" --batch 256 --steps 50
      peak 60 python3 ref_vit_minsnr.py --configs "$c" --batch 256 --steps 50
    done
    for phase in fwd fwdbwd opt; do
      peak 45 ./vit_step --configs B --batch 256 --steps 50 --phase "$phase"
      peak 45 python3 vit_phases.py --configs B --batch 256 --steps 50 --phase "$phase"
    done
    # Kernel-level comparison of 5 full ViT-B/2 steps (Chrome traces of both sides).
    timeout 60 ./vit_step --configs B --batch 256 --steps 5 --trace /tmp/ours >/dev/null 2>&1
    timeout 60 python3 vit_phases.py --configs B --batch 256 --steps 5 --trace /tmp/ref >/dev/null 2>&1
    timeout 60 python3 trace_summary.py /tmp/ours.B.json /tmp/ref.B.json >> "$log" 2>&1
    mkdir -p /tmp/p/.msnr && cd /tmp/p
    printf 'stage d = mnist {}\nsweep p in [bf16, fp16] {\n  stage m = train { data = d, net = unet { channels = 64, mults = [1, 2], attention = [14] }, batch = 128, steps = 200, precision = p, checkpoint_every = 100 }\n}\n' > p.msnr
    timeout 90 "$root/gpu/msnr" run p.msnr >> "$log" 2>&1; echo "msnr run rc=$?" >> "$log"
    echo "libtorch warnings in the worker logs: $(cat .msnr/store/*/out/log.jsonl .msnr/work/*/* 2>/dev/null | grep -c 'Warning')" >> "$log"
    # The seed ViT through the train stage (one stage at a time), then a second run that must find it cached.
    mkdir -p /tmp/v/.msnr && cd /tmp/v
    printf 'stage d = mnist {}\nsweep p in [bf16, fp16] {\n  stage m = train { data = d, net = vit { depth = 6, width = 384, heads = 6, patch = 4 }, batch = 256, steps = 300, precision = p, checkpoint_every = 150 }\n}\n' > p.msnr
    timeout 150 "$root/gpu/msnr" run -j 1 p.msnr >> "$log" 2>&1; echo "msnr run (vit) rc=$?" >> "$log"
    timeout 20 "$root/gpu/msnr" run p.msnr >> "$log" 2>&1; echo "second run (vit) rc=$?" >> "$log"
    echo "libtorch warnings in the worker logs: $(cat .msnr/store/*/out/log.jsonl .msnr/work/*/* 2>/dev/null | grep -c 'Warning')" >> "$log"
    cat "$log"
    ;;
  *) echo "usage: $0 prepare|run" >&2; exit 2 ;;
esac
