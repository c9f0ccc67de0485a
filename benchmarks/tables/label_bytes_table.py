"""What ddkit's label budgets would store for ImageNet-1K (issue 85), beside the published label
budgets: the bytes come from :func:`ddkit.eval.relabel.view_label_bytes` (the encoding the sets
store, run on shapes alone), the published figures from
``benchmarks/results/label_bytes_imagenet1k_published.json``. Nothing is trained or measured."""

from __future__ import annotations

import json

from _campaigns import RESULTS

from ddkit.data.label_budget import parse_label_budget
from ddkit.eval.relabel import view_label_bytes

PUBLISHED = RESULTS / "label_bytes_imagenet1k_published.json"
IPCS = (10, 50)
#: the budgets computed, beside those the published entries name
BUDGETS = (
    "full",
    "fp16",
    "int8",
    "topk:100+fp16",
    "topk:10+fp16",
    "regen",
    "prune:10+fp16",
    "prune:10+int8",
    "prune:40+fp16",
    "prune:10+logits:100+fp16",
    "prune:10+logits:50+fp16",
    "prune:10+logits:10+fp16",
)


def _gb(nbytes: float) -> str:
    gb = nbytes / 1e9
    return f"{gb:.1f}" if gb >= 10 else f"{gb:.2f}" if gb >= 1 else f"{gb:.3f}"


def _published(entries: list[dict], budget: str, ipc: int) -> str:
    got = [e for e in entries if e["budget"] == budget and e["ipc"] == ipc]
    return "; ".join(f"{e['storage']}, {e['accuracy']:.1f} %" for e in got) or ""


def imagenet1k() -> str:
    """A row per budget: views kept per image, bytes per kept view, the bytes at IPC 10 and 50
    (GB = 10^9 B; GiB = 2^30 B at IPC 50) and the published storage and accuracy of the same
    labels."""
    data = json.loads(PUBLISHED.read_text())
    k, views, entries = data["num_classes"], data["views_per_image"], data["entries"]
    named = [e["budget"] for e in entries if e["budget"]]
    budgets = list(dict.fromkeys([*BUDGETS, *named]))
    out = [
        "| budget | views kept per image | bytes per kept view | IPC 10 (GB) | IPC 50 (GB) | "
        "IPC 50 (GiB) | published, IPC 10 | published, IPC 50 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for budget in budgets:
        b = parse_label_budget(budget)
        kept = b.kept_views(views)
        one = view_label_bytes(budget, 1, views, k) // kept
        total = {ipc: view_label_bytes(budget, ipc * k, views, k) for ipc in IPCS}
        out.append(
            f"| `{budget}` | {kept} | {one:,} | {_gb(total[10])} | {_gb(total[50])} | "
            f"{total[50] / 2**30:.2f} | {_published(entries, budget, 10)} | "
            f"{_published(entries, budget, 50)} |"
        )
    loose = [e for e in entries if not e["budget"]]
    notes = [
        f"Published without a ddkit budget: {e['method']}, {e['storage']} at "
        f"{e['accuracy']:.1f} %" + (f" (IPC {e['ipc']})" if e["ipc"] else " (IPC not stated)")
        for e in loose
    ]
    return "\n".join(out + ([""] + notes if notes else []))


TABLES = {"label-bytes:imagenet1k": imagenet1k}
