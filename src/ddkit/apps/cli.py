"""`ddkit app NAME ...`: run an application for several methods, write JSON and a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_app_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    app = sub.add_parser("app", help="applications: continual learning, ...")
    apps = app.add_subparsers(dest="app", required=True)
    cl = apps.add_parser(
        "continual",
        help="class-incremental learning with a memory built per step by each method",
    )
    cl.add_argument("--dataset", default="digits")
    cl.add_argument("--methods", default="random,herding,dm", help="comma-separated")
    cl.add_argument("--steps", type=int, default=5, help="class groups (must divide the classes)")
    cl.add_argument("--memory", type=int, default=10, help="memory images per class")
    cl.add_argument("--orders", type=int, default=1, help="class orders (seeded)")
    cl.add_argument("--protocol", default="fast")
    cl.add_argument("--runs", type=int, default=1, help="fresh networks per step")
    cl.add_argument("--iterations", type=int, default=None, help="distillation budget")
    cl.add_argument("--seed", type=int, default=0)
    cl.add_argument("--root", default=None)
    cl.add_argument("--out", default="runs/app-continual")
    cl.set_defaults(func=run_continual)
    return app


def run_continual(args: argparse.Namespace) -> int:
    from ddkit.apps.continual import continual_learning
    from ddkit.data import load_dataset
    from ddkit.io import atomic_write_json, ensure_writable_dir
    from ddkit.methods import METHODS, load_all
    from ddkit.plots import plot_continual

    load_all()
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        METHODS.get(m)  # unknown names fail before any work
    out = ensure_writable_dir(Path(args.out))
    splits = load_dataset(args.dataset, root=args.root)
    results = []
    for m in methods:
        print(f"{m}: {args.steps} steps, {args.memory} images per class in memory")
        r = continual_learning(
            splits,
            m,
            steps=args.steps,
            memory=args.memory,
            orders=args.orders,
            protocol=args.protocol,
            runs=args.runs,
            iterations=args.iterations,
            seed=args.seed,
        )
        results.append(r.to_dict())
        atomic_write_json(out / "continual.json", {"results": results})
    plot_continual(results, out / "continual.png")
    print(f"{'method':<10} " + " ".join(f"step {t + 1:>2}" for t in range(args.steps)))
    for r in results:
        print(f"{r['method']:<10} " + " ".join(f"{100 * a:>7.2f}" for a in r["mean_curve"]))
    print(f"wrote {out / 'continual.json'} and {out / 'continual.png'}")
    return 0
