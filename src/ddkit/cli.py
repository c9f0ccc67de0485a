"""The `ddkit` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ddkit import distributed, levers
from ddkit.commands import (
    COMMANDS,
    add_common,
    defaults_of,
    device_option,
    discover,
    number_list,
)
from ddkit.errors import ConfigError, DDKitError
from ddkit.methods.config import parse_options
from ddkit.rng import check_seed

# The demo's setting, method and budget: IPC 1, where distillation's gain over random real
# images is large (at IPC 10 on digits it is within a point or two); the method is the best
# validation accuracy (digits less a 20 % validation split, protocol fast, 3 runs; never the
# test split) among candidates whose distillation fits the demo's 3 minutes
# (benchmarks/studies/choose_demo.py, benchmarks/results/demo_choice_ipc1.json; BENCHMARKS.md).
DEMO_IPC = 1
DEMO_METHOD = "dsa"
DEMO_ITERATIONS = 20
# random real images differ from draw to draw at IPC 1: the row pools several draws
DEMO_RANDOM_DRAWS = 5
DEMO_GLOSSARY = (
    "IPC = images per class ({ipc} here); distilled = images optimised so that networks trained "
    "on them do well; random real = {draws} random draws of {ipc} real image(s) per class; DSA = "
    "differentiable siamese augmentation, applied while the evaluation networks train; ± = "
    "standard deviation over the networks (and draws)"
)
# The demo's full-data reference: 300 epochs of protocol dsa on all 1,437 training images take
# minutes that the demo does not have, and no cheaper recipe matched them on a validation split
# (benchmarks/studies/bench_full_recipe.py, BENCHMARKS.md); so the demo shows the recorded row.
DEMO_FULL_RESULTS = "benchmarks/results/standard.json"


def cmd_list(args: argparse.Namespace) -> int:
    from ddkit.bench import SUITES
    from ddkit.commands import Group
    from ddkit.data import DATASETS
    from ddkit.data.codecs import CODECS
    from ddkit.eval import PROTOCOLS
    from ddkit.eval.learners import LEARNERS
    from ddkit.methods import METHODS, load_all
    from ddkit.models import MODELS

    load_all()
    if args.presets:
        return _print_presets(METHODS.get(args.presets))
    sections = [
        ("datasets", DATASETS),
        ("models", MODELS),
        ("protocols", PROTOCOLS),
        ("learners (ddkit evaluate --learners; also the networks mlp, conv1d, resnet1d)", LEARNERS),
        ("codecs (what a set stores: --set codec=SPEC)", CODECS),
        ("suites", SUITES),
    ]
    discover()
    for name in COMMANDS.names():  # applications, audits: the members of command groups
        group = COMMANDS.get(name)
        if isinstance(group, Group):
            group.load()
            sections.append((f"{group.members.kind}s (ddkit {name} NAME)", group.members))
    for title, reg in sections:
        print(f"{title}:")
        for name in reg.names():
            print(f"  {name:<14} {reg.help(name)}")
    for title, lines in _listed_families():
        print(f"{title}:")
        for name, text in lines.items():
            print(f"  {name:<14} {text}")
    for kind in ("distiller", "selector"):
        print("methods:" if kind == "distiller" else "selectors:")
        for name in METHODS.names():
            if METHODS.get(name).kind == kind:
                print(f"  {name:<14} {METHODS.help(name)}")
    return 0


def _listed_families() -> list[tuple[str, dict[str, str]]]:
    """The name lists that are not registries: the augmentation families (the pruning scores
    are listed by ``ddkit prune --help``, the coreset family's own command)."""
    from ddkit.augment.dsa import FAMILY_HELP
    from ddkit.augment.series import SERIES_HELP

    return [
        ("augmentations (--set augment=STRATEGY: families joined by _, e.g. color_crop_cutout)",
         FAMILY_HELP),
        ("series augmentations (--set augment=series, or operations joined by _)", SERIES_HELP),
    ]  # fmt: skip


def _print_presets(cls: Any) -> int:
    """A method's defaults and its presets, each with its source."""
    print(f"{cls.name}: defaults (any dataset, any IPC)")
    for key, value in cls().config_dict().items():
        print(f"  {key} = {value!r}")
    if not cls.presets:
        print("no presets")
    for p in cls.presets:
        values = ", ".join(f"{k}={v!r}" for k, v in p.values.items())
        print(f"dataset {p.dataset}, IPC {p.ipc}: {values}\n  source: {p.source}")
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    from ddkit.data.table import dataset_with_target
    from ddkit.runs import distill_run

    dataset = dataset_with_target(args.dataset, args.target)
    out = args.out or f"runs/{dataset}-{args.method}-ipc{args.ipc}-s{args.seed}"
    if args.dry_run:
        from ddkit.runs import estimate_distill

        cost = estimate_distill(
            dataset=dataset,
            method=args.method,
            ipc=args.ipc,
            iterations=args.iterations,
            seed=args.seed,
            options=parse_options(args.set),
            root=args.root,
            device=device_option(args),
        )
        print(
            cost.line(f"{args.method} on {dataset} at IPC {args.ipc}")
            + f"; nothing written to {out}"
        )
        return 0
    syn = distill_run(
        dataset=dataset,
        method=args.method,
        ipc=args.ipc,
        out=out,
        iterations=args.iterations,
        seed=args.seed,
        resume=args.resume,
        options=parse_options(args.set),
        root=args.root,
        checkpoint_every=args.checkpoint_every,
        progress=not args.quiet,
        log=args.log or (),
        device=device_option(args),
    )
    stored = syn.storage_bytes()["total"]
    print(
        f"wrote {len(syn)} {'images' if syn.spec.modality == 'image' else 'rows'} "
        f"({syn.meta.get('ipc', syn.ipc)} per class; {stored:,} bytes of distilled content"
        + (f"; {_arithmetic(syn.meta)}" if "precision" in syn.meta else "")
        + f") to {out}/synthetic, grid {out}/grid.png"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ddkit.data import load_dataset
    from ddkit.data.synthetic import SyntheticSet, resolve_synthetic_path
    from ddkit.eval import evaluate
    from ddkit.methods import load_all

    load_all()  # methods may register protocols
    path = resolve_synthetic_path(args.path)
    syn = SyntheticSet.load(path)
    dataset, root = _test_data_of(syn, path, args)
    splits = load_dataset(dataset, root=root)
    if syn.spec.modality == "graph" and args.learners is None:
        return _evaluate_graph(syn, splits.test, dataset, path, args)
    if args.learners is not None or syn.spec.modality != "image":
        return _evaluate_learners(syn, splits.test, dataset, path, args)
    models = [m for m in args.models.split(",") if m] if args.models else None
    from ddkit.eval.protocol import get_protocol
    from ddkit.eval.recipe import network_mismatch, set_recipe

    recipe = set_recipe(syn)
    if args.protocol is None:
        print(recipe.describe())
    protocol = (recipe.protocol if args.protocol is None else get_protocol(args.protocol)).with_(
        precision=args.precision, compile=True if args.compile else None
    )
    note = network_mismatch(recipe, models or protocol.models)
    if note:
        print(note)
    report = evaluate(
        syn,
        splits.test,
        protocol,
        models=models,
        runs=args.runs,
        epochs=args.epochs,
        seed=args.seed,
        progress=not args.quiet,
        groups=args.groups,
        device=device_option(args),
    )
    print(
        f"{syn.meta.get('method', '?')} on {dataset}, {len(syn)} images "
        f"({syn.storage_bytes()['total']:,} bytes), protocol {report.protocol.name} "
        f"({report.protocol.epochs} epochs, lr {report.lr:g}, {_arithmetic(report.meta)}), "
        "final-epoch test accuracy:"
    )
    print(report.table())
    return _write_eval(report, path, args)


def _arithmetic(meta: dict[str, Any]) -> str:
    """How a run computed (ddkit.levers), as recorded in its meta: e.g. "bf16, compiled"."""
    words = [str(meta.get("precision", "fp32"))] + (["compiled"] if meta.get("compile") else [])
    return ", ".join(words)


def _write_eval(report: Any, path: Path, args: argparse.Namespace) -> int:
    """Write an evaluation report to ``--out``, else ``eval.json`` in the run folder (rank 0
    only, atomically), and say where."""
    from ddkit.io import atomic_write_json

    folder = path.parent if path.name == "synthetic" else path
    out = Path(args.out) if args.out else folder / "eval.json"
    distributed.main_only(lambda: atomic_write_json(out, report.to_dict()))
    print(f"wrote {out}")
    return 0


def _evaluate_learners(
    syn: Any, test: Any, dataset: str, path: Path, args: argparse.Namespace
) -> int:
    """``ddkit evaluate --learners`` (the default on tables and series):
    :mod:`ddkit.eval.learners`."""
    from ddkit.eval.learners import evaluate_learners

    _refuse_network_flags(args, syn.spec.modality)
    runs = defaults_of(evaluate_learners)["runs"] if args.runs is None else args.runs
    report = evaluate_learners(
        syn, test, args.learners, runs=runs, seed=args.seed, epochs=args.epochs
    )
    print(
        f"{syn.meta.get('method', '?')} on {dataset}, {len(syn)} rows, learners trained on them "
        "(mean ± std over seeds where the learner is random), test accuracy:"
    )
    print(report.table())
    return _write_eval(report, path, args)


def _evaluate_graph(syn: Any, test: Any, dataset: str, path: Path, args: argparse.Namespace) -> int:
    """``ddkit evaluate`` on a graph set: :func:`ddkit.eval.graph.evaluate_graph`."""
    from ddkit.eval.graph import evaluate_graph

    report = evaluate_graph(syn, test, runs=args.runs or 5, seed=args.seed, epochs=args.epochs)
    print(
        f"{syn.meta.get('method', '?')} on {dataset}, {len(syn)} nodes (adjacency: "
        f"{report.meta['adjacency']}), a GCN trained on them and tested on the real graph's "
        f"test nodes ({report.meta['epochs']} epochs, final-epoch accuracy, mean ± std over "
        "seeds), beside random real nodes of the same size and the full graph:"
    )
    print(report.table())
    return _write_eval(report, path, args)


def _refuse_network_flags(args: argparse.Namespace, modality: str) -> None:
    """Flags of the networks' evaluation that learners would ignore are refused, in one line."""
    flags = {"--protocol": args.protocol, "--models": args.models, "--groups": args.groups,
             "--precision": args.precision, "--compile": args.compile}  # fmt: skip
    given = [flag for flag, value in flags.items() if value]
    if given:
        fix = "name networks in --learners" if given[0] == "--models" else "drop it"
        raise ConfigError(
            f"{given[0]} is for evaluation by networks, but learners evaluate this {modality} "
            f"set (--learners, the default on rows other than images); {fix}"
        )


def _test_data_of(syn: Any, path: Path, args: argparse.Namespace) -> tuple[str, str | None]:
    """The dataset and data root whose test split evaluates ``syn``: the flags, else what the
    run folder's config.json recorded (so that ``--root`` need not be repeated)."""
    from ddkit.data import DATASETS
    from ddkit.io import read_json

    dataset, root = args.dataset or syn.spec.name, args.root
    config_path = path.parent / "config.json" if path.name == "synthetic" else None
    if root is None and config_path is not None and config_path.is_file():
        config = read_json(config_path)
        if isinstance(config, dict) and config.get("dataset") == dataset:
            root = config.get("root")
    if dataset not in DATASETS:
        raise ConfigError(
            f"the set comes from dataset {dataset!r}, which ddkit does not know by name; pass "
            "the test data with --dataset npz --root FILE.npz (x_test, y_test) or --dataset "
            "imagefolder --root DIR"
        )
    return dataset, root


def cmd_export(args: argparse.Namespace) -> int:
    from ddkit.data.synthetic import SyntheticSet, resolve_synthetic_path
    from ddkit.io import atomic_replace_dir

    out = Path(args.to)
    fmt = args.format or {".npz": "npz", ".csv": "csv"}.get(out.suffix, "png")
    if out.exists():
        raise ConfigError(f"{str(out)!r} already exists; choose another --to or remove it")
    # --format set re-saves: the user vouches for an older set's uncovered decoding settings
    syn = SyntheticSet.load(resolve_synthetic_path(args.path), trust_settings=fmt == "set")
    if fmt == "npz":
        syn.export_npz(out)
    elif fmt == "csv":
        syn.export_csv(out)
    elif fmt == "set":
        syn.save(out)
    elif fmt == "hf":
        syn.export_hf(out)
    else:
        atomic_replace_dir(out, syn.export_folder)
    what = {"png": "one PNG per image in <class>/ folders", "npz": "x_train, y_train, ...",
            "set": "a ddkit set, every setting checksummed",
            "hf": "datasets.load_from_disk reads it: image (pixels in [0, 1]), label",
            "csv": "table rows, categories as their names, class in column label"}[fmt]  # fmt: skip
    print(f"wrote {out} ({len(syn)} images; {what})")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from ddkit import plots
    from ddkit.io import read_json

    if args.what == "bench":
        results = Path(args.results) / f"{args.suite}.json"
        if not results.is_file():
            raise ConfigError(
                f"no results {str(results)!r}; run `ddkit bench --suite {args.suite}`"
            )
        from ddkit.bench.results import check_results_shape

        data = read_json(results)
        check_results_shape(data, results)
        if not any(plots.shown_row(r) for r in data["rows"]):
            raise ConfigError(f"{str(results)!r} has no finished rows to plot yet")
        out = Path(args.out or results.with_name(f"{args.suite}-accuracy-{args.x}.png"))
        plots.plot_accuracy_vs_ipc(data["rows"], out, x=args.x)
    elif args.path is None:
        raise ConfigError(f"ddkit plot {args.what} needs a run folder")
    elif args.what == "curve":
        log = Path(args.path) / "log.jsonl"
        if not log.is_file():
            raise ConfigError(f"{str(args.path)!r} has no log.jsonl (is it a run folder?)")
        out = Path(args.out or Path(args.path) / "curve.png")
        plots.plot_learning_curve(log, out)
    else:
        from ddkit.data import load_dataset
        from ddkit.data.synthetic import SyntheticSet, resolve_synthetic_path

        path = resolve_synthetic_path(args.path)
        syn = SyntheticSet.load(path)
        dataset, root = _test_data_of(syn, path, args)
        out = Path(args.out or (path.parent if path.name == "synthetic" else path) / "compare.png")
        plots.plot_synthetic_vs_real(syn, load_dataset(dataset, root=root).train, out)
    print(f"wrote {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ddkit.report import write_report

    print(f"wrote {write_report(args.path, args.out)}")
    return 0


def bench_markdown(results: str, markdown: str | None) -> str | None:
    """The Markdown file ``ddkit bench`` updates: ``--markdown`` if given; else BENCHMARKS.md
    when the results go to the default folder, and none for a side run into another folder (its
    rows must not replace the published table)."""
    from ddkit.bench import run_suite

    if markdown is not None:
        return markdown or None
    defaults = defaults_of(run_suite)
    return defaults["markdown"] if Path(results) == Path(defaults["results_dir"]) else None


def cmd_bench(args: argparse.Namespace) -> int:
    from ddkit.bench import run_suite

    only = [m for m in args.methods.split(",") if m] if args.methods else None
    datasets = [d for d in args.datasets.split(",") if d] if args.datasets else None
    ipcs = number_list(args.ipcs, "--ipcs", kind=int, minimum=1) if args.ipcs else None
    keeps = number_list(args.keeps, "--keeps", kind=int, minimum=1) if args.keeps else None
    run_suite(
        args.suite,
        results_dir=args.results,
        markdown=bench_markdown(args.results, args.markdown),
        seed=args.seed,
        only=only,
        datasets=datasets,
        ipcs=ipcs,
        keeps=keeps,
        fresh=args.fresh,
        rerun=args.rerun,
        device=args.device or "cpu",
    )
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from ddkit.data import store

    if args.action == "list":
        root = args.root if args.root is not None else store.data_root()
        print(f"data root: {root}" + ("" if args.root else f" (set ${store.ENV_VAR} or --root)"))
        for name in store.REMOTES.names():
            where = store.dataset_folder(name, args.root)
            print(f"  {name:<14} {store.status(name, args.root):<8} {where}")
        return 0
    if not args.name:
        raise ConfigError(f"ddkit data fetch needs a dataset: {', '.join(store.REMOTES.names())}")
    log = (lambda _msg: None) if args.quiet else print
    if args.source:
        folder = store.install(args.name, args.source, args.root, log=log)
    else:
        mirrors = tuple(args.mirror) if args.mirror else None
        folder = store.download(args.name, args.root, mirrors=mirrors, log=log)
    print(f"{args.name}: ready in {folder} (checksums verified)")
    return 0


def _recorded_full_row(dataset: str) -> dict[str, Any] | None:
    """The full-data row of ``dataset`` in the recorded standard suite, if the file is here."""
    from ddkit.io import read_json

    path = Path(DEMO_FULL_RESULTS)
    if not path.is_file():
        return None
    rows = read_json(path).get("rows", [])
    return next((r for r in rows if r["dataset"] == dataset and r["method"] == "full"), None)


def cmd_demo(args: argparse.Namespace) -> int:
    import time

    import torch

    from ddkit import plots
    from ddkit.bench import SUITES
    from ddkit.data import load_dataset
    from ddkit.data.synthetic import SyntheticSet
    from ddkit.eval import evaluate
    from ddkit.eval.protocol import get_protocol
    from ddkit.io import atomic_write_json
    from ddkit.methods import create_method
    from ddkit.runs import distill_run

    wall0, cpu0 = time.perf_counter(), time.process_time()
    out = Path(args.out or "runs/demo")
    splits = load_dataset("digits")
    ipc, protocol = DEMO_IPC, get_protocol("fast")
    quick = SUITES.get("quick")
    if args.iterations is None:  # minutes, not the published hours
        default = create_method(args.method, dataset="digits", ipc=ipc).config.iterations
        args.iterations = (
            DEMO_ITERATIONS
            if args.method == DEMO_METHOD
            else quick.budget(args.method, ipc, default)
        )
    print(
        f"distilling digits at IPC {ipc} with {args.method} ({args.iterations} iterations) -> {out}"
    )
    syn = distill_run(
        dataset="digits",
        method=args.method,
        ipc=ipc,
        out=out,
        seed=args.seed,
        iterations=args.iterations,
        splits=splits,
        resume=True,
        progress=True,
    )
    draws = [
        create_method("random").fit(splits.train, ipc, seed=args.seed + d)
        for d in range(DEMO_RANDOM_DRAWS)
    ]
    rows = [(f"{args.method} (distilled)", [syn], protocol), ("random real", draws, protocol)]
    recorded = None if args.full else _recorded_full_row("digits")
    if recorded is None:
        full = get_protocol("dsa").with_(epochs=300)  # the recorded row's recipe
        rows.append(("full train set", [SyntheticSet.from_real(splits.train)], full))
    print(
        f"evaluating on {len(splits.test)} test images: final-epoch accuracy of "
        f"{protocol.runs} fresh ConvNet-3s per set, protocol {protocol.name!r} "
        f"({protocol.epochs} epochs, DSA augmentation); random real images: "
        f"{DEMO_RANDOM_DRAWS} draws"
    )
    results, accuracies, spreads = {}, {}, {}
    lines = [f"{'training set':<22} {'images':>7} {'protocol':>11} {'accuracy (%)':>16}", "-" * 60]
    for name, sets, p in rows:
        reports = [evaluate(s, splits.test, p, seed=args.seed, progress=True) for s in sets]
        pooled = torch.tensor([a for rep in reports for a in rep.results[0].accuracies])
        mean, std = float(pooled.mean()), float(pooled.std()) if len(pooled) > 1 else 0.0
        results[name] = [rep.to_dict() for rep in reports]
        spreads[name] = (mean, std)
        accuracies[f"{name.split(' (')[0]}\n{len(sets[0])} images"] = (mean, std)
        lines.append(
            f"{name:<22} {len(sets[0]):>7} {p.name:>9} {100 * mean:>8.2f} ± {100 * std:<5.2f}"
        )
    if recorded is not None:
        mean, std = recorded["mean"], recorded["std"]
        accuracies[f"full data (recorded)\n{recorded['num_images']} images"] = (mean, std)
        lines.append(
            f"{'full train set *':<22} {recorded['num_images']:>7} "
            f"{recorded['protocol'] + ' ' + str(recorded['epochs']) + 'ep':>11} "
            f"{100 * mean:>8.2f} ± {100 * std:<5.2f}"
        )
        lines.append(
            f"* recorded, not run now: {DEMO_FULL_RESULTS}, {len(recorded['accuracies'])} runs of "
            f"{recorded['epochs']} epochs, {recorded['model']}; `ddkit demo --full` trains it here"
        )
        results["full train set (recorded)"] = {"source": DEMO_FULL_RESULTS, "row": recorded}
    print("\n".join(lines))
    (m, sd), (rm, rsd) = spreads[f"{args.method} (distilled)"], spreads["random real"]
    verdict = "beats" if m - sd > rm + rsd else "does not beat"
    print(
        f"{args.method} {verdict} random real images beyond the spreads "
        f"({100 * m:.2f} ± {100 * sd:.2f} vs {100 * rm:.2f} ± {100 * rsd:.2f})"
    )
    print(DEMO_GLOSSARY.format(ipc=ipc, draws=DEMO_RANDOM_DRAWS))
    results["beats_random_beyond_spreads"] = m - sd > rm + rsd
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print(f"compute: {wall:.0f} s wall, {cpu:.0f} s CPU on {torch.get_num_threads()} threads")
    results["compute"] = {"wall_seconds": wall, "cpu_seconds": cpu}
    atomic_write_json(out / "demo.json", results)
    plots.plot_accuracies(accuracies, out / "accuracy.png", title="digits, test accuracy")
    if plots.read_log(out / "log.jsonl"):  # methods without iterations log nothing
        plots.plot_learning_curve(out / "log.jsonl", out / "curve.png")
    print(
        f"run folder: {out} (synthetic/, grid.png, accuracy.png, curve.png, config.json, "
        "log.jsonl, demo.json)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ddkit.bench.runner import run_suite
    from ddkit.runs import distill_run

    p = argparse.ArgumentParser(prog="ddkit", description="Dataset distillation toolkit.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.add_argument(
        "--exact",
        action="store_true",
        help="exact mode: the speed levers that default to auto (bf16, compile) stay off, "
        "giving the float32 eager results bit for bit (as DDKIT_EXACT=1)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", help="list datasets, models, methods, selectors, protocols")
    ls.add_argument("--presets", metavar="METHOD", help="a method's defaults and presets")
    ls.set_defaults(func=cmd_list)

    d = sub.add_parser("distill", help="distil a dataset into a synthetic set")
    d.add_argument("--dataset", required=True)
    d.add_argument("--method", required=True)
    d.add_argument("--ipc", type=int, required=True, help="images per class")
    d.add_argument("--target", default=None, help="label column of a csv / parquet --dataset")
    d.add_argument("--iterations", type=int, default=None, help="default: the method's preset")
    d.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="method option (repeatable)"
    )
    d.add_argument(
        "--checkpoint-every", type=int, default=defaults_of(distill_run)["checkpoint_every"]
    )
    d.add_argument(
        "--dry-run",
        action="store_true",
        help="only print the estimated cost (set-up and a few iterations, measured here)",
    )
    add_common(
        d,
        "seed",
        "root",
        "quiet",
        "resume",
        "log",
        "device",
        out="run folder (default runs/<dataset>-<method>-ipc<K>-s<seed>)",
    )
    d.set_defaults(func=cmd_distill)

    e = sub.add_parser(
        "evaluate", help="train fresh networks on a synthetic set, test on the real test split"
    )
    e.add_argument("path", help="run folder or synthetic-set folder")
    e.add_argument(
        "--protocol",
        default=None,
        help="evaluation protocol (default: the recipe the set records -- the protocol it was "
        "made for, with the network it was distilled with -- or, for a set without one, the "
        "protocol its labels call for: dsa for hard labels, mse for learned regression labels)",
    )
    e.add_argument("--runs", type=int, default=None)
    e.add_argument("--epochs", type=int, default=None)
    e.add_argument("--models", default=None, help="comma-separated model names")
    e.add_argument(
        "--learners",
        default=None,
        help="evaluate by learners instead: comma-separated logreg,knn,rf,gb,xgboost,mlp "
        "(the default on tables: all but xgboost)",
    )
    e.add_argument("--dataset", default=None, help="dataset of the test split (default: the set's)")
    e.add_argument(
        "--precision",
        choices=["fp32", "bf16", "auto"],
        default=None,
        help="training arithmetic (default: the protocol's, fp32; auto: bf16 where the CPU has it)",
    )
    e.add_argument(
        "--compile", action="store_true", help="torch.compile the training step (eager fallback)"
    )
    e.add_argument(
        "--groups",
        action="store_true",
        help="also unbiased, bias-aligned, bias-conflicting and worst-group accuracy (a biased "
        "dataset such as colored-mnist5k-c5)",
    )
    add_common(
        e, "seed", "root", "quiet", "device", out="eval.json path (default: next to the set)"
    )
    e.set_defaults(func=cmd_evaluate)

    x = sub.add_parser(
        "export",
        help="write a synthetic set as PNG files, a .npz, a datasets folder or a set again",
    )
    x.add_argument("path", help="run folder or synthetic-set folder")
    x.add_argument("--to", required=True, help="output folder (PNGs, hf, set) or FILE.npz")
    x.add_argument(
        "--format",
        choices=["png", "npz", "set", "csv", "hf"],
        default=None,
        help="default: from --to; set: save it again (an older set's settings get a checksum); "
        "hf: the Hugging Face datasets on-disk format (extra 'hf')",
    )
    x.set_defaults(func=cmd_export)

    pl = sub.add_parser("plot", help="draw a run's learning curve, a suite's accuracy vs IPC, ...")
    pl.add_argument(
        "what",
        choices=["curve", "compare", "bench"],
        help="curve: a run's log.jsonl; compare: synthetic beside real images per class; "
        "bench: accuracy against IPC from a suite's results",
    )
    pl.add_argument("path", nargs="?", help="run folder (curve, compare)")
    pl.add_argument("--suite", default="quick", help="(bench) suite name")
    pl.add_argument(
        "--x",
        choices=["ipc", "bytes", "keep"],
        default="ipc",
        help="(bench) accuracy against IPC, bytes stored, or the kept percentage (pruning suite)",
    )
    pl.add_argument("--results", default=defaults_of(run_suite)["results_dir"], help="(bench)")
    pl.add_argument("--dataset", default=None, help="(compare) dataset of the real images")
    add_common(pl, "root", out="PNG path (default: next to the input)")
    pl.set_defaults(func=cmd_plot)

    rp = sub.add_parser(
        "report",
        help="one self-contained HTML page for a run folder, or a bench, audit or evaluate results file",
    )
    rp.add_argument(
        "path", help="run folder, or a results file (.json) of ddkit bench, audit or evaluate --out"
    )
    add_common(rp, out="HTML path (default: RUN/report.html, or the results file as .html)")
    rp.set_defaults(func=cmd_report)

    b = sub.add_parser("bench", help="run a benchmark suite (resumable: finished cells are kept)")
    b.add_argument("--suite", default="quick")
    b.add_argument(
        "--methods", default=None, help="only these methods (comma-separated; 'full': full data)"
    )
    b.add_argument("--datasets", default=None, help="only these datasets (comma-separated)")
    b.add_argument("--ipcs", default=None, help="only these IPCs of the suite (comma-separated)")
    b.add_argument(
        "--keeps",
        default=None,
        help="only these kept percentages of a pruning sweep (comma-separated, e.g. 10,30)",
    )
    b.add_argument("--results", default=defaults_of(run_suite)["results_dir"])
    b.add_argument(
        "--markdown",
        default=None,
        help="Markdown file whose table is updated (default: BENCHMARKS.md with the default "
        "--results; none with another --results folder)",
    )
    b.add_argument("--fresh", action="store_true", help="ignore earlier results of this suite")
    b.add_argument(
        "--rerun",
        action="store_true",
        help="run the selected finished cells again (after a preset changed, say); each old row "
        "and cell folder stays until its new run finishes",
    )
    add_common(b, "seed", "device")
    b.set_defaults(func=cmd_bench)

    dd = sub.add_parser("data", help="datasets that come as files: where they are, fetch them")
    dd.add_argument("action", choices=["list", "fetch"])
    dd.add_argument("name", nargs="?", help="dataset to fetch (see `ddkit data list`)")
    dd.add_argument(
        "--from",
        dest="source",
        default=None,
        metavar="PATH",
        help="install from a local folder or archive (tar, zip, .deb) instead of downloading",
    )
    dd.add_argument(
        "--mirror", action="append", default=[], help="base URL to download from (repeatable)"
    )
    add_common(dd, "root", "quiet")
    dd.set_defaults(func=cmd_data)

    m = sub.add_parser("demo", help="distil digits at IPC 10 and compare with random and full data")
    m.add_argument("--method", default=DEMO_METHOD)
    m.add_argument("--iterations", type=int, default=None)
    m.add_argument(
        "--full",
        action="store_true",
        help="train the full-data reference now (protocol dsa, 300 epochs: minutes) instead of "
        "showing the recorded row",
    )
    add_common(m, "seed", out="run folder (default runs/demo)")
    m.set_defaults(func=cmd_demo)

    discover()  # the sub-commands of families, applications and audits register themselves
    for name in COMMANDS.names():
        COMMANDS.get(name).install(sub)
    return p


#: the sub-commands that split their work over the processes of a torchrun launch
DISTRIBUTED_COMMANDS = ("distill", "evaluate", "experts", "teacher")


def _run_as_rank(args: argparse.Namespace, launch: distributed.Launch) -> int:
    """Run a sub-command as one rank of a torchrun launch: refuse one that does not split
    its work (one line); the ranks other than 0 print nothing but their errors."""
    if args.command not in DISTRIBUTED_COMMANDS:
        raise ConfigError(
            f"ddkit {args.command} does not run on several processes; launch it without "
            f"torchrun (these do: {', '.join(DISTRIBUTED_COMMANDS)})"
        )
    if launch.main:
        return int(args.func(args) or 0)
    if hasattr(args, "quiet"):
        args.quiet = True
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        return int(args.func(args) or 0)


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Warnings as one ``ddkit: warning:`` line each (the API's users see them as usual)."""
    print(f"ddkit: warning: {message}", file=file or sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        warnings.showwarning = _warning_line
    if args.exact:  # in the environment: child processes (bench units, torchrun ranks) see it
        os.environ[levers.EXACT_ENV] = "1"
    levers.float32_on_cuda()
    if hasattr(sys.stdout, "reconfigure"):  # a path that is not UTF-8 prints as \xff, not a crash
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        if getattr(args, "seed", None) is not None:  # every sub-command's --seed, checked once
            check_seed(args.seed)
        with distributed.session() as launch:  # under torchrun: one rank of the group
            if launch is None:
                return int(args.func(args) or 0)
            return _run_as_rank(args, launch)
    except DDKitError as e:
        if args.debug:
            raise
        print(f"ddkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ddkit: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        if args.debug:
            raise
        print(f"ddkit: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except Exception as e:  # a bug or an input nobody checked: one line, the traceback on --debug
        if args.debug:
            raise
        first = (str(e).strip().splitlines() or [""])[0]
        print(
            f"ddkit: error: unexpected {type(e).__name__}: {first} (run with --debug for the "
            "traceback, and please report it)",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
