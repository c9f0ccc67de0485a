"""The demo and the applications (docs/benchmarks/applications.md): the demo's candidates on a
validation split (``benchmarks/studies/choose_demo.py``: ``demo_choice_ipc1*.json`` for IPC 1,
``demo_choice.json`` for the earlier IPC-10 demo), cheaper full-data recipes
(``bench_full_recipe.py``, ``full_recipe_digits.json``) and each ``ddkit app`` results file
(``app-*-digits/``)."""

from __future__ import annotations

import json
from typing import Any

from _campaigns import RESULTS

#: how the HCDC table names its validation sets
HCDC_NAMES = {"hcdc": "HCDC", "dm": "DM"}


def _read(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text())


def _pm(mean: float, std: float) -> str:
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def _bold(text: str, best: bool) -> str:
    return f"**{text}**" if best else text


def demo_choice(*names: str) -> str:
    """A row per candidate, each method's rows together by iterations; random draws by seed."""
    rows = [r for n in names for r in _read(n)["rows"]]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    draws = sum(r["method"] == "random" for r in rows) > 1
    out = [
        "| method | iterations | validation accuracy (%) | distillation CPU s | "
        "distillation wall s |",
        "|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (methods.index(r["method"]), r["iterations"])):
        name = f"random, draw {r['seed']}" if r["method"] == "random" and draws else r["method"]
        out.append(
            f"| {name} | {r['iterations']} | {_pm(r['mean'], r['std'])} | "
            f"{r['distill_cpu_s']:.0f} | {r['distill_wall_s']:.0f} |"
        )
    return "\n".join(out)


def full_recipe() -> str:
    out = [
        "| recipe | batch | epochs | augmentation | image-steps | validation accuracy (%) | "
        "seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in _read("full_recipe_digits.json")["validation"]:
        p = r["protocol"]
        out.append(
            f"| {r['name']} | {p['batch_size']} | {p['epochs']} | {p['augment'] or 'none'} | "
            f"{r['image_steps']:,} | {_pm(r['mean'], r['std'])} | {r['seconds']:.0f} |"
        )
    return "\n".join(out)


def continual() -> str:
    results = _read("app-continual-digits/continual.json")["results"]
    steps = results[0]["steps"]
    best = max(r["final"][0] for r in results)
    head = " | ".join(f"step {i}" for i in range(1, steps)) + f" | step {steps} (final)"
    out = [f"| memory by | {head} | seconds |", "|---|" + "---|" * (steps + 1)]
    for r in results:
        curve = " | ".join(f"{100 * a:.2f}" for a in r["mean_curve"][:-1])
        final = _bold(_pm(*r["final"]), r["final"][0] == best)
        out.append(f"| {r['method']} | {curve} | {final} | {r['seconds']:.0f} |")
    return "\n".join(out)


def federated() -> str:
    results = _read("app-federated-digits/federated.json")["results"]
    methods = [o["method"] for o in results[0]["one_shot"]]
    rounds = results[0]["fedavg"]["rounds"]
    out = [
        "| α | union (images) | " + " | ".join(f"{m} upload" for m in methods)
        + f" | bytes uploaded | FedAvg after {rounds} rounds | FedAvg bytes |",
        "|---|---|" + "---|" * len(methods) + "---|---|---|",
    ]  # fmt: skip
    for r in results:
        shots = {o["method"]: o for o in r["one_shot"]}
        first, last = shots[methods[0]], r["fedavg"]["curve"][-1]
        uploads = " | ".join(_pm(shots[m]["mean"], shots[m]["std"]) for m in methods)
        out.append(
            f"| {r['alpha']:g} | {first['images']} | {uploads} | {first['bytes']:,} | "
            f"{100 * last['accuracy']:.2f} | {last['bytes']:,} |"
        )
    return "\n".join(out)


def nas() -> str:
    d = _read("app-nas-digits/nas.json")
    best = {k: max(p[k] for p in d["proxies"]) for k in ("spearman", "kendall")}
    out = [
        "| proxy | images | Spearman | Kendall | top pick's test accuracy (full training) | "
        "proxy build + training s |",
        "|---|---|---|---|---|---|",
    ]
    for p in d["proxies"]:
        ranks = " | ".join(_bold(f"{p[k]:.3f}", p[k] == best[k]) for k in ("spearman", "kendall"))
        out.append(
            f"| {p['proxy']} | {p['num_images']} | {ranks} | {100 * p['top_pick_test']:.2f} | "
            f"{p['seconds']:.0f} |"
        )
    out.append(
        f"| (full data's own pick) | the training split less 20 % | 1 | 1 | "
        f"{100 * d['full_pick_test']:.2f} | {d['full']['seconds']:.0f} |"
    )
    return "\n".join(out)


def _setting(pick: str) -> str:
    """``lr=0.05,wd=0.0001`` -> ``lr 0.05, wd 1e-4``."""
    parts = dict(kv.split("=") for kv in pick.split(","))
    mantissa, exponent = f"{float(parts['wd']):.0e}".split("e")
    return f"lr {float(parts['lr']):g}, wd {mantissa}e{int(exponent)}"


def hcdc(name: str = "app-hcdc-digits-close/hcdc.json") -> str:
    d = _read(name)
    best = {k: max(c[k] for c in d["candidates"]) for k in ("spearman", "kendall")}
    real = d["real"]
    out = [
        "| validation set | images | Spearman | Kendall | pick | pick's test % | build s |",
        "|---|---|---|---|---|---|---|",
        f"| real split | {real['num_images']} | 1 | 1 | {_setting(real['pick'])} | "
        f"{100 * real['pick_test']:.2f} | – |",
    ]
    for c in d["candidates"]:
        ranks = " | ".join(_bold(f"{c[k]:.3f}", c[k] == best[k]) for k in ("spearman", "kendall"))
        out.append(
            f"| {HCDC_NAMES.get(c['candidate'], c['candidate'])} | {c['num_images']} | {ranks} | "
            f"{_setting(c['pick'])} | {100 * c['pick_test']:.2f} | {c['build_seconds']:.0f} |"
        )
    return "\n".join(out)


TABLES = {
    "demo:ipc1": lambda: demo_choice("demo_choice_ipc1.json", "demo_choice_ipc1_more.json"),
    "demo:ipc10": lambda: demo_choice("demo_choice.json"),
    "demo:full-recipe": full_recipe,
    "app:continual": continual,
    "app:federated": federated,
    "app:nas": nas,
    "app:hcdc": hcdc,
}
