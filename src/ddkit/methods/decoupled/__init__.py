"""Decoupled distillation: squeeze (a teacher) -> recover / select (images) -> relabel (soft labels).

* :mod:`~ddkit.methods.decoupled.methods` -- the methods ``sre2l`` and ``rded``.
* :mod:`~ddkit.methods.decoupled.bn` -- SRe2L's BatchNorm-statistic matching loss.

What the family shares with evaluation lives below it: teachers (train / save / load, the
``ddkit teacher`` sub-command) in :mod:`ddkit.eval.teacher` and :mod:`ddkit.eval.cli`, teacher
soft labels per image, per view and on the fly in :mod:`ddkit.eval.relabel`, and the random
resized crops and RDED's patch stitching in :mod:`ddkit.augment.crops`. How soft-label sets
are evaluated and accounted for (the ``soft`` / ``teacher-kd`` protocols, storage bytes,
DD-Ranking scores) is evaluation knowledge too.
"""
