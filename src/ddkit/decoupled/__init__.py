"""Decoupled distillation (squeeze -> recover/select -> relabel) and fair soft-label accounting.

* :mod:`ddkit.decoupled.teacher` — train / save / load teachers (safetensors + JSON).
* :mod:`ddkit.decoupled.bn` — SRe2L's BatchNorm-statistic matching loss.
* :mod:`ddkit.decoupled.relabel` — teacher soft labels: per image, per FKD view, or on the fly.
* :mod:`ddkit.decoupled.protocols` — the ``soft`` and ``teacher-kd`` evaluation protocols and
  :func:`evaluate_with_teacher`.
* :mod:`ddkit.decoupled.accounting` — storage budget and DD-Ranking-style scores (IOR, HLR, LRS, ARS).

The methods themselves (``sre2l``, ``rded``) live in :mod:`ddkit.methods.decoupled`.
"""

from ddkit.decoupled import protocols as _protocols  # noqa: F401  (registers soft / teacher-kd)
from ddkit.decoupled.protocols import evaluate_with_teacher
from ddkit.decoupled.teacher import load_teacher, save_teacher, train_teacher

__all__ = ["evaluate_with_teacher", "load_teacher", "save_teacher", "train_teacher"]
