"""The `Distiller` API shared by every distillation method and coreset selector.

A method object stores its hyper-parameters (``self.config``, a frozen dataclass validated when
it is built: :mod:`ddkit.methods.config`) and nothing else until :meth:`Distiller.fit` runs.

The contract (what the driver, the CLI and the conformance suite read):

* class attributes ``name``, ``kind`` (``"distiller"`` or ``"selector"``), ``Config``,
  ``presets`` (a tuple of :class:`~ddkit.methods.config.Preset`), ``test_overrides`` (config
  values that make the method cheap for :mod:`ddkit.testing`) and ``deterministic`` (``True``
  when the output does not depend on the seed; may be a property reading the config) and
  ``needs`` (``"image"``, the default, another registered modality's name, or
  ``"differentiable"``: what a dataset's rows must be,
  :meth:`ddkit.data.spec.DatasetSpec.check_needs`; a method on an unfit modality is refused in
  one line before any work, by :meth:`Distiller.check_data`, which also checks ``ipc`` as the
  data's modality counts it);
* ``init(train, ipc, generator, iterations)`` builds the initial state, knowing the run's total
  number of iterations; ``step(iteration) -> metrics`` runs one; ``result() -> SyntheticSet``.
  :meth:`Distiller.start` runs ``init`` without iterating (and :meth:`Distiller.initial_set`
  returns the set it starts from).

What lives in ``state_``: everything a step changes and the next step needs -- the synthetic
tensors, optimizers, generators, queues, counters (tensors, ``torch.Generator``, optimizers,
lists of tensors, JSON scalars). It is all a checkpoint holds, so a resumed run continues
bit for bit. What ``init`` derives from the config and the data alone (real images on the
device, an augmentation object, a loaded teacher or expert buffer, templates) lives in
trailing-underscore attributes and is rebuilt by ``init`` on resume.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from ddkit import distributed
from ddkit.data.dataset import ImageDataset
from ddkit.data.fingerprint import fingerprint
from ddkit.data.modalities import DEFAULT_MODALITY, get_modality
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, FileFormatError, UnknownNameError, warn_at_caller
from ddkit.eval import dry_run
from ddkit.eval.recipe import RECIPE_KEY, make_recipe
from ddkit.io import atomic_write_json, ensure_writable_dir, load_tensors, read_json, save_tensors
from ddkit.methods.config import MethodConfig, Preset
from ddkit.progress import Progress, ProgressSetting
from ddkit.registry import Registry, import_submodules
from ddkit.rng import check_seed


class Callback:
    """Hooks called by :meth:`Distiller.fit` (override what you need)."""

    def on_start(self, method: Distiller, total: int, start: int) -> None: ...
    def on_step_end(self, method: Distiller, iteration: int, metrics: dict[str, float]) -> None: ...
    def on_end(self, method: Distiller, result: SyntheticSet) -> None: ...
    def stop_requested(self) -> bool:
        """Whether the fit should end after the step just made (a resumable, valid set)."""
        return False


class ProgressReport(Callback):
    """Reports a fit's iterations through :class:`ddkit.progress.Progress` (a bar on a terminal,
    lines elsewhere)."""

    def __init__(self, desc: str, setting: ProgressSetting = "auto") -> None:
        self.desc, self.setting, self.progress = desc, setting, None

    def on_start(self, method: Distiller, total: int, start: int) -> None:
        note = method.step_cost()
        self.progress = Progress(self.desc, total, start=start, setting=self.setting, note=note)

    def on_step_end(self, method: Distiller, iteration: int, metrics: dict[str, float]) -> None:
        stop = getattr(method, "stop_at_", None)  # where a time budget ends the run
        if stop is not None and stop != self.progress.stop:
            self.progress.expect_stop(stop)
        self.progress.update(1, metrics)

    def on_end(self, method: Distiller, result: SyntheticSet) -> None:
        self.progress.close()


class Distiller:
    """Base class. Subclasses set ``name`` and ``Config`` and implement ``init`` / ``step`` /
    ``result`` (see the module docstring for the whole contract).

    ``presets`` are :class:`Preset` cells ``(dataset, ipc)`` (either may be ``"*"``); the most
    specific match wins (see :func:`resolve_config`).
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "distiller"  # "distiller" or "selector"
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    presets: ClassVar[tuple[Preset, ...]] = ()
    test_overrides: ClassVar[dict[str, Any]] = {}
    deterministic: ClassVar[bool] = False
    #: how a :mod:`ddkit.distributed` session splits a run (:meth:`splits_by`): ``"classes"``
    #: (each rank computes its classes' share of the synthetic images' gradient, summed over
    #: the ranks every step), ``"images"`` (image indices), ``"batch rows"`` (one student:
    #: each rank its rows of every mini-batch, the student's gradients summed) or ``""`` (not
    #: split: refused under torchrun)
    scale_out: ClassVar[str] = ""
    needs: ClassVar[str] = DEFAULT_MODALITY
    #: the registered evaluation protocol the method's paper judges its sets by, recorded in
    #: each set's recipe with that protocol's own networks (:mod:`ddkit.eval.recipe`); ``None``:
    #: the protocol the set's labels call for, on the network the set was distilled with
    recipe_protocol: ClassVar[str | None] = None
    #: how a long set-up (expert trajectories, a teacher trained in ``init``) reports its
    #: progress: :meth:`fit` sets it from its ``progress`` or its :class:`ProgressReport`
    setup_progress_: ProgressSetting = "auto"

    def __init__(self, config: MethodConfig | None = None, **overrides: Any) -> None:
        base = config if config is not None else None
        self.config = _build_config(type(self), base, overrides)
        self.state_: dict[str, Any] = {}
        # whether a user or a preset chose the budget (else it may be scaled to the data)
        self.iterations_chosen = config is not None or "iterations" in overrides

    @classmethod
    def splits_by(cls) -> str:
        """How a :mod:`ddkit.distributed` session splits this method's run: the class's own
        ``scale_out``, never a parent's (a subclass's step may couple what its parent's kept
        apart, so each class declares it)."""
        return str(cls.__dict__.get("scale_out", ""))

    # ---------------------------------------------------------------- to implement
    def init(
        self, train: ImageDataset, ipc: int, generator: torch.Generator, iterations: int
    ) -> None:
        """Create the initial state (synthetic images, optimisers, ...) in ``self.state_`` for a
        run of ``iterations`` steps."""
        raise NotImplementedError

    def step(self, iteration: int) -> dict[str, float]:
        """Run one outer iteration; return scalar metrics for the log."""
        raise NotImplementedError

    def result(self) -> SyntheticSet:
        """The current synthetic set (provenance is added by ``fit``)."""
        raise NotImplementedError

    def step_cost(self) -> str | None:
        """What dominates one step's cost, in words, with the option that changes it (after
        :meth:`start`; shown by the progress report and ``--dry-run``); ``None``: nothing
        worth naming."""
        return None

    def narrow_steps(self, classes: int | None) -> bool:
        """A dry run's partial step (:func:`ddkit.eval.dry_run.plan_steps`): make the steps
        that follow (after :meth:`start`) compute only the first ``classes`` classes' share,
        ``None``: every class's again, and return ``True``; or return ``False`` (the default)
        where a step's cost does not follow its classes, so that whole steps are timed. A
        method opts in where nearly all of a step's work is per class (its real batches and
        synthetic images), so that a step over N of K classes, scaled by K / N, stands for a
        whole step; work every step does for all classes alike is scaled with it (the
        estimate errs long by that much). Only dry runs call it; the result is never kept."""
        return False

    # ---------------------------------------------------------------- generic driver
    def start(
        self, train: ImageDataset, ipc: int, *, seed: int = 0, iterations: int | None = None
    ) -> int:
        """Build the initial state exactly as :meth:`fit` does before its first step; return
        the run's total number of iterations."""
        self.check_data(train, ipc)
        total = self.budget_for(train) if iterations is None else int(iterations)
        if total < 0:
            raise ConfigError(f"iterations must be >= 0, got {total}")
        if distributed.active() is not None:  # every rank distils the same thing, or none
            settings = json.loads(json.dumps(dataclasses.asdict(self.config), default=repr))
            run = {"method": self.name, "ipc": int(ipc), "seed": int(seed),
                   "iterations": total, **settings}  # fmt: skip
            distributed.agree("the run", run, "give every rank the same method settings")
            rows = torch.linspace(0, len(train) - 1, min(len(train), 64)).long()  # a sample:
            data = fingerprint(repr(train.spec), *train.spec.kind.data_sample(train, rows))
            same = "give every rank the same data (files, --root, normalisation)"
            distributed.agree("the training data", data, same)
        g = torch.Generator().manual_seed(check_seed(int(seed)))
        self.state_ = {}
        self.train_, self.ipc_, self.seed_ = train, int(ipc), int(seed)
        self.init(train, ipc, g, total)
        self.state_.setdefault("generator", g)
        return total

    def check_data(self, train: ImageDataset, ipc: int) -> None:
        """Refuse, in one line and before any work, data this method cannot distil (rows other
        than its ``needs``: :meth:`~ddkit.data.spec.DatasetSpec.check_needs`) or an ``ipc`` the
        data cannot give (as their modality counts it:
        :meth:`~ddkit.data.modalities.base.Modality.check_ipc`)."""
        train.spec.check_needs(self.needs, f"method {self.name!r}", _OTHER_ROWS)
        train.spec.kind.check_ipc(train, ipc)

    def budget_for(self, train: ImageDataset) -> int:
        """Iterations of a run on ``train`` when none are asked for: the config's, except for a
        dataset this method has no preset for and whose budget nobody chose, where the published
        (CIFAR-10) count is scaled to the data's images per class: :func:`scaled_iterations`."""
        default = self.config.iterations
        if self.iterations_chosen or has_presets_for(type(self), train.spec.name):
            return default
        per_class = len(train) / max(train.spec.num_classes, 1)
        scaled = scaled_iterations(default, per_class)
        if scaled != default:
            warn_at_caller(
                f"{self.name}: no preset for dataset {train.spec.name!r}, so {scaled:,} "
                f"iterations for its {per_class:,.0f} training images per class (the published "
                f"{default:,} are for CIFAR-10's {PUBLISHED_PER_CLASS:,} per class; each step "
                "already matches every class, so more classes make steps longer, not more of "
                "them); pass iterations=N (--iterations N) to choose"
            )
        return scaled

    def initial_set(
        self, train: ImageDataset, ipc: int, *, seed: int = 0, iterations: int | None = None
    ) -> SyntheticSet:
        """The synthetic set a run starts from (no iteration made), with provenance."""
        total = self.start(train, ipc, seed=seed, iterations=iterations)
        out = self.result()
        out.meta = {**out.meta, **self._provenance(0, 0.0), "planned_iterations": total}
        out.meta[RECIPE_KEY] = make_recipe(out, self.distilled_with(), self.recipe_protocol)
        return out

    def fit(
        self,
        train: ImageDataset,
        ipc: int,
        *,
        iterations: int | None = None,
        seed: int = 0,
        callbacks: Sequence[Callback] = (),
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int = 50,
        resume: bool = False,
        progress: ProgressSetting = "auto",
    ) -> SyntheticSet:
        """Distil ``train`` into ``ipc`` images per class. Same seed => same result.

        ``progress``: ``"auto"`` (the default: once the fit has run a few seconds, a bar on a
        terminal, plain lines elsewhere, e.g. under ``nohup`` or in a notebook's log), ``True``
        (the same from the first iteration), ``"bar"``, ``"lines"`` or ``False`` (silent).

        With ``checkpoint_dir`` the state is saved atomically every ``checkpoint_every``
        iterations; ``resume=True`` continues from the last checkpoint there and finishes with
        the same set as an uninterrupted run. The method computes where ``train``'s tensors
        live (``train.to("cuda")``), or on its ``device`` option where it has one; the set is
        returned on the CPU.
        """
        self.setup_progress_ = _setup_progress(progress, callbacks)
        total = self.start(train, ipc, seed=seed, iterations=iterations)
        first = 0
        ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if ckpt is not None:
            if distributed.is_main():  # every rank reads a checkpoint; rank 0 writes them
                ensure_writable_dir(ckpt)
            if resume and (ckpt / "state.json").exists():
                first = self._load_checkpoint(ckpt, seed, ipc, total)
        if progress:
            callbacks = [*callbacks, ProgressReport(f"{self.name} ipc={ipc}", progress)]
        step = self.step
        if dry_run.steps_in_part() and distributed.active() is None and first < total:
            classes = self.train_.spec.num_classes  # a long step may be timed over a part
            part = dry_run.plan_steps(self.narrow_steps, lambda: self.step(first), classes)
            step = step if part is None else part.timing(step)
        for cb in callbacks:
            cb.on_start(self, total, first)
        t0, done = time.perf_counter(), first
        for it in range(first, total):
            metrics = step(it)
            for cb in callbacks:
                cb.on_step_end(self, it, metrics)
            done = it + 1
            stop = any(cb.stop_requested() for cb in callbacks)
            if ckpt is not None and (done % checkpoint_every == 0 or done == total or stop):
                save = functools.partial(self._save_checkpoint, ckpt, done, seed, ipc, total)
                distributed.main_only(save)
            if stop:
                break
        out = self.result().to("cpu")  # computed anywhere, a set is returned on the CPU
        out.meta = {**out.meta, **self._provenance(done, time.perf_counter() - t0)}
        if done < total:  # stopped early (a time budget): resumable towards the planned total
            out.meta["planned_iterations"] = total
        out.meta[RECIPE_KEY] = make_recipe(out, self.distilled_with(), self.recipe_protocol)
        for cb in callbacks:
            cb.on_end(self, out)
        return out

    def _provenance(self, iterations: int, seconds: float) -> dict[str, Any]:
        return {
            "method": self.name,
            "ipc": self.ipc_,
            "seed": self.seed_,
            "iterations": iterations,
            "config": self.config_dict(),
            "dataset": self.train_.spec.name,
            "fit_seconds": seconds,
        }

    def distilled_with(self) -> str | None:
        """The network the set is distilled through (its ``model`` option), recorded in the
        set's evaluation recipe (:mod:`ddkit.eval.recipe`); ``None`` where no single network
        made it."""
        name = getattr(self.config, "model", None)
        return name if isinstance(name, str) else None

    def config_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self.config))

    @classmethod
    def saved_config(cls, saved: dict[str, Any]) -> dict[str, Any]:
        """A config dict written by an earlier ddkit (checkpoint, run folder) in today's names
        and spellings, comparable with :meth:`config_dict`; an option added since it was
        written takes its default (the behaviour the run had before the option existed)."""
        upgraded = cls.Config.upgrade(saved, warn=False)
        for f in dataclasses.fields(cls.Config):
            if f.name not in upgraded and f.default is not dataclasses.MISSING:
                upgraded[f.name] = f.default
        return _jsonable(upgraded)

    # ---------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, folder: Path, done: int, seed: int, ipc: int, total: int) -> None:
        """Write the state as one unit: the tensors go to a new file named by the iteration,
        then ``state.json`` (atomically replaced) points to it, then older tensor files go. A
        kill at any moment leaves a ``state.json`` whose tensors belong to it."""
        tensors, scalars = flatten_state(self.state_)
        name = f"state-{done:09d}.safetensors"
        save_tensors(folder / name, tensors)
        atomic_write_json(
            folder / "state.json",
            {
                "method": self.name,
                "iteration": done,
                "seed": seed,
                "ipc": ipc,
                "iterations": total,
                "config": self.config_dict(),
                "scalars": scalars,
                "tensors": name,
            },
        )
        for old in folder.glob("state*.safetensors"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def _load_checkpoint(self, folder: Path, seed: int, ipc: int, total: int) -> int:
        meta = read_json(folder / "state.json")
        saved = dict(meta)
        if isinstance(meta.get("config"), dict):  # written before an option was renamed?
            saved["config"] = without_placement(self.saved_config(meta["config"]))
        config = without_placement(self.config_dict())
        expect = {"method": self.name, "seed": seed, "ipc": ipc, "config": config}
        for k, v in expect.items():
            if saved.get(k) != v:
                raise ConfigError(
                    f"checkpoint in {str(folder)!r} was made with a different {k} "
                    f"({meta.get(k)!r} vs {v!r}); use a new output folder or drop --resume"
                )
        # ddkit 0.1 checkpoints kept their tensors in state.safetensors
        name = str(meta.get("tensors", "state.safetensors"))
        if not re.fullmatch(r"state(-\d+)?\.safetensors", name):
            raise FileFormatError(f"checkpoint in {str(folder)!r} names tensors {name!r}")
        tensors = load_tensors(folder / name)
        try:
            restore_state(self.state_, tensors, meta["scalars"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise FileFormatError(
                f"checkpoint in {str(folder)!r} does not fit this method: {e}"
            ) from None
        return min(int(meta["iteration"]), total)


def _setup_progress(progress: ProgressSetting, callbacks: Sequence[Callback]) -> ProgressSetting:
    """How a fit's set-up reports: as its iterations do, by ``progress`` or by the setting of
    a :class:`ProgressReport` among ``callbacks`` (silent when neither reports)."""
    if progress:
        return progress
    reports = [cb.setting for cb in callbacks if isinstance(cb, ProgressReport)]
    return reports[0] if reports else False


#: What to use on rows other than images, for a method that needs images.
_OTHER_ROWS = "use a method that needs only differentiable rows: dm, dc, kip or a coreset"


def _build_config(
    cls: type[Distiller], base: MethodConfig | None, overrides: dict[str, Any]
) -> MethodConfig:
    """``cls.Config`` (or ``base``) with ``overrides``: old names upgraded, unknown names and
    bad values refused with one line that names the method."""
    try:
        options = cls.Config.upgrade(overrides)
        fields = {f.name for f in dataclasses.fields(cls.Config)}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise ConfigError(f"unknown option {unknown[0]!r}; valid: {', '.join(sorted(fields))}")
        if base is None:
            return cls.Config(**options)
        return dataclasses.replace(base, **options)
    except ConfigError as e:
        raise ConfigError(f"method {cls.name!r}: {e}") from None


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


# -------------------------------------------------------------------- state (de)serialisation
def flatten_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a method state into tensors (for safetensors) and JSON scalars, each entry under
    the name :func:`_saved_name` gives it.

    Values may be tensors, ``torch.Generator``s, optimizers, lists of tensors, or JSON scalars.
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for key, val in state.items():
        name = _saved_name(key, val)
        if isinstance(val, torch.Tensor):
            tensors[name] = val.detach()
        elif isinstance(val, torch.Generator):
            tensors[name] = val.get_state()
        elif isinstance(val, torch.optim.Optimizer):
            sd = val.state_dict()
            opt_scalars: dict[str, Any] = {"param_groups": sd["param_groups"], "state": {}}
            for pid, st in sd["state"].items():
                entry = {}
                for field_name, v in st.items():
                    if isinstance(v, torch.Tensor):
                        tensors[f"{name}.{pid}.{field_name}"] = v.detach()
                        entry[field_name] = "__tensor__"
                    else:
                        entry[field_name] = v
                opt_scalars["state"][str(pid)] = entry
            scalars[name] = opt_scalars
        elif name.startswith("l."):
            for i, v in enumerate(val):
                tensors[f"{name}.{i}"] = v.detach()
            scalars[name] = len(val)
        else:
            json.dumps(val)  # must be JSON-serialisable
            scalars[name] = val
    return tensors, scalars


def without_placement(config: dict[str, Any]) -> dict[str, Any]:
    """A method config (dict) without its ``device``: where a run computes is not a setting of
    the run, so a checkpoint made on one device resumes on another."""
    return {k: v for k, v in config.items() if k != "device"}


def _state_device(state: dict[str, Any]) -> torch.device:
    """Where a method's state lives: the device of its first tensor (the CPU if none)."""
    first = next((v for v in state.values() if isinstance(v, torch.Tensor)), None)
    return torch.device("cpu") if first is None else first.device


def restore_state(
    state: dict[str, Any], tensors: dict[str, torch.Tensor], scalars: dict[str, Any]
) -> None:
    """Load values saved by :func:`flatten_state` into an initialised ``state`` (in place); a
    checkpoint that lacks one of the entries (written by another version of the method) is
    refused in one line."""
    for key, val in list(state.items()):
        name = _saved_name(key, val)
        if name not in tensors and name not in scalars:
            raise ConfigError(
                f"the checkpoint holds no {key!r}: another version of the method wrote it; "
                "start again without --resume (or with another --out)"
            )
        if isinstance(val, torch.Tensor):
            src = tensors[name]
            if src.shape != val.shape:
                raise ValueError(
                    f"shape of {key} changed: {tuple(src.shape)} vs {tuple(val.shape)}"
                )
            with torch.no_grad():
                val.copy_(src)
        elif isinstance(val, torch.Generator):
            val.set_state(tensors[name])
        elif isinstance(val, torch.optim.Optimizer):
            saved = scalars[name]
            st = {}
            for pid, entry in saved["state"].items():
                st[int(pid)] = {
                    field_name: (tensors[f"{name}.{pid}.{field_name}"] if v == "__tensor__" else v)
                    for field_name, v in entry.items()
                }
            val.load_state_dict({"state": st, "param_groups": saved["param_groups"]})
        elif name.startswith("l."):
            n = scalars[name]
            device = val[0].device if val else _state_device(state)
            state[key] = [tensors[f"{name}.{i}"].to(device, copy=True) for i in range(n)]
        else:
            state[key] = scalars[name]


def _saved_name(key: str, val: Any) -> str:
    """The name the state entry ``key`` is saved under (a tensor's or a generator's among the
    tensors, the others' among the scalars; an optimizer's and a list's tensors under it with a
    suffix), by :func:`flatten_state` and looked up by :func:`restore_state`."""
    if isinstance(val, torch.Tensor):
        return f"t.{key}"
    if isinstance(val, torch.Generator):
        return f"g.{key}"
    if isinstance(val, torch.optim.Optimizer):
        return f"o.{key}"
    if isinstance(val, list) and all(isinstance(v, torch.Tensor) for v in val):
        return f"l.{key}"
    return f"s.{key}"


# -------------------------------------------------------------------- registry
METHODS: Registry[type[Distiller]] = Registry("method")


def register_method(cls: type[Distiller]) -> type[Distiller]:
    """Class decorator: register a Distiller subclass under ``cls.name``."""
    METHODS.add(cls.name, cls)  # help: the docstring's first paragraph
    return cls


def preset_table(cls: type[Distiller]) -> dict[tuple[str, Any], dict[str, Any]]:
    """``{(dataset, ipc): values}`` of a method's presets."""
    return {p.key: dict(p.values) for p in cls.presets}


def resolve_config(
    cls: type[Distiller],
    dataset: str | None,
    ipc: int | None,
    overrides: dict[str, Any] | None = None,
    modality: str = DEFAULT_MODALITY,
) -> dict[str, Any]:
    """Config values for ``(dataset, ipc)`` from the class presets (``"*"`` matches any),
    most specific last, then the user's ``overrides`` (old option names upgraded).

    On rows that not every network takes (rows other than images:
    :attr:`~ddkit.data.modalities.base.Modality.open_models`), a method with a ``model`` option
    that neither a preset nor the user set gets the modality's default model
    (:attr:`~ddkit.data.modalities.base.Modality.models`; an MLP for tables): its own default is
    an image network."""
    table = preset_table(cls)
    out: dict[str, Any] = {}
    for key in (("*", "*"), (dataset, "*"), ("*", ipc), (dataset, ipc)):
        out.update(table.get(key, {}))
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    out.update(cls.Config.upgrade(given))
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    kind = get_modality(modality)
    if not kind.open_models and "model" in fields and "model" not in out:
        out["model"] = kind.models[0]
    return out


#: Training images per class the published iteration budgets were set for (CIFAR-10: 50,000
#: images in 10 classes).
PUBLISHED_PER_CLASS = 5_000


def scaled_iterations(default: int, per_class: float) -> int:
    """A budget for a dataset without a preset: ``default`` (set for CIFAR-10's 5,000 training
    images per class) scaled by the data's (mean) training images per class, never above
    ``default`` and at least ``min(default, 100)``.

    The rule follows what a method needs per class: its steps draw each class's real batch from
    that class's images, so a class with fewer images is covered in fewer steps. It does not
    scale by the number of classes, because every step already matches every class (a step's
    cost grows with the classes), and scaling the iterations by the total image count would
    charge for the classes twice. E.g. DM's 20,000 iterations become 100 for 16 images per
    class, 2,000 for 500 (10 or 200 classes alike) and stay 20,000 from 5,000 per class on."""
    scaled = round(default * min(1.0, per_class / PUBLISHED_PER_CLASS))
    return max(min(default, 100), scaled)


def has_presets_for(cls: type[Distiller], dataset: str) -> bool:
    """Whether ``cls`` has a preset row naming ``dataset``."""
    return any(p.dataset == dataset for p in cls.presets)


def create_method(
    name: str,
    *,
    dataset: str | None = None,
    ipc: int | None = None,
    modality: str | None = None,
    **overrides: Any,
) -> Distiller:
    """Build a registered method with its preset for ``(dataset, ipc)`` and user overrides.

    ``modality``: what the dataset's rows are (default: :func:`dataset_modality`); it picks the
    default model on other rows (:func:`resolve_config`)."""
    load_all()
    cls = METHODS.get(name)
    if modality is None:
        modality = dataset_modality(dataset)
    return cls(**resolve_config(cls, dataset, ipc, overrides, modality))


def dataset_modality(dataset: str | None) -> str:
    """The name of ``dataset``'s modality (:func:`ddkit.data.builtin.modality_of`: the one a
    registered dataset declares, the one that claims a path's layout, else ``"image"``)."""
    from ddkit.data.builtin import modality_of

    return modality_of(dataset).name


ProgressFn = Callable[[int, dict[str, float]], None]


def load_all() -> None:
    """Import every module under :mod:`ddkit.methods`, so that each registers its methods.

    Methods are discovered by walking the package, not listed: a new module in a family folder
    is found by :func:`create_method`, ``ddkit list`` and the conformance suite without any
    edit elsewhere. Import errors are not swallowed.
    """
    import_submodules("ddkit.methods")


def method_names(text: str | Sequence[str]) -> list[str]:
    """Registered method or selector names (comma-separated text or a list), each checked
    before any work: an unknown name is a one-line :class:`ConfigError`."""
    load_all()
    items = text.split(",") if isinstance(text, str) else [str(m) for m in text]
    names = [m.strip() for m in items if m.strip()]
    if not names:
        raise ConfigError("no method given; name at least one (e.g. dm)")
    for m in names:
        try:
            METHODS.get(m)
        except UnknownNameError as e:
            raise ConfigError(str(e)) from None
    return names
