"""How the suite compares two code paths that must compute the same thing (issue 73).

Two implementations of one computation (a vectorised one and a class loop, training copies
together and one by one, a chunked and a whole pass) round differently in float32, and how far
they drift apart depends on the CPU's kernels: over a few optimiser steps a difference of one
unit in the last place can grow past any tolerance that happens to hold on one machine. So an
equivalence test of two paths declares how it pins the arithmetic, with the marker
``@pytest.mark.paths_agree(precision, steps=...)``, and ``conftest.py`` applies it:

- ``"float64"``: the paths run in float64 (float64 data gives float64 networks; the marker also
  makes float64 the default dtype inside the test), where rounding stays far below the
  tolerance at any length on any CPU;
- ``"fp32"``: float32 in exact mode for at most ``FP32_MAX_STEPS`` optimiser steps, where the
  paths differ only by the rounding of one step and a tolerance of a few units in that step
  holds on any CPU.

``tests/test_suite_rules.py`` finds the suite's equivalence tests (a tolerance comparison of
the outputs of two or more runs) and fails on any that does not carry the marker, or that
claims ``"fp32"`` for more steps.
"""

from __future__ import annotations

import dataclasses

import torch

from ddkit.data.dataset import ImageDataset

#: The precisions an equivalence test may pin.
PRECISIONS = ("float64", "fp32")
#: The most optimiser steps two float32 paths may take before they are compared.
FP32_MAX_STEPS = 1


def as_float64(data: ImageDataset) -> ImageDataset:
    """``data`` with float64 images: a method or trainer fitted on it computes in float64."""
    return dataclasses.replace(data, images=data.images.double())


def check_marker(precision: str, steps: int | None) -> None:
    """Raise ``ValueError`` unless a ``paths_agree`` marker's arguments follow the rules."""
    if precision not in PRECISIONS:
        raise ValueError(f"paths_agree precision {precision!r}: use one of {PRECISIONS}")
    if precision == "fp32" and (steps is None or steps > FP32_MAX_STEPS):
        raise ValueError(
            f"paths_agree('fp32', steps={steps}): float32 paths drift apart by CPU after more "
            f"than {FP32_MAX_STEPS} step; compare them in float64"
        )


def float64_default() -> torch.dtype:
    """Make float64 torch's default dtype; return the previous default to restore."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    return previous
