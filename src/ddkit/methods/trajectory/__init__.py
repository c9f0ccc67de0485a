"""Trajectory matching: MTT, TESLA, DATM and what they need.

* :mod:`~ddkit.methods.trajectory.methods` -- the methods ``mtt``, ``tesla`` and ``datm``.
* :mod:`~ddkit.methods.trajectory.experts` -- train / resume / load expert trajectories on disk.
* :mod:`~ddkit.methods.trajectory.student` -- the unrolled functional student (MTT) and the
  constant-memory gradient (TESLA).
* :mod:`~ddkit.methods.trajectory.cli` -- the ``ddkit experts`` sub-command.
"""

from ddkit.methods.trajectory.experts import (
    ExpertBuffer,
    ExpertSettings,
    load_experts,
    train_experts,
)

__all__ = ["ExpertBuffer", "ExpertSettings", "load_experts", "train_experts"]
