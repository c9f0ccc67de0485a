"""Why ``haba:5`` fell below plain pixels at mnist5k IPC-10 bytes (docs/benchmarks/families.md;
``benchmarks/studies/probe_haba.py``): the haba set, its bases alone and random real images on
the validation split, with the hallucinators' weights stored at scale 1 and at 0.1, and how far
a hallucinated image lies from its base against the bases' spacing. Bold: the best set."""

from __future__ import annotations

import json

from _campaigns import RESULTS

FILES = {"scale 1": "probe_haba_mnist5k_ipc10.json", "scale 0.1": "probe_haba_mnist5k_ipc10_scale0.1.json"}  # fmt: skip


def haba_probe() -> str:
    runs = {name: json.loads((RESULTS / f).read_text()) for name, f in FILES.items()}
    first = next(iter(runs.values()))
    bases, halls = first["bases_per_class"], first["settings"]["hallucinators"]
    names = {
        "haba set": f"whole haba set ({bases} bases x {halls} hallucinators per class)",
        "random real, as many as bases": f"{bases} random real images per class",
    }
    best = max(r["val_mean"] for run in runs.values() for r in run["rows"])
    out = ["| set | " + " | ".join(runs) + " |", "|---|" + "---|" * len(runs)]
    for i, row in enumerate(first["rows"]):
        cells = []
        for run in runs.values():
            r = run["rows"][i]
            text = f"{100 * r['val_mean']:.2f} ± {100 * r['val_std']:.2f}"
            cells.append(f"**{text}**" if r["val_mean"] == best else text)
        out.append(f"| {names.get(row['set'], row['set'])} | " + " | ".join(cells) + " |")
    spread = " | ".join(f"{run['spread']:.2g}x" for run in runs.values())
    out.append(f"| hallucinated image to base / between bases (L2) | {spread} |")
    return "\n".join(out)


TABLES = {"haba-probe": haba_probe}
