"""diffusers twin of benches/vae_cpu.rs: `AutoencoderKL.encode(x).latent_dist.mean` of
the small parity-fixture VAE (tests/fixtures/vae: block_out_channels (32, 64), 1 layer
per block, 8 groups, 4 latent channels; its weights) on the same kind of input, float32,
eval mode, no_grad, on CPU. Prints one JSON line: CPU milliseconds per image (process
time, median round) and images per second.

usage: python3 benches/vae_cpu_ref.py ROUNDS BATCH SIDE THREADS
(a Python with torch, diffusers and safetensors; `MSNR_VAE_PYTHON` in the Rust bench)
"""
import json
import os
import sys
import time

import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures", "vae")
sys.path.insert(0, FIXTURES)
from make_fixtures import CONFIG  # noqa: E402

rounds, batch, side, threads = (int(a) for a in sys.argv[1:5])
torch.set_num_threads(threads)
vae = AutoencoderKL(**CONFIG).eval()
vae.load_state_dict(load_file(os.path.join(FIXTURES, "vae.safetensors")))
x = torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1
times = []
with torch.no_grad():
    vae.encode(x[:2]).latent_dist.mean  # warm-up
    for _ in range(rounds):
        start, start_cpu = time.perf_counter(), time.process_time()
        mean = vae.encode(x).latent_dist.mean
        times.append((time.process_time() - start_cpu, time.perf_counter() - start))
cpu, wall = sorted(times)[len(times) // 2]
print(json.dumps({"cpu_ms_per_img": cpu * 1000 / batch, "img_per_s": batch / wall, "threads": threads,
                  "checksum": float(mean.double().abs().sum())}))
