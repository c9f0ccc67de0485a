"""Kernel-based performance matching: the synthetic set is the support of a kernel ridge
regression fitted to real data.

* :mod:`~ddkit.methods.kernel.kernels` -- closed-form infinite-width kernels (NNGP, NTK).
* :mod:`~ddkit.methods.kernel.kip` -- the method ``kip`` (Kernel Inducing Points).
"""
