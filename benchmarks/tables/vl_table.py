"""Image-text retrieval (issue 71): recall@1/5/10 both ways of every set at each size
(``bench_vl_recall.py``'s ``render``, over its two results files); random pairs beside the full
data on the scenes and vl-mtt's published form there (issue 86)."""

from __future__ import annotations

import json

from _campaigns import RESULTS, campaign, results


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


TABLES = {
    "vl-table": vl_table,
    "vl-table:scenes": scenes_table,
    "vl-table:published": published_table,
}
