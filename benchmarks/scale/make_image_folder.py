"""Generate an image folder of a real dataset's shape (issue 68): Tiny-ImageNet (200 classes,
64 px) or ImageNet-1K (1,000 classes, 224 px) sizes, JPEG or PNG, one folder per class.

No real data is needed: class ``c``'s images are a smooth class pattern (a colour and a
frequency drawn from ``c``) plus per-image noise and shifts, so a network can learn the classes
and a distilled set has something to find. Written as ``OUT/train/<class>/*.JPEG`` (and
``OUT/test/<class>/`` with ``--test-per-class``).

    python benchmarks/scale/make_image_folder.py /tmp/tiny64 --classes 200 --per-class 10 --size 64
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def class_image(c: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One ``(size, size, 3)`` uint8 image of class ``c``."""
    crng = np.random.default_rng(10_000 + c)
    colour = crng.uniform(40, 215, 3)
    fx, fy = crng.uniform(1, 6, 2)
    phase = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:size, 0:size] / size
    wave = np.sin(2 * np.pi * (fx * x + fy * y) + phase)[..., None]
    img = colour + 40 * wave * crng.choice([-1, 1], 3) + rng.normal(0, 20, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_split(out: Path, classes: int, per_class: int, size: int, ext: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = out / f"n{c:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(class_image(c, size, rng)).save(folder / f"n{c:08d}_{i}.{ext}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--classes", type=int, default=200)
    p.add_argument("--per-class", type=int, default=10)
    p.add_argument("--test-per-class", type=int, default=0)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--format", choices=["JPEG", "png"], default="JPEG")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    write_split(a.out / "train", a.classes, a.per_class, a.size, a.format, a.seed)
    if a.test_per_class:
        write_split(a.out / "test", a.classes, a.test_per_class, a.size, a.format, a.seed + 1)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
