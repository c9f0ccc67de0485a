"""Performance matching: the synthetic set is optimised so that a model fitted to it performs
well on real data (the family of Wang et al. 2018's BPTT and of the kernel methods).

* :mod:`~ddkit.methods.performance.kernels` -- closed-form infinite-width kernels (NNGP, NTK of
  fully connected and convolutional ReLU networks) and kernel ridge regression.
* :mod:`~ddkit.methods.performance.bptt` -- ``bptt`` (back-propagation through a randomly
  truncated unrolled training run, learned step sizes).
* :mod:`~ddkit.methods.performance.rtp` -- ``rtp`` (an addressable memory of shared bases and
  per-example addresses, learned with the same unroll).
* :mod:`~ddkit.methods.performance.kip` -- ``kip`` (Kernel Inducing Points).
* :mod:`~ddkit.methods.performance.frepo` -- ``frepo`` (neural feature regression with a pool of
  online networks).
* :mod:`~ddkit.methods.performance.rfad` -- ``rfad`` (KIP with a random-feature estimate of the
  ConvNet NNGP kernel and a Platt-scaling loss).
"""
