"""The lab history's tables (docs/benchmarks/history.md): tuning runs on validation splits and
first figures, each row picked from its results file (``_tune.py``) and labelled as the study
reads it."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from _campaigns import RESULTS
from _tune import find, loss, pm, read, table, tune_row

IDM = "tune_idm_ipc10.json"
PUBLISHED = " (published)"


def _loss_or_dash(r: dict[str, Any], spec: str = ".3g") -> str:
    return loss(r, spec) if r["iterations"] else "–"


def idm_weight() -> str:
    """IDM's class-aware term's weight (``tune_idm_ipc10.json``), mnist5k and digits at IPC 10."""
    p = PUBLISHED
    rows = [
        (("mnist5k", "0 (random real images, factor 1)", "–", "–"), tune_row(IDM, 0, 0)),
        (("mnist5k", "0 (IDM's 2x2 multi-formation encoding of real images)", "–", "–"),
         tune_row(IDM, 0, 1)),
        (("mnist5k", "150", "0.2" + p, "0.5" + p), tune_row(IDM, 1, 1)),
        (("mnist5k", "150", "0.2", "0"), tune_row(IDM, 1, 0)),
        (("mnist5k", "150", "1.0", "0"), tune_row(IDM, 2, 1)),
        (("mnist5k", "150", "1.0", "0.01"), tune_row(IDM, 2, 0)),
        (("digits", "0 (random real images)", "–", "–"), tune_row(IDM, 3, 0)),
        (("digits", "300", "0.2" + p, "0.5" + p), tune_row(IDM, 4, 2)),
        (("digits", "300", "0.2", "0.05"), tune_row(IDM, 4, 1)),
        (("digits", "300", "0.2", "0"), tune_row(IDM, 4, 0)),
        (("digits", "300", "1.0", "0.05"), tune_row(IDM, 5, 1)),
        (("digits", "300", "1.0", "0.01"), tune_row(IDM, 5, 0)),
    ]  # fmt: skip
    head = ("dataset, IPC 10", "iterations", "lr_img", "ce_weight",
            "loss per class, first → last 10 %", "validation acc (%)")  # fmt: skip
    return table(head, rows, lambda r: (_loss_or_dash(r), pm(r)), best=lambda r: r["val_mean"],
                 group=lambda labels: labels[0])  # fmt: skip


def mtt_ipc1() -> str:
    """MTT's step-size bottleneck at mnist5k IPC 1 (``tune_mtt_mnist5k_ipc1_*.json``)."""
    f = "tune_mtt_mnist5k_ipc1_{}.json".format
    rows = [
        (("1e-6 (old preset)", "2", "10"), find(f("lr_lr"), value=1e-6)),
        (("1e-5", "2", "10"), find(f("lr_lr"), value=1e-5)),
        (("1e-4", "2", "10"), find(f("lr_lr"), value=1e-4)),
        (("1e-5", "1", "10"), find(f("expert_epochs"), value=1)),
        (("1e-5", "1", "20"), find(f("syn_steps"), value=20)),
    ]
    head = ("lr_lr", "M (expert epochs)", "N (syn steps)", "loss, first → last 10 %",
            "learned lr", "validation acc (%)")  # fmt: skip
    return table(head, rows, lambda r: (loss(r, ".3f"), f"{r['lr']:.3f}", pm(r, digits=1)),
                 best=lambda r: r["val_mean"])  # fmt: skip


def mtt_ipc10() -> str:
    """MTT at mnist5k IPC 10 (``tune_mtt_mnist5k_ipc10.json``): the unroll and the budget."""
    f = "tune_mtt_mnist5k_ipc10.json"
    rows = [
        (("10 (preset)", "300 (suite budget)"), tune_row(f, 0, 0)),
        (("20", "300"), tune_row(f, 0, 1)),
        (("10", "900"), tune_row(f, 1, 0)),
    ]
    head = ("N (syn steps)", "iterations", "loss, first → last 10 %", "learned lr",
            "validation acc (%)")  # fmt: skip
    return table(head, rows, lambda r: (loss(r, ".3f"), f"{r['lr']:.3f}", pm(r)))


def suite_excerpt(dataset: str, methods: tuple[str, ...], ipcs: tuple[int, ...]) -> str:
    """Rows of the ``standard`` suite's results (the methods at each IPC) with their lead over
    random real images of the same IPC, as the suite's table computes it (``*``: beyond the two
    standard deviations combined); '–' where a cell has not run."""
    rows = {(r["method"], r["ipc"]): r for r in read("standard.json")["rows"]
            if r["dataset"] == dataset and "error" not in r}  # fmt: skip
    head = ["method"] + [h for ipc in ipcs for h in (f"IPC {ipc} (%)", "vs random")]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in methods:
        cells = []
        for ipc in ipcs:
            r, base = rows.get((method, ipc)), rows[("random", ipc)]
            if r is None:
                cells += ["–", "–"]
                continue
            diff = 100 * (r["mean"] - base["mean"])
            clear = " *" if diff > 100 * (r["std"] + base["std"]) else ""
            cells += [f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}", f"{diff:+.2f}{clear}"]
        out.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(out)


PERFORMANCE = ("bptt", "kip", "rfad", "frepo", "rtp")


def bptt_start() -> str:
    """Why bptt fell below random real images at mnist5k IPC 10 (``tune_bptt_mnist5k_ipc10_*``)."""
    f = "tune_bptt_mnist5k_ipc10_{}.json".format
    rows = [
        (("the random real images it starts from", "–", "–"), find(f("start"), iterations=0)),
        (("bptt, the preset", "20", "0.01"), find(f("lr_img"), value=0.01)),
        (("bptt", "20", "0.001"), find(f("lr_img"), value=0.001)),
        (("bptt", "60", "0.001"), find(f("unroll"), value=60)),
        (("bptt, student on DSA-augmented images (`augment=auto`)", "20", "0.001"),
         find(f("augment"), value="auto")),
    ]  # fmt: skip
    head = ("set", "unroll (steps)", "lr_img", "distillation loss, first → last 10 %",
            "validation accuracy (%)")  # fmt: skip
    return table(head, rows, lambda r: (_loss_or_dash(r, ".2f"), pm(r)))


def bptt_student() -> str:
    """bptt's unrolled student: SGD, momentum, Adam (``tune_bptt_mnist5k_ipc10_*``)."""
    f = "tune_bptt_mnist5k_ipc10_{}.json".format
    rows = [
        (("the random real images it starts from", "–"), find(f("start"), iterations=0)),
        (("SGD, 0.01 (before)", "0.001"), find(f("lr_img"), value=0.001)),
        (("momentum 0.9, 0.01", "0.001"), find(f("inner_momentum"), value="momentum")),
        (("Adam, 0.001", "0.001"), find(f("inner_adam"), value="adam")),
        (("Adam, 0.001", "0.01"), find(f("adam_lr_img"), value=0.01)),
    ]
    head = ("student (`inner`, `syn_lr`)", "lr_img", "distillation loss, first → last 10 %",
            "validation accuracy (%)")  # fmt: skip
    return table(head, rows, lambda r: (_loss_or_dash(r, ".2f"), pm(r)),
                 best=lambda r: r["val_mean"])  # fmt: skip


def _changes(head: tuple[str, ...], rows: list[tuple[str, str, list[dict]]], extra=None) -> str:
    """A table of changes from a preset: per row its label, (``extra``'s cells of its first
    result,) the validation accuracy of each of its results (joined by ' / ') and its file;
    bold: the best single result."""
    best = max(r["val_mean"] for *_, results in rows for r in results)
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, name, results in rows:
        accs = " / ".join(f"**{pm(r)}**" if r["val_mean"] == best and len(results) == 1 else pm(r)
                          for r in results)  # fmt: skip
        cells = [label, *(extra(results[0]) if extra else ()), accs, f"`{name}`"]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def frepo_mnist5k() -> str:
    """FRePo's changes from its preset at mnist5k IPC 1 (``tune_frepo_mnist5k_ipc1_*``)."""
    f = "tune_frepo_mnist5k_ipc1_{}.json".format
    rows = [
        ("none (the preset)", f("lr_net"), [find(f("lr_net"), value=0.01)]),
        ("online SGD lr 0.001 / 0.0001", f("lr_net"),
         [find(f("lr_net"), value=0.001), find(f("lr_net"), value=0.0001)]),
        ("online networks by Adam, lr 3e-4 (the authors' optimiser; `optimizer_net=adam`, new)",
         f("optimizer_net"), [find(f("optimizer_net"), value="adam")]),
        ("20 online steps before a network is replaced", f("max_online_steps"),
         [find(f("max_online_steps"), value=20)]),
        ("lr_img 0.001", f("lr_img"), [find(f("lr_img"), value=0.001)]),
        ("lr_img 0.01", f("lr_img"), [find(f("lr_img"), value=0.01)]),
        ("lr_img 0.03", f("lr_img_large"), [find(f("lr_img_large"), value=0.03)]),
        ("lr_img 0.1", f("lr_img_large"), [find(f("lr_img_large"), value=0.1)]),
        ("lr_img 0.3 / 1.0", f("lr_img_larger"),
         [find(f("lr_img_larger"), value=0.3), find(f("lr_img_larger"), value=1.0)]),
        ("lr_img 0.1, 1,500 iterations", f("lr0.1_1500"), [find(f("lr0.1_1500"), value=0.1)]),
        ("lr_img 0.1, online networks by Adam, lr 3e-4", f("lr0.1_adam"),
         [find(f("lr0.1_adam"), value="adam")]),
    ]  # fmt: skip
    head = ("change from the preset (lr_img 0.003, online SGD lr 0.01, 100 online steps)",
            "accuracy (%)", "results file")  # fmt: skip
    return _changes(head, rows)


def rfad_mnist5k() -> str:
    """RFAD's changes from its preset at mnist5k IPC 1 (``tune_rfad_mnist5k_ipc1_*``)."""
    f = "tune_rfad_mnist5k_ipc1_{}.json".format
    rows = [
        ("none (the preset)", f("lr_img"), [find(f("lr_img"), value=0.001)]),
        *((f"lr_img {v:g}", f("lr_img"), [find(f("lr_img"), value=v)]) for v in (0.01, 0.03, 0.1)),
        ("lr_img 0.1, random ConvNets with instance norm (`norm=in`, new)", f("norm_in"),
         [find(f("norm_in"), value="in")]),
    ]  # fmt: skip
    head = ("change from the preset (lr_img 0.001, un-normalised random ConvNets)",
            "Platt loss, last 10 %", "accuracy (%)", "results file")  # fmt: skip
    return _changes(head, rows, extra=lambda r: (f"{r['loss_last']:.2f}",))


def kernel_transfer() -> str:
    """KIP's set scored by its own kernel and by a ConvNet (``kernel_transfer_mnist5k_ipc1_fc``)."""
    data = read("kernel_transfer_mnist5k_ipc1_fc.json")
    best = max(r["krr"] for r in data["rows"])
    out = [
        "| set | kernel ridge regression (%) | ConvNet-3 trained on it (%) |",
        "|---|---|---|",
    ]
    for r in data["rows"]:
        krr = f"{100 * r['krr']:.2f}"
        out.append(
            f"| {r['set']}, {10 * r['ipc']} images | {f'**{krr}**' if r['krr'] == best else krr} | "
            f"{pm(r, 'convnet')} |"
        )
    return "\n".join(out)


def _acc(r: dict[str, Any]) -> str:
    return f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}"


def label_learning() -> str:
    """Learned labels for kip and frepo on digits under ``fast`` and ``mse``
    (``bench_label_learning.py``, ``label_learning_digits.json``); bold: the best of each IPC's
    column."""
    rows = read("label_learning_digits.json")["rows"]
    best = {(r["ipc"], k): max(x[k]["mean"] for x in rows if x["ipc"] == r["ipc"])
            for r in rows for k in ("fast", "mse")}  # fmt: skip
    out = ["| IPC | set | `fast` | `mse` |", "|---|---|---|---|"]
    for r in rows:
        name = "random real" if r["method"] == "random" else r["method"]
        name += ", learned labels" if r.get("learn_labels") else ""
        cells = [f"**{_acc(r[k])}**" if r[k]["mean"] == best[(r["ipc"], k)] else _acc(r[k])
                 for k in ("fast", "mse")]  # fmt: skip
        out.append(f"| {r['ipc']} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def protocol_targets() -> str:
    """rtp's set under stored and hard targets, short and long (``bench_protocol_targets.py``,
    ``protocol_targets_digits.json``); bold: the best of each column."""
    rows = read("protocol_targets_digits.json")["rows"]
    columns = list(dict.fromkeys((r["protocol"], r["epochs"], r["targets"]) for r in rows))
    by = {(r["method"], r["protocol"], r["epochs"], r["targets"]): r for r in rows}
    head, seen = [], set()
    for protocol, epochs, targets in columns:
        first = protocol not in seen
        seen.add(protocol)
        head.append(
            f"`{protocol}`" + (f" ({epochs} epochs)" if first else "") + f", {targets} labels"
        )
    out = ["| set | " + " | ".join(head) + " |", "|---|" + "---|" * len(columns)]
    best = {c: max(r["mean"] for k, r in by.items() if k[1:] == c) for c in columns}
    for method in dict.fromkeys(r["method"] for r in rows):
        cells = []
        for c in columns:
            r = by[(method, *c)]
            cells.append(f"**{_acc(r)}**" if r["mean"] == best[c] else _acc(r))
        name = "random real" if method == "random" else method
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def rtp_label_scale() -> str:
    """How hard rtp's recalled labels start (``tune_rtp_*_label_scale*.json``; the random real
    images of mnist5k's validation split from ``kernel_transfer_mnist5k_ipc1_fc.json``, the same
    split and recipe); bold: the best set."""
    digits = "tune_rtp_digits_ipc1_label_scale{}.json".format
    mnist5k = "tune_rtp_mnist5k_ipc1_label_scale.json"
    random_mnist5k = next(r for r in read("kernel_transfer_mnist5k_ipc1_fc.json")["rows"]
                          if r["set"] == "random real")  # fmt: skip
    rows = {
        "digits": [pm(find("tune_digits_ipc1_random_start.json", iterations=0)),
                   *(find(digits(s), value=v) for s, v in (("", 3), ("", 10), ("30", 30)))],
        "mnist5k": [pm(random_mnist5k, "convnet"),
                    find(mnist5k, value=3), None, find(mnist5k, value=30)],
    }  # fmt: skip
    best = max(r["val_mean"] for cells in rows.values() for r in cells[1:] if r)
    out = [
        "| dataset, IPC 1 | random real | rtp, label_scale 3 | 10 | 30 |",
        "|---|---|---|---|---|",
    ]
    for dataset, (random, *sets) in rows.items():
        cells = ["–" if r is None else f"**{pm(r)}**" if r["val_mean"] == best else pm(r)
                 for r in sets]  # fmt: skip
        out.append(f"| {dataset} | {random} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def study_mnist() -> str:
    """Why dc and dsa fall short at MNIST IPC 1 (``benchmarks/studies/study_mnist.py``,
    ``study_mnist_ipc1.json``): each saved set under each evaluation recipe; empty where a set
    was evaluated under the suite's recipe only."""
    rows = read("study_mnist_ipc1.json")["rows"]
    by = {(r["set"].removesuffix(".ddset"), r["protocol"], r["model"]): r for r in rows}
    recipes = [("dsa", "convnet"), ("dc_aug", "convnet"), ("dc", "convnet"), ("dsa", "convnet-w32")]
    head = ("set", "protocol `dsa` (the suite's: 1000 epochs, DSA)",
            "`dc_aug` at 300 epochs (DC's MNIST augmentation; the protocol's epochs then)",
            "`dc` (300 epochs, no augmentation)", "`dsa`, evaluated at width 32")  # fmt: skip
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    sets = [("dc_it0", "random real start (both methods)")] + [
        (f"{m}_it{i}", f"{m}, {i} iterations") for m in ("dc", "dsa") for i in (50, 100, 200)
    ]
    for key, name in sets:
        cells = [_acc(by[(key, *c)]) if (key, *c) in by else "" for c in recipes]
        out.append((f"| {name} | " + " | ".join(cells) + " |").replace("|  |", "| |"))
    return "\n".join(out).replace("|  |", "| |")


#: the ``paper`` suite's cells finished on the fifth lent GPU, and the seeds it ran of each
FIFTH_GPU = (
    (1, "dc", (1,)), (1, "dsa", (1,)), (1, "idm", (1,)),
    (10, "dc", (1,)), (10, "dsa", (1,)), (10, "herding", (1,)), (10, "kcenter", (0, 1)),
)  # fmt: skip


def _seed(cell: Path, seed: int) -> tuple[list[float], float]:
    """A cell's seed: its networks' accuracies and its distillation seconds."""
    folder = cell / f"seed{seed}" if seed else cell
    accs = [json.loads(f.read_text())["accuracy"] for f in sorted(folder.glob("eval*.json"))]
    return accs, json.loads((folder / "distill.json").read_text())["seconds"]


def fifth_gpu() -> str:
    """The paper suite's MNIST seeds the fifth lent GPU ran (``paper-cells/``): each new seed's
    networks and distillation, and the cell's seeds pooled."""
    out = [
        "| MNIST | cell | the new seed (GPU, 3 networks) | distillation on the GPU | "
        "both seeds (2 x 3) |",
        "|---|---|---|---|---|",
    ]
    for ipc, method, seeds in FIFTH_GPU:
        cell = RESULTS / "paper-cells" / f"mnist-{method}-ipc{ipc}"
        runs = [_seed(cell, s) for s in seeds]
        both = [a for s in (0, 1) for a in _seed(cell, s)[0]]
        name = f"seed {seeds[0]}" if len(seeds) == 1 else "seeds " + " and ".join(map(str, seeds))
        out.append(
            f"| IPC {ipc} | {method}, {name} | {' and '.join(_pstd(a) for a, _ in runs)} | "
            f"{' and '.join(f'{s:.1f} s' for _, s in runs)} | {_pstd(both)} |"
        )
    return "\n".join(out)


def _pstd(accuracies: list[float]) -> str:
    return f"{100 * statistics.fmean(accuracies):.2f} ± {100 * statistics.pstdev(accuracies):.2f}"


TABLES = {
    "history:fifth-gpu": fifth_gpu,
    "history:study-mnist": study_mnist,
    "history:label-learning": label_learning,
    "history:protocol-targets": protocol_targets,
    "history:rtp-label-scale": rtp_label_scale,
    "history:frepo-mnist5k": frepo_mnist5k,
    "history:rfad-mnist5k": rfad_mnist5k,
    "history:kernel-transfer": kernel_transfer,
    "history:bptt-start": bptt_start,
    "history:bptt-student": bptt_student,
    "history:performance-mnist5k": lambda: suite_excerpt("mnist5k", PERFORMANCE, (1, 10)),
    "history:performance-digits": lambda: suite_excerpt("digits", PERFORMANCE, (1, 10, 50)),
    "history:idm-weight": idm_weight,
    "history:mtt-ipc1": mtt_ipc1,
    "history:mtt-ipc10": mtt_ipc10,
}
