"""Conformance checks every registered method, selector and model must pass.

Like scikit-learn's ``check_estimator``: one public suite, run over the registries, so a method
registered tomorrow is tested by the same checks as the ones registered today::

    from ddkit.testing import check_method, check_all
    check_method("herding")          # raises AssertionError listing every failed check
    failures = check_all()           # {name: [failure, ...]} for every registered method

A method makes itself cheap to test by declaring a class attribute ``test_overrides`` (config
overrides used only by this suite, e.g. fewer inner steps or a smaller network). Methods with
outer iterations are run for :data:`TEST_ITERATIONS` iterations. A method whose output does not
depend on the seed declares ``deterministic = True`` (a class attribute or a property reading its
config); every other method must give different outputs for different seeds.

Checks made by :func:`check_method` (on a ~240-image, 8x8, 10-class set of real digits):
shapes and dtypes, every class present exactly ``ipc`` times, input untouched, same seed =>
bit-identical images and labels (also when the same object is fitted twice), different seed =>
different output, save -> load round trip exact, global RNG untouched, finite values,
checkpoint/resume equal to an uninterrupted run, a clear ``ConfigError`` for IPC 0 and for IPC
larger than the smallest class, every preset naming its source and resolving to a valid config.

The tiny datasets the checks run on (:func:`tiny_digits`, :func:`tiny_table`,
:func:`tiny_series`, :func:`tiny_graph`) moved to :mod:`ddkit.testing_data`, and the codecs'
checks (:func:`check_codec`, :data:`CODEC_CHECKS`) to :mod:`ddkit.testing_codecs`, and the
checks themselves to :mod:`ddkit.testing_checks` (the same for every modality, asking its record
what differs); all are still importable from here. Every registered modality
passes :func:`check_modality` (:mod:`ddkit.testing_modalities`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from ddkit.data.dataset import DatasetSplits, ImageDataset
from ddkit.data.modalities import DEFAULT_MODALITY, MODALITIES, get_modality
from ddkit.rng import seeded_global_rng
from ddkit.testing_checks import (
    TEST_ITERATIONS,
    _check_output,
    _Failures,
    check_fit_contract,
    method_test_overrides,
)
from ddkit.testing_codecs import (
    CODEC_CHECKS,  # noqa: F401  (still importable from here)
    check_codec,
)
from ddkit.testing_data import tiny_digits, tiny_graph, tiny_paired, tiny_series, tiny_table
from ddkit.testing_modalities import check_modality

__all__ = [
    "TEST_ITERATIONS",
    "accuracy_against_random",
    "arithmetic",
    "check_all",
    "check_method",
    "check_app",
    "check_audit",
    "check_codec",
    "check_modality",
    "check_model",
    "losses_during_fit",
    "method_test_data",
    "method_test_overrides",
    "tiny_digits",
    "tiny_graph",
    "tiny_paired",
    "tiny_series",
    "tiny_table",
]


def arithmetic() -> str:
    """The machine's floating-point arithmetic, for recordings that must match bit for bit:
    the CPU vendor and torch's vector capability, e.g. ``"amd-AVX512"``. Kernels of different
    vector widths round differently, and MKL / oneDNN pick different kernels on Intel and AMD
    CPUs of the same width, so a tiny run recorded on one may differ in the last bits on
    another."""
    vendor = "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                name = line.split(":", 1)[1].strip()
                vendor = {"AuthenticAMD": "amd", "GenuineIntel": "intel"}.get(name, name.lower())
                break
    except OSError:  # not Linux: the capability alone
        pass
    return f"{vendor}-{torch.backends.cpu.get_cpu_capability()}"


def _method_failures(
    name: str, data: DatasetSplits | ImageDataset | None, ipc: int, overrides: dict[str, Any] | None
) -> list[str]:
    """The failed checks of method ``name`` on ``data`` (default: :func:`method_test_data`),
    the modality of its rows saying what a fit must not touch, which ``ipc`` it must refuse and
    what a set of these rows holds."""
    from ddkit.methods import create_method

    if data is None:
        data = method_test_data(name)
    train = getattr(data, "train", data)  # splits of any modality, or one split
    kind = train.spec.kind
    cfg = method_test_overrides(name)
    if not kind.open_models:  # test overrides name image networks: take the default
        cfg.pop("model", None)
    cfg.update(overrides or {})
    f = _Failures(name)

    def make() -> Any:
        return create_method(name, modality=kind.name, **cfg)

    ipc = ipc if kind.classes else max(int(ipc), 2)  # a set of pairs needs a negative
    refused = kind.refused_ipcs(train)
    check_fit_contract(f, make, train, ipc, kind.fit_inputs(train), _check_output, refused)
    return f.items


def method_test_data(name: str) -> DatasetSplits:
    """The tiny splits method ``name`` is tested on: the tiny instance of the modality it
    needs (:meth:`~ddkit.data.modalities.base.Modality.tiny`: :func:`tiny_graph` for a method
    that needs a graph, issue 39; :func:`tiny_paired` image-caption pairs for one that needs
    pairs, issue 71), :func:`tiny_digits` for the others."""
    needs = _needs(name)
    return get_modality(needs).tiny() if needs in MODALITIES else tiny_digits()


def _needs(name: str) -> str:
    from ddkit.methods import METHODS, load_all

    load_all()
    return str(getattr(METHODS.get(name), "needs", DEFAULT_MODALITY))


def check_method(
    name: str,
    data: DatasetSplits | ImageDataset | None = None,
    *,
    ipc: int = 2,
    overrides: dict[str, Any] | None = None,
) -> None:
    """Run every conformance check on registered method/selector ``name``; raise one
    ``AssertionError`` listing all failed checks. ``data`` defaults to :func:`tiny_digits`;
    ``overrides`` are added to the method's ``test_overrides``; a method that needs other rows
    runs on their modality's tiny instance (:func:`method_test_data`), and its set is checked
    as that modality asks (:meth:`~ddkit.data.modalities.base.Modality.set_problems`: a paired
    set holds ``ipc`` pairs, one caption each)."""
    failures = _method_failures(name, data, ipc, overrides)
    if failures:
        raise AssertionError(
            f"method {name!r} failed {len(failures)} check(s):\n  - " + "\n  - ".join(failures)
        )


def check_all(
    names: Iterable[str] | None = None,
    data: DatasetSplits | ImageDataset | None = None,
    *,
    ipc: int = 2,
) -> dict[str, list[str]]:
    """Run :func:`check_method` over ``names`` (default: every registered method); returns
    ``{name: [failed check, ...]}`` (an empty list means the method passed)."""
    from ddkit.methods import METHODS, load_all

    load_all()
    return {
        n: _method_failures(n, data, ipc, None)
        for n in (names if names is not None else METHODS.names())
    }


def check_model(
    name: str, *, in_channels: int = 1, image_size: int = 8, num_classes: int = 3
) -> None:
    """Light contract check of model ``name`` (tests/test_models.py goes deeper): forward and
    ``embed`` shapes, ``forward == classifier(embed)``, finite outputs, input untouched, seeded
    construction deterministic and the global RNG untouched."""
    from ddkit.models import create_model

    def build(seed: int) -> torch.nn.Module:
        with seeded_global_rng(seed):
            return create_model(
                name, num_classes=num_classes, in_channels=in_channels, image_size=image_size
            )

    rng0 = torch.random.get_rng_state()
    a, b = build(0), build(0)
    assert torch.equal(rng0, torch.random.get_rng_state()), (
        f"{name}: building the model changed the global RNG"
    )
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), (
        f"{name}: same seed gave different initial weights"
    )
    x = torch.randn(
        3, in_channels, image_size, image_size, generator=torch.Generator().manual_seed(0)
    )
    x0 = x.clone()
    a.eval()
    with torch.no_grad():
        out, emb = a(x), a.embed(x)
        head = a.classifier(emb)
    nf = getattr(a, "num_features", None)
    assert out.shape == (3, num_classes), (
        f"{name}: output shape {tuple(out.shape)}, expected (3, {num_classes})"
    )
    assert emb.ndim == 2 and emb.shape == (3, nf), (
        f"{name}: embed shape {tuple(emb.shape)}, expected (3, {nf})"
    )
    assert torch.isfinite(out).all() and torch.isfinite(emb).all(), f"{name}: non-finite outputs"
    torch.testing.assert_close(out, head, msg=f"{name}: forward(x) != classifier(embed(x))")
    assert torch.equal(x, x0), f"{name}: the input was modified"


def losses_during_fit(method: Any, train: ImageDataset, ipc: int, *, seed: int = 0) -> list[float]:
    """Fit ``method`` and return the ``"loss"`` metric of every iteration (for "the objective
    goes down" tests)."""
    from ddkit.methods.base import Callback

    losses: list[float] = []

    class Record(Callback):
        def on_step_end(self, m: Any, iteration: int, metrics: dict[str, float]) -> None:
            losses.append(float(metrics["loss"]))

    method.fit(train, ipc, seed=seed, callbacks=[Record()])
    return losses


def accuracy_against_random(
    name: str, dataset: str = "digits", ipc: int = 1, protocol: str = "fast", seed: int = 0
) -> tuple[float, float]:
    """Mean test accuracy of method ``name`` (its preset for ``dataset``/``ipc``) and of random
    real images of the same size, both under ``protocol`` (for slow "it learns" tests)."""
    from ddkit.data import load_dataset
    from ddkit.eval import evaluate
    from ddkit.methods import create_method

    d = load_dataset(dataset)
    accs = []
    for method in (name, "random"):
        syn = create_method(method, dataset=dataset, ipc=ipc).fit(d.train, ipc, seed=seed)
        accs.append(evaluate(syn, d.test, protocol, seed=seed).results[0].mean)
    return accs[0], accs[1]


def _member_parser(member: Any) -> Any:
    import argparse

    parser = argparse.ArgumentParser(prog=f"ddkit ... {member.name}")
    member.add_arguments(parser)
    return parser


def _member_named(registry: Any, name: str) -> None:
    member = registry.get(name)
    assert member.name == name, f"registered as {name!r} but named {member.name!r}"
    lines = (member.help or "").strip().splitlines()
    assert len(lines) == 1 and lines[0], f"help must be one line, got {member.help!r}"


def _member_shared_options(registry: Any, name: str) -> None:
    args = _member_parser(registry.get(name)).parse_args([])
    for option in ("dataset", "seed", "out"):
        assert hasattr(args, option), f"no --{option} option"
    assert args.seed == 0, f"--seed defaults to {args.seed!r}, not 0"


def _member_refuses_unknown_data(registry: Any, name: str) -> None:
    from ddkit.errors import DDKitError

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        args = _member_parser(registry.get(name)).parse_args(
            ["--dataset", "no-such-dataset", "--out", str(out)]
        )
        try:
            registry.get(name).run(args)
        except DDKitError as e:
            assert "\n" not in str(e), f"a multi-line error: {e}"
        else:
            raise AssertionError("an unknown dataset was accepted")
        assert not out.exists(), "the refused command created its --out folder"


MEMBER_CHECKS: dict[str, Callable[[Any, str], None]] = {
    "named": _member_named,
    "shared_options": _member_shared_options,
    "refuses_unknown_data": _member_refuses_unknown_data,
}


def check_app(name: str, checks: Iterable[str] | None = None) -> None:
    """Run the conformance checks ``checks`` (default: all of :data:`MEMBER_CHECKS`) on the
    registered application ``name``."""
    from ddkit.apps.base import APPS, load_all

    load_all()
    _run_member_checks(APPS, name, checks)


def check_audit(name: str, checks: Iterable[str] | None = None) -> None:
    """Run the conformance checks ``checks`` (default: all of :data:`MEMBER_CHECKS`) on the
    registered audit ``name``."""
    from ddkit.audits.base import AUDITS, load_all

    load_all()
    _run_member_checks(AUDITS, name, checks)


def _run_member_checks(registry: Any, name: str, checks: Iterable[str] | None) -> None:
    for check in checks if checks is not None else MEMBER_CHECKS:
        try:
            MEMBER_CHECKS[check](registry, name)
        except AssertionError as e:
            raise AssertionError(f"{registry.kind} {name!r} fails {check}: {e}") from None
