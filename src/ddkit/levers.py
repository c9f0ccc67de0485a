"""The speed levers (bf16 autocast, ``torch.compile``, channels-last batches) and the exact switch.

ddkit is fast by default where a validation-split comparison showed the levers keep accuracy
within the spread (issue 41; BENCHMARKS.md "Fast by default"): the evaluation protocols
``dc``, ``dsa``, ``dc_aug`` and ``fast`` and the methods ``dm`` and ``dsa`` default to
``precision="auto"`` (bf16 autocast where the CPU or GPU computes bfloat16 natively) and
``compile="auto"`` (the network's forward through inductor where a C++ compiler works and the
run is long enough to repay the compilation). The levers change rounding only.

**Exact mode** turns every ``"auto"`` lever off, giving the float32, eager arithmetic of the
reference sets bit for bit: set the environment variable ``DDKIT_EXACT=1``, pass ``--exact``
to the ``ddkit`` command, or wrap the code in ``with ddkit.levers.exact():``. A lever set
explicitly (``precision="bf16"``, ``compile=True``) is obeyed in either mode. The benchmark
suites and the test suite run in exact mode, so their numbers stay comparable across machines.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
from collections.abc import Callable, Iterator
from typing import Literal

import torch

from ddkit.context import EXACT_ENV, exact, exact_mode  # noqa: F401 - levers.exact is public
from ddkit.errors import warn_at_caller

#: ``"auto"`` compiles a training run of at least this many optimiser steps (per network) or a
#: distillation of at least this many iterations; shorter runs would not repay the compilation.
COMPILE_MIN_STEPS = 200
#: ``"auto"`` compiles evaluation training only when a batch holds at least this many input
#: values: a set of ten 8x8 digits (640 values) trained slower compiled than eager, a batch of
#: 256 such digits (16,384) faster; the floor sits between the two (issue 70).
COMPILE_MIN_BATCH_VALUES = 4_096

#: A lever's setting: on, off, or ``"auto"`` (on where it pays, off in exact mode).
Switch = bool | Literal["auto"]


def float32_on_cuda() -> None:
    """In exact mode, CUDA convolutions and matrix products compute in float32: TF32 off (cuDNN
    allows TF32 in convolutions by default on Ampere and later GPUs). Outside exact mode, no
    change. The ``ddkit`` command calls it once; API users in exact mode call it themselves."""
    if exact_mode():
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), where bf16 autocast
    pays off; elsewhere it is emulated and slower."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``"fp32"`` or ``"bf16"`` for a ``precision`` setting: ``"auto"`` is fp32 in exact mode,
    else bf16 on CPUs that have it natively and on CUDA devices that support it, else fp32."""
    if precision != "auto":
        return precision
    if exact_mode():
        return "fp32"
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_bf16() else "fp32"


def resolve_compile(
    compile: Switch, steps: int | None = None, batch_values: int | None = None
) -> bool:
    """Whether to compile: ``True`` / ``False`` as set; ``"auto"`` compiles outside exact mode
    where :func:`compile_available`, the run has at least :data:`COMPILE_MIN_STEPS` ``steps``
    and a batch at least :data:`COMPILE_MIN_BATCH_VALUES` input values (``None``: long or
    large enough)."""
    if compile != "auto":
        return bool(compile)
    if exact_mode() or (steps is not None and steps < COMPILE_MIN_STEPS):
        return False
    if batch_values is not None and batch_values < COMPILE_MIN_BATCH_VALUES:
        return False
    return compile_available()


#: Outside exact mode, evaluation training on the CPU uses one intra-op thread when a batch
#: holds fewer input values than this: such operations are too small to split, and on a busy
#: machine every split operation waits for a core (measured in
#: benchmarks/campaigns/bench_eval_threads.py).
SINGLE_THREAD_MAX_BATCH_VALUES = 8_192


@contextlib.contextmanager
def threads_for(batch_values: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """One CPU thread inside, for batches of fewer than :data:`SINGLE_THREAD_MAX_BATCH_VALUES`
    input values on the CPU outside exact mode; the thread count is restored after."""
    before = torch.get_num_threads()
    single = (
        torch.device(device).type == "cpu"
        and batch_values < SINGLE_THREAD_MAX_BATCH_VALUES
        and before > 1
        and not exact_mode()
    )
    if single:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if single:
            torch.set_num_threads(before)


@contextlib.contextmanager
def torch_threads_kept() -> Iterator[None]:
    """Torch's CPU thread count after the block as it was before, whatever a library inside
    changes: numba's OpenMP layer (sktime's MiniRocket) sets the process's OpenMP thread count
    to the cores when it first runs, and torch, sharing that runtime, then trains tiny batches
    on every core, an order of magnitude slower beside another process."""
    before = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def check_switch(value: object) -> bool:
    """Whether ``value`` is a valid lever setting (``True``, ``False`` or ``"auto"``)."""
    return isinstance(value, bool) or value == "auto"


def precision_context(precision: str, device: torch.device | str = "cpu"):  # noqa: ANN201
    """The autocast context of a resolved ``precision``: bf16 matrix products and convolutions
    (weights, optimiser and loss stay float32), or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """A batch of images ``(N, C, H, W)`` in channels-last memory format (same values)."""
    return x.contiguous(memory_format=torch.channels_last)


@functools.cache
def compile_available() -> bool:
    """Whether ``torch.compile`` (inductor) works in this process: a C++ compiler is on the
    path and a tiny function compiles and computes the right values (checked once)."""
    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        return False
    try:
        fn = torch.compile(lambda x: x * 2.0 + 1.0, dynamic=False)
        return bool(torch.equal(fn(torch.ones(3)), torch.full((3,), 3.0)))
    except Exception:  # noqa: BLE001 - any failure means: no compilation here
        return False


#: Graphs torch.compile may keep per compiled function (torch's default is 8): every model,
#: batch shape, precision and memory format is one, and past the limit it runs eagerly.
COMPILE_RECOMPILE_LIMIT = 64


class CompiledForward:
    """``fn`` (a module or a forward function such as ``net.embed``) through ``torch.compile``
    (inductor, fixed shapes), falling back to ``fn`` itself, with a warning, when compilation
    is unavailable or fails. Raises dynamo's recompile limit to
    :data:`COMPILE_RECOMPILE_LIMIT` (once over it, torch would silently run eagerly)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.eager = self.fn = fn
        if compile_available():
            import torch._dynamo

            cfg = torch._dynamo.config
            cfg.recompile_limit = max(cfg.recompile_limit, COMPILE_RECOMPILE_LIMIT)
            self.fn = torch.compile(fn, dynamic=False)
        else:
            warn_at_caller(
                "torch.compile is unavailable here (no C++ compiler, or inductor fails); "
                "running eagerly"
            )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.fn is not self.eager:
            try:
                return self.fn(x)
            except Exception as e:  # noqa: BLE001 - compilation failed: eager from now on
                warn_at_caller(f"torch.compile failed ({type(e).__name__}); running eagerly")
                self.fn = self.eager
        return self.eager(x)
