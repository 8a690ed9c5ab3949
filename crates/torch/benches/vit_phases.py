"""The reference side of `vit_step --phase`: times one phase of ref_vit_minsnr.py's training
step (shared/bench; import it from the folder given by --ref-dir, default this script's), so a
gap between msnr and PyTorch eager can be located:

  fwd     forward pass and loss under bf16 autocast (graph built, no backward)
  fwdbwd  forward, loss and backward (gradients set to None first, as the reference does)
  opt     the fused AdamW update alone
  step    the whole step (as ref_vit_minsnr.py itself)

usage: python3 vit_phases.py --phase fwd|fwdbwd|opt|step [--configs S,B] [--batch 256] [--steps 50]
                             [--trace FILE]
Prints one JSON line per model, with the same fields as vit_step. --trace: after timing, profile
5 more steps into FILE.<cfg>.json (a Chrome trace; compare with trace_summary.py).
"""
import argparse, json, os, sys, time

import torch

ap = argparse.ArgumentParser()
ap.add_argument("--phase", default="step", choices=["fwd", "fwdbwd", "opt", "step"])
ap.add_argument("--configs", default="S,B")
ap.add_argument("--batch", type=int, default=256)
ap.add_argument("--steps", type=int, default=50)
ap.add_argument("--trace")
ap.add_argument("--tiny", action="store_true", help="vit_step --tiny's model on the CPU (fp32), to compare traces")
ap.add_argument("--ref-dir", default=os.path.dirname(os.path.abspath(__file__)))
args = ap.parse_args()
sys.path.insert(0, args.ref_dir)
import ref_vit_minsnr as ref  # noqa: E402

dev = torch.device("cpu" if args.tiny else "cuda")
if args.tiny:
    ref.CONFIGS["tiny"] = (64, 2, 2)
    args.configs, args.batch, args.steps, size = "tiny", 4, 3, 8
else:
    size = 32
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True
for cfg in args.configs.split(","):
    d, depth, heads = ref.CONFIGS[cfg]
    torch.manual_seed(0)
    model = ref.ViT(size=size, d=d, depth=depth, heads=heads).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.99, 0.99), weight_decay=0.03,
                            fused=dev.type == "cuda")
    ac = ref.cosine_alphas_cumprod().float().to(dev)
    x0 = torch.randn(args.batch, 4, size, size, device=dev)
    y = torch.randint(0, 1000, (args.batch,), device=dev)
    if args.phase == "opt":
        for p in model.parameters():
            p.grad = torch.zeros_like(p)

    def step():
        if args.phase == "opt":
            opt.step()
            return next(model.parameters()).detach()[0].flatten()[0]
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            loss = ref.min_snr_x0_loss(model, x0, y, ac)
        if args.phase == "fwd":
            return loss.detach()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.phase == "step":
            opt.step()
        return loss.detach()

    for _ in range(10):
        step()
    ref.sync(dev)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        last = step()
    ref.sync(dev)
    dt = time.perf_counter() - t0
    if args.trace:
        acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if dev.type == "cuda" else [])
        with torch.profiler.profile(activities=acts) as prof:
            for _ in range(5):
                step()
            ref.sync(dev)
        prof.export_chrome_trace(f"{args.trace}.{cfg}.json")
    print(json.dumps(dict(impl="pytorch", phase=args.phase, model=f"ViT-{cfg}/2", batch=args.batch, steps=args.steps,
                          step_ms=round(1000 * dt / args.steps, 2), img_per_s=round(args.batch * args.steps / dt, 1),
                          loss=round(float(last), 4), device=torch.cuda.get_device_name() if dev.type == "cuda" else "cpu")), flush=True)
