"""Membership inference against networks trained on distilled data (``ddkit audit privacy``).

The question: does a network trained on a distilled set reveal which real rows the set was
distilled from? The setting follows Carlini et al., "No Free Lunch in 'Privacy for Free: How
does Dataset Condensation Help Privacy'" (arXiv:2209.14987), which answered the "privacy for
free" claim (Dong et al., ICML 2022) with the attacks of :mod:`ddkit.audits.membership`:

* **The pool** is the training split (or ``pool`` rows of it, the same share of every class),
  trimmed to an even number of rows per class. The test split is only used for accuracy.
* **The target** network's members are a class-stratified random half of the pool; its
  non-members are the other half: as many rows, the same class mix.
* **A source** turns member rows into a network: ``full`` (all of them, trained by the
  protocol), ``dp/eps8`` (all of them, trained by DP-SGD at epsilon 8:
  :mod:`ddkit.audits.dp_sgd`), ``random/ipc10`` (a random real subset of them) and
  ``dm/ipc10`` (a method's distilled set of them), the last two trained by the protocol. Each
  source trains one network per model: the target and the shadows, on the same halves for every
  source and from the same initial seeds.
* **The shadows** (an even number) are trained on complementary pairs of class-stratified
  random halves, so that every pool row is IN exactly half of them and OUT of the other half,
  which online LiRA needs for every row.

Each network's statistics on every pool row (LiRA's ``phi`` and the loss) are written to
``signals/`` under the output folder as soon as it is trained, with a fingerprint of what
produced them; a re-run reuses them (so a killed run resumes, and sources shared by several
runs, such as ``full``, are trained once) and refuses files with another fingerprint. Several
processes running the same audit into one folder share its networks (each claims a network by a
lock file while it trains it), so a long audit can use one process per core.

This module trains the networks, keeps their statistics, attacks them and holds the command.
The sources, the pool and every network's members (:class:`Source`, :func:`privacy_sources`,
:func:`pool_rows`, :func:`membership_masks`, :func:`check_members`, :func:`plan_membership`)
moved to :mod:`ddkit.audits.privacy_plan`; they are still importable from here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ddkit.audits.base import (
    AUDIT_PROTOCOL,
    Audit,
    Budgets,
    add_training_arguments,
    audit_record,
    budgets_json,
    distil,
    full_data,
    iterations_of,
    models_option,
    random_real,
    register_audit,
    train_on_set,
    unit_key,
    unit_name,
)
from ddkit.audits.dp_sgd import DPRecipe, train_dp_sgd
from ddkit.audits.estimate import apply_quick, dry_run
from ddkit.audits.membership import (
    DEFAULT_FPRS,
    attack_metrics,
    check_fprs,
    fpr_key,
    lira_online,
    loss_attack,
    membership_signals,
    roc_curve,
)
from ddkit.audits.privacy_plan import (
    Source,
    check_members,  # noqa: F401  (still importable from here)
    membership_masks,  # noqa: F401  (still importable from here)
    plan_membership,
    pool_rows,  # noqa: F401  (still importable from here)
    privacy_plan,
    privacy_sources,
)
from ddkit.claims import claim, hold_folder, hold_output
from ddkit.commands import device_option, number_list
from ddkit.data.dataset import DatasetSplits, ImageDataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, FileFormatError
from ddkit.eval.evaluate import test_in_set_space
from ddkit.eval.protocol import EvalProtocol, get_protocol
from ddkit.eval.train import accuracy
from ddkit.io import json_sha256
from ddkit.progress import Progress, ProgressSetting
from ddkit.rng import derive_seed

SIGNALS = "signals"


# ============================================================================ training
@dataclass(frozen=True)
class PrivacyTraining:
    """How every source's networks are trained: the protocol (one network, ``model``), the
    epochs of the full-data networks, the distillation budget and options, DP-SGD's recipe
    (its epsilon set per source), and the device every set is distilled and every network
    trained and queried on (not part of the fingerprint: kept networks resume on another)."""

    protocol: EvalProtocol
    model: str
    full_epochs: int
    iterations: int | Budgets | None = None
    options: Mapping[str, Any] | None = None
    dp: DPRecipe = DPRecipe(epsilon=1.0)
    device: str = "cpu"

    def fingerprint(self, source: Source, dataset: str, pool: torch.Tensor, seed: int) -> str:
        """A digest of everything a source's networks depend on."""
        parts: dict[str, Any] = {"source": source.name, "dataset": dataset, "seed": seed,
                                 "model": self.model, "pool": pool.tolist()}  # fmt: skip
        if source.kind == "dp":
            parts["dp"] = asdict(replace(self.dp, epsilon=source.epsilon, epochs=self.full_epochs))
        else:
            epochs = self.full_epochs if source.kind == "full" else self.protocol.epochs
            parts["protocol"] = self.protocol.with_(epochs=epochs).settled().to_dict()
        if source.kind == "distilled":
            parts["distil"] = {
                "iterations": self.budget(source),
                "options": dict(self.options or {}),
            }
        return unit_key(parts)

    def budget(self, source: Source) -> int | None:
        """The iterations a distilled ``source`` is distilled with (``None``: its preset's)."""
        return iterations_of(self.iterations, source.method, source.ipc)

    @classmethod
    def of(
        cls,
        protocol: EvalProtocol = AUDIT_PROTOCOL,
        *,
        model: str | None = None,
        epochs: int | None = None,
        full_epochs: int | None = None,
        iterations: int | Budgets | None = None,
        options: Mapping[str, Any] | None = None,
        dp: DPRecipe | None = None,
        device: torch.device | str = "cpu",
    ) -> PrivacyTraining:
        """``protocol`` (resolved by the caller), one network a run: ``model`` (default
        the protocol's first) trained for ``epochs`` (default its own); full-data and DP-SGD
        networks for ``full_epochs`` (default ``epochs``); distillation with ``iterations`` and
        ``options``; DP-SGD by ``dp`` (its epsilon set per source)."""
        p = protocol.with_(epochs=epochs, runs=1)
        return cls(
            protocol=p, model=model or p.models[0], full_epochs=int(full_epochs or p.epochs),
            iterations=iterations, options=dict(options or {}), dp=dp or DPRecipe(epsilon=1.0),
            device=str(device),
        )  # fmt: skip


def _train(
    source: Source, members: ImageDataset, test: ImageDataset, how: PrivacyTraining, seed: int
) -> tuple[torch.nn.Module, SyntheticSet | None, dict[str, Any]]:
    """One network of ``source`` on ``members``: the network, the set it was trained on (None
    for DP-SGD, which trains on the members in their own space) and what to record."""
    if source.kind == "dp":
        recipe = replace(how.dp, epsilon=source.epsilon, epochs=how.full_epochs)
        res = train_dp_sgd(members, how.model, recipe, seed=seed, device=how.device)
        info = {"noise_multiplier": res.noise_multiplier, "epsilon_spent": res.epsilon_spent,
                "steps": res.steps, "seconds": res.seconds}  # fmt: skip
        return res.network, None, info
    protocol = how.protocol
    if source.kind == "full":
        syn, protocol = full_data(members), protocol.with_(epochs=how.full_epochs)
    elif source.kind == "random":
        syn = random_real(members, source.ipc, seed=seed)
    else:
        syn = distil(members, source.method, source.ipc, iterations=how.budget(source), seed=seed,
                     options=dict(how.options or {}), device=how.device)  # fmt: skip
    trained = train_on_set(syn, test, protocol, runs=1, models=[how.model], seed=seed,
                           device=how.device)  # fmt: skip
    return trained.networks[0], syn, {"seconds": trained.seconds}


def _signals_path(out: Path, source: Source, k: int) -> Path:
    return out / SIGNALS / unit_name(source.name) / f"model{k:03d}.safetensors"


def _load_signals(path: Path, fingerprint: str) -> dict[str, Any] | None:
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads(f.metadata()["record"])
            tensors = {k: f.get_tensor(k) for k in ("phi", "loss")}
    except (SafetensorError, KeyError, ValueError, OSError):
        raise FileFormatError(f"{str(path)!r} is not a readable signals file; delete it") from None
    if meta.get("fingerprint") != fingerprint:
        raise ConfigError(
            f"{str(path.parent)!r} holds networks trained another way (other options, pool or "
            "seed); use a new --out or delete that folder"
        )
    return {**meta, **tensors}


def _save_signals(path: Path, record: dict[str, Any], phi: torch.Tensor, loss: torch.Tensor):
    from safetensors.torch import save

    from ddkit.io import atomic_write_bytes

    data = save(
        {"phi": phi.contiguous(), "loss": loss.contiguous()}, {"record": json.dumps(record)}
    )
    atomic_write_bytes(path, data)


@dataclass(frozen=True)
class NetworkPlan:
    """What an audit's networks are trained from: the splits, the ``pool`` rows, the membership
    ``masks`` (target, then shadows), the recipe ``how`` and ``seed``, and the folder ``out``
    where each network's statistics are kept (``None``: nowhere)."""

    splits: DatasetSplits
    pool: torch.Tensor
    masks: torch.Tensor
    how: PrivacyTraining
    seed: int
    out: Path | None = None

    def fingerprint(self, source: Source) -> str:
        return self.how.fingerprint(source, self.splits.spec.name, self.pool, self.seed)

    def kept(self, source: Source, k: int) -> dict[str, Any] | None:
        """Network ``k`` of ``source`` as kept under ``out`` (``None`` if it is not; one trained
        another way is refused)."""
        if self.out is None:
            return None
        return _load_signals(_signals_path(self.out, source, k), self.fingerprint(source))


def network_signals(plan: NetworkPlan, source: Source, k: int) -> dict[str, Any] | None:
    """Network ``k`` of ``source`` (0 the target, then the shadows), trained on the pool rows
    ``plan.masks[k]`` marks: its statistics on the whole pool (``phi``, ``loss``), test accuracy
    and record. With ``plan.out``, kept there as soon as it is trained and reused on a re-run;
    the network is claimed by a lock file beside them (:mod:`ddkit.claims`) while it trains,
    and ``None`` is returned when another live process holds it."""
    saved = plan.kept(source, k)
    if saved is not None:
        return saved

    def train() -> dict[str, Any]:
        model_seed = derive_seed(plan.seed, "privacy-model", k)
        trained = _train_signals(source, plan.splits.train.subset(plan.pool), plan.masks[k],
                                 plan.splits.test, plan.how, model_seed)  # fmt: skip
        return {"fingerprint": plan.fingerprint(source), **trained}

    if plan.out is None:
        return train()
    path = _signals_path(plan.out, source, k)
    path.parent.mkdir(parents=True, exist_ok=True)
    with claim(path.with_suffix(".lock")) as mine:
        if not mine:
            return None
        saved = plan.kept(source, k)  # finished while we were claiming it
        if saved is None:
            saved = train()
            record = {key: v for key, v in saved.items() if key not in ("phi", "loss")}
            _save_signals(path, record, saved["phi"], saved["loss"])
        return saved


def _train_signals(
    source: Source,
    pool_data: ImageDataset,
    mask: torch.Tensor,
    test: ImageDataset,
    how: PrivacyTraining,
    model_seed: int,
) -> dict[str, Any]:
    """Train one network of ``source`` on the pool rows ``mask`` marks; its statistics on the
    whole pool, test accuracy and record."""
    net, syn, info = _train(source, pool_data.subset(torch.nonzero(mask).flatten()), test, how,
                            model_seed)  # fmt: skip
    query = test_in_set_space(syn, pool_data) if syn is not None else pool_data
    test = test_in_set_space(syn, test) if syn is not None else test
    query, test = query.to(how.device), test.to(how.device)
    phi, loss = membership_signals(net, query.images, query.labels)
    return {"model_seed": model_seed, "test_accuracy": accuracy(net, test.images, test.labels),
            "num_images": len(syn) if syn is not None else int(mask.sum()),
            **info, "phi": phi, "loss": loss}  # fmt: skip


#: seconds between looks at networks that other processes are training
POLL_SECONDS = 15.0


def all_signals(
    plan: NetworkPlan, sources: Sequence[Source], progress: Progress | None = None
) -> dict[str, dict[str, Any]]:
    """Every network of every source (:func:`network_signals`), stacked per source: ``phi``
    and ``loss`` ``(1 + shadows, n)`` and each network's record. Several processes running the
    same audit into one ``plan.out`` share the networks: each trains those no other holds, then
    waits for the rest (a network whose process died is trained here)."""
    count = len(plan.masks)
    got: dict[tuple[int, int], dict[str, Any]] = {}
    waiting = [(i, k) for i in range(len(sources)) for k in range(count)]
    while waiting:
        held = []
        for i, k in waiting:
            saved = network_signals(plan, sources[i], k)
            if saved is None:
                held.append((i, k))
                continue
            got[i, k] = saved
            if progress is not None:
                progress.update(1)
        if held:
            if progress is not None and len(held) != len(waiting):  # say so once per change
                progress.update(0, {"held by other processes": len(held)})
            time.sleep(POLL_SECONDS)
        waiting = held
    out_signals = {}
    for i, source in enumerate(sources):
        nets = [dict(got[i, k]) for k in range(count)]
        out_signals[source.name] = {
            "phi": torch.stack([n.pop("phi") for n in nets]),
            "loss": torch.stack([n.pop("loss") for n in nets]),
            "networks": nets,
        }
    return out_signals


# ============================================================================ the audit
@dataclass(frozen=True)
class MembershipAttack:
    """How the target is attacked: the loss attack, and online LiRA with ``shadows`` shadow
    networks (0: none; else even and >= 4), on ``pool`` rows of the training split (``None``:
    all of it); the true-positive rate is reported at each of ``fprs`` (in ``(0, 1)``, checked
    here), every metric with a bootstrap interval of ``bootstrap`` resamples."""

    shadows: int = 16
    pool: int | None = None
    fprs: Sequence[float] = DEFAULT_FPRS
    bootstrap: int = 200

    def __post_init__(self) -> None:
        object.__setattr__(self, "fprs", tuple(check_fprs(self.fprs)))


def _attack(
    signals: Mapping[str, Any],
    masks: torch.Tensor,
    fprs: Sequence[float],
    bootstrap: int,
    g_seed: int,
) -> tuple[dict[str, Any], dict[str, tuple[list[float], list[float]]]]:
    """Each attack's metrics and ROC curve against the target (network 0)."""
    is_member = masks[0]
    scores = {"loss": loss_attack(signals["loss"][0])}
    if len(masks) > 1:
        scores["lira"] = lira_online(signals["phi"][0], signals["phi"][1:], masks[1:])
    metrics, curves = {}, {}
    for name, s in scores.items():
        g = torch.Generator().manual_seed(derive_seed(g_seed, name))
        metrics[name] = attack_metrics(s, is_member, fprs=fprs, bootstrap=bootstrap, generator=g)
        curves[name] = roc_curve(s, is_member)
    return metrics, curves


def _summary(source: Source, signals: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict:
    nets = signals["networks"]
    accs = [n["test_accuracy"] for n in nets]
    mean: dict[str, float] = {"test_accuracy": statistics.fmean(accs)}
    for attack, m in metrics.items():
        for key, value in m.items():
            if isinstance(value, dict):
                mean[f"{attack}_{key}"] = value["value"]
    row: dict[str, Any] = {
        "kind": source.kind, "method": source.method, "ipc": source.ipc,
        "num_images": nets[0]["num_images"],
        "test_accuracy": {"target": accs[0], "mean": mean["test_accuracy"],
                          "std": statistics.pstdev(accs), "networks": len(accs)},
        "attacks": dict(metrics),
        "mean": mean,
        "seconds": sum(n.get("seconds", 0.0) for n in nets),
        "networks": nets,
    }  # fmt: skip
    if source.kind == "dp":
        row["epsilon"] = source.epsilon
        row["epsilon_spent"] = [n["epsilon_spent"] for n in nets]
        row["noise_multiplier"] = nets[0]["noise_multiplier"]
    return row


def privacy_audit(
    splits: DatasetSplits,
    sources: Sequence[Source],
    how: PrivacyTraining,
    *,
    attack: MembershipAttack = MembershipAttack(),  # noqa: B008  (frozen)
    seed: int = 0,
    out: str | Path | None = None,
    progress: ProgressSetting = False,
    kept_only: bool = False,
) -> dict[str, Any]:
    """Membership inference (``attack``: the loss attack; online LiRA with shadows) against
    networks trained by each of ``sources`` (module docstring), each trained as ``how`` says
    (:meth:`PrivacyTraining.of` resolves a protocol's name), each set distilled and each
    network trained on its device.

    With ``out``, every network's statistics are kept there and reused (resume);
    ``kept_only`` trains nothing: the sources whose networks are all kept there are attacked,
    the others listed under ``"incomplete"`` with how many are kept (a staged audit's table so
    far). Returns a JSON-ready dict (seeds, budgets, per source the attacks' metrics and the
    networks' test accuracy) and, under ``"_curves"``, the ROC curves (not for the file)."""
    fprs, p = list(attack.fprs), how.protocol
    rows, masks = plan_membership(
        splits, sources, shadows=attack.shadows, pool=attack.pool, seed=seed,
        bootstrap=attack.bootstrap,
    )  # fmt: skip
    if any(s.kind == "dp" for s in sources):  # every network's members hold DP-SGD's batch
        how.dp.check(int(masks.sum(dim=1).min()))
    folder = Path(out) if out is not None else None
    plan = NetworkPlan(splits, rows, masks, how, seed, folder)
    incomplete: dict[str, str] = {}
    if kept_only:
        if folder is None:
            raise ConfigError("kept_only reads the networks kept under out=; give out")
        kept = {s.name: sum(plan.kept(s, k) is not None for k in range(len(masks)))
                for s in sources}  # fmt: skip
        incomplete = {name: f"{n} of {len(masks)} networks kept" for name, n in kept.items()
                      if n < len(masks)}  # fmt: skip
        sources = [s for s in sources if s.name not in incomplete]
        if not sources:
            raise ConfigError(
                f"no source has all its networks kept under {str(folder)!r} yet; run the audit "
                "without kept_only (--kept-only) to train them"
            )
    budgets = {
        "pool": len(rows), "members": int(masks[0].sum()), "non_members": int((~masks[0]).sum()),
        "shadows": attack.shadows, "model": how.model, "epochs": p.epochs,
        "full_epochs": how.full_epochs, "distillation_iterations": budgets_json(how.iterations),
        "method_options": dict(how.options or {}),
        "dp": {k: v for k, v in asdict(how.dp).items() if k != "epsilon"}, "fprs": fprs,
        "bootstrap": attack.bootstrap,
        "lira": "online, per-row means, pooled variances, one query",
    }  # fmt: skip
    result = audit_record("privacy", seed=seed, protocol=p, budgets=budgets)
    result.update({"dataset": splits.spec.name, "sets": {}, "_curves": {}})
    if incomplete:
        result["incomplete"] = incomplete
    bar = Progress("privacy", len(sources) * len(masks), setting=progress, unit="nets")
    if folder is None:
        every = all_signals(plan, sources, progress=bar)
    else:  # held like the command's folder: audits of other settings are refused (issue 75)
        key = json_sha256({"budgets": budgets, "sources": [s.name for s in sources], "seed": seed,
                           "dataset": splits.spec.name})  # fmt: skip
        with hold_folder(folder, "audit folder", key, shared=True, option="out"):
            every = all_signals(plan, sources, progress=bar)
    for source in sources:
        signals = every[source.name]
        metrics, curves = _attack(
            signals, masks, fprs, attack.bootstrap, derive_seed(seed, source.name)
        )
        result["sets"][source.name] = _summary(source, signals, metrics)
        result["_curves"][source.name] = curves
    bar.close()
    return result


def plot_roc(result: Mapping[str, Any], path: str | Path) -> Path:
    """Each attack's ROC curve per source on log-log axes (one panel per attack), the chance
    diagonal dotted; DP-SGD sources dotted, random real dashed, full data black."""
    from ddkit.plots import new_figure, save_figure

    curves = result["_curves"]
    attacks = sorted({a for c in curves.values() for a in c}, key=["loss", "lira"].index)
    fig, axes = new_figure(ncols=len(attacks), width=4.5, height=4.2)
    floor = 1 / max(result["budgets"]["non_members"], 1)
    for ax, attack in zip(axes, attacks):
        for name, c in curves.items():
            fpr, tpr = (torch.tensor(v) for v in c[attack])
            keep = (fpr > 0) & (tpr > 0)
            style = {"ls": "--"} if name.startswith("random") else {}
            style = {"ls": ":"} if name.startswith("dp/") else style
            style = {"color": "black", "lw": 2} if name == "full" else style
            auc = result["sets"][name]["attacks"][attack]["auc"]["value"]
            ax.plot(fpr[keep], tpr[keep], label=f"{name} (AUC {auc:.3f})", **style)
        ax.plot([floor, 1], [floor, 1], color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(floor, 1)
        ax.set_ylim(floor, 1)
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        ax.set_title(f"{result['dataset']}: {attack} attack", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6)
    return save_figure(fig, path)


@register_audit
class PrivacyAudit(Audit):
    """``ddkit audit privacy``."""

    name = "privacy"
    help = "membership inference (loss, LiRA) on distilled vs random real vs full vs DP-SGD"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        add_training_arguments(parser, methods="dm", ipc="10", out="runs/audit-privacy", runs=False)
        parser.add_argument("--shadows", type=int, default=16, help="LiRA shadow networks (even)")
        parser.add_argument("--pool", type=int, default=None, help="pool rows (default: all)")
        parser.add_argument(
            "--full-epochs", type=int, default=None, help="epochs of full-data and DP networks"
        )
        parser.add_argument("--no-full", action="store_true", help="skip the full-data networks")
        parser.add_argument(
            "--dp-epsilons", default="1,8", help="DP-SGD budgets ('' for none; needs opacus)"
        )
        parser.add_argument("--dp-delta", type=float, default=DPRecipe.delta, help="DP-SGD delta")
        parser.add_argument(
            "--dp-batch", type=int, default=DPRecipe.batch_size, help="expected Poisson batch"
        )
        parser.add_argument("--dp-lr", type=float, default=DPRecipe.lr, help="DP-SGD step size")
        parser.add_argument("--dp-momentum", type=float, default=DPRecipe.momentum)
        parser.add_argument(
            "--dp-clip", type=float, default=DPRecipe.max_grad_norm,
            help="per-example gradient norm bound",
        )  # fmt: skip
        parser.add_argument(
            "--dp-accountant", choices=("prv", "rdp"), default=DPRecipe.accountant,
            help="opacus' privacy accountant",
        )  # fmt: skip
        parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples")
        parser.add_argument(
            "--kept-only", action="store_true",
            help="train nothing: the table of the sources whose networks --out keeps, the others "
            "listed as incomplete",
        )  # fmt: skip

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from ddkit.data import load_dataset
        from ddkit.io import atomic_write_json
        from ddkit.methods.config import parse_options

        quick = apply_quick(args)
        ipcs = number_list(args.ipc, "--ipc", kind=int, minimum=1)
        eps = number_list(args.dp_epsilons, "--dp-epsilons", above=0) if args.dp_epsilons else []
        sources = privacy_sources(args.methods, ipcs, dp_epsilons=eps, full=not args.no_full)
        iterations = Budgets.parse(args.iterations)
        iterations.check()
        dp = DPRecipe(1.0, args.dp_delta, 1, args.dp_batch, args.dp_lr, args.dp_momentum,
                      args.dp_clip, args.dp_accountant)  # fmt: skip
        if eps:
            dp.check(args.dp_batch)
        options = parse_options(args.set)
        protocol = get_protocol(args.protocol)  # resolved once, here
        device = device_option(args)
        splits = load_dataset(args.dataset, root=args.root)
        models = models_option(args, splits.spec)
        if models and len(models) > 1:
            raise ConfigError("the privacy audit trains one architecture: give one --models")
        attack = MembershipAttack(shadows=args.shadows, pool=args.pool, bootstrap=args.bootstrap)
        _, masks = plan_membership(splits, sources, shadows=attack.shadows, pool=attack.pool,
                                   seed=args.seed, bootstrap=attack.bootstrap)  # fmt: skip
        if eps:  # before the dry run too: every network's members hold DP-SGD's batch
            dp.check(int(masks.sum(dim=1).min()))
        how = PrivacyTraining.of(
            protocol, model=models[0] if models else None, epochs=args.epochs,
            full_epochs=args.full_epochs, iterations=iterations, options=options, dp=dp,
            device=device,
        )  # fmt: skip
        plan = privacy_plan(sources, masks, splits.spec.num_classes, epochs=how.protocol.epochs,
                            full_epochs=how.full_epochs, iterations=iterations,
                            quick=quick)  # fmt: skip
        if args.dry_run:
            return dry_run(plan, splits, how.protocol, how.model, args.out, seed=args.seed,
                           options=options, device=how.device)  # fmt: skip
        if not args.quiet and not args.kept_only:  # --kept-only trains nothing
            print(plan.line(), flush=True)
        with hold_output(args, "audit folder", "privacy", shared=True) as out:
            result = privacy_audit(
                splits, sources, how, attack=attack, seed=args.seed, out=out,
                progress=not args.quiet, kept_only=args.kept_only,
            )  # fmt: skip
            plot_roc(result, out / "privacy.png")
            result.pop("_curves")
            result.update({"quick": quick} if quick else {})
            atomic_write_json(out / "privacy.json", result)
            _print_table(result)
            print(f"wrote {out / 'privacy.json'} and {out / 'privacy.png'}")
            return 0


def _print_table(result: Mapping[str, Any]) -> None:
    fprs = [fpr_key(f) for f in result["budgets"]["fprs"]]
    attacks = ("loss", "lira") if result["budgets"]["shadows"] else ("loss",)
    head = "".join(f" {a} AUC" + "".join(f" {a} {k}" for k in fprs) for a in attacks)
    print(f"{'source':<16} {'test acc':>8}{head}")
    for name, row in result["sets"].items():
        cells = "".join(
            f" {row['mean'][f'{a}_auc']:.3f}"
            + "".join(f" {100 * row['mean'][f'{a}_{k}']:.2f}%" for k in fprs)
            for a in attacks
        )
        print(f"{name:<16} {100 * row['mean']['test_accuracy']:7.2f}%{cells}")
    for name, kept in result.get("incomplete", {}).items():
        print(f"{name:<16} not attacked: {kept}")
