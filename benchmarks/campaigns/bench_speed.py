"""Speed levers on CPU (issue 14): today's default path against each lever and all of them.

Levers: ``inplace`` (ConvNet activations in place; the new default, same bits), ``bf16`` (bf16
autocast around the forward passes, float32 weights and images), ``channels_last`` (batches in
channels-last memory format), ``compile`` (``torch.compile``, inductor).
``baseline`` is today's default path before this work (commit 1170aad^: activations not in
place, float32, contiguous, eager), pinned by switching the activations back
(:func:`ddkit.models.set_inplace_activations`); everything else is identical.

* Evaluation training (ConvNet-3 width 128 and 32, 100 and 500 random real mnist5k images,
  28x28, protocol ``fast``'s recipe: SGD, batch 256, DSA): per cell one network per variant,
  trained for ``epochs`` epochs per round, variants interleaved (the order rotates every round)
  after one untimed warm-up round (the compile variants compile there: ``compile_s`` is that
  round's wall time minus a timed round's). Reported: median CPU seconds per optimiser step
  and per epoch, images per CPU second, and the speed-up over ``baseline``.
  ``speedup_cpu`` is the median over rounds of baseline / variant CPU seconds of the same round.
* One DM step on mnist5k IPC 10 (ConvNet-3 width 128, DSA, batch_real 64 and 256): one method
  instance per variant, started from the same seed, steps interleaved the same way (``compile``
  compiles the embedding).
* Peak memory: every (cell, variant) again in a fresh child process (spawned): ``extra_mb``
  is the peak resident memory above the level before the measured steps (:class:`PeakRSS`,
  after a warm-up), ``max_rss_mb`` the child's whole-life resident high-water mark (``VmHWM``;
  compilation included; ``ru_maxrss`` would include the parent's size at the fork). For the
  compile variants, ``first_round_extra_wall_s`` (the warm-up round's wall time minus a measured
  round's, in that fresh process) is the compilation time; the in-process ``compile_s`` is paid
  only by the first variant that compiles a graph, and inductor's on-disk cache (kept between
  runs) makes both small: part ``compile`` measures each compile variant in a fresh process
  with an empty inductor cache (``cold_compile``).
* ``inplace+bf16+compile+chunk512`` (DM): the levers with DM's existing memory bound,
  ``embed_chunk=512`` (real images embedded 512 at a time).
* Accuracy on a validation split (20 % of mnist5k's train split, seed 0; never the test split):
  protocol ``fast`` (3 networks, 100 epochs) in fp32, bf16 and bf16 + compile; and a short DM
  run (``--dm-iterations``) in fp32 and bf16, evaluated the same way.

Timings are CPU seconds (``time.process_time``) with one torch thread; the machine is shared, so
wall seconds and the load average are recorded too. Writes ``benchmarks/results/speed.json``.

* One IDM step, the same cells (``--parts idm``): the DM levers on IDM's queue networks.

Usage: python benchmarks/campaigns/bench_speed.py [--parts eval,dm,idm,memory,compile,accuracy] [--quick]
[--merge]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import time
from typing import Any

import torch

from ddkit.data import load_dataset
from ddkit.eval import evaluate
from ddkit.eval.protocol import get_protocol
from ddkit.eval.train import Augmenter, TrainRecipe, sgd_train
from ddkit.io import atomic_write_json
from ddkit.levers import compile_available
from ddkit.meter import PeakRSS, high_water_mb, machine_info
from ddkit.methods import create_method
from ddkit.models import build_network, set_inplace_activations

BASE = {"inplace": False, "precision": "fp32", "channels_last": False, "compile": False}
EVAL_VARIANTS = {
    "baseline": BASE,
    "inplace": {**BASE, "inplace": True},
    "bf16": {**BASE, "precision": "bf16"},
    "channels_last": {**BASE, "channels_last": True},
    "compile": {**BASE, "compile": True},
    "inplace+bf16+compile": {**BASE, "inplace": True, "precision": "bf16", "compile": True},
    "all": {"inplace": True, "precision": "bf16", "channels_last": True, "compile": True},
}
DM_VARIANTS = {
    **EVAL_VARIANTS,
    "inplace+bf16": {**BASE, "inplace": True, "precision": "bf16"},
    # DM's existing memory bound (real images embedded 512 at a time) with the levers
    "inplace+bf16+compile+chunk512": {
        **EVAL_VARIANTS["inplace+bf16+compile"],
        "embed_chunk": 512,
    },
}
# IDM (its queue networks compile as one template since issue 14's second round): the levers
# that matter on DM, each alone and together
IDM_VARIANTS = {
    name: DM_VARIANTS[name]
    for name in ("baseline", "inplace", "bf16", "compile", "inplace+bf16", "inplace+bf16+compile")
}
EVAL_CELLS = [("convnet", 100), ("convnet", 500), ("convnet-w32", 100), ("convnet-w32", 500)]
DM_BATCHES = [64, 256]
DM_IPC = 10
DM_MODEL = "convnet"  # ConvNet-3 width 128, as BENCHMARKS.md's DM table and issue 14


def _splits():  # noqa: ANN202
    return load_dataset("mnist5k", val_fraction=0.2, seed=0)


def _random_set(splits, n: int):  # noqa: ANN001, ANN202
    return create_method("random").fit(splits.train, n // 10, seed=0)


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _rotated(names: list[str], r: int) -> list[str]:
    return names[r % len(names) :] + names[: r % len(names)]


def paired_speedup(base: list[float], other: list[float]) -> float:
    """The median over rounds of ``base / other`` CPU seconds of the same round (interleaved:
    both saw that round's machine load)."""
    return _median([b / o for b, o in zip(base, other)])


# ============================================================================ evaluation training
class EvalRunner:
    """One network of ``model`` trained on ``n`` random real images under one variant."""

    def __init__(self, splits, model: str, n: int, variant: dict[str, Any]) -> None:  # noqa: ANN001
        syn = _random_set(splits, n)
        self.images, self.labels, self.v = syn.images, syn.labels, variant
        self.protocol = get_protocol("fast")
        self.augment = Augmenter.from_protocol(self.protocol, syn.spec)
        self.net = build_network(model, syn.spec, 0)
        set_inplace_activations(self.net, variant["inplace"])
        self.generator = torch.Generator().manual_seed(0)
        self.steps_per_epoch = -(-n // self.protocol.batch_size)

    def train(self, epochs: int) -> tuple[float, float]:
        """CPU and wall seconds of ``epochs`` more epochs."""
        p, v = self.protocol, self.v
        c0, w0 = time.process_time(), time.perf_counter()
        recipe = TrainRecipe(epochs, p.lr, p.batch_size, momentum=p.momentum,
                             weight_decay=p.weight_decay, precision=v["precision"],
                             channels_last=v["channels_last"], compile=v["compile"])  # fmt: skip
        sgd_train(self.net, self.images, self.labels, recipe, generator=self.generator,
                  augment=self.augment)  # fmt: skip
        return time.process_time() - c0, time.perf_counter() - w0


def time_eval_cell(splits, model: str, n: int, epochs: int, rounds: int) -> dict[str, Any]:  # noqa: ANN001
    runners = {name: EvalRunner(splits, model, n, v) for name, v in EVAL_VARIANTS.items()}
    warm = {name: r.train(epochs) for name, r in runners.items()}
    cpu: dict[str, list[float]] = {name: [] for name in runners}
    wall: dict[str, list[float]] = {name: [] for name in runners}
    for r in range(rounds):
        for name in _rotated(list(runners), r):
            c, w = runners[name].train(epochs)
            cpu[name].append(c)
            wall[name].append(w)
    steps = epochs * runners["baseline"].steps_per_epoch
    base = _median(cpu["baseline"])
    variants = {}
    for name in runners:
        c, w = _median(cpu[name]), _median(wall[name])
        variants[name] = {
            "levers": EVAL_VARIANTS[name],
            "cpu_s_per_step": c / steps,
            "cpu_s_per_epoch": c / epochs,
            "wall_s_per_epoch": w / epochs,
            "images_per_cpu_s": n * epochs / c,
            "speedup_cpu": paired_speedup(cpu["baseline"], cpu[name]),
            "speedup_cpu_of_medians": base / c,
            "compile_s": max(0.0, warm[name][1] - w) if EVAL_VARIANTS[name]["compile"] else 0.0,
            "all_cpu_s": cpu[name],
            "all_wall_s": wall[name],
        }
        print(f"eval {model:<12} {n:>4} {name:<22} {c / steps:7.3f} CPU s/step "
              f"{variants[name]['speedup_cpu']:5.2f}x  compile {variants[name]['compile_s']:5.1f} s",
              flush=True)  # fmt: skip
    return {"model": model, "images": n, "epochs_per_round": epochs, "steps_per_round": steps,
            "rounds": rounds, "variants": variants}  # fmt: skip


def eval_epochs(n: int) -> int:
    """Epochs per timed round: about six optimiser steps (batch 256)."""
    return max(2, 600 // n)


# ============================================================================ DM step
def dm_method(splits, batch_real: int, variant: dict[str, Any], method: str = "dm"):  # noqa: ANN001, ANN201
    """A started DM or IDM instance (mnist5k IPC 10, seed 0) under ``variant``."""
    m = create_method(method, model=DM_MODEL, batch_real=batch_real, precision=variant["precision"],
                      channels_last=variant["channels_last"], compile=variant["compile"],
                      embed_chunk=variant.get("embed_chunk", 0))  # fmt: skip
    m.start(splits.train, DM_IPC, seed=0, iterations=1000)
    set_inplace_activations(m.nets_.network, variant["inplace"])
    if method == "idm":  # its queue networks run in a copy of the network made at the start
        set_inplace_activations(m.queue_.template, variant["inplace"])
    return m


def _dm_steps(m, it: int, steps: int) -> tuple[float, float]:  # noqa: ANN001
    c0, w0 = time.process_time(), time.perf_counter()
    for i in range(steps):
        m.step(it + i)
    return time.process_time() - c0, time.perf_counter() - w0


def time_dm_cell(
    splits, batch_real: int, rounds: int, steps: int, method: str = "dm"
) -> dict[str, Any]:  # noqa: ANN001, E501
    table = DM_VARIANTS if method == "dm" else IDM_VARIANTS
    methods = {name: dm_method(splits, batch_real, v, method) for name, v in table.items()}
    warm = {name: _dm_steps(m, 0, 1)[1] for name, m in methods.items()}  # warm-up, compilation
    cpu: dict[str, list[float]] = {name: [] for name in methods}
    wall: dict[str, list[float]] = {name: [] for name in methods}
    for r in range(rounds):
        for name in _rotated(list(methods), r):
            c, w = _dm_steps(methods[name], 1 + r * steps, steps)
            cpu[name].append(c / steps)
            wall[name].append(w / steps)
    base = _median(cpu["baseline"])
    ref_images = methods["baseline"].state_["images"].detach()
    images = DM_IPC * 10 * (batch_real + DM_IPC)  # real and synthetic images embedded per step
    variants = {}
    for name, m in methods.items():
        c = _median(cpu[name])
        diff = (m.state_["images"].detach() - ref_images).norm() / ref_images.norm()
        w = _median(wall[name])
        variants[name] = {"levers": table[name], "cpu_s_per_step": c, "wall_s_per_step": w,
                          "images_per_cpu_s": images / c,
                          "speedup_cpu": paired_speedup(cpu["baseline"], cpu[name]),
                          "speedup_cpu_of_medians": base / c,
                          "compile_s": max(0.0, warm[name] - w) if table[name]["compile"]
                          else 0.0,
                          "rel_diff_images_vs_baseline": float(diff),
                          "all_cpu_s": cpu[name], "all_wall_s": wall[name]}  # fmt: skip
        print(f"{method} batch_real {batch_real:>3} {name:<30} {c:7.3f} CPU s/step "
              f"{variants[name]['speedup_cpu']:5.2f}x rel diff {float(diff):.2e}", flush=True)  # fmt: skip
    return {"method": method, "model": DM_MODEL, "ipc": DM_IPC, "batch_real": batch_real,
            "steps_per_round": steps, "rounds": rounds, "variants": variants}  # fmt: skip


# ============================================================================ memory (children)
def _eval_peak(model: str, n: int, name: str, epochs: int) -> dict[str, float]:
    torch.set_num_threads(1)
    runner = EvalRunner(_splits(), model, n, EVAL_VARIANTS[name])
    _, warm = runner.train(epochs)  # warm-up (and, in this fresh process, compilation)
    with PeakRSS() as meter:
        runner.train(epochs)
    return {"extra_mb": meter.extra_mb, "max_rss_mb": high_water_mb(),
            "first_round_extra_wall_s": max(0.0, warm - meter.seconds)}  # fmt: skip


def _dm_peak(batch_real: int, name: str, steps: int) -> dict[str, float]:
    torch.set_num_threads(1)
    m = dm_method(_splits(), batch_real, DM_VARIANTS[name])
    _, warm = _dm_steps(m, 0, 1)
    with PeakRSS() as meter:
        _dm_steps(m, 1, steps)
    return {"extra_mb": meter.extra_mb, "max_rss_mb": high_water_mb(),
            "first_round_extra_wall_s": max(0.0, warm - meter.seconds / steps)}  # fmt: skip


def _cold_compile(kind: str, cell: tuple[Any, ...], name: str) -> dict[str, float]:
    """Wall seconds of the first round minus a second one in a fresh process with an empty
    inductor cache: the cold compilation time of one configuration."""
    import tempfile

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_speed_inductor_")
    torch.set_num_threads(1)
    if kind == "eval":
        model, n = cell
        runner = EvalRunner(_splits(), model, n, EVAL_VARIANTS[name])
        first, second = runner.train(eval_epochs(n))[1], runner.train(eval_epochs(n))[1]
    else:
        m = dm_method(_splits(), cell[0], DM_VARIANTS[name])
        first, second = _dm_steps(m, 0, 1)[1], _dm_steps(m, 1, 1)[1]
    return {"first_round_wall_s": first, "second_round_wall_s": second,
            "compile_s": max(0.0, first - second)}  # fmt: skip


def cold_compile(cells: list[tuple[str, int]], batches: list[int]) -> list[dict[str, Any]]:
    rows = []
    names = ["compile", "inplace+bf16+compile"]  # fp32 and bf16 graphs
    jobs = [("eval", c) for c in cells] + [("dm", (b,)) for b in batches]
    for kind, cell in jobs:
        for name in names:
            r = _in_child(_cold_compile, kind, cell, name)
            rows.append({"part": kind, "cell": list(cell), "variant": name, **r})
            print(f"cold compile {kind} {cell} {name}: {r['compile_s']:.1f} s", flush=True)
    return rows


def _in_child(fn, *args) -> dict[str, float]:  # noqa: ANN001
    with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(fn, args)


def memory(cells: list[tuple[str, int]], batches: list[int], dm_steps: int) -> dict[str, Any]:
    out: dict[str, Any] = {"eval": [], "dm": []}
    for model, n in cells:
        epochs = eval_epochs(n)
        peaks = {name: _in_child(_eval_peak, model, n, name, epochs) for name in EVAL_VARIANTS}
        out["eval"].append({"model": model, "images": n, "epochs": epochs, "peak": peaks})
        print(f"memory eval {model} {n}: " + ", ".join(
            f"{k} {v['extra_mb']:.0f}/{v['max_rss_mb']:.0f} MB" for k, v in peaks.items()),
            flush=True)  # fmt: skip
    for b in batches:
        peaks = {name: _in_child(_dm_peak, b, name, dm_steps) for name in DM_VARIANTS}
        out["dm"].append({"batch_real": b, "steps": dm_steps, "peak": peaks})
        print(f"memory dm batch_real {b}: " + ", ".join(
            f"{k} {v['extra_mb']:.0f}/{v['max_rss_mb']:.0f} MB" for k, v in peaks.items()),
            flush=True)  # fmt: skip
    return out


# ============================================================================ accuracy
ACCURACY_VARIANTS = {
    "fp32": {},
    "bf16": {"precision": "bf16"},
    "bf16+compile": {"precision": "bf16", "compile": True},
}


def _val_accuracy(syn, val, model: str, **levers: Any) -> dict[str, Any]:  # noqa: ANN001
    p = get_protocol("fast").with_(models=(model,), **levers)
    c0 = time.process_time()
    r = evaluate(syn, val, p, seed=0).results[0]
    return {"accuracies": r.accuracies, "mean": r.mean, "std": r.std,
            "cpu_s": time.process_time() - c0}  # fmt: skip


def accuracy(splits, cells: list[tuple[str, int]], dm_iterations: int, dm_batch: int):  # noqa: ANN001, ANN201
    out: dict[str, Any] = {"eval": [], "dm": None}
    for model, n in cells:
        syn = _random_set(splits, n)
        res = {k: _val_accuracy(syn, splits.val, model, **v) for k, v in ACCURACY_VARIANTS.items()}
        out["eval"].append({"model": model, "images": n, "protocol": "fast", **res})
        print(f"accuracy {model} {n}: " + ", ".join(
            f"{k} {100 * v['mean']:.2f} ± {100 * v['std']:.2f}" for k, v in res.items()),
            flush=True)  # fmt: skip
    if dm_iterations:
        rows = {}
        for precision in ("fp32", "bf16"):
            m = create_method("dm", model="convnet-w32", batch_real=dm_batch, precision=precision)
            c0 = time.process_time()
            syn = m.fit(splits.train, DM_IPC, seed=0, iterations=dm_iterations)
            rows[precision] = {"distil_cpu_s": time.process_time() - c0,
                               **_val_accuracy(syn, splits.val, "convnet-w32")}  # fmt: skip
        out["dm"] = {"model": "convnet-w32", "ipc": DM_IPC, "batch_real": dm_batch,
                     "iterations": dm_iterations, "eval_model": "convnet-w32", **rows}  # fmt: skip
        print("accuracy dm: " + ", ".join(
            f"{k} {100 * v['mean']:.2f} ± {100 * v['std']:.2f}" for k, v in rows.items()),
            flush=True)  # fmt: skip
    return out


# ============================================================================ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--parts", default="eval,dm,memory,compile,accuracy")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds of evaluation training")
    ap.add_argument("--dm-rounds", type=int, default=3, help="timed rounds of DM steps")
    ap.add_argument("--dm-steps", type=int, default=1, help="DM steps per timed round")
    ap.add_argument("--dm-iterations", type=int, default=200, help="DM run for accuracy")
    ap.add_argument("--quick", action="store_true", help="a smoke run: small cells, 1 round")
    ap.add_argument("--out", default="benchmarks/results/speed.json")
    ap.add_argument(
        "--merge", action="store_true", help="update the parts run in an existing --out"
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    parts = set(args.parts.split(","))
    cells, batches, acc_cells = EVAL_CELLS, DM_BATCHES, [("convnet-w32", 100), ("convnet-w32", 500)]
    if args.quick:
        cells, batches, acc_cells = [("convnet-w32", 100)], [8], [("convnet-w32", 100)]
        args.rounds, args.dm_rounds, args.dm_iterations = 1, 1, 5
    splits = _splits()
    load0 = os.getloadavg()
    results: dict[str, Any] = {
        "machine": machine_info(),
        "compile_available": compile_available(),
        "load_average_start": load0,
        "contended": load0[0] > 1.5,  # 2 cores; this benchmark is one busy process
        "parts": sorted(parts),
        "rounds": args.rounds,
        "dm_rounds": args.dm_rounds,
        "baseline": "today's default path: ConvNet activations not in place, fp32, eager",
    }
    if "eval" in parts:
        results["eval"] = [time_eval_cell(splits, m, n, eval_epochs(n), args.rounds)
                           for m, n in cells]  # fmt: skip
    if "dm" in parts:
        results["dm"] = [time_dm_cell(splits, b, args.dm_rounds, args.dm_steps) for b in batches]
    if "idm" in parts:
        results["idm"] = [time_dm_cell(splits, b, args.dm_rounds, args.dm_steps, "idm")
                          for b in batches]  # fmt: skip
    if "memory" in parts:
        results["memory"] = memory(cells, batches, args.dm_steps)
    if "compile" in parts:
        results["cold_compile"] = cold_compile(cells, batches)
    if "accuracy" in parts:
        results["accuracy"] = accuracy(splits, acc_cells, args.dm_iterations, 64)
    results["load_average_end"] = os.getloadavg()
    results["contended"] = results["contended"] or results["load_average_end"][0] > 1.5
    if args.merge and os.path.exists(args.out):
        with open(args.out) as f:
            old = json.load(f)
        keys = ("parts", "machine", "load_average_start", "load_average_end", "contended")
        # every run that wrote into this file, with its parts, machine and load
        runs = old.pop("runs", None) or [{k: old[k] for k in keys if k in old}]
        results = {**old, **results, "runs": [*runs, {k: results[k] for k in keys}]}
        results["parts"] = sorted({p for run in results["runs"] for p in run.get("parts", [])})
    atomic_write_json(args.out, results)
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
