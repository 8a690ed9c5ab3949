"""Compares GPU kernel time in two Chrome traces of the same number of training steps (msnr's
`vit_step --trace` and the reference's `vit_phases.py --trace`): total kernel time, kernel
count, and the kernels whose total time differs most, so a throughput gap can be named.

usage: python3 trace_summary.py OURS.json THEIRS.json [--top 25] [--cpu]
(--cpu: compare the CPU operators (aten::...) instead, e.g. traces taken on a CPU machine.)
"""
import argparse, collections, json

ap = argparse.ArgumentParser()
ap.add_argument("ours")
ap.add_argument("theirs")
ap.add_argument("--top", type=int, default=25)
ap.add_argument("--cpu", action="store_true")
args = ap.parse_args()


def kernels(path):
    with open(path) as f:
        events = json.load(f)["traceEvents"]
    total = collections.Counter()
    count = collections.Counter()
    for e in events:
        cats = ("cpu_op",) if args.cpu else ("kernel", "gpu_memcpy", "gpu_memset")
        if e.get("ph") == "X" and e.get("cat") in cats:
            name = e["name"][:90]
            total[name] += e.get("dur", 0)
            count[name] += 1
    return total, count


(ot, oc), (tt, tc) = kernels(args.ours), kernels(args.theirs)
print(json.dumps({"ours_kernel_ms": round(sum(ot.values()) / 1e3, 2), "ours_kernels": sum(oc.values()),
                  "theirs_kernel_ms": round(sum(tt.values()) / 1e3, 2), "theirs_kernels": sum(tc.values())}))
names = set(ot) | set(tt)
for name in sorted(names, key=lambda n: -abs(ot[n] - tt[n]))[: args.top]:
    print(f"{(ot[name] - tt[name]) / 1e3:+9.2f} ms  ours {ot[name] / 1e3:8.2f} ms x{oc[name]:<5} "
          f"theirs {tt[name] / 1e3:8.2f} ms x{tc[name]:<5} {name}")
