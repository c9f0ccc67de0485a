"""Decoupled distillation: squeeze (a teacher) -> recover / select (images) -> relabel (soft labels).

* :mod:`~ddkit.methods.decoupled.methods` -- the methods ``sre2l`` and ``rded``.
* :mod:`~ddkit.methods.decoupled.teacher` -- train / save / load teachers (safetensors + JSON).
* :mod:`~ddkit.methods.decoupled.bn` -- SRe2L's BatchNorm-statistic matching loss.
* :mod:`~ddkit.methods.decoupled.crops` -- RDED's patch scoring and stitching.
* :mod:`~ddkit.methods.decoupled.relabel` -- teacher soft labels: per image, per view, on the fly.
* :mod:`~ddkit.methods.decoupled.cli` -- the ``ddkit teacher`` sub-command.

How soft-label sets are evaluated and accounted for (the ``soft`` / ``teacher-kd`` protocols,
storage bytes, DD-Ranking scores) is evaluation knowledge and lives in :mod:`ddkit.eval`.
"""

from ddkit.methods.decoupled.teacher import load_teacher, save_teacher, train_teacher

__all__ = ["load_teacher", "save_teacher", "train_teacher"]
