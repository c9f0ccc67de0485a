"""Backdoor attacks through distillation (``ddkit audit backdoor``).

An attacker who controls part of the training data stamps a trigger on some rows and relabels
them to a target class *before* distillation; the question is whether networks trained on the
distilled set learn the backdoor. Two attacks of Liu et al., "Backdoor Attacks Against Dataset
Distillation" (NDSS 2023, arXiv:2301.01197):

* ``naive`` (their NAIVEATTACK, i.e. BadNets, Gu, Dolan-Gavitt & Garg, arXiv:1708.06733): a
  square patch of ``size`` pixels, every pixel ``value`` (on the ``[0, 1]`` pixel scale) at
  ``position``, is stamped on a random ``fraction`` of the training rows of the non-target
  classes, which are relabelled to ``target``; then any registered method distils the poisoned
  split as it would a clean one.
* ``doorping`` (their DOORPING): the same poisoned rows, but the trigger is re-optimised while
  the set is distilled, and the poisoned rows are re-stamped with it each time, so the set keeps
  up with the trigger. :class:`DoorpingCallback` does this for any method through the
  :class:`~ddkit.methods.base.Callback` hook at the end of a step: every ``every`` iterations a
  fresh network (``model``; by default the one the method distils with) is trained for
  ``net_epochs`` epochs on the current synthetic set
  (as DC's matching network is trained on it between matching steps), its ``topk`` embedding
  neurons most strongly wired to the classifier are chosen, and the trigger patch, stamped on
  ``carriers`` poisoned rows drawn at random, is moved by Adam until those neurons reach
  ``alpha`` times their first activation (mean squared error, stopped early below
  ``threshold``); then the poisoned rows of
  the method's real data are stamped with the new trigger. Methods whose steps never read the
  real images are refused in one line: trajectory matching learns from expert trajectories and
  the decoupled methods from a teacher, both trained before distillation, and selectors have no
  steps. The networks are tested with the final trigger; a set initialised from real images
  starts from rows stamped with the first one, so DOORPING needs enough iterations to move the
  set along with its trigger.

Metrics, per network trained on a set as the evaluation protocol trains it: clean test accuracy,
and the attack success rate (ASR): the fraction of *triggered test images of the non-target
classes* that the network assigns to the target class. Target-class images are left out because
a network that ignores the trigger still labels most of them ``target`` -- they are that class
-- which would add about ``1/K`` (the target's share of the test split) to the ASR of a network
with no backdoor at all (Liu et al.'s code triggers and counts the whole test split). Floors,
for comparison: the ASR of a set distilled by the same method from the clean split, and of
random real images (same IPC) of the poisoned split.

Deviations from Liu et al.'s code: the poisoned rows are drawn among the non-target classes (a
stamped target-class row teaches nothing) and ``fraction`` is of those rows; the initial trigger
is the constant patch, not random values; the trigger is optimised on the pixel scale and kept
in ``[0, 1]`` (theirs is unbounded, in normalised units, with Adam at lr 0.08 -- about 0.02 pixels
for a std near 0.25 -- and up to 1,000 steps); it is optimised stamped on real poisoned rows,
not alone on an empty image: on MNIST, whose background is black, a patch alone on a black image
met its target by fading to black (an instance-normalised network fires on an empty image), a
trigger no network can see; the neurons are features of the network's
embedding (the classifier's input), ranked by the summed absolute classifier weights leaving
them (theirs: the outputs of the layer before the classifier, ranked by the summed weights
entering them); where those neurons are silent on the first trigger, the target is ``alpha``
itself (theirs stays 0); the network is a fresh one trained on the current synthetic set (theirs
is DC's own matching network, so only DC-like methods had one).

This module holds the audit (:func:`backdoor_audit`: poison, distil, score each set), its chart
and its command. The trigger and the poisoning (:class:`Trigger`, :func:`stamp`,
:func:`poison`, :func:`triggered_test`, :func:`attack_success_rate`) moved to
:mod:`ddkit.audits.backdoor_trigger`; DOORPING's trigger updates (:class:`DoorpingConfig`,
:class:`DoorpingCallback` and their helpers) to :mod:`ddkit.audits.doorping`. Both are still
importable from here.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ddkit.audits.backdoor_trigger import (
    POSITIONS,
    Poisoned,
    Trigger,
    attack_success_rate,
    check_target,
    poison,
    stamp,  # noqa: F401  (still importable from here)
    triggered_test,
)
from ddkit.audits.base import (
    Audit,
    AuditRun,
    Budgets,
    add_training_arguments,
    audit_record,
    budgets_json,
    check_fraction,
    distil,
    iterations_of,
    kept_json,
    models_option,
    random_real,
    register_audit,
    train_on_set,
    unit_key,
)
from ddkit.audits.doorping import (
    DoorpingCallback,
    DoorpingConfig,
    doorping_refusal,
    optimise_trigger,  # noqa: F401  (still importable from here)
    real_image_copies,  # noqa: F401  (still importable from here)
    top_neurons,  # noqa: F401  (still importable from here)
)
from ddkit.audits.estimate import AuditPlan, DistillJob, apply_quick, dry_run, sets_plan
from ddkit.claims import hold_output
from ddkit.commands import device_option, number_list
from ddkit.data.dataset import DatasetSplits, ImageDataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.eval.protocol import EvalProtocol, get_protocol
from ddkit.methods import method_names
from ddkit.rng import derive_seed

ATTACKS = ("naive", "doorping")


# ============================================================================ the audit
def _scores(
    syn: SyntheticSet,
    pattern: torch.Tensor,
    *,
    name: str,
    splits: DatasetSplits,
    mask: torch.Tensor,
    target: int,
    run: AuditRun,
) -> dict[str, Any]:
    """Clean accuracy and ASR of networks trained on ``syn`` (as ``run.protocol`` trains them)."""
    from ddkit.eval.evaluate import test_in_set_space
    from ddkit.eval.train import accuracy

    device = run.device
    trained = train_on_set(syn, splits.test, run.protocol, seed=run.seed, device=device,
                           progress=run.progress)  # fmt: skip
    triggered = test_in_set_space(syn, triggered_test(splits.test, mask, pattern, target))
    test = trained.test
    nets = [
        {
            **row,
            "clean_accuracy": accuracy(net, test.images.to(device), test.labels),
            "asr": attack_success_rate(net, _to(triggered, device), target),
        }
        for row, net in zip(trained.rows(), trained.networks)
    ]
    info = {k: syn.meta[k] for k in ("method", "ipc", "seed", "iterations") if k in syn.meta}
    return {
        **info,
        "num_images": len(syn),
        "train_seconds": trained.seconds,
        "networks": nets,
        "mean": {k: statistics.fmean(n[k] for n in nets) for k in ("clean_accuracy", "asr")},
    }


def _to(data: ImageDataset, device: torch.device | str) -> ImageDataset:
    if torch.device(device).type == "cpu":
        return data
    return ImageDataset(data.images.to(device), data.labels.to(device), data.spec)


def _check_attack(attack: str, methods: str | Sequence[str], ipcs: Sequence[int]) -> list[str]:
    """The methods, checked (names, DOORPING support, IPC) before any work."""
    from ddkit.methods import METHODS

    if attack not in ATTACKS:
        raise ConfigError(f"unknown attack {attack!r}; valid: {', '.join(ATTACKS)}")
    names = method_names(methods)
    if attack == "doorping":
        for m in names:
            reason = doorping_refusal(METHODS.get(m))
            if reason is not None:
                raise ConfigError(reason)
    number_list(list(ipcs), "IPC", kind=int, minimum=1)
    return names


def _poisoned_ipc_check(poisoned: Poisoned, ipcs: Sequence[int], fraction: float) -> None:
    try:
        for ipc in ipcs:
            poisoned.train.check_ipc(ipc)
    except ConfigError as e:
        raise ConfigError(f"after poisoning {fraction:g} of the non-target rows, {e}") from None


@dataclasses.dataclass(frozen=True)
class BackdoorAttack:
    """What the attacker does (module docstring): ``attack`` (``"naive"`` or ``"doorping"``)
    stamps ``trigger`` on a ``fraction`` (in ``[0, 1]``) of the non-target training rows and
    relabels them to class ``target``; DOORPING re-optimises the trigger as ``doorping`` says.
    The name and the fraction are checked here; the trigger and the target against a dataset
    by :func:`backdoor_audit`."""

    attack: str = "naive"
    trigger: Trigger = Trigger()
    fraction: float = 0.1
    target: int = 0
    doorping: DoorpingConfig = DoorpingConfig()

    def __post_init__(self) -> None:
        if self.attack not in ATTACKS:
            raise ConfigError(f"unknown attack {self.attack!r}; valid: {', '.join(ATTACKS)}")
        object.__setattr__(self, "fraction", check_fraction(self.fraction, "poison fraction"))


def backdoor_audit(
    splits: DatasetSplits,
    methods: Sequence[str],
    ipcs: Sequence[int],
    run: AuditRun,
    *,
    attack: BackdoorAttack = BackdoorAttack(),  # noqa: B008  (frozen)
    iterations: int | Budgets | None = None,
    options: dict[str, Any] | None = None,
    keep: Path | None = None,
) -> dict[str, Any]:
    """Poison ``splits.train`` as ``attack`` says (its trigger on its fraction of the
    non-target rows, relabelled to its target), distil it with each of ``methods`` at each of
    ``ipcs`` (``iterations``, ``options``), and measure clean accuracy and ASR (module
    docstring) of networks trained on each backdoored set, on the same method's set distilled
    from the clean split, and on random real images of the poisoned split.

    Everything is checked before any work. Every set is distilled with ``run.seed`` and every
    network trained by ``run.protocol`` with the same run seeds (:meth:`AuditRun.of` builds it
    from a resolved protocol); the poisoned rows come from a generator seeded by ``(seed,
    "backdoor-rows")``. Same seed => same result. With ``keep`` (a folder), each method's rows
    are kept there as soon as they exist and a re-run reuses them
    (:func:`~ddkit.audits.base.kept_json`). Returns a JSON-ready dict."""
    names = _check_attack(attack.attack, methods, ipcs)
    spec, trigger, target, seed = splits.spec, attack.trigger, attack.target, run.seed
    trigger.check(spec)
    check_target(target, spec)
    rows_seed = derive_seed(seed, "backdoor-rows")
    poisoned = poison(splits.train, trigger, fraction=attack.fraction, target=target,
                      generator=torch.Generator().manual_seed(rows_seed))  # fmt: skip
    _poisoned_ipc_check(poisoned, ipcs, attack.fraction)
    budgets = {
        "attack": attack.attack,
        "fraction": attack.fraction,
        "target": target,
        "poisoned_rows": len(poisoned.rows),
        "poisoned_rows_seed": rows_seed,
        "trigger": {**dataclasses.asdict(trigger), "corner": list(trigger.corner(spec))},
        "distillation_iterations": budgets_json(iterations),
        "method_options": dict(options or {}),
        "asr_test_images": int((splits.test.labels != target).sum()),
        **(
            {"doorping": dataclasses.asdict(attack.doorping)} if attack.attack == "doorping" else {}
        ),
    }
    p = run.protocol
    out = audit_record("backdoor", seed=seed, protocol=p, budgets=budgets)
    out.update({"dataset": spec.name, "sets": {}})
    score = _scorer(splits, attack, run)
    data = (splits.train.images, splits.train.labels)

    def key(m: str, ipc: int, budget: int | None) -> str:  # its own budget, not the others'
        own = {**budgets, "distillation_iterations": budget}
        return unit_key(m, ipc, own, p.settled().to_dict(), seed, *data)

    for ipc in ipcs:
        for m in (m for m in names if m != "random"):  # random real images: the floor below
            budget = iterations_of(iterations, m, ipc)
            out["sets"].update(kept_json(
                keep / "results" / f"{m}-ipc{ipc}.json" if keep is not None else None,
                key(m, ipc, budget),
                lambda m=m, ipc=ipc, budget=budget: _method_rows(
                    m, ipc, splits, poisoned, attack, iterations=budget, options=options,
                    run=run),
            ))  # fmt: skip

        def random_row(ipc: int = ipc) -> dict[str, Any]:
            rand = random_real(poisoned.train, ipc, seed=seed)
            return {
                "role": "floor: random real images of the poisoned split",
                "poisoned_images": _count_poisoned(rand, poisoned),
                **score(rand, trigger.pattern(spec), name=f"random/ipc{ipc}"),
            }

        out["sets"][f"random/ipc{ipc}/poisoned"] = kept_json(
            keep / "results" / f"random-ipc{ipc}.json" if keep is not None else None,
            key("random", ipc, iterations_of(iterations, "random", ipc)),
            random_row,
        )
    return out


def _scorer(
    splits: DatasetSplits, attack: BackdoorAttack, run: AuditRun
) -> Callable[..., dict[str, Any]]:
    """:func:`_scores` with what every set of the audit is scored by bound."""
    return functools.partial(_scores, splits=splits, mask=attack.trigger.mask(splits.spec),
                             target=attack.target, run=run)  # fmt: skip


def _method_rows(
    method: str,
    ipc: int,
    splits: DatasetSplits,
    poisoned: Poisoned,
    attack: BackdoorAttack,
    *,
    iterations: int | None,
    options: dict[str, Any] | None,
    run: AuditRun,
) -> dict[str, dict[str, Any]]:
    """The backdoored set of ``method`` at ``ipc`` and its clean floor (the same method on the
    clean split), each scored with the trigger the attack ends with."""
    syn, final, extra = _backdoored_set(poisoned, attack, method, ipc, iterations=iterations,
                                        options=options, run=run)  # fmt: skip
    clean = distil(splits.train, method, ipc, iterations=iterations, seed=run.seed,
                   options=options, progress=run.progress, device=run.device)  # fmt: skip
    score = _scorer(splits, attack, run)
    key = f"{method}/ipc{ipc}"
    return {
        f"{key}/poisoned": {"role": "backdoored", **extra, **score(syn, final, name=key)},
        f"{key}/clean": {
            "role": "floor: distilled from the clean split",
            **score(clean, final, name=f"{key}/clean"),
        },
    }


def _count_poisoned(rand: SyntheticSet, poisoned: Poisoned) -> int:
    picked = set(rand.meta.get("indices", []))
    return len(picked & set(poisoned.rows.tolist()))


def _backdoored_set(
    poisoned: Poisoned,
    attack: BackdoorAttack,
    method: str,
    ipc: int,
    *,
    iterations: int | None,
    options: dict[str, Any] | None,
    run: AuditRun,
) -> tuple[SyntheticSet, torch.Tensor, dict[str, Any]]:
    """The set ``method`` distils from the poisoned split, the trigger to test it with, and
    what the attack records (DOORPING: the final trigger and its updates). The naive attack's
    set is distilled on ``run.device``; DOORPING's on the CPU, where its callback re-stamps the
    very rows the method reads."""
    spec, trigger, seed = poisoned.train.spec, attack.trigger, run.seed
    if attack.attack == "naive":
        syn = distil(poisoned.train, method, ipc, iterations=iterations, seed=seed,
                     options=options, progress=run.progress, device=run.device)  # fmt: skip
        return syn, trigger.pattern(spec), {}
    own = Poisoned(ImageDataset(poisoned.train.images.clone(), poisoned.train.labels,
                                spec), poisoned.rows, poisoned.target)  # fmt: skip
    cb = DoorpingCallback(own, trigger, attack.doorping, seed=seed)
    syn = distil(own.train, method, ipc, iterations=iterations, seed=seed, options=options,
                 callbacks=[cb], progress=run.progress)  # fmt: skip
    r, c = trigger.corner(spec)
    s = trigger.size
    patch = cb.pattern_[0, :, r : r + s, c : c + s]
    return syn, cb.pattern_, {"trigger_patch": patch.tolist(), "trigger_updates": cb.history_}


def plot_backdoor(result: Mapping[str, Any], path: str | Path) -> Path:
    """Attack success rate and clean accuracy per training set (bars, in %)."""
    from ddkit.plots import new_figure, save_figure

    names = list(result["sets"])
    fig, (ax,) = new_figure(width=max(5.0, 0.9 * len(names) + 2), height=4.0)
    xs = torch.arange(len(names)).float()
    asr = [100 * result["sets"][n]["mean"]["asr"] for n in names]
    acc = [100 * result["sets"][n]["mean"]["clean_accuracy"] for n in names]
    ax.bar(xs - 0.2, asr, width=0.4, color="tab:red", label="attack success rate")
    ax.bar(xs + 0.2, acc, width=0.4, color="tab:blue", label="clean test accuracy")
    ax.set_xticks(xs.tolist(), names, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    b = result["budgets"]
    ax.set_title(
        f"{result['dataset']}: {b['attack']} attack, {b['poisoned_rows']} rows to class "
        f"{b['target']}; ASR on non-target test images",
        fontsize=8,
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def _plan(
    names: Sequence[str],
    ipcs: Sequence[int],
    protocol: EvalProtocol,
    iterations: Budgets,
    num_classes: int,
    quick: dict[str, Any],
) -> AuditPlan:
    """What :func:`backdoor_audit` trains: per IPC each method's backdoored and clean set (two
    distillations) and the random real floor."""
    sets, distils = [], []
    for ipc in ipcs:
        for m in (m for m in names if m != "random"):
            sets += [(f"{m}/ipc{ipc}/poisoned", ipc * num_classes),
                     (f"{m}/ipc{ipc}/clean", ipc * num_classes)]  # fmt: skip
            distils.append(DistillJob(m, ipc, iterations_of(iterations, m, ipc), 2))
        sets.append((f"random/ipc{ipc}/poisoned", ipc * num_classes))
    return sets_plan("backdoor", sets, protocol, distils, quick)


@register_audit
class BackdoorAudit(Audit):
    """``ddkit audit backdoor``."""

    name = "backdoor"
    help = "backdoor (BadNets, DOORPING) through distillation: attack success rate vs floors"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        add_training_arguments(parser, methods="dm", ipc="10", out="runs/audit-backdoor")
        parser.add_argument("--attack", choices=ATTACKS, default="naive")
        parser.add_argument("--fraction", type=float, default=0.1,
                            help="poisoned share of the non-target training rows")  # fmt: skip
        parser.add_argument("--target", type=int, default=0, help="target class index")
        parser.add_argument("--trigger-size", type=int, default=2, help="patch side (pixels)")
        parser.add_argument("--trigger-position", default="bottom-right",
                            help=f"{', '.join(POSITIONS)} or ROW,COL")  # fmt: skip
        parser.add_argument("--trigger-value", type=float, default=1.0, help="pixel value")
        parser.add_argument(
            "--doorping", action="append", default=[], metavar="KEY=VALUE",
            help="DOORPING option (every, model, net_epochs, net_lr, topk, alpha, steps, lr, "
            "threshold, carriers)",
        )  # fmt: skip

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from ddkit.data import load_dataset
        from ddkit.io import atomic_write_json
        from ddkit.methods.config import parse_options

        quick = apply_quick(args)
        ipcs = number_list(args.ipc, "--ipc", kind=int, minimum=1)
        fraction = check_fraction(args.fraction, "--fraction")
        trigger = Trigger(args.trigger_size, args.trigger_position, args.trigger_value)
        doorping = DoorpingConfig.from_options(parse_options(args.doorping))
        attack = BackdoorAttack(args.attack, trigger, fraction, args.target, doorping)
        options = parse_options(args.set)
        protocol = get_protocol(args.protocol)  # resolved once, here
        names = _check_attack(args.attack, args.methods, ipcs)
        iterations = Budgets.parse(args.iterations)
        iterations.check()
        device = device_option(args)
        splits = load_dataset(args.dataset, root=args.root)
        models = models_option(args, splits.spec)
        trigger.check(splits.spec)
        check_target(args.target, splits.spec)
        if args.attack == "doorping":
            doorping.check(splits.spec)
        run = AuditRun.of(protocol, models=models, runs=args.runs, epochs=args.epochs,
                          seed=args.seed, device=device, progress=not args.quiet)  # fmt: skip
        p = run.protocol
        plan = _plan(names, ipcs, p, iterations, splits.spec.num_classes, quick)
        if args.dry_run:
            return dry_run(plan, splits, p, p.models[0], args.out, seed=args.seed,
                           options=options, device=str(device))  # fmt: skip
        if not args.quiet:
            print(plan.line(), flush=True)
        with hold_output(args, "audit folder", "backdoor") as out:
            result = backdoor_audit(splits, args.methods, ipcs, run, attack=attack,
                                    iterations=iterations, options=options, keep=out)  # fmt: skip
            result.update({"quick": quick} if quick else {})
            atomic_write_json(out / "backdoor.json", result)
            plot_backdoor(result, out / "backdoor.png")
            print(f"{'set':<28} {'ASR':>7} {'clean':>7} (%)")
            for name, row in result["sets"].items():
                m = row["mean"]
                print(f"{name:<28} {100 * m['asr']:7.2f} {100 * m['clean_accuracy']:7.2f}")
            print(f"wrote {out / 'backdoor.json'} and {out / 'backdoor.png'}")
            return 0
