"""Seconds per distillation iteration on a generated image folder (issue 68): after an untimed
run (which trains and caches a teacher where the method has one), the method runs for 1 and
for 1 + N iterations from one seed, and the difference over N is one iteration's cost, set-up
(teacher loading, initialisation, relabelling) cancelled out. Appends
a row to ``benchmarks/results/scale/step_seconds.json``.

    python benchmarks/scale/make_image_folder.py /tmp/net224 --classes 10 --per-class 20 --size 224
    python benchmarks/scale/step_seconds.py /tmp/net224 --method sre2l --set teacher_model=resnet18
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from record import append_row

from ddkit.data import load_dataset
from ddkit.methods import create_method


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path)
    p.add_argument("--method", required=True)
    p.add_argument("--ipc", type=int, default=1)
    p.add_argument("--steps", type=int, default=2, help="N: the extra iterations timed")
    p.add_argument("--set", nargs="*", default=[], help="method settings, KEY=VALUE")
    a = p.parse_args()
    settings = dict(kv.split("=", 1) for kv in a.set)
    settings = {k: _value(v) for k, v in settings.items()}
    if a.method in ("sre2l", "cda", "edc"):
        settings.setdefault("teacher_cache", str(a.root.parent / f"{a.root.name}-teachers"))
    start = time.perf_counter()
    splits = load_dataset("imagefolder", root=str(a.root))
    load_seconds = time.perf_counter() - start
    # an untimed run first: what a first run builds and caches (a teacher, compiled code)
    create_method(a.method, **settings, iterations=1).fit(splits.train, a.ipc, seed=0)
    seconds = {}
    for iterations in (1, 1 + a.steps):
        start = time.perf_counter()
        method = create_method(a.method, **settings, iterations=iterations)
        method.fit(splits.train, a.ipc, seed=0)
        seconds[iterations] = time.perf_counter() - start
    spec = splits.train.spec
    append_row(
        "step_seconds.json",
        {
            "method": a.method,
            "ipc": a.ipc,
            "settings": settings,
            "model": getattr(method.config, "model", None),
            "teacher_model": getattr(method.config, "teacher_model", None),
            "classes": spec.num_classes,
            "train_images": len(splits.train),
            "image_size": list(spec.image_size),
            "load_seconds": round(load_seconds, 1),
            "run_seconds": {str(k): round(v, 1) for k, v in seconds.items()},
            "seconds_per_iteration": round((seconds[1 + a.steps] - seconds[1]) / a.steps, 2),
            "torch_threads": torch.get_num_threads(),
            "load_average_after": round(os.getloadavg()[0], 2),  # other work on the machine
        },
    )


if __name__ == "__main__":
    main()
