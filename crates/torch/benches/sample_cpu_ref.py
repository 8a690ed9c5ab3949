"""PyTorch eager twin of benches/sample_cpu.rs: the seed's sampler as it runs
(Min-SNR-Diffusion-Training scripts_vit/sampler_edm.py: its `Net` wrapper, u-grid
in float32, net in float32; EDM's `ablation_sampler` with Heun, 'edm'
discretization, no churn, state in float64) on the same small ADM UNet with the
same weights (tests/fixtures/models unet_cond: 16x16x3, 32 channels, mults 1,2,
10 classes), eps target, 18 steps (NFE 35), batch 32, on CPU. Prints one JSON line:
CPU milliseconds per image (process time, median round) and images per second.

usage: python3 benches/sample_cpu_ref.py ROUNDS BATCH STEPS THREADS
"""
import json, os, sys, time
import numpy as np
import torch
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "fixtures", "models"))
from make_fixtures import UNetModel  # noqa: E402

rounds, batch, steps, threads = (int(a) for a in sys.argv[1:5])
torch.set_num_threads(threads)
M, C1, C2 = 1000, 0.001, 0.008


class Net:
    """sampler_edm.py `Net` for an eps model, no guidance."""

    def __init__(self, model):
        self.model = model
        alpha_bar = lambda j: (0.5 * np.pi * torch.as_tensor(j) / M / (C2 + 1)).sin() ** 2
        u = torch.zeros(M + 1)
        for j in range(M, 0, -1):
            u[j - 1] = ((u[j] ** 2 + 1) / (alpha_bar(j - 1) / alpha_bar(j)).clip(min=C1) - 1).sqrt()
        self.u, self.sigma_min, self.sigma_max = u, float(u[M - 1]), float(u[0])

    def round_sigma(self, sigma, return_index=False):
        sigma = torch.as_tensor(sigma)
        index = torch.cdist(sigma.to(torch.float32).reshape(1, -1, 1), self.u.reshape(1, -1, 1)).argmin(2)
        result = index if return_index else self.u[index.flatten()].to(sigma.dtype)
        return result.reshape(sigma.shape)

    def __call__(self, x, sigma, class_labels):
        x = x.to(torch.float32)
        sigma = sigma.to(torch.float32).reshape(-1, 1, 1, 1)
        c_in = 1 / (sigma ** 2 + 1).sqrt()
        c_noise = M - 1 - self.round_sigma(sigma, return_index=True).to(torch.float32)
        F_x = self.model(c_in * x, c_noise.flatten().repeat(x.shape[0]).int(), class_labels)
        return x - sigma * F_x


def heun(net, latents, class_labels, num_steps, rho=7):
    """ablation_sampler(solver='heun', discretization='edm', schedule='linear', scaling='none')."""
    sigma_min, sigma_max = max(0.002, net.sigma_min), min(80, net.sigma_max)
    i = torch.arange(num_steps, dtype=torch.float64)
    sigma_steps = (sigma_max ** (1 / rho) + i / (num_steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    t_steps = net.round_sigma(sigma_steps)
    t_steps = torch.cat([t_steps, torch.zeros_like(t_steps[:1])])
    x_next = latents.to(torch.float64) * t_steps[0]
    for k, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:])):
        x_cur = x_next
        h = t_next - t_cur
        d_cur = (x_cur - net(x_cur, t_cur, class_labels).to(torch.float64)) / t_cur
        x_next = x_cur + h * d_cur
        if k < num_steps - 1:
            d_prime = (x_next - net(x_next, t_next, class_labels).to(torch.float64)) / t_next
            x_next = x_cur + h * (0.5 * d_cur + 0.5 * d_prime)
    return x_next


model = UNetModel(image_size=16, in_channels=3, model_channels=32, out_channels=3, num_res_blocks=1,
                  attention_resolutions=(2,), channel_mult=(1, 2), num_classes=10, num_heads=2,
                  use_scale_shift_norm=True)
model.load_state_dict(load_file(os.path.join(HERE, "..", "tests", "fixtures", "models", "unet_cond.weights.safetensors")))
model.eval()
net = Net(model)
gen = torch.Generator().manual_seed(0)
z = torch.randn(batch, 3, 16, 16, generator=gen)
y = torch.randint(0, 10, (batch,), generator=gen)
times = []
with torch.no_grad():
    heun(net, z, y, steps)  # warm-up
    for _ in range(rounds):
        start, start_cpu = time.perf_counter(), time.process_time()
        heun(net, z, y, steps)
        times.append((time.process_time() - start_cpu, time.perf_counter() - start))
cpu, wall = sorted(times)[len(times) // 2]
print(json.dumps({"cpu_ms_per_img": cpu * 1000 / batch, "img_per_s": batch / wall, "threads": threads}))
