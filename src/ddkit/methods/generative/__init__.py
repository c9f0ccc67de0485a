"""Generative distillation: a set that ships a generator instead of images.

* :mod:`~ddkit.methods.generative.dim` -- ``dim`` (DiM: a class-conditional generator distilled
  with a matching objective, sampled at any IPC).

Latent codes through a frozen decoder (GLaD) are the ``latent:D`` codec of
:mod:`ddkit.data.codecs`, usable by any image-optimising method; its autoencoder, which ``dim``
starts from too, is an artifact trained once per dataset and settings
(:mod:`ddkit.data.codecs.autoencoder`).
"""
