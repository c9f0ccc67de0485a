"""Full MNIST written as a PNG folder and read as a stream (the memory-mapped cache) against the
in-memory dataset: dm, dsa and sre2l with one seed, the sets compared bit for bit and evaluated
under one protocol (issue 68). Appends rows to ``benchmarks/results/scale/stream_equivalence.json``.

    python benchmarks/scale/stream_equivalence.py /tmp/mnist-png [--methods dm dsa sre2l]

Three versions of the same 70,000 images: ``memory`` (``load_dataset("mnist")``, the IDX
files' row order), ``memory-by-class`` (the same arrays reordered class by class, stable, as
``from_arrays`` receives them) and ``png-stream`` (the PNG folder through the cache, forced with
``DDKIT_FOLDER_CACHE=always``; a folder lists its rows class by class). Each method runs on each
version with seed 0 and its own teacher cache, so no run reuses another's teacher.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from record import append_row

from ddkit.data import ArrayExtras, from_arrays, load_dataset
from ddkit.data.readers import read_mnist_family
from ddkit.data.store import data_root
from ddkit.eval import evaluate
from ddkit.methods import create_method

#: Small budgets: the question is whether the sets agree, not how good they are.
SETTINGS = {
    "dm": {"iterations": 20},
    "dsa": {"iterations": 5},
    "sre2l": {"iterations": 50, "teacher_epochs": 1},
}
EVAL = {"runs": 2, "epochs": 100}


def write_png_folder(raw, out: Path) -> None:  # noqa: ANN001
    """``out/train/<digit>/<row>.png`` and ``out/test/...``; the row number keeps the IDX order
    within a class."""
    for split, x, y in (("train", raw.train_images, raw.train_labels),
                        ("test", raw.test_images, raw.test_labels)):  # fmt: skip
        for i, (img, label) in enumerate(zip(x, y)):
            path = out / split / str(int(label)) / f"{i:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(img).reshape(28, 28)).save(path)


def versions(raw, png: Path) -> dict:  # noqa: ANN001
    """The three versions of the data (see the module)."""
    order, torder = (np.argsort(y, kind="stable") for y in (raw.train_labels, raw.test_labels))
    by_class = from_arrays(
        raw.train_images[order], raw.train_labels[order],
        raw.test_images[torder], raw.test_labels[torder],
        name="imagefolder", extras=ArrayExtras(class_names=[str(c) for c in range(10)]),
    )  # fmt: skip
    os.environ["DDKIT_FOLDER_CACHE"] = "always"
    stream = load_dataset("imagefolder", root=str(png))
    return {"memory": load_dataset("mnist"), "memory-by-class": by_class, "png-stream": stream}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("png", type=Path, help="where to write (or find) the PNG folder")
    p.add_argument("--methods", nargs="*", default=list(SETTINGS), help="none: the pixels only")
    a = p.parse_args()
    raw = read_mnist_family(data_root() / "mnist", "mnist")
    if not (a.png / "test").is_dir():
        start = time.perf_counter()
        write_png_folder(raw, a.png)
        print(f"wrote {a.png} in {time.perf_counter() - start:.0f} s")
    data = versions(raw, a.png)
    same = {
        f"{v}": bool(torch.equal(d.train.images, data["memory-by-class"].train.images))
        for v, d in data.items()
    }
    print("train images equal to memory-by-class:", same)
    append_row(
        "stream_equivalence.json",
        {
            "check": "normalised pixels against memory-by-class",
            "train_images_equal": same,
            "test_images_equal": {
                v: bool(torch.equal(d.test.images, data["memory-by-class"].test.images))
                for v, d in data.items()
            },
            "mean": {v: d.spec.mean for v, d in data.items()},
            "std": {v: d.spec.std for v, d in data.items()},
        },
    )
    for method in a.methods:
        sets, rows = {}, {}
        for version, splits in data.items():
            settings = {**SETTINGS[method]}
            if method == "sre2l":
                settings["teacher_cache"] = str(a.png.parent / f"teachers-{version}")
            start = time.perf_counter()
            syn = create_method(method, **settings).fit(splits.train, 1, seed=0)
            seconds = time.perf_counter() - start
            report = evaluate(syn, splits.test, **EVAL, seed=0)
            sets[version] = syn
            results = [r.to_dict() for r in report.results]
            rows[version] = {"seconds": round(seconds, 1), "evaluation_results": results}
        for version, syn in sets.items():
            ref = sets["memory-by-class"]
            append_row(
                "stream_equivalence.json",
                {
                    "method": method,
                    "ipc": 1,
                    "seed": 0,
                    "settings": SETTINGS[method],
                    "evaluation": EVAL,
                    "version": version,
                    "train_images_equal": same[version],
                    "set_equal_to_memory_by_class": bool(
                        torch.equal(syn.images, ref.images) and torch.equal(syn.labels, ref.labels)
                    ),
                    "max_abs_difference": float((syn.images - ref.images).abs().max()),
                    **rows[version],
                },
            )


if __name__ == "__main__":
    main()
