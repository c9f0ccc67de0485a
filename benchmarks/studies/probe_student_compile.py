"""Probe: does ``torch.compile`` speed up MTT's unrolled student (issue 14)?

MTT differentiates through the student's SGD steps, each a ``torch.func.grad`` of the training
loss; compiled graphs cannot be differentiated twice, but a compiled *gradient function* can be
differentiated once more through AOTAutograd. This probe compiles ``torch.func.grad`` of
:func:`ddkit.methods.trajectory.student.inner_loss`, unrolls ``--steps`` student steps of
ConvNet-3 width 32 on 100 mnist5k images, back-propagates a trajectory-style loss to the
images, and compares CPU seconds (one torch thread; after a warm-up unroll that compiles) and
the image gradients with the eager path. Writes ``benchmarks/results/probe_student_compile.json``.

Usage: python benchmarks/studies/probe_student_compile.py [--steps 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import torch

from ddkit.data import load_dataset
from ddkit.io import atomic_write_json
from ddkit.meter import machine_info
from ddkit.methods.trajectory.student import FlatModel, Student, inner_loss
from ddkit.models import build_network


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/probe_student_compile.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", UserWarning)
    train = load_dataset("mnist5k").train
    net = build_network("convnet-w32", train.spec, 0)
    student = Student(FlatModel(net))
    theta0 = student.fm.flatten(net)
    images = train.images[:100].clone().requires_grad_(True)
    labels, idx = train.labels[:100], torch.arange(100)

    def loss(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return inner_loss(student, theta, x, labels, idx, None)

    grads = {"eager": torch.func.grad(loss)}
    grads["compiled"] = torch.compile(grads["eager"], dynamic=False)

    def unroll(name: str) -> tuple[float, torch.Tensor]:
        c0 = time.process_time()
        theta = theta0
        for _ in range(args.steps):
            theta = theta - 0.01 * grads[name](theta, images)
        (g,) = torch.autograd.grad((theta - theta0).pow(2).sum(), images)
        return time.process_time() - c0, g

    load0 = os.getloadavg()[0]
    warm = {name: unroll(name)[0] for name in grads}
    cpu: dict[str, list[float]] = {name: [] for name in grads}
    result = {}
    for r in range(args.rounds):
        for name in list(grads) if r % 2 == 0 else list(grads)[::-1]:
            t, result[name] = unroll(name)
            cpu[name].append(t)
    eager, compiled = result["eager"], result["compiled"]
    out = {
        "machine": machine_info(),
        "threads": 1,
        "steps": args.steps,
        "rounds": args.rounds,
        "load_average_start": load0,
        "load_average_end": os.getloadavg()[0],
        "first_unroll_cpu_s": warm,
        "cpu_s_per_unroll": {k: statistics.median(v) for k, v in cpu.items()},
        "all_cpu_s": cpu,
        "speedup": statistics.median(e / c for e, c in zip(cpu["eager"], cpu["compiled"])),
        "rel_diff_image_grad": float((compiled - eager).norm() / eager.norm()),
    }
    print({k: out[k] for k in ("cpu_s_per_unroll", "speedup", "rel_diff_image_grad")})
    atomic_write_json(args.out, out)


if __name__ == "__main__":
    main()
