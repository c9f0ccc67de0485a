"""``ddkit app class-count``: how many training images each class has (a test application)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ddkit.apps.base import App, register_app


def class_counts(dataset: str, root: str | None = None) -> dict[str, int]:
    """Training images per class name."""
    from ddkit.data import load_dataset

    train = load_dataset(dataset, root=root).train
    return dict(zip(train.spec.class_names, train.class_counts))


@register_app
class ClassCountApp(App):
    name = "class-count"
    help = "training images per class (a test application)"

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from ddkit.io import atomic_write_json, ensure_writable_dir

        counts = class_counts(args.dataset, args.root)
        out = ensure_writable_dir(Path(args.out))
        atomic_write_json(out / "counts.json", counts)
        print(f"wrote {out / 'counts.json'}")
        return 0
