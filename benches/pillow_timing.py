"""The timing loop the Python twins of the image benchmarks share: runs `load()` five times
and prints the wall and CPU seconds of the fastest run on the last line (what
`data_support::python_timing` reads), the shape of what it made on stderr."""

import sys
import time


def report_best_of_five(load):
    best, best_cpu = float("inf"), 0.0
    for _ in range(5):
        start, start_cpu = time.perf_counter(), time.process_time()
        array = load()
        wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        if wall < best:
            best, best_cpu = wall, cpu
    print(f"{array.shape[0]} images {array.shape[1:]}", file=sys.stderr)
    print(best, best_cpu)
