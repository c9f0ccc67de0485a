"""Distillation for frozen backbones judged by linear probes.

* :mod:`~ddkit.methods.probe.lgm` -- ``lgm``, Linear Gradient Matching (Cazenavette, Torralba &
  Sitzmann, NeurIPS 2025, arXiv:2511.16674).
* :mod:`~ddkit.methods.probe.pyramid` -- the multi-resolution image parameterisation it
  optimises.
* the evaluation by linear probes on several frozen backbones lives in :mod:`ddkit.eval.probe`.
"""
