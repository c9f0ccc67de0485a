"""Image-text retrieval (issue 71): recall@1/5/10 both ways of every set at each size
(``bench_vl_recall.py``'s ``render``, over its two results files); random pairs beside the full
data on the scenes and vl-mtt's published form there (issue 86)."""

from __future__ import annotations

import json

from _campaigns import RESULTS, campaign, results

from ddkit.methods.vision_language.mtt import VLMTTConfig


def vl_table() -> str:
    vl = campaign("bench_vl_recall")
    runs = vl.joined_results(results("vl_recall.json", "vl_recall_500_learned.json"), vl.SETTINGS)
    return vl.render([c for r in runs for c in r["cells"]])


def scenes_table() -> str:
    """``scenes-mnist-fashion``: the sizes measured so far."""
    names = ("vl_scenes_random.json", "vl_scenes_random_500.json")
    cells = [
        cell
        for name in names
        if (RESULTS / name).exists()
        for cell in json.loads((RESULTS / name).read_text())["cells"]
    ]
    return campaign("bench_vl_recall").render(cells)


def published_table() -> str:
    """``scenes-mnist5k``, pretrained frozen towers: vl-mtt in its published form (and with
    LoRS's learned similarity) at 100 and 500 pairs, 300 iterations."""
    vl = campaign("bench_vl_recall")
    names = ("vl_scenes5k_100_it300.json", "vl_scenes5k_500_it300.json")
    runs = vl.joined_results(results(*names), vl.SETTINGS)
    return vl.render([c for r in runs for c in r["cells"]])


def iterations_table() -> str:
    """The published form at 100 pairs with 1,000 iterations (its own random and full rows)."""
    vl = campaign("bench_vl_recall")
    run = json.loads((RESULTS / "vl_scenes5k_100_it1000.json").read_text())
    return vl.render(run["cells"])


#: vl-mtt's rates chosen on a validation split of scenes-mnist5k (``--val-fraction 0.2``, 100
#: pairs, 300 iterations, 2 seeds): the files, each one setting
RATES = ("tune_vl_scenes5k_100_v0.json", "tune_vl_scenes5k_100_v1.json",
         "tune_vl_scenes5k_100_v2.json")  # fmt: skip


def rates_table() -> str:
    """R@1 both ways on the validation split of each rate setting, random pairs beside."""
    out = ["| rates (images, output-space text) | pairs of | i2t R@1 | t2i R@1 | distil s |",
           "|---|---|---|---|---|"]  # fmt: skip
    for name in RATES:
        run = json.loads((RESULTS / name).read_text())
        given = run["vl_mtt_set"]
        rates = ", ".join(
            str(given[k]) if k in given else f"{getattr(VLMTTConfig(), k):g} (default)"
            for k in ("lr_img", "lr_feat")
        )
        for cell in run["cells"]:
            for r in cell["report"]["results"]:
                own = r["model"] == cell["cell"]
                what = rates if own else "–"
                recalls = " | ".join(
                    f"{100 * r[m]['mean']:.1f} ± {100 * r[m]['std']:.1f}"
                    for m in ("i2t_r1", "t2i_r1")
                )
                cost = f"{cell['distill_seconds']:.0f}" if own else "–"
                out.append(f"| {what} | {r['model']} | {recalls} | {cost} |")
    return "\n".join(out)


TABLES = {
    "vl-table": vl_table,
    "vl-table:scenes": scenes_table,
    "vl-table:published": published_table,
    "vl-table:rates": rates_table,
    "vl-table:iterations": iterations_table,
}
