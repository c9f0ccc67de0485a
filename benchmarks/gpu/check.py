"""ddkit on a CUDA device: every method's step on the device, evaluation there, and the `paper`
suite's dc and dsa MNIST IPC-1 cells at the published budget.

Three stages, each writing into one JSON file as it goes (atomically, after every item), so a
run stopped by its time limit keeps what it finished:

* ``smoke``: every registered image method, from its test overrides, fits a few iterations on
  ``--smoke-dataset`` whose tensors live on ``--device``; records whether it ran, its seconds,
  where its set's tensors ended up and whether they are finite (one line per failure).
* ``eval``: the dm smoke set evaluated on the device and on the CPU (same protocol and seed).
* ``paper``: dc and dsa at MNIST IPC 1 as the papers ran them (1,000 outer iterations, ConvNet-3
  width 128, 256 real images per class; ddkit's presets), ``--seeds`` distillation seeds x
  ``--runs`` networks of protocol ``dsa`` (1,000 epochs), beside ``--draws`` random real draws
  under the identical recipe -- the suite's seeds (seed + s for distillation seed / draw s).
  Exact mode, and TF32 off on the device: float32 arithmetic, as the papers computed.

Usage: python benchmarks/gpu/check.py --device cuda --out OUT.json [--stages smoke,eval,paper]
       [--methods dc,dsa] [--deadline SECONDS]  (no new item starts after the deadline)
An OUT.json already there is resumed: its paper cells are kept and not run again.
The sets of the paper stage are saved under ``--sets DIR``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from ddkit.data import load_dataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.eval import evaluate
from ddkit.io import atomic_write_json
from ddkit.levers import exact, float32_on_cuda
from ddkit.meter import machine_info
from ddkit.methods import METHODS, create_method, load_all
from ddkit.runs import StepTimer
from ddkit.testing import method_test_overrides


def one_line(e: BaseException) -> str:
    """The exception and the innermost ddkit frames that raised it."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "ddkit" in f.filename]
    where = " < ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames[-4:]))
    where = f" at {where}" if where else ""
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}{where}"


def set_devices(syn: SyntheticSet) -> list[str]:
    """The devices of a set's stored tensors."""
    return sorted({str(t.device) for t in (syn.images, syn.labels, *syn.extras.values())})


def image_methods() -> list[str]:
    """Every registered method that takes image rows (the graph family condenses graphs)."""
    load_all()
    names = []
    for name in sorted(METHODS.names()):
        cls = METHODS.get(name)
        if ".graph." in cls.__module__:
            continue
        names.append(name)
    return names


def smoke(out: dict[str, Any], args: argparse.Namespace, device: torch.device, save: Any) -> None:
    splits = load_dataset(args.smoke_dataset)
    train = splits.train.to(device)
    rows = out.setdefault("smoke", {})
    for name in image_methods():
        if name in rows or past_deadline(args):
            continue
        t0 = time.perf_counter()
        try:
            opts = method_test_overrides(name)
            its = min(opts.pop("iterations", args.smoke_iterations), args.smoke_iterations)
            m = create_method(name, ipc=1, **opts)  # the test overrides, no dataset preset
            syn = m.fit(train, 1, iterations=its, seed=0)
            finite = bool(torch.isfinite(syn.images.float()).all())
            rows[name] = {"ok": True, "seconds": time.perf_counter() - t0,
                          "devices": set_devices(syn), "finite": finite}  # fmt: skip
            if name == "dm":
                out["_dm_set"] = syn
        except Exception as e:  # noqa: BLE001 - recorded, the next method runs
            rows[name] = {"ok": False, "seconds": time.perf_counter() - t0, "error": one_line(e)}
        print(name, rows[name], flush=True)
        save()


def eval_check(out: dict[str, Any], args: argparse.Namespace, device: torch.device) -> None:
    syn = out.pop("_dm_set", None)
    if syn is None:
        return
    test = load_dataset(args.smoke_dataset).test
    res = {}
    for dev in (device, torch.device("cpu")):
        t0 = time.perf_counter()
        try:
            r = evaluate(syn.to("cpu"), test, "dsa", runs=2,
                         epochs=50, seed=0, device=dev)  # fmt: skip
            res[str(dev)] = {"accuracies": r.results[0].accuracies,
                             "seconds": time.perf_counter() - t0}  # fmt: skip
        except Exception as e:  # noqa: BLE001
            res[str(dev)] = {"error": one_line(e), "seconds": time.perf_counter() - t0}
        print("eval", dev, res[str(dev)], flush=True)
    out["eval"] = res


def paper(out: dict[str, Any], args: argparse.Namespace, device: torch.device, save: Any) -> None:
    splits = load_dataset("mnist")
    train = splits.train.to(device)
    cells = out.setdefault("paper", {})
    # the first random draw, then the distilled cells seed by seed, then the other draws
    methods = args.methods.split(",")
    jobs = [("random", 0)] + [(m, s) for s in range(args.seeds) for m in methods]
    jobs += [("random", s) for s in range(1, args.draws)]
    for method, s in jobs:
        key = f"{method}/seed{s}"
        if key in cells or past_deadline(args):
            continue
        seed = args.seed + s
        timer = StepTimer()
        try:
            t0 = time.perf_counter()
            m = create_method(method, dataset="mnist", ipc=1)
            its = None if method == "random" else args.iterations
            syn = m.fit(train, 1, iterations=its, seed=seed, callbacks=[timer])
            distill_s = time.perf_counter() - t0
            syn = syn.to("cpu")
            if args.sets:
                syn.save(Path(args.sets) / f"{method}-seed{s}")
            t1 = time.perf_counter()
            r = evaluate(syn, splits.test, "dsa", runs=args.runs, epochs=args.epochs, seed=seed,
                         device=device)  # fmt: skip
            cells[key] = {
                "method": method, "ipc": 1, "seed": seed, "iterations": its,
                "config": dataclasses.asdict(m.config) if method != "random" else {},
                "distill_seconds": distill_s, "step_seconds_median": median(timer.steps),
                "eval_seconds": time.perf_counter() - t1, "model": r.results[0].model,
                "accuracies": r.results[0].accuracies, "protocol": r.protocol.name,
                "epochs": r.protocol.epochs,
            }  # fmt: skip
        except Exception as e:  # noqa: BLE001
            cells[key] = {"error": one_line(e)}
        print(key, cells[key].get("accuracies", cells[key].get("error")), flush=True)
        save()


def median(xs: list[float]) -> float | None:
    return sorted(xs)[len(xs) // 2] if xs else None


def past_deadline(args: argparse.Namespace) -> bool:
    return time.monotonic() - args.t0 > args.deadline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--stages", default="smoke,eval,paper")
    ap.add_argument("--smoke-dataset", default="digits")
    ap.add_argument("--smoke-iterations", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="default: the protocol's (1,000)")
    ap.add_argument("--deadline", type=float, default=math.inf)
    ap.add_argument("--methods", default="dc,dsa", help="the paper stage's methods (dc, dsa)")
    ap.add_argument("--sets", default="")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    args.t0 = time.monotonic()
    device = torch.device(args.device)
    with exact():  # float32 as published: no TF32 in convolutions or matmuls, every stage
        float32_on_cuda()
    out: dict[str, Any] = {"machine": machine_info(), "device": str(device),
                           "torch": torch.__version__, "args": {k: v for k, v in vars(args).items()
                                                                 if k != "t0"}}  # fmt: skip
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    if Path(args.out).is_file():  # a later call resumes: the cells already there are kept
        before = json.loads(Path(args.out).read_text())
        out["paper"] = before.get("paper", {})
        out["earlier_args"] = [*before.get("earlier_args", []), before.get("args")]

    def save() -> None:
        atomic_write_json(args.out, {k: v for k, v in out.items() if not k.startswith("_")})

    with exact():
        for stage in args.stages.split(","):  # in the order given
            if stage == "smoke":
                smoke(out, args, device, save)
            elif stage == "eval":
                eval_check(out, args, device)
                save()
            elif stage == "paper":
                paper(out, args, device, save)
    out["seconds"] = time.monotonic() - args.t0
    save()


if __name__ == "__main__":
    main()
