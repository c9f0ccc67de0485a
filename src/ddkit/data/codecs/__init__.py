"""Codecs (parameterisations): what a synthetic set stores, and how it becomes training images.

A method that optimises images can optimise a codec's stored tensor instead (the ``codec``
option of the methods that optimise images, :class:`~ddkit.methods.codecs.CodecConfig`). The
codec decodes it into training images at every step (differentiably), and the saved set holds
the decoded images for evaluation plus the stored tensors, which are what its bytes count; a
method that learns labels (soft or regression) keeps one per decoded image, and those count
too. A codec is given the byte budget of ``ipc`` plain images (and hard labels) per class and
emits as many images per class as fit in it.

Codecs live here, in the data layer, because a saved set is decoded by the codec that wrote
it: :meth:`ddkit.data.synthetic.SyntheticSet.load` needs them, and no method. One module a
codec, each registered with :func:`register_codec` and found by walking this package:

* :mod:`~ddkit.data.codecs.pixels` -- ``pixels``, the images themselves;
* :mod:`~ddkit.data.codecs.formation` -- ``formation:F``, multi-formation (IDC);
* :mod:`~ddkit.data.codecs.fred` -- ``fred:R``, frequency domain (FreD);
* :mod:`~ddkit.data.codecs.haba` -- ``haba:H``, bases and hallucinators (HaBa);
* :mod:`~ddkit.data.codecs.latent` -- ``latent:D``, codes through a frozen decoder (GLaD-like),
  whose autoencoder is an artifact (:mod:`~ddkit.data.codecs.autoencoder`).
"""

from ddkit.data.codecs.base import (
    CODECS,
    LABEL_BYTES,
    STORED_IMAGES,
    Codec,
    codec_usage,
    decode_saved,
    image_bytes,
    label_bytes,
    make_codec,
    register_codec,
)
from ddkit.registry import import_submodules

__all__ = [
    "CODECS",
    "LABEL_BYTES",
    "STORED_IMAGES",
    "Codec",
    "codec_usage",
    "decode_saved",
    "image_bytes",
    "label_bytes",
    "load_all",
    "make_codec",
    "register_codec",
]


def load_all() -> None:
    """Import every module of this package (each registers its codec); run on import."""
    import_submodules(__name__)


load_all()
