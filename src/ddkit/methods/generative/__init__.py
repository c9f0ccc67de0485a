"""Generative distillation: a set that ships a generator instead of images.

* :mod:`~ddkit.methods.generative.dim` -- ``dim`` (DiM: a class-conditional generator distilled
  with a matching objective, sampled at any IPC).
* :mod:`~ddkit.methods.generative.autoencoder` -- the autoencoder both start from, trained once
  per dataset and settings and kept as an artifact folder.

Latent codes through a frozen decoder (GLaD) are the ``latent:D`` codec of
:mod:`ddkit.methods.codecs`, usable by any image-optimising method.
"""
