"""Trajectory matching infrastructure: expert trajectories on disk and functional students.

See :mod:`ddkit.trajectory.experts` (train/resume/load expert buffers) and
:mod:`ddkit.trajectory.student` (unrolled MTT step and the constant-memory TESLA gradient);
the methods themselves are in :mod:`ddkit.methods.trajectory`.
"""

from ddkit.trajectory.experts import ExpertBuffer, load_experts, train_experts

__all__ = ["ExpertBuffer", "load_experts", "train_experts"]
