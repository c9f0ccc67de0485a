"""Same seed => the same synthetic set as recorded before a refactor, for every registered method.

``tests/data/reference_sets.safetensors`` holds, per method, the images, labels (and learned lr)
of a tiny run (:func:`ddkit.testing.method_test_data`: tiny digits, or a tiny graph for the graph methods; IPC 2, seed 0, the method's test overrides).
It was written at commit 11ad2e8, before the package was reorganised by method family, so this
test fails when a change alters a method's random stream or arithmetic. A change that *means* to
alter a method's output rewrites the file (``python tests/test_reference_sets.py --write``) and
says why in its commit message.

Runs are recorded per machine arithmetic (:func:`ddkit.testing.arithmetic`: CPU vendor and
torch's vector capability, e.g. ``amd-AVX512``): kernels of different vector widths round
differently, MKL / oneDNN choose different kernels on Intel and AMD, and a few tiny runs (DC on
8x8 images, FRePo's solves) amplify rounding into visibly different sets. Keys are
``ARITHMETIC:method.tensor``;
a method not recorded for this machine's capability is skipped with a message saying so. The
first recordings (11ad2e8) were made on an AMD AVX512 CPU; the AVX2 ones (AMD) when
per-capability recording began (after rtp's SVD start and the addition of idc); the Intel
AVX512 ones (a Xeon with AMX, on which dc, dsa and frepo round differently from the AMD
recording at every commit back to 5417dd8) with the code of that commit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from ddkit.testing import arithmetic

REFERENCE = Path(__file__).parent / "data" / "reference_sets.safetensors"
ARITHMETIC = arithmetic()


def tiny_run(name: str) -> dict[str, torch.Tensor]:
    """The tensors of method ``name``'s tiny reference run."""
    from ddkit.methods import create_method
    from ddkit.testing import method_test_data, method_test_overrides

    train = method_test_data(name).train
    syn = create_method(name, **method_test_overrides(name)).fit(train, 2, seed=0)
    out = {f"{name}.images": syn.images, f"{name}.labels": syn.labels}
    if syn.lr is not None:
        out[f"{name}.lr"] = torch.tensor([float(syn.lr)], dtype=torch.float64)
    return out


def _reference() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(REFERENCE))


def _split(key: str) -> tuple[str, str]:
    """``"AVX2:dc.images"`` -> ``("AVX2", "dc")``."""
    capability, tensor = key.split(":", 1)
    return capability, tensor.split(".")[0]


def _recorded_methods(capability: str | None = None) -> list[str]:
    """Methods recorded for ``capability`` (None: for any)."""
    if not REFERENCE.exists():
        return []
    keys = [_split(k) for k in _reference()]
    return sorted({name for cap, name in keys if capability in (None, cap)})


@pytest.mark.parametrize("name", _recorded_methods())
def test_same_seed_gives_the_recorded_set(name):
    prefix = f"{ARITHMETIC}:{name}."
    ref = {k[len(ARITHMETIC) + 1 :]: v for k, v in _reference().items() if k.startswith(prefix)}
    if not ref:
        caps = sorted({cap for cap, n in map(_split, _reference()) if n == name})
        pytest.skip(
            f"{name} was recorded on {', '.join(caps)} CPUs; this one computes as {ARITHMETIC}, "
            "which rounds differently: record it here with --write"
        )
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
    """Record this CPU capability's reference runs (all registered methods, or add/replace
    ``names``); other capabilities' recordings are kept."""
    from safetensors.torch import save_file

    from ddkit.methods import METHODS, load_all

    torch.set_num_threads(1)
    load_all()
    tensors = _reference() if REFERENCE.exists() else {}
    for name in names or METHODS.names():
        tensors = {k: v for k, v in tensors.items() if _split(k) != (ARITHMETIC, name)}
        tensors.update({f"{ARITHMETIC}:{k}": v.contiguous() for k, v in tiny_run(name).items()})
        print(f"recorded {name} ({ARITHMETIC})")
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(REFERENCE))


if __name__ == "__main__":
    if sys.argv[1:2] != ["--write"]:
        sys.exit("usage: python tests/test_reference_sets.py --write [METHOD ...]")
    write(sys.argv[2:] or None)
