"""Gradient and distribution matching: DC, DSA, DM, IDM and what they share.

* :mod:`~ddkit.methods.matching.gradient` -- ``dc`` and ``dsa`` (gradient matching).
* :mod:`~ddkit.methods.matching.distribution` -- ``dm`` and ``idm`` (distribution matching).
* :mod:`~ddkit.methods.matching.losses` -- per-class gradients and the matching distances.
* the multi-formation codec they use lives in the data layer, :mod:`ddkit.data.codecs.formation`.
"""
