"""The audit contract: a registered class with a name, one line of help, its CLI arguments and
its run; the results are JSON with the seeds, runs and budgets that produced them."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddkit.commands import Member
from ddkit.errors import ConfigError
from ddkit.eval.protocol import EvalProtocol, get_protocol
from ddkit.registry import Registry, import_submodules

if TYPE_CHECKING:
    import torch

    from ddkit.data.dataset import ImageDataset
    from ddkit.data.spec import DatasetSpec
    from ddkit.data.synthetic import SyntheticSet
    from ddkit.methods.base import Callback
    from ddkit.progress import ProgressSetting


class Audit(Member):
    """One trust audit (``ddkit audit NAME``): the contract of :class:`ddkit.commands.Member`;
    its results are JSON with the seeds, runs and budgets that produced them
    (:func:`audit_record`)."""

    group = "audit"


AUDITS: Registry[Any] = Registry("audit")


#: class decorator: register an audit under its ``name``
register_audit = AUDITS.add_class


def load_all() -> None:
    """Import every module of :mod:`ddkit.audits`, so that each registers its audit."""
    import_submodules("ddkit.audits")


# ====================================================================== shared by the audits
# Every audit compares networks trained on distilled sets with networks trained on random real
# images of the same size and on the full data. These helpers build those training sets, train
# the networks as an evaluation protocol does (ddkit.eval's own training code), and read the
# options the audits share.


def check_fraction(value: float, what: str) -> float:
    """``value`` as a float in ``[0, 1]``, else a one-line :class:`ConfigError`."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= v <= 1.0:
        raise ConfigError(f"{what} must be in [0, 1], got {value!r}")
    return v


@dataclass(frozen=True)
class Budgets:
    """Distillation iterations per source: ``default`` (``None``: each method's preset budget),
    replaced for a method (``dsa=20``) or for a method at one IPC (``dsa@50=5``, which wins).
    Methods differ in cost per iteration by orders of magnitude, so one audit usually needs
    several: ``--iterations 200,dsa=20,dsa@50=5``."""

    default: int | None = None
    per_method: tuple[tuple[str, int], ...] = ()
    per_cell: tuple[tuple[str, int, int], ...] = ()  # (method, ipc, iterations)

    @classmethod
    def parse(cls, text: str | int | None) -> Budgets:
        """``N``, ``METHOD=N`` and ``METHOD@IPC=N`` entries, comma-separated (else one line)."""
        if text is None or isinstance(text, int):
            return cls(_iterations(text, str(text)))
        default, per_method, per_cell = None, {}, {}
        for entry in (e.strip() for e in str(text).split(",")):
            key, sep, value = entry.rpartition("=")
            if not sep:
                default = _iterations(entry, text)
                continue
            method, at, ipc = key.partition("@")
            if not method or (at and not ipc.isdigit()):
                raise ConfigError(_BUDGET_FORMAT.format(text=text))
            if at:
                per_cell[(method, int(ipc))] = _iterations(value, text)
            else:
                per_method[method] = _iterations(value, text)
        return cls(
            default,
            tuple(sorted(per_method.items())),
            tuple((m, i, n) for (m, i), n in sorted(per_cell.items())),
        )

    def of(self, method: str, ipc: int) -> int | None:
        """The iterations ``method`` distils with at ``ipc``."""
        for m, i, n in self.per_cell:
            if (m, i) == (method, ipc):
                return n
        return dict(self.per_method).get(method, self.default)

    def check(self) -> None:
        """Refuse a budget for a name that is no registered method (a typo would be ignored).
        A method the audit does not distil this time may be named: a staged script gives
        every stage the same budgets."""
        from ddkit.methods import method_names

        named = [m for m, _ in self.per_method] + [m for m, _, _ in self.per_cell]
        try:
            if named:
                method_names(named)
        except ConfigError as e:
            raise ConfigError(f"--iterations: {e}") from None

    def to_json(self) -> int | dict[str, Any] | None:
        """The record of a results file: the default alone when nothing is replaced (as an
        audit with one budget has always recorded it), else every entry."""
        if not self.per_method and not self.per_cell:
            return self.default
        return {
            "default": self.default,
            **{m: n for m, n in self.per_method},
            **{f"{m}@{i}": n for m, i, n in self.per_cell},
        }


_BUDGET_FORMAT = (
    "--iterations takes N, METHOD=N or METHOD@IPC=N entries, comma-separated (e.g. "
    "200,dsa=20,dsa@50=5), got {text!r}"
)


def _iterations(value: Any, text: Any) -> int | None:
    if value is None:
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(_BUDGET_FORMAT.format(text=text)) from None
    if n < 0:
        raise ConfigError(f"--iterations must be >= 0, got {n} in {text!r}")
    return n


def iterations_of(iterations: int | Budgets | None, method: str, ipc: int) -> int | None:
    """The iterations of ``method`` at ``ipc`` under an audit's ``iterations`` (one count for
    every method, ``None`` for the presets', or :class:`Budgets`)."""
    return iterations.of(method, ipc) if isinstance(iterations, Budgets) else iterations


def budgets_json(iterations: int | Budgets | None) -> int | dict[str, Any] | None:
    """``iterations`` as a results file records it (:meth:`Budgets.to_json`)."""
    return iterations.to_json() if isinstance(iterations, Budgets) else iterations


#: The protocol an audit trains its networks under unless told otherwise (resolved once, at
#: import; the audits' commands resolve ``--protocol`` once and pass theirs).
AUDIT_PROTOCOL = get_protocol("dc")


@dataclass(frozen=True)
class AuditRun:
    """How an audit trains its networks and runs: the evaluation ``protocol``, resolved once at
    the audit's entry point (its models, runs and epochs already replaced where the audit was
    asked to), the ``seed`` every set is distilled and every network trained with, the
    ``device`` they run on, and whether ``progress`` is shown. :meth:`of` builds one from a
    protocol and the changes an audit was asked for."""

    protocol: EvalProtocol
    seed: int = 0
    device: torch.device | str = "cpu"
    progress: ProgressSetting = False

    @classmethod
    def of(
        cls,
        protocol: EvalProtocol = AUDIT_PROTOCOL,
        *,
        models: Sequence[str] | None = None,
        runs: int | None = None,
        epochs: int | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
        progress: ProgressSetting = False,
    ) -> AuditRun:
        """``protocol`` (resolved by the caller) with ``models``/``runs``/``epochs`` replacing
        its own where given."""
        p = protocol.with_(models=tuple(models) if models else None, runs=runs, epochs=epochs)
        return cls(p, seed, device, progress)


def distil(
    train: ImageDataset,
    method: str,
    ipc: int,
    *,
    iterations: int | None = None,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    callbacks: Sequence[Callback] = (),
    progress: ProgressSetting = False,
    device: torch.device | str = "cpu",
) -> SyntheticSet:
    """``train`` distilled by the registered ``method`` at ``ipc`` (its preset for the dataset
    and IPC, then ``options``; ``iterations=None``: the preset's budget), computed on
    ``device`` (the set comes back on the CPU)."""
    import torch

    from ddkit.methods import create_method

    m = create_method(method, dataset=train.spec.name, ipc=ipc, **(options or {}))
    if torch.device(device) != train.images.device:
        train = train.to(device)
    return m.fit(
        train, ipc, iterations=iterations, seed=seed, callbacks=callbacks, progress=progress
    )


def random_real(train: ImageDataset, ipc: int, *, seed: int) -> SyntheticSet:
    """``ipc`` real rows per class of ``train``, drawn with ``seed`` (the ``random`` selector)."""
    return distil(train, "random", ipc, seed=seed)


def full_data(train: ImageDataset) -> SyntheticSet:
    """All of ``train`` as a set (the full-data reference)."""
    from ddkit.data.synthetic import SyntheticSet

    return SyntheticSet.from_real(train, meta={"method": "full", "ipc": max(train.class_counts)})


@dataclass
class TrainedNetworks:
    """Networks trained on one set as an evaluation protocol trains them (``protocol.runs``
    fresh networks per model of the protocol), with the real test split in the set's space
    (its normalisation and recorded transform), which is what the networks expect."""

    protocol: EvalProtocol
    lr: float
    test: ImageDataset
    models: list[str]  # the architecture of each network
    runs: list[int]  # the run index of each network within its architecture
    seeds: list[int]  # the run seed of each network
    networks: list[torch.nn.Module]
    seconds: float = 0.0

    def rows(self) -> list[dict[str, Any]]:
        """``{"model", "run", "seed"}`` of each network, for a results file."""
        return [
            {"model": m, "run": r, "seed": s} for m, r, s in zip(self.models, self.runs, self.seeds)
        ]


def train_on_set(
    syn: SyntheticSet,
    test: ImageDataset,
    protocol: str | EvalProtocol = "dc",
    *,
    runs: int | None = None,
    epochs: int | None = None,
    models: Sequence[str] | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: ProgressSetting = False,
) -> TrainedNetworks:
    """Train fresh networks on ``syn`` exactly as :func:`ddkit.eval.evaluate` does
    (:func:`ddkit.eval.evaluate.train_fresh_networks`: the protocol's targets, learned lr,
    per-run seeds from ``seed``; ``runs``/``epochs``/``models`` override the protocol's) and
    return them instead of their test accuracy."""
    from ddkit.eval.evaluate import train_fresh_networks

    fresh = train_fresh_networks(
        syn, test, protocol, models=models, runs=runs, epochs=epochs, seed=seed, device=device,
        progress=progress,
    )  # fmt: skip
    out = TrainedNetworks(fresh.protocol, fresh.lr, fresh.test, [], [], [], [], fresh.seconds)
    for name, res in fresh.results.items():
        out.models += [name] * len(fresh.seeds)
        out.runs += list(range(len(fresh.seeds)))
        out.seeds += fresh.seeds
        out.networks += res.models
    return out


def models_option(args: argparse.Namespace, spec: DatasetSpec) -> list[str] | None:
    """The ``--models`` of :func:`add_training_arguments`, each built once for ``spec`` so that
    a bad name fails before any work, or ``None`` (the protocol's)."""
    from ddkit.models import create_model

    names = [m.strip() for m in args.models.split(",") if m.strip()]
    for name in names:
        create_model(name, num_classes=spec.num_classes, in_channels=spec.channels,
                     image_size=spec.image_size)  # fmt: skip
    return names or None


def audit_record(
    audit: str, *, seed: int, protocol: EvalProtocol, budgets: dict[str, Any]
) -> dict[str, Any]:
    """The head of an audit's results file: what produced them (the audit, its seed, the
    networks' protocol and runs, the attack / distillation budgets, the ddkit version)."""
    from ddkit import __version__

    return {
        "audit": audit,
        "seed": seed,
        "runs": protocol.runs,
        "protocol": protocol.settled().to_dict(),
        "budgets": budgets,
        "ddkit_version": __version__,
    }


#: ``--quick``: ceilings on an audit's counts (a smaller value given stays; ``None`` takes it).
QUICK = {"runs": 1, "epochs": 30, "full_epochs": 30, "iterations": 50, "shadows": 4,
         "pool": 1000, "bootstrap": 50, "max_test": 500, "steps": 5}  # fmt: skip


def add_estimate_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dry-run`` and ``--quick``, shared by the audits."""
    parser.add_argument(
        "--dry-run", action="store_true",
        help="print what the audit would train and its estimated time (measured here by a "
        "short probe), then stop; nothing is written",
    )  # fmt: skip
    parser.add_argument(
        "--quick", action="store_true",
        help="a small audit to try first: at most "
        + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in QUICK.items())
        + " (where the audit has the option); said in its output and results",
    )  # fmt: skip


def add_training_arguments(
    parser: argparse.ArgumentParser, *, methods: str, ipc: str, out: str, runs: bool = True
) -> None:
    """The options audits share: the dataset, what to distil (``--methods``, ``--ipc``,
    ``--iterations``, ``--set``), how networks are trained (``--protocol``, ``--runs`` unless
    ``runs`` is false, ``--epochs``, ``--models``), and ``--seed``, ``--root``, ``--quiet``,
    ``--device`` (:func:`ddkit.commands.device_option`), ``--out`` (default ``out``),
    ``--dry-run`` and ``--quick`` (:func:`add_estimate_arguments`)."""
    from ddkit.commands import add_common

    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--methods", default=methods, help="methods to distil (comma-separated)")
    parser.add_argument("--ipc", default=ipc, help="images per class (comma-separated)")
    parser.add_argument(
        "--iterations",
        default=None,
        help="distillation budget: N, and METHOD=N or METHOD@IPC=N to replace it for one "
        "method (comma-separated; default: the presets')",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="option given to every method (repeatable)",
    )  # fmt: skip
    parser.add_argument("--protocol", default="dc", help="how networks are trained (ddkit list)")
    if runs:
        parser.add_argument(
            "--runs", type=int, default=None, help="networks per set (default: protocol's)"
        )
    parser.add_argument("--epochs", type=int, default=None, help="default: the protocol's")
    parser.add_argument(
        "--models", default="", help="evaluation networks (comma-separated; default: protocol's)"
    )
    add_common(parser, "seed", "root", "quiet", "device", out=f"output folder (default {out})")
    parser.set_defaults(out=out)
    add_estimate_arguments(parser)


# ====================================================================== resuming a killed audit
# An audit's units (a distilled set, one set's trained-and-attacked networks) can take many
# minutes each. With an output folder, each unit is kept there as soon as it is done, under a
# key that digests everything it depends on; a re-run of the same command reuses it, and a unit
# kept under another key (the command changed) is refused rather than silently mixed in.


def unit_key(*parts: Any) -> str:
    """A short digest of JSON-able ``parts`` and tensors (their bytes): a unit's key."""
    import torch

    from ddkit.data.fingerprint import fingerprint

    digestible = [
        p if isinstance(p, torch.Tensor) else json.dumps(p, sort_keys=True, default=str)
        for p in parts
    ]
    return fingerprint(*digestible, length=20)


def _stale(where: Path) -> ConfigError:
    return ConfigError(
        f"{str(where)!r} was made by another command (other options, data or seed); use a new "
        "--out or delete it"
    )


def kept_set(folder: Path | None, key: str, build: Callable[[], SyntheticSet]) -> SyntheticSet:
    """The set kept in ``folder`` under ``key``, or ``build()`` (kept there when ``folder`` is
    given). ``None``: no folder, just ``build()``."""
    from ddkit.data.synthetic import META_FILE, SyntheticSet

    if folder is None:
        return build()
    if (folder / META_FILE).is_file():
        syn = SyntheticSet.load(folder)
        if syn.meta.get("audit_key") != key:
            raise _stale(folder)
        return syn
    syn = build()
    syn.meta["audit_key"] = key
    syn.save(folder)
    return syn


def kept_json(path: Path | None, key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The JSON object kept at ``path`` under ``key``, or ``compute()`` (kept there when
    ``path`` is given) with the SHA-256 of its value: an edited value is refused, not reused
    (units kept before checksums were written have none and are read as they are)."""
    from ddkit.io import atomic_write_json, json_sha256, read_json

    if path is None:
        return compute()
    if path.is_file():
        kept = read_json(path, max_bytes=KEPT_MAX_BYTES)
        if not isinstance(kept, dict) or kept.get("key") != key:
            raise _stale(path)
        if "sha256" in kept and kept["sha256"] != json_sha256(kept.get("value")):
            raise ConfigError(
                f"{str(path)!r} was edited after it was kept (its checksum does not match); "
                "delete it to compute it again"
            )
        return kept["value"]
    value = compute()
    atomic_write_json(path, {"key": key, "value": value, "sha256": json_sha256(value)})
    return value


#: The largest kept unit read back (a unit holds one set's attack results: kilobytes).
KEPT_MAX_BYTES = 2**26


def unit_name(name: str) -> str:
    """A set's name (``dm/ipc10``) as a file name (``dm-ipc10``)."""
    return name.replace("/", "-")
