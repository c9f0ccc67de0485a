"""Same seed => the same synthetic set as recorded before a refactor, for every registered method.

``tests/data/reference_sets.safetensors`` holds, per method, the images, labels (and learned lr)
of a tiny run (:func:`ddkit.testing.tiny_digits`, IPC 2, seed 0, the method's test overrides).
It was written at commit 11ad2e8, before the package was reorganised by method family, so this
test fails when a change alters a method's random stream or arithmetic. A change that *means* to
alter a method's output rewrites the file (``python tests/test_reference_sets.py --write``) and
says why in its commit message.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

REFERENCE = Path(__file__).parent / "data" / "reference_sets.safetensors"


def tiny_run(name: str) -> dict[str, torch.Tensor]:
    """The tensors of method ``name``'s tiny reference run."""
    from ddkit.methods import create_method
    from ddkit.testing import method_test_overrides, tiny_digits

    syn = create_method(name, **method_test_overrides(name)).fit(tiny_digits().train, 2, seed=0)
    out = {f"{name}.images": syn.images, f"{name}.labels": syn.labels}
    if syn.lr is not None:
        out[f"{name}.lr"] = torch.tensor([float(syn.lr)], dtype=torch.float64)
    return out


def _reference() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(REFERENCE))


def _recorded_methods() -> list[str]:
    if not REFERENCE.exists():
        return []
    return sorted({k.split(".")[0] for k in _reference()})


@pytest.mark.parametrize("name", _recorded_methods())
def test_same_seed_gives_the_recorded_set(name):
    ref = {k: v for k, v in _reference().items() if k.split(".")[0] == name}
    got = tiny_run(name)
    assert got.keys() == ref.keys(), f"{name}: recorded {sorted(ref)}, got {sorted(got)}"
    for key in ref:
        # bit-identical on the machine that recorded it; other CPUs may round differently
        torch.testing.assert_close(got[key], ref[key], rtol=1e-5, atol=1e-6, msg=f"{key} changed")


def test_every_registered_method_is_recorded():
    from ddkit.methods import METHODS, load_all

    load_all()
    missing = sorted(set(METHODS.names()) - set(_recorded_methods()))
    assert not missing, f"no reference run recorded for {missing}: run this file with --write"


def write(names: list[str] | None = None) -> None:
    """Record the reference runs (all registered methods, or add/replace ``names``)."""
    from safetensors.torch import save_file

    from ddkit.methods import METHODS, load_all

    torch.set_num_threads(1)
    load_all()
    tensors = _reference() if REFERENCE.exists() and names else {}
    for name in names or METHODS.names():
        tensors = {k: v for k, v in tensors.items() if k.split(".")[0] != name}
        tensors.update({k: v.contiguous() for k, v in tiny_run(name).items()})
        print(f"recorded {name}")
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(REFERENCE))


if __name__ == "__main__":
    if sys.argv[1:2] != ["--write"]:
        sys.exit("usage: python tests/test_reference_sets.py --write [METHOD ...]")
    write(sys.argv[2:] or None)
