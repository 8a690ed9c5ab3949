"""Python twin of the `crop` stage for `cargo bench --bench crop`.

Applies a crop recipe to every image of a flat folder with Pillow (sorted, RGB)
and stacks the results into one uint8 NCHW array, single process, as a user
would. ADM's recipe is the reference of tests/fixtures/data/make_crop_fixtures.py
(the Pillow code the crop tests compare against). ScoreSDE's reference is
TensorFlow's (what the fixtures come from); as a speed yardstick this twin keeps
Pillow for it: the same work (decode, central crop, antialiased resize) with
Pillow's bicubic, as the figures in RESULTS.md before the bilinear change.
Prints the wall and CPU seconds of the fastest of five runs on the last line
(`pillow_timing.py`).

    python benches/pillow_crop.py FOLDER scoresde|adm SIZE
"""

import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from pillow_timing import report_best_of_five

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "data"))
from make_crop_fixtures import center_crop_arr  # noqa: E402

EXTENSIONS = (".png", ".jpg", ".jpeg")


def scoresde_crop(img, center, size):
    """ScoreSDE's CelebA crop in Pillow: central crop, then an antialiased bicubic resize."""
    w, h = img.size
    left, top = (w - center) // 2, (h - center) // 2
    return img.crop((left, top, left + center, top + center)).resize((size, size), Image.BICUBIC)


def load(folder, recipe, size):
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(EXTENSIONS))
    if recipe == "scoresde":
        crop = lambda img, size: np.asarray(scoresde_crop(img, 140, size))  # noqa: E731
    else:
        crop = center_crop_arr
    images = [crop(Image.open(os.path.join(folder, f)).convert("RGB"), size) for f in files]
    return np.stack(images).transpose(0, 3, 1, 2).copy()


def main():
    folder, recipe, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    report_best_of_five(lambda: load(folder, recipe, size))


if __name__ == "__main__":
    main()
