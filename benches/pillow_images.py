"""Python twin of the `images` stage for `cargo bench --bench images`.

Decodes every image of a flat folder with Pillow (sorted, RGB) and stacks them
into one uint8 NCHW array (the layout the stage writes), single process, as
a user would. Prints the wall and CPU seconds of the faster of two runs on
the last line.

    python benches/pillow_images.py FOLDER
"""

import os
import sys

import numpy as np
from PIL import Image

from pillow_timing import report_best_of_five

EXTENSIONS = (".png", ".jpg", ".jpeg")


def load(folder):
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(EXTENSIONS))
    images = [np.asarray(Image.open(os.path.join(folder, f)).convert("RGB")) for f in files]
    return np.stack(images).transpose(0, 3, 1, 2).copy()


def main():
    folder = sys.argv[1]
    report_best_of_five(lambda: load(folder))


if __name__ == "__main__":
    main()
