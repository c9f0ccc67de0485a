"""Where compiling evaluation training pays on small sets (issue 70; ``ddkit.levers.
COMPILE_MIN_BATCH_VALUES``): one network trained eager and compiled, outside exact mode, on ten
8x8 digits (one per class, 640 input values per batch) and on the whole digits train split
(batches of 256: 16,384 values). Each case runs a 10-epoch warm-up (timed apart: it holds the
compilation) and then the timed run. Writes ``benchmarks/results/compile_floor.json``.

    python benchmarks/campaigns/bench_compile_floor.py
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ddkit.data import load_dataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.eval import evaluate
from ddkit.eval.protocol import get_protocol
from ddkit.io import atomic_write_json
from ddkit.levers import exact
from ddkit.meter import machine_info

OUT = Path(__file__).resolve().parents[1] / "results" / "compile_floor.json"
CASES = {"ten digits, one per class": (torch.arange(0, 100, 10), "dsa", 300),
         "the digits train split": (None, "fast", 120)}  # fmt: skip


def main() -> None:
    data = load_dataset("digits")
    rows = []
    with exact(False):
        for name, (index, protocol, epochs) in CASES.items():
            syn = SyntheticSet.from_real(data.train, index)
            for compiled in (False, True):
                p = get_protocol(protocol).with_(compile=compiled)
                p = p if compiled else p.with_(compile=False)  # with_ ignores None, not False
                start = time.perf_counter()
                evaluate(syn, data.test, p, runs=1, epochs=10, seed=0)  # warm-up, compilation
                warm_up = time.perf_counter() - start
                start = time.perf_counter()
                evaluate(syn, data.test, p, runs=1, epochs=epochs, seed=0)
                seconds = time.perf_counter() - start
                rows.append({"case": name, "images": len(syn), "batch_values":
                             min(len(syn), p.batch_size) * syn.images[0].numel(),
                             "protocol": protocol, "epochs": epochs, "compiled": compiled,
                             "warm_up_seconds": round(warm_up, 2), "seconds": round(seconds, 2)})  # fmt: skip
                print(rows[-1], flush=True)
    atomic_write_json(OUT, {"rows": rows, "machine": machine_info()})


if __name__ == "__main__":
    main()
