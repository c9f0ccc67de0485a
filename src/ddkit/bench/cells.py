"""One benchmark cell as resumable units of work: distil the set, then train each evaluation
network on it.

A cell ``(dataset, method, IPC)`` keeps its state in a folder of its own
(``<results>/<suite>-cells/<dataset>-<method>-ipc<IPC>/``; a pruning cell, which keeps a
percentage of the training split instead of an IPC, ``<dataset>-<method>-keep<percent>/``):

* ``distill/`` -- a :func:`ddkit.runs.distill_run` folder: the distilled set in ``synthetic/``,
  its grid, config and log; ``checkpoint/`` while the distillation runs (removed when it ends);
  for a pruning cell, the kept rows as a set in ``synthetic/`` (:func:`ddkit.methods.coreset.
  pruning.prune_named`; the proxy networks' records are cached in ``<suite>-cells/scores/``);
* ``distill.json`` -- what the finished distillation cost;
* ``step_seconds.jsonl`` -- the seconds of every distillation iteration kept by the checkpoints;
* ``eval-<k>.json`` -- evaluation network ``k``: its accuracy, seed and training time;
* ``seed<s>/`` -- the same files for distillation seed ``s`` >= 1 of a cell the suite distils
  with several seeds (:meth:`~ddkit.bench.suites.Suite.seeds`; seed ``s`` distils and evaluates
  with the run's seed + ``s``), so a cell finished with one seed keeps it and runs only the others.

Each unit runs in a child process, so its peak memory is its own. A killed unit resumes from
the distillation's last checkpoint or from the finished networks; the networks of one cell can
be trained by several processes at once, and each reaches the accuracy it reaches in one
uninterrupted evaluation (:func:`ddkit.eval.evaluate`'s ``run_indices``).
"""

from __future__ import annotations

import gzip
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ddkit.bench.suites import Suite
from ddkit.errors import FileFormatError
from ddkit.io import atomic_write_json, json_sha256, read_json
from ddkit.levers import exact
from ddkit.meter import high_water_mb, peak_rss_mb, reset_high_water

if TYPE_CHECKING:
    from ddkit.data.dataset import ImageDataset
    from ddkit.data.synthetic import SyntheticSet

FULL = "full"  # the method name of the full-data row
DISTILL = "distill"
# the devices an unfinished distillation's segments have run on (a seed folder's file)
SEGMENT_DEVICES = "distill_devices.json"


class Cell(NamedTuple):
    """One cell of a suite: a method at an IPC on a dataset, the full-data row (method
    :data:`FULL`, IPC 0), which trains on the whole training split and distils nothing, or a
    pruning cell (IPC 0, ``keep``: the percentage of the training split a pruning method keeps).
    """

    dataset: str
    method: str
    ipc: int
    keep: int = 0

    @property
    def full(self) -> bool:
        return self.method == FULL

    @classmethod
    def of_row(cls, row: dict[str, Any]) -> Cell:
        """The cell a results row belongs to (a full-data row has IPC ``None`` there)."""
        return cls(row["dataset"], row["method"], row["ipc"] or 0, row.get("keep") or 0)

    @property
    def label(self) -> str:
        """``"mnist5k IPC 10 dm"``, ``"mnist5k full data"``, ``"mnist5k el2n keeping 30 %"``."""
        if self.full:
            return f"{self.dataset} full data"
        if self.keep:
            return f"{self.dataset} {self.method} keeping {self.keep} %"
        return f"{self.dataset} IPC {self.ipc} {self.method}"


def is_full_row(row: dict[str, Any]) -> bool:
    """Whether a results row is the full-data row."""
    return row["method"] == FULL


def cell_folder(results_dir: Path, suite: Suite, cell: Cell) -> Path:
    ds, method = cell.dataset, cell.method
    if cell.full:
        name = f"{ds}-{FULL}"
    else:
        name = f"{ds}-{method}-" + (f"keep{cell.keep}" if cell.keep else f"ipc{cell.ipc}")
    return Path(results_dir) / f"{suite.name}-cells" / name


def score_cache(results_dir: Path, suite: Suite) -> Path:
    """Where a suite's pruning cells cache their proxy networks' records (shared by every kept
    fraction, so each proxy network trains once)."""
    return Path(results_dir) / f"{suite.name}-cells" / "scores"


def eval_epochs(suite: Suite, cell: Cell) -> int | None:
    """Epochs of each evaluation network of ``cell`` (``None``: the protocol's). A pruning cell
    trains ``100 / keep`` times the full-data row's epochs, so that every kept fraction gets
    about as many optimisation steps as the full data (as the pruning papers compare)."""
    if cell.full or cell.keep:
        epochs = suite.full_epochs(cell.dataset)
        if cell.keep and epochs:
            return max(1, round(epochs * 100 / cell.keep))
        return epochs
    return suite.epochs


def eval_runs(suite: Suite, cell: Cell) -> int:
    """How many evaluation networks ``cell`` trains."""
    return (suite.full_data_runs or suite.runs) if cell.full else suite.runs


def cell_seeds(suite: Suite, cell: Cell) -> int:
    """How many distillation seeds ``cell`` runs (1 for full data and pruning cells)."""
    return 1 if cell.full or cell.keep else suite.seeds(cell.method, cell.ipc)


def seed_folder(folder: Path, s: int) -> Path:
    """Where distillation seed ``s`` of the cell in ``folder`` keeps its files."""
    return folder / f"seed{s}" if s else folder


def unit_seed(unit: str) -> tuple[int, str]:
    """The distillation seed of a unit and its name within that seed (``"seed1/eval0"`` ->
    ``(1, "eval0")``)."""
    head, sep, rest = unit.partition("/")
    return (int(head.removeprefix("seed")), rest) if sep else (0, unit)


def units(suite: Suite, cell: Cell) -> list[str]:
    """The cell's units in the order they must run: per distillation seed, distil (not for
    full data), then one ``eval<k>`` per evaluation network (``seed<s>/...`` for seed s >= 1)."""
    evals = [f"eval{k}" for k in range(eval_runs(suite, cell))]
    if cell.full:
        return evals
    out = []
    for s in range(cell_seeds(suite, cell)):
        prefix = f"seed{s}/" if s else ""
        out += [prefix + u for u in (DISTILL, *evals)]
    return out


def write_unit(path: Path, record: dict[str, Any]) -> None:
    """Keep a unit's result ``record`` at ``path`` with the SHA-256 of its canonical JSON
    (:func:`ddkit.io.json_sha256`), so that an edited value is refused, not reused."""
    atomic_write_json(path, {**record, "sha256": json_sha256(record)})


def read_unit(path: Path) -> dict[str, Any]:
    """A unit's result file (:func:`write_unit`); one edited after it was written is refused in
    one :class:`~ddkit.errors.FileFormatError` line (files written before checksums have none
    and are read as they are)."""
    record = read_json(path)
    if not isinstance(record, dict):
        raise FileFormatError(
            f"{str(path)!r} is not a bench unit's result; delete it to run it again"
        )
    kept = record.pop("sha256", None)
    if kept is not None and kept != json_sha256(record):
        raise FileFormatError(
            f"{str(path)!r} was edited after it was written (its checksum does not match); "
            "delete it to run the unit again"
        )
    return record


def finished_units(folder: Path, suite: Suite, cell: Cell) -> set[str]:
    """The units whose result file exists (``distill.json`` for a distillation)."""
    return {u for u in units(suite, cell) if (folder / f"{u}.json").exists()}


def cell_progress(folder: Path, suite: Suite, cell: Cell) -> dict[str, Any] | None:
    """How far an unfinished cell has come (``None`` if it has not started): distillations
    left (one per seed) and the current one's iterations kept by its checkpoint of how many and
    their median seconds, the images a distilled set holds (``None`` before one is distilled),
    evaluation networks done of how many (all seeds) and the mean seconds of those trained on
    the CPU."""
    seeds = [seed_folder(folder, s) for s in range(cell_seeds(suite, cell))]
    units_done = finished_units(folder, suite, cell)
    nets = [u for u in units(suite, cell) if unit_seed(u)[1] != DISTILL]
    evals = [read_unit(folder / f"{u}.json") for u in nets if u in units_done]
    # the time left is CPU time: networks trained on a GPU count as done, not as a pace
    net_seconds = [e["seconds"] for e in evals if ran_on_cpu_only(e)]
    summaries = [f / "distill.json" for f in seeds]
    left = [f for f, done in zip(seeds, summaries, strict=True) if not done.exists()]
    current = left[0] if left and not cell.full else seeds[0]
    steps = _cpu_step_seconds(current) or _cpu_step_seconds(seeds[0])
    configs = [f / DISTILL / "config.json" for f in (current, *seeds) if f.exists()]
    config = next((c for c in configs if c.exists()), None)
    checkpoint = current / DISTILL / "checkpoint" / "state.json"
    if not steps and not evals and config is None:
        return None
    summary = next((m for m in summaries if m.exists()), None)
    return {
        "distilled": cell.full or not left,
        "distillations_left": 0 if cell.full else len(left),
        "seeds": len(seeds),
        "images": read_unit(summary).get("num_images") if summary else None,
        "iterations_done": read_json(checkpoint)["iteration"] if checkpoint.exists() else 0,
        "iterations": read_json(config)["iterations"] if config else None,
        "step_seconds": statistics.median(steps) if steps else None,
        "networks_done": len(evals),
        "networks": len(nets),
        "network_seconds": statistics.fmean(net_seconds) if net_seconds else None,
    }


def run_unit(
    cell: Cell, unit: str, suite: Suite, seed: int, folder: Path, device: str = "cpu"
) -> None:
    """Run one unit of ``cell`` (inside a child process) on ``device``; its result lands in
    ``folder`` (in ``seed<s>/`` for distillation seed ``s`` >= 1, which distils and evaluates
    with ``seed + s``). Units run in exact mode (:mod:`ddkit.levers`): a suite's rows stay
    comparable across machines and with the rows it already holds."""
    with exact():
        _run_unit(cell, unit, suite, seed, folder, device)


def _run_unit(
    cell: Cell, unit: str, suite: Suite, seed: int, folder: Path, device: str = "cpu"
) -> None:
    s, unit = unit_seed(unit)
    folder, seed = seed_folder(folder, s), seed + s
    folder.mkdir(parents=True, exist_ok=True)
    if unit == DISTILL and cell.keep:
        _prune(cell, suite, seed, folder, device)
    elif unit == DISTILL:
        _distill(cell, suite, seed, folder, device)
    else:
        _evaluate_network(cell, int(unit.removeprefix("eval")), suite, seed, folder, device)


def _distill(cell: Cell, suite: Suite, seed: int, folder: Path, device: str = "cpu") -> None:
    from ddkit.data import load_dataset
    from ddkit.methods import create_method, load_all
    from ddkit.runs import DistillRequest, StepSeconds, distill_run

    ds, method, ipc = cell.dataset, cell.method, cell.ipc
    load_all()
    t0 = time.perf_counter()
    splits = load_dataset(ds)
    base_mb = _start_peak()
    options = suite.options_for(method, ipc)
    default = create_method(method, dataset=ds, ipc=ipc, **options).config.iterations
    iterations = suite.budget(method, ipc, default, ds)
    run = folder / DISTILL
    (run / ".lock").unlink(missing_ok=True)  # this process holds the unit's claim
    timer = StepSeconds(folder / "step_seconds.jsonl")
    resumed = (run / "checkpoint" / "state.json").exists()
    devices = _record_device(folder, device, resumed)
    request = DistillRequest(
        ds, method, ipc, iterations=iterations, seed=seed, options=options, device=device
    )
    syn = distill_run(
        request,
        run,
        resume=True,  # from the checkpoint if there is one, else from the start
        checkpoint_every=max(1, iterations // 20),
        splits=splits,
        callbacks=[timer],
    )
    end = time.perf_counter()
    setup = getattr(timer, "started", end) - t0  # loading data, experts, ...: this segment's
    steps = _step_seconds(folder)
    write_unit(
        folder / "distill.json",
        {
            "iterations": iterations,
            "options": options,
            "seconds": setup + sum(steps) if steps else end - t0,
            "resumed": resumed,
            "peak_mb": max(own_peak_mb() - base_mb, 0.0),
            "peak_measure": PEAK_MEASURE,
            "num_images": len(syn),
            "storage_bytes": syn.storage_bytes()["total"],
            "device": device,
            # every device a segment of this distillation ran on (resumed elsewhere: several)
            "devices": devices,
        },
    )
    shutil.rmtree(run / "checkpoint", ignore_errors=True)  # the set is saved; nothing to resume
    (folder / SEGMENT_DEVICES).unlink(missing_ok=True)  # distill.json now holds them


def _prune(cell: Cell, suite: Suite, seed: int, folder: Path, device: str = "cpu") -> None:
    """Keep ``cell.keep`` % of the training split by the cell's pruning method and save the kept
    rows as a set where a distilled set would be."""
    from ddkit.data import load_dataset
    from ddkit.data.synthetic import SyntheticSet
    from ddkit.methods.coreset.pruning import prune_named

    t0 = time.perf_counter()
    train = load_dataset(cell.dataset).train.to(device)
    base_mb = _start_peak()
    options = suite.options_for(cell.method, cell.ipc)
    cache = score_cache(folder.parent.parent, suite)
    index = prune_named(
        train, cell.method, cell.keep / 100, seed=seed, score_cache=str(cache), **options
    )
    meta = {"method": cell.method, "keep": cell.keep / 100, "seed": seed, "options": options}
    meta["indices"] = index.tolist()
    syn = SyntheticSet.from_real(train, index, meta=meta).to("cpu")
    syn.save(folder / DISTILL / "synthetic")
    write_unit(
        folder / "distill.json",
        {
            "iterations": 0,
            "options": options,
            "seconds": time.perf_counter() - t0,
            "resumed": False,
            "peak_mb": max(own_peak_mb() - base_mb, 0.0),
            "peak_measure": PEAK_MEASURE,
            "num_images": len(syn),
            "storage_bytes": syn.storage_bytes()["total"],
            "device": device,
        },
    )


def _record_device(folder: Path, device: str, resumed: bool) -> list[str]:
    """Add ``device`` to the devices the distillation in ``folder`` has run segments on (a
    checkpoint carried from a GPU machine and resumed on the CPU ran on both) and return them;
    a distillation that starts afresh forgets an earlier attempt's."""
    path = folder / SEGMENT_DEVICES
    earlier = read_json(path)["devices"] if resumed and path.exists() else []
    devices = sorted({*earlier, device})
    atomic_write_json(path, {"devices": devices})
    return devices


def unit_devices(unit_result: dict[str, Any]) -> list[str]:
    """The devices a unit's result file (``distill.json``, ``eval<k>.json``) was computed on:
    every segment's for a resumed distillation; the CPU for files written before units
    recorded a device."""
    return [str(d) for d in unit_result.get("devices") or [unit_result.get("device", "cpu")]]


def ran_on_cpu_only(result: dict[str, Any]) -> bool:
    """Whether a unit's result file, or a results row (which lists its ``devices`` only when
    some were not the CPU), was computed on the CPU alone."""
    return unit_devices(result) == ["cpu"]


def _cpu_step_seconds(folder: Path) -> list[float]:
    """:func:`_step_seconds` of a distillation that ran on the CPU; none for one a GPU finished
    (its pace says nothing of the CPU time a later seed needs)."""
    summary = folder / "distill.json"
    if summary.exists() and not ran_on_cpu_only(read_unit(summary)):
        return []
    return _step_seconds(folder)


def _step_seconds(folder: Path) -> list[float]:
    """The logged seconds of the distillation's iterations (a line being written is skipped;
    a finished cell's log may be kept gzipped, ``step_seconds.jsonl.gz``)."""
    path, packed = folder / "step_seconds.jsonl", folder / "step_seconds.jsonl.gz"
    if path.exists():
        text = path.read_text()
    else:
        text = gzip.decompress(packed.read_bytes()).decode() if packed.exists() else ""
    seconds = []
    for line in text.splitlines():
        try:
            seconds.append(float(json.loads(line)["seconds"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            break
    return seconds


def kept_rows(path: Path, train: ImageDataset) -> SyntheticSet:
    """A pruning cell's kept rows: the set saved at ``path``, or, where its tensor file was left
    out of the results (a kept half of a training split is megabytes; ``meta.json`` lists the
    rows), the same rows taken again from ``train``, checked against the recorded SHA-256."""
    import tempfile

    import torch

    from ddkit.data.synthetic import META_FILE, TENSOR_FILE, SyntheticSet
    from ddkit.errors import FileFormatError
    from ddkit.io import sha256_file

    if (path / TENSOR_FILE).is_file():
        return SyntheticSet.load(path)
    meta = read_json(path / META_FILE)
    provenance = meta.get("provenance", {})
    try:
        index = torch.tensor(provenance["indices"], dtype=torch.long)
        syn = SyntheticSet.from_real(train, index, meta=provenance)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError):
        raise FileFormatError(
            f"{str(path)!r} has no tensor file and its meta.json lists no valid kept rows; run "
            "the cell again (ddkit bench --rerun)"
        ) from None
    with tempfile.TemporaryDirectory() as tmp:
        if sha256_file(syn.save(Path(tmp) / "set") / TENSOR_FILE) != meta.get("sha256"):
            raise FileFormatError(
                f"the rows {str(path / META_FILE)!r} lists do not give the set it recorded "
                "(another training split?); run the cell again (ddkit bench --rerun)"
            )
    return syn


def _evaluate_network(
    cell: Cell, k: int, suite: Suite, seed: int, folder: Path, device: str = "cpu"
) -> None:
    from ddkit.data import load_dataset
    from ddkit.data.synthetic import SyntheticSet
    from ddkit.eval import RunPlan, evaluate

    ds = cell.dataset
    splits = load_dataset(ds)
    if cell.full:
        syn = SyntheticSet.from_real(splits.train)
    elif cell.keep:
        syn = kept_rows(folder / DISTILL / "synthetic", splits.train)
    else:
        syn = SyntheticSet.load(folder / DISTILL / "synthetic")
    model = suite.models.get(ds)
    report = evaluate(
        syn,
        splits.test,
        suite.protocol,
        runs=eval_runs(suite, cell),
        epochs=eval_epochs(suite, cell),
        seed=seed,
        models=[model] if model else None,
        plan=RunPlan(run_indices=[k]),
        device=device,
    )
    r = report.results[0]
    write_unit(
        folder / f"eval{k}.json",
        {
            "model": r.model,
            "accuracy": r.accuracies[0],
            "train_accuracy": r.train_accuracies[0],
            "seed": r.seeds[0],
            "seconds": report.seconds,
            "epochs": report.protocol.epochs,
            "lr": report.lr,
            "protocol": suite.protocol,
            "peak_mb": own_peak_mb(),
            "peak_measure": PEAK_MEASURE,
            "num_images": len(syn),
            "storage_bytes": syn.storage_bytes()["total"],
            "device": device,
        },
    )


#: How units measure memory: the child's own resident high-water mark. A spawned child's
#: ``ru_maxrss`` starts at its parent's peak, so units that measured with it recorded nothing
#: of their own; their figures are reported as not measured.
PEAK_MEASURE = "VmHWM"


def own_peak_mb() -> float:
    """This process's own resident high-water mark in MiB (``VmHWM``, Linux; reset by exec,
    unlike ``ru_maxrss``, which a spawned child inherits from its parent at the fork); where
    there is no ``VmHWM``, ``ru_maxrss``."""
    try:
        return high_water_mb()
    except OSError:
        return peak_rss_mb()


def _start_peak() -> float:
    """Reset the high-water mark to the current resident size (Linux) and return it: the level
    a unit's peak is measured above."""
    try:
        reset_high_water()
    except OSError:
        pass
    return own_peak_mb()


def _measured_peak(unit: dict[str, Any]) -> float | None:
    """A unit's ``peak_mb``, or ``None`` where it was measured with the inherited
    ``ru_maxrss`` (before :data:`PEAK_MEASURE`)."""
    return unit["peak_mb"] if unit.get("peak_measure") == PEAK_MEASURE else None


def cell_row(folder: Path, suite: Suite, cell: Cell, seed: int) -> dict[str, Any]:
    """The results row of a cell whose units have all finished: the accuracies of every
    network of every distillation seed (``distill_seeds``), their mean and std."""
    from ddkit.eval.evaluate import ModelResult
    from ddkit.methods import METHODS, load_all

    ds, method, ipc = cell.dataset, cell.method, cell.ipc
    unit_names = units(suite, cell)
    nets = [read_unit(folder / f"{u}.json") for u in unit_names if unit_seed(u)[1] != DISTILL]
    distills = [read_unit(folder / f"{u}.json") for u in unit_names if unit_seed(u)[1] == DISTILL]
    distill = distills[0] if distills else {}
    distill_peaks = [_measured_peak(d) for d in distills]
    result = ModelResult(
        nets[0]["model"],
        [n["accuracy"] for n in nets],
        [n["seed"] for n in nets],
        sum(n["seconds"] for n in nets),
        0.0,
        False,
        [n["train_accuracy"] for n in nets],
    )
    net_peaks = [_measured_peak(n) for n in nets]
    devices = sorted({d for u in (*distills, *nets) for d in unit_devices(u)})
    load_all()
    kind = FULL if cell.full else "pruning" if cell.keep else METHODS.get(method).kind
    return {
        "dataset": ds,
        "ipc": None if cell.full or cell.keep else ipc,
        **({"keep": cell.keep} if cell.keep else {}),
        "method": method,
        "kind": kind,
        "iterations": distill.get("iterations", 0),
        "options": distill.get("options", suite.options_for(method, ipc)),
        "num_images": nets[0]["num_images"],
        "storage_bytes": nets[0]["storage_bytes"],
        "protocol": suite.protocol,
        "epochs": nets[0]["epochs"],
        "lr": nets[0]["lr"],
        "model": nets[0]["model"],
        "accuracies": result.accuracies,
        "seeds": result.seeds,
        "mean": result.mean,
        "std": result.std,
        # one set's distillation (the mean over seeds), as the per-iteration estimates read it
        "distill_seconds": statistics.fmean(d["seconds"] for d in distills) if distills else 0.0,
        "eval_seconds": result.train_seconds,
        "peak_distill_mb": 0.0
        if cell.full
        else (None if None in distill_peaks else max(distill_peaks)),
        "peak_total_mb": None if None in net_peaks else max(net_peaks),
        "seed": seed,
        "distill_seeds": [seed + s for s in range(max(1, len(distills)))],
        "runs": eval_runs(suite, cell),
        "cell_folder": folder.as_posix(),
        # where the units computed, for a cell not computed on the CPU alone (`ddkit bench
        # --device`); earlier units recorded none: the CPU
        **({"devices": devices} if devices != ["cpu"] else {}),
    }
