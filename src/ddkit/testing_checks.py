"""The conformance checks of :mod:`ddkit.testing`, one function each, shared by the methods of
every modality (:func:`ddkit.testing.check_method`): what differs with the rows (the tensors a
fit must not touch, the ``ipc`` values it must refuse, what a set of these rows holds) is asked
of the modality's record (:meth:`~ddkit.data.modalities.base.Modality.fit_inputs`,
:meth:`~ddkit.data.modalities.base.Modality.refused_ipcs`,
:meth:`~ddkit.data.modalities.base.Modality.set_problems`)."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ddkit.data.dataset import ImageDataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError

#: Methods with outer iterations run this many in the checks.
TEST_ITERATIONS = 2


def method_test_overrides(name: str) -> dict[str, Any]:
    """Config overrides that make method ``name`` cheap: its ``test_overrides`` class attribute,
    plus ``iterations=TEST_ITERATIONS`` for methods that iterate (unless it sets its own)."""
    from ddkit.methods import METHODS, load_all

    load_all()
    cls = METHODS.get(name)
    out = dict(cls.test_overrides)
    if "iterations" not in out and cls.Config().iterations > 0:
        out["iterations"] = TEST_ITERATIONS
    return out


class _Failures:
    """Collects failed checks so one run reports all of them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.items: list[str] = []

    def check(self, ok: bool, what: str) -> bool:
        if not ok:
            self.items.append(what)
        return bool(ok)

    def run(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - reported as a failure
            self.items.append(f"{what} raised {type(e).__name__}: {e}")
            return None


def _same_set(a: SyntheticSet, b: SyntheticSet) -> bool:
    return (
        a.images.shape == b.images.shape
        and a.labels.shape == b.labels.shape
        and a.labels.dtype == b.labels.dtype
        and torch.equal(a.images, b.images)
        and torch.equal(a.labels, b.labels)
        and a.lr == b.lr
        and a.extras.keys() == b.extras.keys()
        and all(torch.equal(a.extras[k], b.extras[k]) for k in a.extras)
    )


def _check_output(f: _Failures, syn: SyntheticSet, train: Any, ipc: int) -> None:
    """A fitted set is a :class:`SyntheticSet` of finite values that holds what its modality
    asks (:meth:`~ddkit.data.modalities.base.Modality.set_problems`), and ``ipc`` rows per class
    where its rows have classes."""
    f.check(isinstance(syn, SyntheticSet), f"fit returned {type(syn).__name__}, not SyntheticSet")
    if not isinstance(syn, SyntheticSet):
        return
    kind = train.spec.kind
    f.items.extend(kind.set_problems(syn, train, ipc))
    if kind.classes:
        _check_class_set(f, syn, train, ipc)
    f.check(bool(torch.isfinite(syn.images).all()), "images contain NaN/inf")
    f.check(
        all(bool(torch.isfinite(v).all()) for v in syn.extras.values() if v.is_floating_point()),
        "extras contain NaN/inf",
    )


def _check_class_set(f: _Failures, syn: SyntheticSet, train: ImageDataset, ipc: int) -> None:
    """``ipc`` rows of each class (or what a set that stores other tensors decodes to), of the
    data's spec, with labels of the right shape and finite."""
    spec = train.spec
    k = spec.num_classes
    # Multi-formation methods (IDM) store ``ipc`` images per class and decode each into
    # ``factor**2`` training images; the budget is the stored IPC.
    factor = int(syn.meta.get("formation_factor", 1))
    if factor > 1:
        f.check(
            syn.meta.get("stored_ipc") == ipc, f"stored_ipc {syn.meta.get('stored_ipc')} != {ipc}"
        )
    ipc = ipc * factor**2
    # Sets that name their stored tensors (RTP's memory, frequency codecs) decode more examples
    # from them: the budget is the bytes of ``ipc`` images per class and their labels -- hard
    # labels, or label vectors where the set stores one per image (soft or learned labels; RTP
    # stores label bases instead, and its class counts are not fixed).
    memory = bool(syn.meta.get("stored_tensors"))
    if memory:
        vectors = "labels" in syn.meta["stored_tensors"] and syn.labels.ndim == 2
        label = syn.labels[0].numel() * syn.labels.element_size() if vectors else 8
        budget = ipc * k * (math.prod(spec.shape) * 4 + label)
        stored = syn.storage_bytes()["total"]
        f.check(stored <= budget, f"stores {stored} bytes, over the {budget} of {ipc} IPC")
        ipc = int(syn.meta.get("emitted_per_class", 0))
    f.check(
        tuple(syn.images.shape) == (ipc * k, *spec.shape),
        f"images have shape {tuple(syn.images.shape)}, expected {(ipc * k, *spec.shape)}",
    )
    f.check(syn.images.dtype == torch.float32, f"images are {syn.images.dtype}, expected float32")
    f.check(syn.spec == spec, "the set's spec differs from the train set's")
    if syn.labels.ndim == 1:
        f.check(
            syn.labels.dtype == torch.int64, f"hard labels are {syn.labels.dtype}, expected int64"
        )
        f.check(len(syn.labels) == ipc * k, f"{len(syn.labels)} labels for {ipc * k} images")
    else:
        ok = syn.labels.is_floating_point() and tuple(syn.labels.shape) == (ipc * k, k)
        f.check(
            ok,
            f"soft labels have shape {tuple(syn.labels.shape)} / {syn.labels.dtype}, "
            f"expected ({ipc * k}, {k}) float",
        )
    counts = torch.bincount(syn.hard_labels, minlength=k).tolist()
    # regression targets solved in closed form (KIP's label solve) name no class: their argmax
    # need not be balanced
    solved = "label_solve_real" in syn.meta
    f.check(
        memory or solved or counts == [ipc] * k,
        f"class counts {counts}, expected {ipc} for each of {k} classes",
    )
    if syn.labels.is_floating_point():
        f.check(bool(torch.isfinite(syn.labels).all()), "labels contain NaN/inf")
    if syn.lr is not None:
        f.check(bool(torch.isfinite(torch.tensor(syn.lr))), f"learned lr {syn.lr} is not finite")


def _check_save_load(f: _Failures, syn: SyntheticSet, folder: Path) -> None:
    def roundtrip() -> None:
        syn.save(folder)
        back = SyntheticSet.load(folder)
        f.check(_same_set(syn, back), "save -> load changed images, labels, lr or extras")
        f.check(back.spec == syn.spec, "save -> load changed the spec")
        f.check(back.meta == json.loads(json.dumps(syn.meta)), "save -> load changed the metadata")

    f.run("save/load", roundtrip)


def check_refused_ipcs(
    f: _Failures, make: Callable[[], Any], train: Any, cases: Sequence[tuple[int, str]]
) -> None:
    """Each ``(ipc, why)`` of ``cases`` makes a fresh method's fit raise a one-line
    :class:`ConfigError`; anything else is a failure."""
    for ipc, why in cases:
        try:
            make().fit(train, ipc, seed=0, progress=False)
        except ConfigError as e:
            f.check("\n" not in str(e), f"{why}: the ConfigError message is not one line")
        except Exception as e:  # noqa: BLE001
            f.items.append(f"{why} raised {type(e).__name__} instead of ConfigError: {e}")
        else:
            f.items.append(f"{why} did not raise ConfigError")


def _check_presets(f: _Failures, cls: Any) -> None:
    """Every preset names its source, no cell is listed twice, and each resolves to a valid
    config (the values are checked when the config is built)."""
    from ddkit.methods.base import resolve_config

    keys = [p.key for p in cls.presets]
    f.check(len(keys) == len(set(keys)), f"presets list a cell twice: {keys}")
    for p in cls.presets:
        f.check(bool(str(p.source).strip()), f"preset {p.key} has no source")
        dataset = None if p.dataset == "*" else p.dataset
        ipc = None if p.ipc == "*" else p.ipc
        f.run(f"preset {p.key}", lambda d=dataset, i=ipc: cls(**resolve_config(cls, d, i)))


def _check_resume(
    f: _Failures,
    make: Callable[[], Any],
    train: ImageDataset,
    ipc: int,
    iterations: int,
    reference: SyntheticSet,
    folder: Path,
) -> None:
    full_dir, part_dir = folder / "full", folder / "part"
    full = f.run(
        "fit with checkpoint_dir",
        lambda: make().fit(train, ipc, seed=0, iterations=iterations, checkpoint_dir=full_dir),
    )
    if full is not None:
        f.check(_same_set(full, reference), "fit with checkpoint_dir differs from a plain fit")
    first = max(1, iterations // 2)
    f.run(
        "partial fit",
        lambda: make().fit(
            train, ipc, seed=0, iterations=first, checkpoint_dir=part_dir, checkpoint_every=1
        ),
    )
    resumed = f.run(
        "resume",
        lambda: make().fit(
            train, ipc, seed=0, iterations=iterations, checkpoint_dir=part_dir, resume=True
        ),
    )
    if full is not None and resumed is not None:
        f.check(
            _same_set(full, resumed),
            f"fit {first} iteration(s) + resume to {iterations} differs from an uninterrupted run",
        )


def check_fit_contract(
    f: _Failures,
    make: Callable[[], Any],
    train: Any,
    ipc: int,
    watched: Sequence[torch.Tensor],
    check_output: Callable[[_Failures, SyntheticSet, Any, int], None],
    refused: Sequence[tuple[int, str]],
) -> None:
    """The contract every method's fit keeps, on any data: ``make()`` builds the method; its
    fit leaves the global RNG and the ``watched`` input tensors untouched, returns a set that
    passes ``check_output`` and records the method's name, gives the same set for the same seed
    (same object or fresh) and another for another seed (unless the method declares itself
    ``deterministic``), survives save -> load, resumes from a checkpoint to the same set,
    refuses each ``(ipc, why)`` of ``refused`` in one line, and its presets build."""
    before = [t.clone() for t in watched]
    rng0 = torch.random.get_rng_state()
    method = f.run("create_method", make)
    if method is None:
        return

    def fit(m: Any, seed: int) -> SyntheticSet:
        return m.fit(train, ipc, seed=seed, progress=False)

    syn = f.run("fit", lambda: fit(method, 0))
    f.check(
        torch.equal(rng0, torch.random.get_rng_state()),
        "the global RNG state changed (use a torch.Generator)",
    )
    f.check(
        all(torch.equal(t, t0) for t, t0 in zip(watched, before, strict=True)),
        "the input dataset's tensors were modified",
    )
    if syn is None:
        return
    check_output(f, syn, train, ipc)
    f.check(
        syn.meta.get("method") == f.name,
        f"meta['method'] is {syn.meta.get('method')!r}, expected {f.name!r}",
    )
    again = f.run("second fit (same object, same seed)", lambda: fit(method, 0))
    f.check(
        again is None or _same_set(syn, again),
        "same seed gave different images/labels (same object fitted twice)",
    )
    fresh = f.run("fit of a fresh object", lambda: fit(make(), 0))
    f.check(
        fresh is None or _same_set(syn, fresh),
        "same seed gave different images/labels (fresh object)",
    )
    other = f.run("fit with another seed", lambda: fit(make(), 1))
    f.check(
        other is None or method.deterministic or not _same_set(syn, other),
        "seeds 0 and 1 gave identical output (declare `deterministic = True` if intended)",
    )
    with tempfile.TemporaryDirectory(prefix="ddkit-check-") as tmp:
        _check_save_load(f, syn, Path(tmp) / "set")
        iterations = int(method.config.iterations)
        if getattr(method, "kind", "distiller") != "selector" and iterations > 0:
            _check_resume(f, make, train, ipc, iterations, syn, Path(tmp))
    check_refused_ipcs(f, make, train, refused)
    _check_presets(f, type(method))
    f.check(
        torch.equal(rng0, torch.random.get_rng_state()),
        "the global RNG state changed during the checks",
    )
