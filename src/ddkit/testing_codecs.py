"""The conformance checks every registered codec must pass (:func:`check_codec`, one check per
entry of :data:`CODEC_CHECKS`), on codecs fitted to tiny digits; part of :mod:`ddkit.testing`."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from ddkit.data.dataset import ImageDataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.testing_data import tiny_digits

#: Each codec's conformance checks, one test id per check (``tests/test_conformance.py``
#: parametrises over codec x check). A codec is built from its class's ``example`` spec string,
#: with its ``test_settings`` (class attributes made small for speed) applied.
CODEC_IPC = 10


def _codec_under_test(name: str) -> tuple[Any, ImageDataset, torch.Tensor]:
    """The codec ``name`` built from its example and fitted to tiny digits, and the stored
    tensor it encodes from real images (seeded)."""
    from ddkit.data.codecs import CODECS, make_codec

    cls = CODECS.get(name)
    codec = make_codec(cls.example)
    for key, value in getattr(cls, "test_settings", {}).items():
        setattr(codec, key, value)
    train = tiny_digits().train
    codec.fit(train)
    n = codec.real_per_class(CODEC_IPC, train.spec)
    start = train.images[train.sample_per_class(n, torch.Generator().manual_seed(0)).flatten()]
    return codec, train, codec.encode(start, torch.Generator().manual_seed(1))


def _codec_spec_string(name: str) -> None:
    from ddkit.data.codecs import CODECS, make_codec

    cls = CODECS.get(name)
    assert cls.name == name, f"registered as {name!r} but named {cls.name!r}"
    assert cls.usage.startswith(name), f"usage {cls.usage!r} does not start with {name!r}"
    codec = make_codec(cls.example)
    assert make_codec(codec.spec_string).spec_string == codec.spec_string, "spec string round trip"
    bad = f"{name}:x" if cls.argument is not None else f"{name}:1"
    try:
        make_codec(bad)
    except ConfigError:
        pass
    else:
        raise AssertionError(f"make_codec({bad!r}) was accepted")


def _codec_decodes(name: str) -> None:
    codec, train, stored = _codec_under_test(name)
    k, per_class = train.spec.num_classes, codec.emitted_per_class(CODEC_IPC, train.spec)
    stored = stored.detach().requires_grad_(True)
    images = codec.decode(stored)
    assert tuple(images.shape) == (k * per_class, *train.spec.shape), (
        f"decoded {tuple(images.shape)}, expected {(k * per_class, *train.spec.shape)}"
    )
    assert torch.isfinite(images).all(), "non-finite decoded images"
    assert images.requires_grad, "decoding is not differentiable in the stored tensor"
    images.square().sum().backward()
    assert stored.grad is not None and torch.isfinite(stored.grad).all(), "no finite gradient"
    assert stored.grad.abs().sum() > 0, "decoding does not depend on the stored tensor"


def _codec_fits_the_bytes(name: str) -> None:
    from ddkit.data.codecs import LABEL_BYTES, image_bytes

    """What a set stores, but for one hard label per decoded image (a codec's images pay for
    their own labels), fits the bytes of IPC plain images."""
    codec, train, stored = _codec_under_test(name)
    syn = SyntheticSet.from_codec(codec, stored, train.spec)
    images = CODEC_IPC * train.spec.num_classes * image_bytes(train.spec)
    used = syn.storage_bytes()["total"] - len(syn) * LABEL_BYTES
    assert used <= images, f"{used} bytes stored, more than the {images} of IPC {CODEC_IPC}"
    assert syn.meta["codec"] == codec.spec_string


def _codec_same_seed(name: str) -> None:
    first = _codec_under_test(name)[2]
    again = _codec_under_test(name)[2]
    assert torch.equal(first, again), "the same seeds gave different stored tensors"


def _codec_save_load(name: str) -> None:
    codec, train, stored = _codec_under_test(name)
    syn = SyntheticSet.from_codec(codec, stored, train.spec)
    with tempfile.TemporaryDirectory() as tmp:
        back = SyntheticSet.load(syn.save(Path(tmp) / "set"))
    assert torch.allclose(back.images, syn.images, atol=1e-6), "decoded images changed on load"
    assert back.storage_bytes() == syn.storage_bytes(), "storage bytes changed on load"


CODEC_CHECKS: dict[str, Callable[[str], None]] = {
    "spec_string": _codec_spec_string,
    "decodes": _codec_decodes,
    "fits_the_bytes": _codec_fits_the_bytes,
    "same_seed": _codec_same_seed,
    "save_load": _codec_save_load,
}


def check_codec(name: str, checks: Iterable[str] | None = None) -> None:
    """Run the conformance checks ``checks`` (default: all of :data:`CODEC_CHECKS`) on the
    registered codec ``name``; an ``AssertionError`` names the first failure."""
    for check in checks if checks is not None else CODEC_CHECKS:
        try:
            CODEC_CHECKS[check](name)
        except AssertionError as e:
            raise AssertionError(f"codec {name!r} fails {check}: {e}") from None


# -------------------------------------------------------------- applications and audits
#: The contract of a member of a command group (an application, an audit): ``name``, one
#: line of ``help``, ``add_arguments`` giving the shared options, and a ``run`` that refuses an
#: unknown dataset in one line before writing anything. One test id per check.
