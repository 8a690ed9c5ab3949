"""pytorch-fid twin of benches/inception_cpu.rs: pytorch-fid's
`InceptionV3([3], resize_input=True, normalize_input=True)` (built around the formula
weights of tests/fixtures/fid/make_fixtures.py, as its download is not wanted) on the
same uint8 images (converted as torchvision's ToTensor: x / 255), eval mode, no_grad,
on CPU. Prints one JSON line.

usage: python3 benches/inception_cpu_ref.py IMAGES SIDE ROUNDS THREADS
(a Python with torch and pytorch-fid; `MSNR_FID_PYTHON` in the Rust bench)
"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "fid"))
from make_fixtures import fid_inception_random, formula_images, pytorch_fid_model  # noqa: E402

images, side, rounds, threads = (int(a) for a in sys.argv[1:5])
torch.set_num_threads(threads)
model = pytorch_fid_model(fid_inception_random())
x = formula_images([images, 3, side, side])
times = []
with torch.no_grad():
    model(x[:2].float() / 255.0)  # warm-up
    for _ in range(rounds):
        start = time.perf_counter()
        features = model(x.float() / 255.0)[0].squeeze(3).squeeze(2)
        times.append(time.perf_counter() - start)
print(json.dumps({"seconds": times, "threads": threads, "checksum": float(features.double().sum())}))
