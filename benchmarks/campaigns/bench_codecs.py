"""What is stored, at equal bytes: DM through each codec against plain pixels and random real.

For every IPC (the byte budget of IPC plain images and hard labels per class), objective
(``--methods``: dm by default, idc, dc, dsa) and codec, the objective
distils the training split through the codec (``pixels``, ``formation:F``, ``fred:R``, ``haba:H``, ``latent:D``; same
objective, iterations and seed), and fresh networks are trained on the decoded set under one
protocol and tested once; random real images of the same bytes (plain pixels, IPC images per
class) sit beside them, and ``--generative dim`` adds the distilled generator of the same bytes
(its saved samples, 10 per IPC per class, and ``--samples`` sizes drawn from the same
generator). Each cell records accuracy (final epoch, mean ± std over runs), the
images decoded, the bytes stored and the seconds spent. Cells already in the output file are
kept, so an interrupted run continues where it stopped. Nothing is tuned here.

Usage: python benchmarks/campaigns/bench_codecs.py [--dataset digits] [--ipcs 1,10] [--methods dm,idc]
       [--codecs pixels,formation:2,fred:0.25,haba:5,latent:16] [--generative dim]
       [--samples 1,10,50]
       [--iterations N | dm=500,idc=10,dim=500] [--protocol fast] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ddkit.data import load_dataset
from ddkit.errors import ConfigError
from ddkit.eval import evaluate
from ddkit.io import atomic_write_json
from ddkit.meter import machine_info
from ddkit.methods import create_method, load_all


def _cell(splits, method: str, ipc: int, codec: str | None, args) -> list[dict]:
    """The cell's row; for a generative method, also one row per ``--samples`` size drawn
    from the same distilled generator (same bytes)."""
    options = {} if codec is None else {"codec": codec}
    m = create_method(method, dataset=args.dataset, ipc=ipc, **options)
    t0 = time.perf_counter()
    iterations = None if method == "random" else _iterations(args.iterations, method)
    syn = m.fit(splits.train, ipc, iterations=iterations, seed=args.seed)
    distill = time.perf_counter() - t0
    sets = [(None, syn)]
    if method in args.generative.split(","):
        from ddkit.methods.generative.dim import resample

        sizes = [int(n) for n in args.samples.split(",") if n]
        sets += [(n, resample(syn, n, seed=args.seed)) for n in sizes]
    rows = []
    for samples, s in sets:
        r = evaluate(s, splits.test, args.protocol, seed=args.seed).results[0]
        rows.append({
            "dataset": args.dataset, "ipc": ipc, "method": method, "codec": codec,
            "samples_per_class": samples, "iterations": iterations, "images": len(s),
            "storage_bytes": s.storage_bytes()["total"], "protocol": args.protocol,
            "accuracies": r.accuracies, "mean": r.mean, "std": r.std,
            "distill_seconds": distill, "eval_seconds": r.train_seconds,
            "capability": torch.backends.cpu.get_cpu_capability(),
        })  # fmt: skip
        if "hallucinator_weight_scale" in s.meta:  # haba: the step its hallucinators took
            rows[-1]["hallucinator_weight_scale"] = s.meta["hallucinator_weight_scale"]
    return rows


def _iterations(setting: str | None, method: str) -> int | None:
    """``--iterations``: one number for every method, or ``method=N`` pairs (preset if unset)."""
    if not setting:
        return None
    if "=" not in setting:
        return int(setting)
    pairs = dict(item.split("=") for item in setting.split(","))
    return int(pairs[method]) if method in pairs else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--ipcs", default="1,10")
    ap.add_argument("--codecs", default="pixels,formation:2,fred:0.25,haba:5,latent:16")
    ap.add_argument("--methods", default="dm", help="objectives optimising each codec")
    ap.add_argument("--generative", default="", help="generative methods (dim) at the same bytes")
    ap.add_argument(
        "--samples", default="", help="images per class also drawn from a generative set (10,50)"
    )
    ap.add_argument(
        "--iterations", default=None, help="N for all, or method=N,... (preset if unset)"
    )
    ap.add_argument("--protocol", default="fast")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    load_all()
    out = Path(args.out or f"benchmarks/results/codecs_{args.dataset}.json")
    rows = json.loads(out.read_text())["rows"] if out.exists() else []
    splits = load_dataset(args.dataset)
    cells = []
    for ipc in [int(i) for i in args.ipcs.split(",")]:
        cells.append(("random", ipc, None))
        methods = [m for m in args.methods.split(",") if m]
        codecs = [c for c in args.codecs.split(",") if c]
        cells += [(m, ipc, c) for m in methods for c in codecs]
        cells += [(m, ipc, None) for m in args.generative.split(",") if m]
    for method, ipc, codec in cells:
        key = (method, ipc, codec, args.protocol)
        if any((r["method"], r["ipc"], r["codec"], r["protocol"]) == key for r in rows):
            continue
        print(f"{args.dataset} IPC {ipc} {method} {codec or ''} ...", flush=True)
        try:
            new_rows = _cell(splits, method, ipc, codec, args)
        except ConfigError as e:  # a codec that does not fit this budget says so
            print(f"    not run: {e}", flush=True)
            rows.append({"dataset": args.dataset, "ipc": ipc, "method": method, "codec": codec,
                         "protocol": args.protocol, "error": str(e)})  # fmt: skip
            atomic_write_json(out, {"machine": machine_info(), "rows": rows})
            continue
        for row in new_rows:
            print(f"    {100 * row['mean']:.2f} ± {100 * row['std']:.2f} %, {row['images']} images, "
                  f"{row['storage_bytes']:,} bytes, distill {row['distill_seconds']:.0f} s", flush=True)  # fmt: skip
        rows += new_rows
        atomic_write_json(out, {"machine": machine_info(), "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
