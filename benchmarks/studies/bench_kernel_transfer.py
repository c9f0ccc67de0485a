"""Does a KIP set fail at the kernel or at the transfer to a ConvNet? (validation split only)

KIP optimises its support set for kernel ridge regression with an infinitely wide network's
kernel; ddkit's protocols then train a finite ConvNet on it. For random real images and KIP sets
(same IPC, same seed) this script reports, on a stratified validation split of the train split
(``--val-fraction``, seed 0; never the test split):

* ``krr``: the accuracy of kernel ridge regression with the KIP kernel and the set as support
  (what KIP optimises);
* ``convnet``: final-epoch accuracy of ``--runs`` ConvNets trained on the set (protocol ``dsa``,
  ``--epochs`` epochs, ``--model``), what every ddkit table reports.

Usage: python benchmarks/studies/bench_kernel_transfer.py [--dataset mnist5k] [--ipc 1]
       [--iterations 500] [--architectures fc,conv] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import time

import torch

from ddkit.data import load_dataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.eval import evaluate
from ddkit.io import atomic_write_json
from ddkit.meter import machine_info
from ddkit.methods import create_method
from ddkit.methods.performance.kernels import krr_predict
from ddkit.methods.performance.labels import regression_targets
from ddkit.models import predict


def krr_accuracy(method, syn: SyntheticSet, val, batch: int = 500) -> float:  # noqa: ANN001
    """Accuracy on ``val`` of kernel ridge regression with ``method``'s kernel, support ``syn``."""
    k = syn.spec.num_classes
    y = syn.labels - 1.0 / k if syn.regression else regression_targets(syn.hard_labels, k)
    k_ss = method.kernel(syn.images, syn.images)
    pred = predict(lambda x: krr_predict(method.kernel(x, syn.images), k_ss, y, method.config.reg),
                   val.images, batch_size=batch)  # fmt: skip
    return float((pred.argmax(1) == val.labels).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--ipc", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=500)
    ap.add_argument("--architectures", default="fc,conv")
    ap.add_argument("--model", default="convnet-w32")
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out = args.out or f"benchmarks/results/kernel_transfer_{args.dataset}_ipc{args.ipc}.json"
    splits = load_dataset(args.dataset, val_fraction=args.val_fraction, seed=0)
    rows = []
    for arch in args.architectures.split(","):
        kip = create_method("kip", dataset=args.dataset, ipc=args.ipc, architecture=arch)
        t0 = time.perf_counter()
        sets = {
            "random real": kip.fit(splits.train, args.ipc, iterations=0, seed=0),
            "kip": kip.fit(splits.train, args.ipc, iterations=args.iterations, seed=0),
        }
        seconds = time.perf_counter() - t0
        for name, syn in sets.items():
            with torch.no_grad():
                krr = krr_accuracy(kip, syn, splits.val)
            rep = evaluate(syn, splits.val, "dsa", runs=args.runs, epochs=args.epochs, seed=0,
                           models=[args.model]).results[0]  # fmt: skip
            row = {"architecture": arch, "set": name, "ipc": args.ipc,
                   "iterations": args.iterations if name == "kip" else 0, "krr": krr,
                   "convnet_mean": rep.mean, "convnet_std": rep.std, "distill_seconds": seconds}  # fmt: skip
            rows.append(row)
            print(row, flush=True)
            atomic_write_json(
                out, {"settings": vars(args), "machine": machine_info(), "rows": rows}
            )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
