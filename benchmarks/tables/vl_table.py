"""Image-text retrieval (issue 71): recall@1/5/10 both ways of every set at each size
(``bench_vl_recall.py``'s ``render``, over its two results files)."""

from __future__ import annotations

from _campaigns import campaign, results


def vl_table() -> str:
    vl = campaign("bench_vl_recall")
    runs = vl.joined_results(results("vl_recall.json", "vl_recall_500_learned.json"), vl.SETTINGS)
    return vl.render([c for r in runs for c in r["cells"]])


TABLES = {"vl-table": vl_table}
