"""Python twin of the `crop` stage for `cargo bench --bench crop`.

Applies a crop recipe to every image of a flat folder with Pillow (sorted, RGB)
and stacks the results into one uint8 NCHW array, single process, as a user
would. Prints the wall and CPU seconds of the faster of two runs on the last line.

    python benches/pillow_crop.py FOLDER scoresde|adm SIZE
"""

import os
import sys
import time

import numpy as np
from PIL import Image

EXTENSIONS = (".png", ".jpg", ".jpeg")


def scoresde_crop(img, size, center=140):
    """ScoreSDE's CelebA preprocessing: central crop, then antialiased bicubic resize."""
    w, h = img.size
    left, top = (w - center) // 2, (h - center) // 2
    return np.asarray(img.crop((left, top, left + center, top + center)).resize((size, size), Image.BICUBIC))


def center_crop_arr(pil_image, image_size):
    """guided-diffusion/guided_diffusion/image_datasets.py, verbatim."""
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.array(pil_image)
    crop_y = (arr.shape[0] - image_size) // 2
    crop_x = (arr.shape[1] - image_size) // 2
    return arr[crop_y : crop_y + image_size, crop_x : crop_x + image_size]


def load(folder, recipe, size):
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(EXTENSIONS))
    crop = scoresde_crop if recipe == "scoresde" else center_crop_arr
    images = [crop(Image.open(os.path.join(folder, f)).convert("RGB"), size) for f in files]
    return np.stack(images).transpose(0, 3, 1, 2).copy()


def main():
    folder, recipe, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    best, best_cpu = float("inf"), 0.0
    for _ in range(5):
        start, start_cpu = time.perf_counter(), time.process_time()
        array = load(folder, recipe, size)
        wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        if wall < best:
            best, best_cpu = wall, cpu
    print(f"{array.shape[0]} images {array.shape[1:]}", file=sys.stderr)
    print(best, best_cpu)


if __name__ == "__main__":
    main()
