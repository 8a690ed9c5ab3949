"""Python twin of the `images` stage for `cargo bench --bench images`.

Decodes every image of a flat folder with Pillow (sorted, RGB) and stacks them
into one uint8 NCHW array (the layout the stage writes), single process, as
a user would. Prints the wall and CPU seconds of the faster of two runs on
the last line.

    python benches/pillow_images.py FOLDER
"""

import os
import sys
import time

import numpy as np
from PIL import Image

EXTENSIONS = (".png", ".jpg", ".jpeg")


def load(folder):
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(EXTENSIONS))
    images = [np.asarray(Image.open(os.path.join(folder, f)).convert("RGB")) for f in files]
    return np.stack(images).transpose(0, 3, 1, 2).copy()


def main():
    folder = sys.argv[1]
    best, best_cpu = float("inf"), 0.0
    for _ in range(5):
        start, start_cpu = time.perf_counter(), time.process_time()
        array = load(folder)
        wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        if wall < best:
            best, best_cpu = wall, cpu
    print(f"{array.shape[0]} images {array.shape[1:]}", file=sys.stderr)
    print(best, best_cpu)


if __name__ == "__main__":
    main()
