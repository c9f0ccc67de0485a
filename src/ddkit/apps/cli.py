"""`ddkit app NAME ...`: run an application for several methods, write JSON and a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_app_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    app = sub.add_parser(
        "app",
        help="applications: continual learning, architecture search, federated learning, HCDC",
    )
    apps = app.add_subparsers(dest="app", required=True)
    cl = _app(
        apps,
        "continual",
        help="class-incremental learning with a memory built per step by each method",
    )
    cl.add_argument("--methods", default="random,herding,dm", help="comma-separated")
    cl.add_argument("--steps", type=int, default=5, help="class groups (must divide the classes)")
    cl.add_argument("--memory", type=int, default=10, help="memory images per class")
    cl.add_argument("--orders", type=int, default=1, help="class orders (seeded)")
    cl.add_argument("--protocol", default="fast")
    cl.add_argument("--runs", type=int, default=1, help="fresh networks per step")
    cl.add_argument("--iterations", type=int, default=None, help="distillation budget")
    cl.set_defaults(func=run_continual)

    nas = _app(
        apps,
        "nas",
        help="architecture search: does training on a proxy set rank networks as full data?",
    )
    nas.add_argument("--proxies", default="random,herding,kmeans,dm", help="methods/selectors")
    nas.add_argument("--ipc", type=int, default=10)
    nas.add_argument("--iterations", type=int, default=None, help="distillation budget")
    nas.add_argument("--proxy-epochs", type=int, default=300)
    nas.add_argument("--full-epochs", type=int, default=30)
    nas.add_argument("--space", choices=["default", "tiny"], default="default",
                     help="default: 48 ConvNet variants; tiny: 4 (for a quick look)")  # fmt: skip
    nas.add_argument("--val-fraction", type=float, default=0.2)
    nas.set_defaults(func=run_nas)

    fed = _app(
        apps, "federated", help="one-shot distilled uploads from non-IID clients against FedAvg"
    )
    fed.add_argument("--methods", default="random,dm", help="what each client uploads")
    fed.add_argument("--ipc", type=int, default=5, help="images per class each client uploads")
    fed.add_argument("--clients", type=int, default=10)
    fed.add_argument("--alphas", default="0.1,0.5,100", help="Dirichlet concentrations")
    fed.add_argument("--rounds", type=int, default=20, help="FedAvg rounds")
    fed.add_argument("--local-epochs", type=int, default=1, help="FedAvg local epochs per round")
    fed.add_argument("--protocol", default="dc", help="the server's training on the uploads "
                     "(the union is unbalanced: fast's 100 epochs under-train it)")  # fmt: skip
    fed.add_argument("--iterations", type=int, default=None, help="distillation budget")
    fed.set_defaults(func=run_federated)

    hc = _app(
        apps,
        "hcdc",
        help="condensed validation sets that keep a hyperparameter grid's ranking (HCDC)",
    )
    hc.add_argument("--ipc", type=int, default=5, help="validation images per class kept")
    hc.add_argument("--baselines", default="random,dm", help="methods applied to the val split")
    hc.add_argument("--baseline-iterations", type=int, default=None)
    hc.add_argument("--lrs", default="0.003,0.01,0.03,0.1", help="the grid's learning rates")
    hc.add_argument("--weight-decays", default="0.0001,0.001,0.01,0.03",
                    help="the grid's weight decays")  # fmt: skip
    hc.add_argument("--model", default="convnet-w16")
    hc.add_argument("--epochs", type=int, default=50, help="training epochs per grid network")
    hc.add_argument("--iterations", type=int, default=200, help="HCDC iterations")
    hc.add_argument("--terms", type=int, default=10, help="Neumann series terms")
    hc.add_argument("--val-fraction", type=float, default=0.2)
    hc.set_defaults(func=run_hcdc)
    return app


def _app(apps: argparse._SubParsersAction, name: str, help: str) -> argparse.ArgumentParser:
    """The parser of ``ddkit app NAME`` with the options every app shares."""
    parser = apps.add_parser(name, help=help)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=None)
    parser.add_argument("--out", default=f"runs/app-{name}")
    return parser


def _method_names(text: str) -> list[str]:
    """Comma-separated method / selector names, each checked (unknown names fail before any
    work)."""
    from ddkit.methods import METHODS, load_all

    load_all()
    names = [m for m in text.split(",") if m]
    for m in names:
        METHODS.get(m)
    return names


def _floats(text: str, what: str) -> list[float]:
    from ddkit.errors import ConfigError

    try:
        values = [float(v) for v in text.split(",") if v]
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not values or min(values) <= 0:
        raise ConfigError(f"{what} must be positive numbers, got {text!r}")
    return values


def run_hcdc(args: argparse.Namespace) -> int:
    from ddkit.apps.hcdc import calibrated_search, hyperparameter_grid
    from ddkit.data import load_dataset
    from ddkit.io import atomic_write_json, ensure_writable_dir
    from ddkit.plots import plot_hcdc

    baselines = _method_names(args.baselines)
    grid = hyperparameter_grid(
        _floats(args.lrs, "--lrs"), _floats(args.weight_decays, "--weight-decays")
    )
    out = ensure_writable_dir(Path(args.out))
    splits = load_dataset(
        args.dataset, root=args.root, val_fraction=args.val_fraction, seed=args.seed
    )
    result = calibrated_search(
        splits,
        args.ipc,
        grid=grid,
        baselines=baselines,
        baseline_iterations=args.baseline_iterations,
        model=args.model,
        epochs=args.epochs,
        iterations=args.iterations,
        terms=args.terms,
        seed=args.seed,
    )
    result["dataset"] = args.dataset
    atomic_write_json(out / "hcdc.json", result)
    plot_hcdc(result, out / "hcdc.png")
    real = result["real"]
    print(f"{'validation set':<16} {'images':>6} {'spearman':>9} {'kendall':>8} "
          f"{'pick':>20} {'pick test %':>12}")  # fmt: skip
    print(f"{'real split':<16} {real['num_images']:>6} {1:>9.3f} {1:>8.3f} {real['pick']:>20} "
          f"{100 * real['pick_test']:>12.2f}")  # fmt: skip
    for r in result["candidates"]:
        print(f"{r['candidate']:<16} {r['num_images']:>6} {r['spearman']:>9.3f} "
              f"{r['kendall']:>8.3f} {r['pick']:>20} {100 * r['pick_test']:>12.2f}")  # fmt: skip
    hc = result["candidates"][0]
    print(f"scoring the grid on the real split took {real['scoring_seconds']:.3f} s, on the "
          f"HCDC set {hc['scoring_seconds']:.3f} s; training the grid took "
          f"{result['grid_training_seconds']:.0f} s (condensing: {hc['build_seconds']:.0f} s)")  # fmt: skip
    print(f"wrote {out / 'hcdc.json'} and {out / 'hcdc.png'}")
    return 0


def run_federated(args: argparse.Namespace) -> int:
    import torch

    from ddkit.apps.federated import dirichlet_split, fedavg, one_shot
    from ddkit.data import load_dataset
    from ddkit.io import atomic_write_json, ensure_writable_dir
    from ddkit.plots import plot_federated

    methods = _method_names(args.methods)
    alphas = [float(a) for a in args.alphas.split(",") if a]
    out = ensure_writable_dir(Path(args.out))
    splits = load_dataset(args.dataset, root=args.root)
    results = []
    for alpha in alphas:
        g = torch.Generator().manual_seed(args.seed)
        parts = dirichlet_split(splits.train.labels, args.clients, alpha, g)
        print(f"alpha {alpha:g}: client sizes {[len(p) for p in parts]}")
        row = {"alpha": alpha, "clients": args.clients, "sizes": [len(p) for p in parts]}
        row["one_shot"] = [
            one_shot(
                splits,
                parts,
                m,
                args.ipc,
                protocol=args.protocol,
                iterations=args.iterations,
                seed=args.seed,
            )  # fmt: skip
            for m in methods
        ]
        row["fedavg"] = fedavg(
            splits, parts, rounds=args.rounds, local_epochs=args.local_epochs, seed=args.seed
        )
        for one in row["one_shot"]:
            print(f"  {one['method']:<8} one upload, {one['bytes']:>9,} bytes: "
                  f"{100 * one['mean']:.2f} ± {100 * one['std']:.2f} %")  # fmt: skip
        last = row["fedavg"]["curve"][-1]
        print(f"  FedAvg   {args.rounds} rounds, {last['bytes']:>9,} bytes: "
              f"{100 * last['accuracy']:.2f} %")  # fmt: skip
        results.append(row)
        atomic_write_json(out / "federated.json", {"dataset": args.dataset, "results": results})
    plot_federated(results, out / "federated.png")
    print(f"wrote {out / 'federated.json'} and {out / 'federated.png'}")
    return 0


def run_nas(args: argparse.Namespace) -> int:
    from ddkit.apps.nas import architecture_search, architecture_space, proxy_sets
    from ddkit.data import load_dataset
    from ddkit.io import atomic_write_json, ensure_writable_dir
    from ddkit.plots import plot_proxy_ranking

    methods = _method_names(args.proxies)
    out = ensure_writable_dir(Path(args.out))
    splits = load_dataset(
        args.dataset, root=args.root, val_fraction=args.val_fraction, seed=args.seed
    )
    space = (
        architecture_space()
        if args.space == "default"
        else architecture_space(
            depths=(1, 2), widths=(16,), norms=("in", "none"), pools=("avg",), activations=("relu",)
        )  # fmt: skip
    )
    proxies = proxy_sets(splits, methods, args.ipc, iterations=args.iterations, seed=args.seed)
    result = architecture_search(
        splits,
        proxies,
        architectures=space,
        proxy_epochs=args.proxy_epochs,
        full_epochs=args.full_epochs,
        seed=args.seed,
    )
    result.update({"dataset": args.dataset, "ipc": args.ipc, "iterations": args.iterations})
    atomic_write_json(out / "nas.json", result)
    plot_proxy_ranking(result, out / "nas.png")
    print(f"{'proxy':<10} {'images':>6} {'spearman':>9} {'kendall':>8} {'top pick test %':>16}")
    for r in result["proxies"]:
        print(f"{r['proxy']:<10} {r['num_images']:>6} {r['spearman']:>9.3f} {r['kendall']:>8.3f} "
              f"{100 * r['top_pick_test']:>16.2f}")  # fmt: skip
    print(f"full data's own pick (by validation): {100 * result['full_pick_test']:.2f} % test")
    print(f"wrote {out / 'nas.json'} and {out / 'nas.png'}")
    return 0


def _finished_rows(path: Path) -> list[dict]:
    """The rows of an earlier run's results file, or none if it is absent or unreadable."""
    import json

    try:
        return list(json.loads(path.read_text())["results"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _matches(row: dict, settings: dict, orders: int) -> bool:
    """Whether a finished row was made with exactly these settings (so a rerun can keep it)."""
    return (
        all(row.get(k) == v for k, v in settings.items()) and len(row.get("curves", ())) == orders
    )


def run_continual(args: argparse.Namespace) -> int:
    from ddkit.apps.continual import continual_learning
    from ddkit.data import load_dataset
    from ddkit.io import atomic_write_json, ensure_writable_dir
    from ddkit.plots import plot_continual

    methods = _method_names(args.methods)
    out = ensure_writable_dir(Path(args.out))
    splits = load_dataset(args.dataset, root=args.root)
    previous = _finished_rows(out / "continual.json")
    results = []
    for m in methods:
        settings = {
            "method": m, "dataset": splits.train.spec.name, "steps": args.steps,
            "memory": args.memory, "protocol": args.protocol, "iterations": args.iterations,
            "meta": {"seed": args.seed, "runs": args.runs, "options": {}},
        }  # fmt: skip
        done = [r for r in previous if _matches(r, settings, args.orders)]
        if done:
            print(f"{m}: kept from {out / 'continual.json'} (same settings)")
            results.append(done[0])
            continue
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
