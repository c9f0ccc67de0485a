"""Run folders: distil with checkpoints, logs, grid and config written to one place; open a
saved set with the data that judges it (:func:`open_saved_set`)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ddkit import context, distributed
from ddkit.data import DATASETS, DatasetSplits, ImageDataset
from ddkit.data.builtin import modality_of
from ddkit.data.synthetic import SyntheticSet, resolve_synthetic_path
from ddkit.errors import ConfigError, FileFormatError
from ddkit.eval.dry_run import SetupCost, StepPart, estimating, step_scale
from ddkit.io import atomic_write_json, ensure_writable_dir, process_alive, read_json
from ddkit.methods import Callback, Distiller, ProgressReport, create_method
from ddkit.methods.auto import AUTO, AutoChoice, AutoRequest, choose, plan
from ddkit.methods.auto.record import record_table as record_table  # for the command line
from ddkit.methods.auto.resolve import check_request
from ddkit.methods.base import without_placement
from ddkit.methods.config import check_device
from ddkit.methods.recommended import RECOMMENDED, resolve_method, run_budget
from ddkit.methods.time_budget import TimeBudget
from ddkit.plots import is_log_record
from ddkit.progress import ProgressSetting, clock, parse_duration, to_stderr
from ddkit.trackers import check_log_targets, tracker_callbacks


class JsonlLog(Callback):
    """Appends one JSON line of metrics per iteration to ``path``; on resume, lines past the
    checkpoint are dropped so the log matches an uninterrupted run."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fh = None

    def on_start(self, method: Distiller, total: int, start: int) -> None:
        kept = []
        if start > 0 and self.path.exists():
            for line in self.path.read_text(errors="replace").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    break  # a line cut by a kill: drop it and what follows
                if not is_log_record(row):
                    break  # nor is anything after a line that is no record kept
                if row["iteration"] < start:
                    kept.append(line)
        self.path.write_text("".join(k + "\n" for k in kept))
        self._fh = self.path.open("a")

    def on_step_end(self, method: Distiller, iteration: int, metrics: dict[str, float]) -> None:
        self._fh.write(
            json.dumps({"iteration": iteration, **{k: float(v) for k, v in metrics.items()}}) + "\n"
        )
        self._fh.flush()

    def on_end(self, method: Distiller, result: SyntheticSet) -> None:
        if self._fh:
            self._fh.close()


def step_clock() -> float:
    """``time.perf_counter()`` once the GPU's queued work has finished (where CUDA is in use:
    its kernels run asynchronously, so a step's wall time is only known after a sync)."""
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


class StepSeconds(JsonlLog):
    """Logs each iteration's wall-clock seconds to ``path`` (one JSON line per iteration); on
    resume, the lines past the checkpoint are dropped as :class:`JsonlLog` drops them, so their
    sum is the time of the iterations the result was built from. ``started`` is when the
    iterations of this process began (after the method's set-up)."""

    def on_start(self, method: Distiller, total: int, start: int) -> None:
        super().on_start(method, total, start)
        self.started = self._last = step_clock()

    def on_step_end(self, method: Distiller, iteration: int, metrics: dict[str, float]) -> None:
        now = step_clock()
        super().on_step_end(method, iteration, {"seconds": now - self._last})
        self._last = now


@dataclass(frozen=True)
class DistillRequest:
    """What :func:`distill_run` distils: ``ipc`` rows per class (pairs, on a paired dataset) of
    ``dataset`` (read from ``root``) by ``method`` (or ``"recommended"``, or ``"auto"``: a
    tournament on a validation split carved from the training split picks the method,
    :mod:`ddkit.methods.auto`, and needs a ``budget``) with its ``options``,
    for ``iterations`` (default: the method's preset) from ``seed``, computing on ``device``
    (the training split is moved there; default: where it was loaded, the CPU), within a time
    ``budget`` (seconds, or ``"30m"``: :func:`ddkit.progress.parse_duration`, parsed here, a
    bad one refused in one line; ``--method recommended`` without one: its own,
    :func:`~ddkit.methods.recommended.run_budget`) within which the run stops with a valid,
    resumable set (:class:`~ddkit.methods.time_budget.TimeBudget`)."""

    dataset: str
    method: str
    ipc: int
    iterations: int | None = None
    seed: int = 0
    options: dict[str, Any] | None = None
    root: str | None = None
    device: str | torch.device | None = None
    budget: float | str | None = None

    def __post_init__(self) -> None:
        if self.budget is not None:
            object.__setattr__(self, "budget", parse_duration(self.budget))


def distill_run(
    request: DistillRequest,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    checkpoint_every: int = 50,
    progress: ProgressSetting = False,
    splits: DatasetSplits | None = None,
    callbacks: list[Callback] | None = None,
    log: Sequence[str] = (),
    started: float | None = None,
) -> SyntheticSet:
    """Distil as ``request`` says (:class:`DistillRequest`) into run folder ``out``.

    Writes ``out/synthetic/``, ``out/config.json``, ``out/grid.png``, ``out/log.jsonl`` and
    checkpoints under ``out/checkpoint/``; ``progress`` as in :func:`ddkit.progress.progress_kind`
    (``"auto"``: a bar on a terminal, lines elsewhere); ``resume=True`` continues an interrupted run, or,
    with more ``iterations`` than the run was set up for, extends a finished one from its last
    checkpoint (methods whose schedule depends on the total, such as DATM's growing window, then
    follow the new total's schedule from there on). ``splits``: the data, already loaded
    (default: the request's dataset read from its root). ``log``: experiment-log targets
    (``"tensorboard:DIR"``, ``"mlflow[:URI]"``, ``"wandb[:PROJECT]"``; :mod:`ddkit.trackers`)
    that also receive the config, the metrics and the final grid. The set is returned, and
    saved, on the CPU; a checkpoint resumes on any device. The request's time budget counts
    from ``started`` (a :func:`time.monotonic` reading; default: now).
    """
    r, out = request, Path(out)
    started = time.monotonic() if started is None else started
    if checkpoint_every < 1:
        raise ConfigError(f"--checkpoint-every must be >= 1, got {checkpoint_every}")
    budget = run_budget(r.method, r.budget)
    seconds = None if budget is None else parse_duration(budget)
    if seconds is not None and distributed.active() is not None:
        raise ConfigError("--budget runs in one process (ranks could stop at different steps); "
                          "launch it without torchrun or drop --budget")  # fmt: skip
    splits = splits or load_splits(r.dataset, r.root)
    check_ipc(splits.train, r.ipc)
    auto = None
    if r.method == AUTO:  # the tournament reads the training split only
        auto = _auto_choice(r, splits.train, out, seconds, resume, progress)
        method, options, rec = auto.method, auto.options, None
    else:
        method, options, rec = resolve_method(
            r.method, splits.train, r.dataset, r.ipc, r.options, r.device
        )
    if r.device is not None:
        splits = dataclasses.replace(splits, train=_on_device(splits.train, r.device))
    rows = {} if auto is None else {"modality": splits.train.spec.kind.name}  # data of any name
    m = create_method(method, dataset=r.dataset, ipc=r.ipc, **rows, **options)
    check_scale_out(m)
    chosen = r.iterations is not None and not (auto and m.kind == "selector")  # none to cap
    total = int(r.iterations) if chosen else m.budget_for(splits.train)
    if not distributed.is_main():  # the same steps as rank 0; only rank 0 writes the folder
        syn = m.fit(splits.train, r.ipc, iterations=total, seed=r.seed, resume=resume,
                    progress=False, checkpoint_dir=out / "checkpoint",
                    checkpoint_every=checkpoint_every)  # fmt: skip
        distributed.barrier()
        return syn
    config = {
        "dataset": r.dataset,
        "root": r.root,
        "method": method,
        "ipc": int(r.ipc),
        "seed": int(r.seed),
        "iterations": total,
        "method_config": m.config_dict(),
        "ddkit_version": __import__("ddkit").__version__,
        **({} if rec is None else {"recommended": rec.to_dict()}),
        **({} if auto is None else {AUTO: auto.record}),
        "context": current_context(r.device).to_dict(),
    }
    _check_run_folder(out, config, m, resume)  # everything is checked before anything is written
    check_log_targets(log)
    if rec is not None and progress:
        to_stderr(f"--method {RECOMMENDED}: {rec.why}; a time budget of {clock(seconds)}")
    existed = out.exists()
    ensure_writable_dir(out)
    with _undone_if_refused(out, existed, fresh=not resume), run_lock(out):
        atomic_write_json(out / "config.json", config)
        callbacks = [JsonlLog(out / "log.jsonl"), *(callbacks or ())]
        callbacks += tracker_callbacks(log, config, out)
        if progress:
            callbacks.append(ProgressReport(f"{method} {r.dataset} ipc={r.ipc}", progress))
        if seconds is not None:  # last: it sees every other callback's step
            callbacks.append(TimeBudget(seconds, started=started))
        syn = m.fit(
            splits.train,
            r.ipc,
            iterations=total,
            seed=r.seed,
            callbacks=callbacks,
            checkpoint_dir=out / "checkpoint",
            checkpoint_every=checkpoint_every,
            resume=resume,
            progress=False,  # reported by the callback above, as the command asked
        )
        if auto is not None:
            syn.meta[AUTO] = auto.record
        syn.save(out / "synthetic")
        syn.save_grid(out / "grid.png")
    distributed.barrier()  # the other ranks end once the folder is written
    return syn


def _auto_choice(
    r: DistillRequest,
    train: Any,
    out: Path,
    seconds: float | None,
    resume: bool,
    progress: ProgressSetting,
) -> AutoChoice:
    """``--method auto``: the tournament's winner on ``train`` (the training split alone), its
    candidates' runs and finished rounds kept in ``out/auto`` (a resumed run reuses them)."""
    teacher = check_request(r.options, seconds)
    if not resume:
        _refuse_held(out)  # before the tournament, not after it
    ensure_writable_dir(out)
    say = to_stderr if progress else (lambda _line: None)
    request = AutoRequest(r.dataset, r.ipc, seconds, r.seed, teacher, r.device)
    with run_lock(out):
        return choose(train, request, auto_estimate, out / AUTO, say)


def auto_estimate(m: Distiller, train: Any, ipc: int, seed: int) -> tuple[float, float, int]:
    """``(set-up seconds, seconds per iteration, planned iterations)`` of ``m`` on ``train``,
    by the ``--dry-run`` warm-up (:func:`warm_up`): how ``--method auto`` costs a distiller."""
    total = m.budget_for(train)
    w = warm_up(m, train, ipc, total, seed)
    return w.setup_seconds, w.seconds_per_iteration, total


def plan_auto(
    dataset: str,
    ipc: int,
    seconds: float | None,
    *,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    splits: DatasetSplits | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """``ddkit distill --method auto --dry-run``: the tournament's plan for a time budget of
    ``seconds`` (:func:`ddkit.methods.auto.plan`); nothing is written."""
    teacher = check_request(options, seconds)
    splits = splits or load_splits(dataset, None)
    check_ipc(splits.train, ipc)
    request = AutoRequest(dataset, ipc, seconds, seed, teacher, device)
    return plan(splits.train, request, auto_estimate)


def current_context(device: str | torch.device | None) -> context.RunContext:
    """The context of a run here: the environment's variables, the ``device`` it computes on
    (``None``: where the data was loaded, the CPU), exact mode and how many processes run it
    (what ``ddkit distill`` saves in ``config.json`` and ``ddkit evaluate`` in ``eval.json``)."""
    launch = distributed.active()
    where = "cpu" if device is None else device
    return context.run_context(where, 1 if launch is None else launch.world_size)


def _on_device(train: ImageDataset, device: str | torch.device) -> ImageDataset:
    """``train`` moved to ``device``, which must exist here (else one line)."""
    check_device(str(device))
    return train.to(device)


@dataclass(frozen=True)
class SavedSet:
    """A saved set and the real data that judges it: ``path`` is the set's folder, ``folder``
    the run folder around it (the set's folder when it is in none), ``splits`` the splits of
    ``dataset`` (read from ``root``)."""

    syn: SyntheticSet
    path: Path
    dataset: str
    root: str | None
    splits: DatasetSplits

    @property
    def folder(self) -> Path:
        return self.path.parent if self.path.name == "synthetic" else self.path


def open_saved_set(
    path: str | os.PathLike, *, dataset: str | None = None, root: str | None = None
) -> SavedSet:
    """The set at ``path`` (a run folder with ``synthetic/``, or a set folder) with the data
    that judges it, loaded: ``dataset`` (default: the set's own) read from ``root`` (default:
    the data root the run folder's ``config.json`` recorded for that dataset, so ``--root`` need
    not be repeated). A dataset ddkit does not know by name is refused in one line, before any
    data is read."""
    where = resolve_synthetic_path(path)
    syn = SyntheticSet.load(where)
    dataset = dataset or syn.spec.name
    config_path = where.parent / "config.json" if where.name == "synthetic" else None
    if root is None and config_path is not None and config_path.is_file():
        config = read_json(config_path)
        if isinstance(config, dict) and config.get("dataset") == dataset:
            root = config.get("root")
    if dataset not in DATASETS and not modality_of(dataset).claims(dataset):
        raise ConfigError(
            f"the set comes from dataset {dataset!r}, which ddkit does not know by name; pass "
            "the test data with --dataset npz --root FILE.npz (x_test, y_test) or --dataset "
            "imagefolder --root DIR"
        )
    return SavedSet(syn, where, dataset, root, load_splits(dataset, root))


def load_splits(dataset: str, root: str | None) -> Any:
    """The splits of ``dataset`` read from ``root``, as its modality loads them
    (:func:`ddkit.data.builtin.modality_of`,
    :meth:`~ddkit.data.modalities.base.Modality.load_splits`: image-caption pairs as
    :class:`~ddkit.data.paired.PairedSplits`, other rows through
    :func:`~ddkit.data.load_dataset`)."""
    return modality_of(dataset).load_splits(dataset, root)


def check_ipc(train: Any, ipc: int) -> None:
    """Refuse an ``ipc`` the training split cannot give, before any work, as its modality
    counts it (:meth:`~ddkit.data.modalities.base.Modality.check_ipc`). Rows without classes
    (pairs) are checked by the method (:meth:`~ddkit.methods.base.Distiller.check_data`),
    which first says whether it takes them at all."""
    if train.spec.kind.classes:
        train.spec.kind.check_ipc(train, ipc)


@dataclass(frozen=True)
class CostEstimate:
    """What a distillation will cost on this machine, from a short warm-up (:func:`estimate_distill`)."""

    setup_seconds: float
    seconds_per_iteration: float
    iterations: int
    startup_seconds: float = 0.0  # the command's own start and loading, where one is counted
    note: str | None = None  # what dominates a step and the option that changes it
    steps_timed: int = 0  # the warm-up steps the per-iteration cost is the mean of
    # what the set-up's artifacts (experts, teachers) cost and from what part they were timed
    timed: tuple[str, ...] = ()
    recommended: str | None = None  # what ``--method recommended`` chose, and why

    @property
    def total_seconds(self) -> float:
        return (
            self.startup_seconds + self.setup_seconds + self.seconds_per_iteration * self.iterations
        )

    def line(self, what: str) -> str:
        start = (
            f" + {self.startup_seconds:.3g} s start-up and loading" if self.startup_seconds else ""
        )
        steps = f" ({self.steps_timed} timed)" if self.steps_timed else ""
        return (
            f"{what}: {self.iterations:,} iterations x {self.seconds_per_iteration:.3g} s{steps} "
            f"+ {self.setup_seconds:.3g} s set-up{start} = about {clock(self.total_seconds)} "
            "on this machine (measured by a warm-up"
            + "".join(f"; {t}" for t in self.timed)
            + ")"
            + (f"; {self.note}" if self.note else "")
        )

    def budget_line(self, seconds: float) -> str:
        """What a time budget of ``seconds`` would fit of this run (``--dry-run --budget``; a
        run makes at least one iteration)."""
        left = seconds - self.startup_seconds - self.setup_seconds
        fit = int(max(0.0, left) // max(self.seconds_per_iteration, 1e-9))
        fit = min(self.iterations, max(1, fit))
        if fit >= self.iterations:
            return f"a --budget of {clock(seconds)} fits all {self.iterations:,} iterations"
        return (
            f"a --budget of {clock(seconds)} fits about {fit:,} of {self.iterations:,} "
            "iterations; the run would stop there with a valid set that --resume continues"
        )


#: A warm-up stops after the step that brings the dry run (its loading and set-up included)
#: past this many seconds, so that it answers within a minute unless one step takes longer: at
#: Tiny-ImageNet scale one DM step takes minutes, and one long step says enough of the next ones.
WARMUP_SECONDS = 40.0
#: ...but one step (the first, which pays for lazy set-up such as compilation) is followed by a
#: second unless the dry run is already past this many seconds.
WARMUP_ONE_STEP_SECONDS = 50.0
#: Short of that, it times steps after the first for at least this many seconds: steps of a few
#: milliseconds vary from one to the next, so their cost is a rate over many of them.
WARMUP_MIN_SECONDS = 3.0


class _WarmedUp(Exception):
    """Raised by :class:`StepTimer` to end a warm-up whose steps took long enough."""


class StepTimer(Callback):
    """Wall-clock seconds of the set-up (before the first step) and of every step
    (:func:`step_clock`); with ``limit``, it ends the run (:class:`_WarmedUp`) once ``limit``
    seconds passed since ``since`` (a :func:`time.perf_counter` reading; default: its
    creation), or once it has ``min_steps`` steps of which those after the first took
    ``min_seconds``."""

    def __init__(
        self,
        limit: float | None = None,
        min_steps: int = 1,
        min_seconds: float = 0.0,
        since: float | None = None,
    ) -> None:
        self.begun = time.perf_counter()
        self.since = self.begun if since is None else since
        self.setup, self.steps, self._last = 0.0, [], 0.0
        self.limit, self.min_steps, self.min_seconds = limit, min_steps, min_seconds

    def on_start(self, method: Distiller, total: int, start: int) -> None:
        self._last = step_clock()
        self.setup = self._last - self.begun

    def on_step_end(self, method: Distiller, iteration: int, metrics: dict[str, float]) -> None:
        now = step_clock()
        self.steps.append(now - self._last)
        self._last = now
        if self.limit is None:
            return
        timed_enough = len(self.steps) >= self.min_steps and sum(self.steps[1:]) >= self.min_seconds
        elapsed = now - self.since
        past_limit = elapsed >= self.limit and (
            len(self.steps) >= 2 or elapsed >= WARMUP_ONE_STEP_SECONDS
        )  # a first step alone says little of the rest: a second one, where time allows
        if timed_enough or past_limit:
            raise _WarmedUp


def estimate_distill(
    *,
    dataset: str,
    method: str,
    ipc: int,
    iterations: int | None = None,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    splits: DatasetSplits | None = None,
    warmup: int = 3,
    device: str | torch.device | None = None,
) -> CostEstimate:
    """The cost of :func:`distill_run` with these arguments, measured on this machine by running
    the method's set-up and ``warmup`` iterations in memory; nothing is written. Artifacts the
    set-up would train and has not cached (expert trajectories, teachers) are not trained:
    one of their epochs is timed in part and scaled to the whole, and a stand-in of the right
    shape lets the steps be timed (:mod:`ddkit.eval.dry_run`); the estimate says what was
    timed. The run's schedule is the real one (its total iterations); the per-iteration cost
    is the mean of the warm-up steps after the first (which pays for lazy initialisation), at
    least ``warmup`` steps timed for at least :data:`WARMUP_MIN_SECONDS` after the first; the
    step that brings the dry run past :data:`WARMUP_SECONDS` ends the warm-up early (after a
    second step unless past :data:`WARMUP_ONE_STEP_SECONDS`), and a single step stands for all
    (its lazy initialisation included). The first step's time beyond the later steps' pace (lazy
    set-up, compilation) counts once, in the set-up (:func:`setup_and_pace`). ``splits``: the
    data, already loaded (a command reads it from its ``--root`` at the door), else read from
    the data root, that loading counted as start-up. ``device`` as in :class:`DistillRequest`."""
    if warmup < 2:
        raise ConfigError(f"warmup must be >= 2 iterations, got {warmup}")
    loading = began = time.perf_counter()
    splits = splits or load_splits(dataset, None)
    check_ipc(splits.train, ipc)
    method, options, rec = resolve_method(method, splits.train, dataset, ipc, options, device)
    train = splits.train if device is None else _on_device(splits.train, device)
    m = create_method(method, dataset=dataset, ipc=ipc, **options)
    total = m.budget_for(splits.train) if iterations is None else int(iterations)
    loading = time.perf_counter() - loading  # the data's, which the real run pays too
    w = warm_up(m, train, ipc, total, seed, warmup=warmup, began=began)
    return CostEstimate(
        w.setup_seconds, w.seconds_per_iteration, total, startup_seconds=loading,
        note=m.step_cost(), steps_timed=w.steps_timed, timed=w.timed,
        recommended=None if rec is None else rec.why,
    )  # fmt: skip


@dataclass(frozen=True)
class WarmUp:
    """What a warm-up measured: the set-up, the seconds per iteration, the steps timed and
    what the set-up's artifacts were timed from (:func:`warm_up`)."""

    setup_seconds: float
    seconds_per_iteration: float
    steps_timed: int
    timed: tuple[str, ...]


def warm_up(
    m: Distiller,
    train: Any,
    ipc: int,
    total: int,
    seed: int,
    *,
    warmup: int = 3,
    began: float | None = None,
) -> WarmUp:
    """Run ``m``'s set-up and its first iterations of a ``total``-iteration run on ``train`` in
    memory, as :func:`estimate_distill` describes (``began``: when the dry run began, a
    :func:`time.perf_counter` reading; default: now)."""
    timer = StepTimer(limit=WARMUP_SECONDS, min_steps=warmup, min_seconds=WARMUP_MIN_SECONDS,
                      since=began)  # fmt: skip
    with estimating(steps_in_part=True) as costs:  # a long step is timed in part, scaled
        try:
            m.fit(train, ipc, iterations=max(total, 1), seed=seed, callbacks=[timer],
                  progress=False)  # fmt: skip
        except _WarmedUp:
            pass
    setup, pace = setup_and_pace(timer.setup, timer.steps, costs)
    return WarmUp(setup, pace, len(timer.steps[1:] or timer.steps),
                  tuple(c.text() for c in costs))  # fmt: skip


def setup_and_pace(
    setup: float, steps: Sequence[float], costs: Sequence[SetupCost | StepPart]
) -> tuple[float, float]:
    """A warm-up's set-up and seconds per step: the pace of the steps after the first (the
    first alone where there is no other); the set-up as timed, each artifact's timing replaced
    by the whole artifact's cost (``costs``), plus the first step's time beyond the pace (lazy
    set-up such as compilation, paid once); steps timed over a part of the classes (a
    :class:`StepPart` among ``costs``) have their pace scaled to a whole step's."""
    later = list(steps[1:]) or list(steps) or [0.0]
    pace = sum(later) / len(later)
    first_extra = max(0.0, steps[0] - pace) if len(steps) >= 2 else 0.0
    setup += sum(c.seconds - c.spent for c in costs) + first_extra
    return setup, pace * step_scale(costs)


def check_scale_out(method: Distiller) -> None:
    """In a :mod:`ddkit.distributed` session, refuse in one line a method that does not split
    its run over the ranks (:meth:`Distiller.splits_by`)."""
    if distributed.active() is None or method.splits_by():
        return
    from ddkit.methods import METHODS

    able = [n for n in METHODS.names() if METHODS.get(n).splits_by()]
    raise ConfigError(
        f"method {method.name!r} does not run on several processes yet ({', '.join(able)} "
        "do); launch it without torchrun"
    )


RUN_FILES = ("config.json", "synthetic", "checkpoint", "log.jsonl")
#: Keys of config.json a resumed run may change: the version, the context (the environment
#: and device are where the run continues, recorded anew) and a tournament's record (a resumed
#: tournament reuses its finished rounds; the method it chose is compared as any method is).
_MAY_CHANGE = ("ddkit_version", "context", AUTO)


@contextmanager
def _undone_if_refused(out: Path, existed: bool, *, fresh: bool) -> Iterator[None]:
    """A fresh run that fails before its first checkpoint (the method refuses the data, e.g. a
    codec that does not fit the IPC, or any unexpected error: there is nothing to resume)
    leaves ``out`` as it found it: a folder this command created goes, else the run files it
    wrote; so the corrected command is not told that the folder "already holds a run"."""
    try:
        yield
    except Exception:
        if fresh and not (out / "checkpoint" / "state.json").exists():
            if not existed:
                shutil.rmtree(out, ignore_errors=True)
            else:
                for name in RUN_FILES:
                    path = out / name
                    shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        raise


def _check_run_folder(out: Path, config: dict[str, Any], m: Distiller, resume: bool) -> None:
    """Refuse to replace a run without ``resume``, and to resume a run with other settings."""
    cfg_path = out / "config.json"
    if not resume:
        _refuse_held(out, ours=(AUTO,) if AUTO in config else ())  # its tournament is this run's
        return
    if cfg_path.exists():
        old = read_json(cfg_path)
        if not isinstance(old, dict):
            raise FileFormatError(
                f"{str(cfg_path)!r} is not a run config (a JSON object); move it away or choose "
                "another --out"
            )
        if isinstance(old.get("method_config"), dict):  # written before an option was renamed?
            old["method_config"] = without_placement(m.saved_config(old["method_config"]))
        config = {**config, "method_config": without_placement(config["method_config"])}
        diff = [k for k in config if k not in _MAY_CHANGE and old.get(k) != config[k]]
        if diff == ["iterations"] and _extends(old["iterations"], config["iterations"], out):
            return
        if diff:
            raise ConfigError(
                f"cannot resume {str(out)!r}: its config differs in {', '.join(diff)}"
            )


def _refuse_held(out: Path, ours: tuple[str, ...] = ()) -> None:
    """Refuse a fresh run in a folder that holds a run (or a ``--method auto`` tournament, but
    the files named in ``ours``: this run's own)."""
    held = [n for n in (*RUN_FILES, AUTO) if n not in ours and (out / n).exists()]
    if held:
        raise ConfigError(
            f"{str(out)!r} already holds a run ({', '.join(held)}); pass --resume to "
            "continue it, or choose another --out"
        )


def _extends(old: Any, new: int, out: Path) -> bool:
    """Whether resuming with ``new`` iterations extends the run's ``old`` count (allowed: the
    run continues from its last checkpoint); fewer iterations than it already has are refused."""
    if not isinstance(old, int) or new > old:
        return isinstance(old, int)
    raise ConfigError(
        f"cannot resume {str(out)!r} with --iterations {new}: it was set up for {old}; "
        f"pass a larger count to extend it, or choose another --out"
    )


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder/.lock`` (created exclusively, holding this process's PID) for a block: a
    second process on the same run folder is refused; a lock left by a dead process is taken
    over."""
    path = folder / ".lock"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            pid = _lock_owner(path)
            if pid is None and _age_seconds(path) < 10:  # its owner is writing its PID now
                pid = os.getpid()
            if pid is not None and process_alive(pid):
                raise ConfigError(
                    f"run folder {str(folder)!r} is in use by process {pid}; wait for it or "
                    "choose another --out"
                ) from None
            path.unlink(missing_ok=True)  # stale: its process is gone
    else:
        raise ConfigError(f"cannot lock run folder {str(folder)!r}; remove {str(path)!r}")
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield
    finally:
        path.unlink(missing_ok=True)


def _lock_owner(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _age_seconds(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return float("inf")
