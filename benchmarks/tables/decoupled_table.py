"""Decoupled distillation and soft labels with fair accounting (docs/benchmarks/families.md):
per (dataset, IPC) the teacher, every set under each recipe and the storage rows
(``bench_decoupled.py``'s ``render_files``; a later file's cell replaces an earlier one's)."""

from __future__ import annotations

from _campaigns import campaign, results

FILES = (
    "decoupled.json",
    "decoupled_digits_ipc50_dm.json",
    "decoupled_mnist5k.json",
    "decoupled_mnist5k_ipc10_rded.json",
    "decoupled_mnist5k_ipc10_dm.json",
    "decoupled_mnist5k_ipc50.json",
    "decoupled_mnist5k_ipc50_dm.json",
)


def decoupled() -> str:
    named = ", ".join(f"`{name}`" for name in FILES)
    head = f"From the results files {named} (`benchmarks/results/`), in that order."
    return head + "\n\n" + campaign("bench_decoupled").render_files(results(*FILES))


TABLES = {"decoupled": decoupled}
