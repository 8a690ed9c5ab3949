"""The reference side of `vit_step --phase`: times one phase of ref_vit_minsnr.py's training
step (shared/bench; import it from the folder given by --ref-dir, default this script's), so a
gap between msnr and PyTorch eager can be located:

  fwd     forward pass and loss under bf16 autocast (graph built, no backward)
  fwdbwd  forward, loss and backward (gradients set to None first, as the reference does)
  opt     the fused AdamW update alone
  step    the whole step (as ref_vit_minsnr.py itself)

usage: python3 vit_phases.py --phase fwd|fwdbwd|opt|step [--configs S,B] [--batch 256] [--steps 50]
Prints one JSON line per model, with the same fields as vit_step.
"""
import argparse, json, os, sys, time

import torch

ap = argparse.ArgumentParser()
ap.add_argument("--phase", default="step", choices=["fwd", "fwdbwd", "opt", "step"])
ap.add_argument("--configs", default="S,B")
ap.add_argument("--batch", type=int, default=256)
ap.add_argument("--steps", type=int, default=50)
ap.add_argument("--ref-dir", default=os.path.dirname(os.path.abspath(__file__)))
args = ap.parse_args()
sys.path.insert(0, args.ref_dir)
import ref_vit_minsnr as ref  # noqa: E402

dev = torch.device("cuda")
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True
for cfg in args.configs.split(","):
    d, depth, heads = ref.CONFIGS[cfg]
    torch.manual_seed(0)
    model = ref.ViT(size=32, d=d, depth=depth, heads=heads).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.99, 0.99), weight_decay=0.03, fused=True)
    ac = ref.cosine_alphas_cumprod().float().to(dev)
    x0 = torch.randn(args.batch, 4, 32, 32, device=dev)
    y = torch.randint(0, 1000, (args.batch,), device=dev)
    if args.phase == "opt":
        for p in model.parameters():
            p.grad = torch.zeros_like(p)

    def step():
        if args.phase == "opt":
            opt.step()
            return next(model.parameters()).detach()[0].flatten()[0]
        with torch.autocast("cuda", dtype=torch.bfloat16):
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
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        last = step()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(json.dumps(dict(impl="pytorch", phase=args.phase, model=f"ViT-{cfg}/2", batch=args.batch, steps=args.steps,
                          step_ms=round(1000 * dt / args.steps, 2), img_per_s=round(args.batch * args.steps / dt, 1),
                          loss=round(float(last), 4), device=torch.cuda.get_device_name())), flush=True)
