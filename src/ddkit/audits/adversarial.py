"""Adversarial robustness of networks trained on distilled data (``ddkit audit adversarial``).

Fresh networks are trained on each training set the way an evaluation protocol trains them
(:func:`~ddkit.audits.base.train_on_set`, i.e. :mod:`ddkit.eval`'s own training code): on
distilled sets, on random real images of the same size and on the full training split. Each
network is then attacked on the real test split under an L-infinity budget ``epsilon`` given on
the ``[0, 1]`` pixel scale (default 2/255, 4/255 and 8/255):

* FGSM, the fast gradient sign method (Goodfellow, Shlens & Szegedy, ICLR 2015,
  arXiv:1412.6572): one step of size ``epsilon`` along the sign of the loss gradient;
* PGD, projected gradient descent (Madry et al., ICLR 2018, arXiv:1706.06083): a uniform random
  start in the ``epsilon`` ball (drawn from a ``torch.Generator``), then ``steps`` signed
  gradient steps of ``step_size`` (default ``2.5 * epsilon / steps``: together the steps can
  travel 2.5 radii, so from any start they reach any point of the ball), each projected back
  onto the ball and onto ``[0, 1]``.

The set's normalisation (and ZCA whitening, for sets that record it) is folded into the attacked
model (:class:`PixelSpaceModel`: pixels in ``[0, 1]`` -> normalise -> network), so the attacks
run and clip in pixel space, where the budget means what it says, whatever statistics the set
was normalised with. The loss is the cross-entropy of the network's outputs, also for networks
trained with an MSE protocol.

Reporting follows AutoAttack's convention (Croce & Hein, ICML 2020, arXiv:2003.01690): an image
counts as robust only if it is classified correctly clean *and* at every adversarial point tried
on it. ``fgsm`` is the accuracy under FGSM; ``pgd`` is the accuracy under FGSM and PGD together,
where PGD keeps, per image, the first iterate that is misclassified (the random start included),
so ``clean >= fgsm >= pgd`` holds on every network by construction; ``pgd_only`` is PGD alone
under the same rule. Robustness benchmarks of distilled data report the same attacks (e.g. BEARD,
Zhou et al., arXiv:2411.09265).

Deviations: AutoAttack itself is not run (no package provides it here; it is no dependency);
``max_test`` can attack a seeded random subset of the test split to save time (recorded).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ddkit.audits.base import (
    Audit,
    AuditRun,
    Budgets,
    TrainedNetworks,
    add_training_arguments,
    audit_record,
    distil,
    full_data,
    iterations_of,
    kept_json,
    kept_set,
    models_option,
    random_real,
    register_audit,
    train_on_set,
    unit_key,
    unit_name,
)
from ddkit.audits.estimate import AuditPlan, DistillJob, apply_quick, dry_run, sets_plan
from ddkit.claims import hold_output
from ddkit.commands import device_option, number_list
from ddkit.data.dataset import DatasetSplits, ImageDataset, denormalise
from ddkit.data.spec import DatasetSpec
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, DataError
from ddkit.eval.protocol import EvalProtocol, get_protocol
from ddkit.methods import method_names
from ddkit.progress import Progress
from ddkit.rng import derive_seed

#: The default budgets on the [0, 1] pixel scale.
DEFAULT_EPSILONS = (2 / 255, 4 / 255, 8 / 255)
#: Pixel values may stray this far outside [0, 1] (float rounding of the normalisation).
PIXEL_TOLERANCE = 1e-4


# ============================================================================ the attacks
class PixelSpaceModel(nn.Module):
    """``net`` behind its training set's normalisation: pixels in ``[0, 1]`` -> ``(x - mean) /
    std`` (the set's spec) -> the set's ZCA whitening, when it records one -> ``net``. Attacks on
    this module perturb and clip pixels."""

    def __init__(self, net: nn.Module, spec: DatasetSpec, zca: Any = None) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, -1, 1, 1))
        self.zca = zca

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels - self.mean.to(pixels.dtype)) / self.std.to(pixels.dtype)
        if self.zca is not None:
            x = self.zca.transform(x)
        return self.net(x)


def _loss_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient of the summed cross-entropy at ``x`` (w.r.t. ``x`` only) and the logits."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x)
    return grad, logits.detach()


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float) -> torch.Tensor:
    """FGSM: ``clip(x + epsilon * sign(grad_x loss), 0, 1)`` for pixels ``x`` in ``[0, 1]``."""
    if epsilon == 0:
        return x.detach().clone()
    grad, _ = _loss_gradient(model, x, y)
    return (x + epsilon * grad.sign()).clamp(0.0, 1.0).detach()


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epsilon: float,
    *,
    steps: int,
    step_size: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """L-infinity PGD from a uniform random start in the ``epsilon`` ball (drawn from
    ``generator``): ``steps`` signed-gradient steps of ``step_size``, each projected onto the
    ball around ``x`` and onto ``[0, 1]``. Returns, per image, the first point the model
    misclassifies (the random start and the point after the last step included), or the last
    point when none is."""
    if epsilon == 0:
        return x.detach().clone()
    x = x.detach()
    noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    adv = (x + (2.0 * noise - 1.0) * epsilon).clamp(0.0, 1.0)
    kept = adv.clone()
    found = torch.zeros(len(x), dtype=torch.bool, device=x.device)

    def keep(point: torch.Tensor, logits: torch.Tensor) -> None:
        new = (logits.argmax(1) != y) & ~found
        kept[new] = point[new]
        found.logical_or_(new)

    for _ in range(steps):
        grad, logits = _loss_gradient(model, adv, y)
        keep(adv, logits)
        adv = adv + step_size * grad.sign()
        adv = torch.maximum(torch.minimum(adv, x + epsilon), x - epsilon).clamp(0.0, 1.0)
    with torch.no_grad():
        keep(adv, model(adv))
    kept[~found] = adv[~found]
    return kept.detach()


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1) == y


def resolve_step_size(epsilon: float, steps: int, step_size: float | None) -> float:
    """PGD's step: ``step_size``, or ``2.5 * epsilon / steps`` when it is ``None``."""
    return 2.5 * epsilon / steps if step_size is None else float(step_size)


def robust_accuracy(
    model: nn.Module,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    epsilons: Sequence[float],
    *,
    steps: int = 10,
    step_size: float | None = None,
    generator: torch.Generator,
    batch_size: int = 500,
) -> dict[str, Any]:
    """Clean, FGSM, PGD and PGD-only accuracy of ``model`` (a :class:`PixelSpaceModel`, in eval
    mode) on ``pixels`` in ``[0, 1]``, one value per epsilon (module docstring: an image is
    robust only if it is right clean and at every point tried; ``pgd`` adds PGD to FGSM)."""
    k = len(epsilons)
    counts = {"clean": 0, "fgsm": [0] * k, "pgd": [0] * k, "pgd_only": [0] * k}
    for start in range(0, len(pixels), batch_size):
        x, y = pixels[start : start + batch_size], labels[start : start + batch_size]
        clean = _correct(model, x, y)
        counts["clean"] += int(clean.sum())
        for i, eps in enumerate(epsilons):
            right_fgsm = clean & _correct(model, fgsm(model, x, y, eps), y)
            step = resolve_step_size(eps, steps, step_size)
            adv = pgd(model, x, y, eps, steps=steps, step_size=step, generator=generator)
            right_pgd = clean & _correct(model, adv, y)
            counts["fgsm"][i] += int(right_fgsm.sum())
            counts["pgd"][i] += int((right_fgsm & right_pgd).sum())
            counts["pgd_only"][i] += int(right_pgd.sum())
    n = max(len(pixels), 1)
    return {
        key: [c / n for c in value] if isinstance(value, list) else value / n
        for key, value in counts.items()
    }


# ============================================================================ the audit
def pixel_test(test: ImageDataset) -> torch.Tensor:
    """The test images back on their pixel scale, which must be ``[0, 1]`` (a one-line
    :class:`DataError` otherwise: the budgets are defined on that scale)."""
    pixels = denormalise(test.images, test.spec)
    lo, hi = float(pixels.min()), float(pixels.max())
    if lo < -PIXEL_TOLERANCE or hi > 1 + PIXEL_TOLERANCE:
        raise DataError(
            f"the adversarial audit needs pixel values in [0, 1]; {test.spec.name!r} spans "
            f"[{lo:.3g}, {hi:.3g}]: rescale the images"
        )
    return pixels.clamp(0.0, 1.0)


def _check_budgets(
    epsilons: Sequence[float], steps: int, step_size: float | None, max_test: int | None
) -> list[float]:
    eps = number_list(list(epsilons) if isinstance(epsilons, Sequence) else [epsilons], "epsilon")
    if any(e < 0 for e in eps):
        raise ConfigError(f"epsilon must be >= 0, got {min(eps):g} ({255 * min(eps):g}/255)")
    if any(e > 1 for e in eps):
        raise ConfigError(f"epsilon is on the [0, 1] pixel scale (e.g. 8/255), got {max(eps)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"PGD steps must be an integer >= 1, got {steps!r}")
    if step_size is not None and not float(step_size) > 0:
        raise ConfigError(f"PGD step size must be > 0, got {step_size!r}")
    if max_test is not None and (isinstance(max_test, bool) or int(max_test) < 1):
        raise ConfigError(f"max_test must be >= 1, got {max_test!r}")
    return eps


@dataclass(frozen=True)
class RobustnessAttack:
    """The attacks every network meets (module docstring): FGSM and PGD at each of ``epsilons``
    (L-infinity budgets on the ``[0, 1]`` pixel scale), PGD taking ``steps`` signed steps of
    ``step_size`` (``None``: ``2.5 * epsilon / steps``), on at most ``max_test`` test images
    (``None``: all of them; else a seeded random subset), ``batch_size`` images at a time.
    Checked here, in one line."""

    epsilons: Sequence[float] = DEFAULT_EPSILONS
    steps: int = 10
    step_size: float | None = None
    max_test: int | None = None
    batch_size: int = 500

    def __post_init__(self) -> None:
        eps = _check_budgets(self.epsilons, self.steps, self.step_size, self.max_test)
        object.__setattr__(self, "epsilons", tuple(eps))


def _test_rows(n: int, max_test: int | None, seed: int) -> torch.Tensor:
    if max_test is None or max_test >= n:
        return torch.arange(n)
    g = torch.Generator().manual_seed(derive_seed(seed, "adversarial-test-rows"))
    return torch.randperm(n, generator=g)[:max_test].sort().values


def _mean(values: Sequence[Any]) -> Any:
    if isinstance(values[0], list):
        return [statistics.fmean(v) for v in zip(*values)]
    return statistics.fmean(values)


def _set_info(syn: SyntheticSet) -> dict[str, Any]:
    meta = syn.meta
    keys = ("method", "ipc", "seed", "iterations", "dataset")
    return {"num_images": len(syn), **{k: meta[k] for k in keys if k in meta}}


def adversarial_audit(
    splits: DatasetSplits,
    sets: Mapping[str, SyntheticSet],
    run: AuditRun,
    *,
    attack: RobustnessAttack = RobustnessAttack(),  # noqa: B008  (frozen)
    keep: Path | None = None,
) -> dict[str, Any]:
    """Robust accuracy of networks trained on each of ``sets`` (name -> set) against ``attack``
    (FGSM and PGD at each epsilon: module docstring), on the real test split of ``splits``.
    With ``keep`` (a folder), each set's results are kept there as soon as they exist and a
    re-run reuses them (:func:`~ddkit.audits.base.kept_json`).

    Networks are trained as ``run.protocol`` trains them (:meth:`AuditRun.of` applies a
    resolved protocol's overrides), every set with the same run seeds (paired
    initialisations); each network's PGD start is drawn from a generator seeded by ``(seed,
    set, model, run)``. Same seed => same result. Returns a JSON-ready dict: the audit's seeds,
    runs and budgets, and per set its networks' clean / FGSM / PGD / PGD-only accuracies (lists
    aligned with the epsilons) and their means.
    """
    if not sets:
        raise ConfigError("no training sets to audit; give at least one")
    eps, steps = list(attack.epsilons), attack.steps
    p, seed, device = run.protocol, run.seed, run.device
    rows = _test_rows(len(splits.test), attack.max_test, seed)
    pixels = pixel_test(splits.test)[rows].to(device)
    labels = splits.test.labels[rows].to(device)
    budgets = {
        "epsilons": eps,
        "epsilons_255": [round(255 * e, 4) for e in eps],
        "pgd_steps": steps,
        "pgd_step_sizes": [resolve_step_size(e, steps, attack.step_size) for e in eps],
        "pgd_random_start": True,
        "test_images": len(rows),
        "test_split": len(splits.test),
    }
    out = audit_record("adversarial", seed=seed, protocol=p, budgets=budgets)
    out.update({"dataset": splits.spec.name, "epsilons": eps, "sets": {}})
    for name, syn in sets.items():

        def attack_set(name: str = name, syn: SyntheticSet = syn) -> dict[str, Any]:
            trained = train_on_set(syn, splits.test, p, seed=seed, device=device,
                                   progress=run.progress)  # fmt: skip
            nets = _attack_networks(name, syn, trained, pixels, labels, attack, run)
            keys = ("clean", "fgsm", "pgd", "pgd_only")
            return {
                **_set_info(syn),
                "train_seconds": trained.seconds,
                "lr": trained.lr,
                "networks": nets,
                "mean": {k: _mean([n[k] for n in nets]) for k in keys},
            }

        path = keep / "results" / f"{unit_name(name)}.json" if keep is not None else None
        key = unit_key(
            name, p.settled().to_dict(), budgets, seed, rows, syn.images, syn.labels, syn.lr
        )
        out["sets"][name] = kept_json(path, key, attack_set)
    return out


def _attack_networks(
    name: str,
    syn: SyntheticSet,
    trained: TrainedNetworks,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    attack: RobustnessAttack,
    run: AuditRun,
) -> list[dict[str, Any]]:
    """:func:`robust_accuracy` of every network trained on set ``name``, each behind the set's
    normalisation, its PGD starts drawn from a generator seeded by ``(seed, name, model, run)``."""
    bar = Progress(f"attack {name}", len(trained.networks), setting=run.progress, unit="nets")
    nets = []
    for row, net in zip(trained.rows(), trained.networks):
        attack_seed = derive_seed(run.seed, "adversarial", name, row["model"], row["run"])
        model = PixelSpaceModel(net.requires_grad_(False), syn.spec, syn.zca()).to(run.device)
        g = torch.Generator().manual_seed(attack_seed)
        acc = robust_accuracy(
            model.eval(), pixels, labels, list(attack.epsilons), steps=attack.steps,
            step_size=attack.step_size, generator=g, batch_size=attack.batch_size,
        )  # fmt: skip
        nets.append({**row, "attack_seed": attack_seed, **acc})
        bar.update(1)
    bar.close()
    return nets


def audit_sets(
    splits: DatasetSplits,
    methods: Sequence[str],
    ipcs: Sequence[int],
    run: AuditRun,
    *,
    iterations: int | Budgets | None = None,
    options: dict[str, Any] | None = None,
    full: bool = True,
    keep: Path | None = None,
) -> dict[str, SyntheticSet]:
    """The training sets the audit compares: per IPC each method's distilled set
    (``"dm/ipc10"``, distilled on ``run.device``) and a random real subset of the same size
    (``"random/ipc10"``), and with ``full`` the whole training split (``"full"``). Every set
    is built with ``run.seed`` (the run's protocol is not used here); with ``keep`` (a
    folder), each distilled set is kept there and a re-run reuses it."""
    methods = method_names(methods)
    seed = run.seed
    sets: dict[str, SyntheticSet] = {}
    for ipc in ipcs:
        splits.train.check_ipc(ipc)
    for ipc in ipcs:
        for m in methods:
            if m == "random":
                continue
            name = f"{m}/ipc{ipc}"
            budget = iterations_of(iterations, m, ipc)
            key = unit_key(name, budget, seed, options or {}, splits.train.images,
                           splits.train.labels)  # fmt: skip
            sets[name] = kept_set(
                keep / "sets" / unit_name(name) if keep is not None else None, key,
                lambda m=m, ipc=ipc, budget=budget: distil(
                    splits.train, m, ipc, iterations=budget, seed=seed, options=options,
                    progress=run.progress, device=run.device),
            )  # fmt: skip
        sets[f"random/ipc{ipc}"] = random_real(splits.train, ipc, seed=seed)
    if full:
        sets["full"] = full_data(splits.train)
    return sets


def plot_robustness(result: Mapping[str, Any], path: str | Path) -> Path:
    """Robust accuracy (PGD, as reported: FGSM and PGD together) against epsilon (in /255),
    one line per training set, clean accuracy at epsilon 0; random real sets dashed."""
    from ddkit.plots import new_figure, save_figure

    fig, (ax,) = new_figure(width=5.5, height=4.0)
    xs = [0.0] + [255 * e for e in result["epsilons"]]
    for name, row in result["sets"].items():
        mean = row["mean"]
        ys = [100 * mean["clean"]] + [100 * v for v in mean["pgd"]]
        style = {"ls": "--"} if name.startswith("random") else {}
        if name == "full":
            style = {"color": "black", "lw": 2}
        ax.plot(xs, ys, marker="o", ms=3, label=f"{name} ({row['num_images']} img)", **style)
    ax.set_xlabel("epsilon (/255, L-inf)")
    ax.set_ylabel("robust test accuracy, PGD (%)")
    ax.set_title(
        f"{result['dataset']}: PGD-{result['budgets']['pgd_steps']}, "
        f"{result['runs']} net(s) per model",
        fontsize=9,
    )
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def _load_sets(paths: Sequence[str]) -> dict[str, SyntheticSet]:
    from ddkit.data.synthetic import resolve_synthetic_path

    out = {}
    for p in paths:
        folder = resolve_synthetic_path(p)
        syn = SyntheticSet.load(folder)
        name = Path(p).name or str(p)
        if name in out:
            name = str(p)
        out[name] = syn
    return out


def _plan(
    loaded: Mapping[str, SyntheticSet],
    methods: Sequence[str],
    ipcs: Sequence[int],
    protocol: EvalProtocol,
    iterations: Budgets,
    splits: DatasetSplits,
    full: bool,
    quick: dict[str, Any],
) -> AuditPlan:
    """What the adversarial audit trains: the networks of every set (the given ones, per IPC
    each method's distilled set and random real images, the full data) and the distillations."""
    sets = [(name, len(syn)) for name, syn in loaded.items()]
    distils, k = [], splits.spec.num_classes
    for ipc in ipcs if methods else ():
        for m in (m for m in methods if m != "random"):
            sets.append((f"{m}/ipc{ipc}", ipc * k))
            distils.append(DistillJob(m, ipc, iterations_of(iterations, m, ipc)))
        sets.append((f"random/ipc{ipc}", ipc * k))
    sets += [("full", len(splits.train))] if full else []
    return sets_plan("adversarial", sets, protocol, distils, quick)


@register_audit
class AdversarialAudit(Audit):
    """``ddkit audit adversarial``."""

    name = "adversarial"
    help = (
        "robust accuracy (FGSM, PGD) of networks trained on distilled vs random real vs full data"
    )

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        add_training_arguments(parser, methods="dm", ipc="1,10", out="runs/audit-adversarial")
        parser.add_argument(
            "--sets", default="",
            help="saved set folders to audit as well (comma-separated; --methods '' for only these "
            "and the full data)",
        )  # fmt: skip
        parser.add_argument(
            "--epsilons", default="2/255,4/255,8/255", help="L-inf budgets on the [0, 1] scale"
        )
        parser.add_argument("--steps", type=int, default=10, help="PGD steps")
        parser.add_argument(
            "--step-size", type=float, default=None, help="PGD step (default 2.5 * eps / steps)"
        )
        parser.add_argument("--max-test", type=int, default=None, help="attack N test images")
        parser.add_argument("--no-full", action="store_true", help="skip the full-data networks")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from ddkit.data import load_dataset
        from ddkit.io import atomic_write_json
        from ddkit.methods.config import parse_options

        quick = apply_quick(args)
        epsilons = number_list(args.epsilons, "--epsilons")
        attack = RobustnessAttack(epsilons, args.steps, args.step_size, args.max_test)
        ipcs = number_list(args.ipc, "--ipc", kind=int, minimum=1)
        paths = [p for p in args.sets.split(",") if p]
        methods = method_names(args.methods) if args.methods.strip() else []
        iterations = Budgets.parse(args.iterations)
        iterations.check()
        if not methods and not paths and args.no_full:
            raise ConfigError(
                "nothing to audit: --methods '' with --no-full and no --sets; name a method, "
                "give --sets, or drop --no-full"
            )
        options = parse_options(args.set)
        protocol = get_protocol(args.protocol)  # resolved once, here
        device = device_option(args)
        splits = load_dataset(args.dataset, root=args.root)
        models = models_option(args, splits.spec)
        sets = _load_sets(paths)  # a bad set folder is refused before --out is created
        run = AuditRun.of(protocol, models=models, runs=args.runs, epochs=args.epochs,
                          seed=args.seed, device=device, progress=not args.quiet)  # fmt: skip
        p = run.protocol
        plan = _plan(sets, methods, ipcs, p, iterations, splits, not args.no_full, quick)
        if args.dry_run:
            return dry_run(plan, splits, p, p.models[0], args.out, seed=args.seed,
                           options=options, device=str(device))  # fmt: skip
        if not args.quiet:
            print(plan.line(), flush=True)
        with hold_output(args, "audit folder", "adversarial") as out:
            if methods:
                built = audit_sets(splits, methods, ipcs, run, iterations=iterations,
                                   options=options, full=not args.no_full, keep=out)  # fmt: skip
                sets.update(built)
            elif not args.no_full:
                sets["full"] = full_data(splits.train)
            result = adversarial_audit(splits, sets, run, attack=attack, keep=out)
            result.update({"quick": quick} if quick else {})
            atomic_write_json(out / "adversarial.json", result)
            plot_robustness(result, out / "adversarial.png")
            _print_table(result)
            print(f"wrote {out / 'adversarial.json'} and {out / 'adversarial.png'}")
            return 0


def _print_table(result: Mapping[str, Any]) -> None:
    eps = ", ".join(f"{e:g}/255" for e in result["budgets"]["epsilons_255"])
    print(f"{'set':<20} {'clean':>7}  PGD at {eps} (%)")
    for name, row in result["sets"].items():
        pgd = " ".join(f"{100 * v:6.2f}" for v in row["mean"]["pgd"])
        print(f"{name:<20} {100 * row['mean']['clean']:7.2f}  {pgd}")
