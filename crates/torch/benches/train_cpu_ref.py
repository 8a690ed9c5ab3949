"""PyTorch eager twin of benches/train_cpu.rs: the same ADM UNet (the parity
twin in tests/fixtures/models/make_fixtures.py), the same loss (eps target,
Min-SNR-5 factor min(SNR, 5) / SNR on the cosine schedule, T = 1000), AdamW,
gradient clipping at 1, batch 32 of 1x28x28, on CPU. Prints one JSON line.

usage: python3 benches/train_cpu_ref.py STEPS WARMUP THREADS
"""
import json, math, os, sys, time
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "models"))
from make_fixtures import UNetModel  # noqa: E402

steps, warmup, threads = (int(a) for a in sys.argv[1:4])
torch.set_num_threads(threads)
torch.manual_seed(0)
T = 1000
f = lambda t: math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2
betas = torch.tensor([min(1 - f(i + 1) / f(i), 0.999) for i in range(T)], dtype=torch.float64)
abar = torch.cumprod(1 - betas, 0)
alpha, sigma, snr = abar.sqrt().float(), (1 - abar).sqrt().float(), (abar / (1 - abar))
factor = (torch.clamp(snr, max=5.0) / snr).float()

net = UNetModel(image_size=28, in_channels=1, model_channels=32, out_channels=1, num_res_blocks=1,
                attention_resolutions=(4,), channel_mult=(1, 2, 2), num_classes=10, num_heads=4,
                use_scale_shift_norm=True)
opt = torch.optim.AdamW(net.parameters(), lr=1e-4, betas=(0.9, 0.999), weight_decay=0.0)
data = torch.rand(5000, 1, 28, 28) * 2 - 1
labels = torch.randint(0, 10, (5000,))


def step():
    idx = torch.randint(0, 5000, (32,))
    x0, y = data[idx], labels[idx]
    t = torch.randint(0, T, (32,))
    eps = torch.randn_like(x0)
    xt = alpha[t].view(-1, 1, 1, 1) * x0 + sigma[t].view(-1, 1, 1, 1) * eps
    loss = (factor[t] * ((net(xt, t, y) - eps) ** 2).mean(dim=(1, 2, 3))).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()


for _ in range(warmup):
    step()
start = time.perf_counter()
for _ in range(steps):
    step()
print(json.dumps({"ms_per_step": (time.perf_counter() - start) / steps * 1000, "threads": threads}))
