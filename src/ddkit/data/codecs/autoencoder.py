"""The autoencoder artifact behind the ``latent:D`` codec and ``dim``: trained once per dataset
and settings, then reused.

No pretrained generator can be downloaded, so ddkit trains a small autoencoder on the real
training images (:class:`~ddkit.data.codecs.latent.Latent`). Like expert trajectories and teachers,
it is kept as a folder -- ``weights.safetensors`` (the encoder's and decoder's parameters; no
pickle) and ``meta.json`` (the dataset spec, the fingerprint of the exact training images, the
settings it was trained with, its reconstruction error) -- under
``$DDKIT_AUTOENCODER_CACHE`` (default ``runs/autoencoders``), named by the data and the
settings, so a second run with the same data and settings loads it instead of training again.
The folder is written atomically; a damaged one is refused with its path.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from ddkit import context
from ddkit.data.dataset import ImageDataset
from ddkit.data.fingerprint import fingerprint
from ddkit.errors import FileFormatError
from ddkit.io import (
    atomic_replace_dir,
    atomic_write_json,
    load_tensors,
    made_as,
    read_json,
    safe_name,
    write_safetensors,
)

ENV_VAR = context.AUTOENCODER_CACHE_ENV
WEIGHTS_FILE = "weights.safetensors"
META_FILE = "meta.json"


def cache_root() -> Path:
    """Where autoencoders are kept: ``$DDKIT_AUTOENCODER_CACHE``, else ``runs/autoencoders``."""
    return context.autoencoder_cache()


def artifact_folder(root: Path, train: ImageDataset, settings: dict[str, Any]) -> Path:
    """The folder of the autoencoder trained on ``train`` with ``settings``."""
    key = fingerprint(train, repr(train.spec.to_dict()), json.dumps(settings, sort_keys=True))
    return root / f"{safe_name(train.spec.name)}-{key}"  # nothing outside root


def obtain_autoencoder(
    train: ImageDataset,
    settings: dict[str, Any],
    networks: dict[str, nn.Module],
    train_fn: Callable[[], dict[str, float]],
    *,
    root: Path | None = None,
) -> dict[str, Any]:
    """Fill ``networks`` (e.g. ``{"encoder": ..., "decoder": ...}``, freshly built) with the
    weights of the autoencoder trained on ``train`` with ``settings``: loaded from the cache
    when there, else trained by ``train_fn()`` (which returns measured values such as the
    reconstruction error) and saved. Returns the artifact's metadata."""
    folder = artifact_folder(root or cache_root(), train, settings)
    if (folder / META_FILE).is_file():
        return _load(folder, networks)
    measured = train_fn()
    meta = {
        "format": "ddkit.autoencoder",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "spec": train.spec.to_dict(),
        "data_fingerprint": fingerprint(train),
        "settings": settings,
        **measured,
    }

    def fill(tmp: Path) -> None:
        tensors = {
            f"{name}.{key}": value.detach().contiguous().cpu()
            for name, net in networks.items()
            for key, value in net.state_dict().items()
        }
        write_safetensors(tmp / WEIGHTS_FILE, tensors)
        atomic_write_json(tmp / META_FILE, meta)

    folder.parent.mkdir(parents=True, exist_ok=True)
    atomic_replace_dir(
        folder, fill, owned=made_as(META_FILE, "ddkit.autoencoder"), kind="a saved autoencoder"
    )
    return meta


def _load(folder: Path, networks: dict[str, nn.Module]) -> dict[str, Any]:
    meta = read_json(folder / META_FILE)
    if not isinstance(meta, dict) or meta.get("format") != "ddkit.autoencoder":
        raise FileFormatError(f"{str(folder)!r} is not a ddkit autoencoder; delete it to retrain")
    tensors = load_tensors(folder / WEIGHTS_FILE)
    for name, net in networks.items():
        prefix = f"{name}."
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError:
            raise FileFormatError(
                f"{str(folder)!r} holds no {name} of this shape; delete it to retrain"
            ) from None
    return meta
