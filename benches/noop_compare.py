"""No-op `msnr run` of an all-cached pipeline with two msnr binaries, interleaved.

    python3 benches/noop_compare.py BEFORE_MSNR AFTER_MSNR PIPELINE [ROUNDS]

Run the pipeline once first (with the newer binary, so its entries carry what it checks).
Prints, per binary, the median wall time and the median CPU time (user + system) of the
runs; CPU time is the steadier figure on a loaded machine.
"""
import resource
import statistics
import subprocess
import sys
import time


def one(binary, pipeline):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([binary, "run", pipeline], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0 or " 0 ran," not in done.stderr:
        sys.exit(f"{binary}: not an all-cached run:\n{done.stderr}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall * 1000, cpu * 1000


def main():
    before, after, pipeline = sys.argv[1:4]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 40
    times = {before: [], after: []}
    for _ in range(rounds):
        for binary in (before, after):
            times[binary].append(one(binary, pipeline))
    for binary, runs in times.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"{binary}: wall median {wall:.1f} ms, CPU median {cpu:.1f} ms ({rounds} runs)")


main()
