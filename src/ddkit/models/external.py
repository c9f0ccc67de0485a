"""Networks from outside ddkit: checkpoints, Hugging Face models, timm / torchvision names.

Issue 69: the decoupled family (SRe2L, Yin et al., NeurIPS 2023; RDED, Sun et al., CVPR 2024)
is defined by a pretrained teacher, and users distil for networks they already have. One
resolver, :func:`load_network`, turns a *source* into a frozen network in eval mode and a
:class:`NetworkRecord` of what was loaded. The same source string is taken by the API
(``create_method("sre2l", teacher="file:t.safetensors")``, ``evaluate(..., teacher=...)``)
and the command line (``--teacher file:t.safetensors``):

* ``file:PATH`` (or a plain path): a checkpoint of a registered ddkit architecture --
  a ``.safetensors`` file, whose metadata names the architecture when :func:`save_network`
  wrote it, or a ``.pt`` / ``.pth`` state_dict read with ``torch.load(weights_only=True)``
  (nothing unpickled but tensors); ``file:PATH#convnet3-bn`` names the architecture where the
  file does not. A folder is a ``ddkit teacher`` folder (``teacher.json`` +
  ``teacher.safetensors``).
* ``hf:PATH_OR_NAME``: a Hugging Face ``transformers`` image-classification model (or a
  backbone, with ``backbone=True``) from a local folder or a name already in the Hugging Face
  cache; offline only (``local_files_only=True``), ``pip install 'ddkit[transformers]'``.
* ``timm:NAME`` / ``torchvision:NAME``: a pretrained model of those packages, where they are
  installed (refused in one line naming the extra where they are not).
* an ``nn.Module`` from Python, taken as it is.

Another package's network sees ddkit's images through
:class:`~ddkit.models.pretrained.PixelAdapter` (the dataset's normalisation converted to the
network's, its input size read from the model's config where recorded;
:mod:`ddkit.models.pretrained`).

A wrong file, missing weights, a class count that does not match the dataset or an unknown
architecture raise one line (:class:`~ddkit.errors.ConfigError`,
:class:`~ddkit.errors.FileFormatError`); nothing is written. The record (source, SHA-256 of the
weights, class count, input size) is what a distilled set's meta keeps, so the set can be
evaluated with the same teacher again (:func:`ddkit.eval.teacher.resolve_teacher` checks the
SHA-256).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddkit.data.spec import DatasetSpec
from ddkit.errors import ConfigError, FileFormatError, require_extra
from ddkit.io import save_tensors, sha256_file
from ddkit.models.network_record import ExternalNetwork, NetworkRecord, refuse_classes
from ddkit.models.teacher_files import META_FILE, WEIGHTS_FILE, load_teacher

__all__ = [
    "ExternalNetwork",
    "NetworkRecord",
    "is_source",
    "load_network",
    "save_network",
    "source_bytes",
    "teacher_record",
]

#: the prefixes of a source string
PREFIXES = ("file", "hf", "timm", "torchvision")
#: the safetensors metadata keys :func:`save_network` writes and `file:` reads
META_KEYS = ("ddkit.model", "ddkit.num_classes", "ddkit.in_channels", "ddkit.image_size")
TORCH_SUFFIXES = (".pt", ".pth")
_FIX = "file:PATH, file:PATH#MODEL, hf:PATH_OR_NAME, timm:NAME, torchvision:NAME or a folder"


def is_source(value: object) -> bool:
    """Whether ``value`` is a source string with a prefix (``file:``, ``hf:``, ...)."""
    return isinstance(value, str) and value.split(":", 1)[0] in PREFIXES and ":" in value


def load_network(
    source: str | os.PathLike | nn.Module,
    *,
    spec: DatasetSpec | None = None,
    device: torch.device | str = "cpu",
    backbone: bool = False,
    sha256: str | None = None,
) -> ExternalNetwork:
    """The network ``source`` names (module docstring), frozen, in eval mode on ``device``.

    ``spec``: the dataset the network will see; its class count must match the network's
    (unless ``backbone``: only :meth:`PixelAdapter.embed` is used) and its normalisation is
    converted to the network's. ``sha256``: the weights must have this checksum (a set's
    recorded teacher), else :class:`FileFormatError`.
    """
    if isinstance(source, nn.Module):
        net = _frozen(source, device)
        shape = getattr(source, "input_shape", None)
        record = NetworkRecord(
            "module", "module", type(source).__name__, _classes_of(source, spec),
            tuple(shape) if shape else None, None, 0,
        )  # fmt: skip
        return ExternalNetwork(net, record)
    kind, rest = _split(os.fspath(source))
    if kind == "file":
        out = _from_file(rest, spec, backbone)
    else:  # another package's model
        from ddkit.models import pretrained

        load = {"hf": pretrained.from_hf, "timm": pretrained.from_timm}.get(kind)
        out = (load or pretrained.from_torchvision)(rest, spec, backbone)
    if sha256 is not None and out.record.sha256 != sha256:
        raise FileFormatError(
            f"the weights of {out.record.source!r} changed since they were recorded (sha256 "
            f"{str(out.record.sha256)[:12]}..., recorded {sha256[:12]}...); pass the network "
            "the set was made with"
        )
    return ExternalNetwork(_frozen(out.module, device), out.record)


def _split(source: str) -> tuple[str, str]:
    """``(prefix, rest)``; a plain path is ``file``."""
    head, sep, rest = source.partition(":")
    if sep and head in PREFIXES:
        if not rest:
            raise ConfigError(f"network source {source!r} names nothing after {head}:")
        return head, rest
    if sep and len(head) > 1 and not Path(source).exists():
        raise ConfigError(f"unknown network source {source!r}; use {_FIX}")
    return "file", source


def _frozen(net: nn.Module, device: torch.device | str) -> nn.Module:
    net = net.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _classes_of(net: nn.Module, spec: DatasetSpec | None) -> int | None:
    """The class count of a module from Python: its logits on one dataset-shaped input."""
    if spec is None:
        return None
    x = torch.zeros(1, *spec.shape, device=next(net.parameters(), torch.zeros(0)).device)
    try:
        with torch.no_grad():
            return int(net(x).shape[-1])
    except Exception:  # a module that takes other inputs: its class count stays unknown
        return None


# ------------------------------------------------------------------------------ file:
def _from_file(rest: str, spec: DatasetSpec | None, backbone: bool) -> ExternalNetwork:
    path, model = _path_and_model(rest)
    if path.is_dir():
        return _from_teacher_folder(path, spec)
    if not path.is_file():
        raise FileFormatError(f"no checkpoint or teacher folder at {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        state, meta = _read_safetensors(path)
    elif suffix in TORCH_SUFFIXES:
        state, meta = _read_torch(path), {}
    else:
        raise FileFormatError(
            f"{str(path)!r} is not a checkpoint ddkit reads (.safetensors, .pt or .pth; a "
            "Hugging Face folder is hf:PATH)"
        )
    model = model or meta.get("ddkit.model")
    if not model:
        raise ConfigError(
            f"checkpoint {str(path)!r} does not name its architecture: write file:{path}#MODEL "
            "(a registered model, e.g. convnet3-bn)"
        )
    net = _build(path, model, state, _geometry(path, meta, spec, backbone), backbone)
    source = f"file:{path}" + ("" if meta.get("ddkit.model") == model else f"#{model}")
    record = NetworkRecord(
        source, "file", model, int(net.num_classes_), tuple(net.input_shape),
        sha256_file(path), path.stat().st_size,
    )  # fmt: skip
    return ExternalNetwork(net, record)


def _path_and_model(rest: str) -> tuple[Path, str | None]:
    """``PATH#MODEL`` split (a path that exists with its ``#`` is taken whole)."""
    if "#" in rest and not Path(rest).exists():
        path, _, model = rest.rpartition("#")
        return Path(path).resolve(), model.strip() or None
    return Path(rest).resolve(), None


def _from_teacher_folder(path: Path, spec: DatasetSpec | None) -> ExternalNetwork:
    if not (path / META_FILE).is_file() and (path / "config.json").is_file():
        raise FileFormatError(
            f"{str(path)!r} is no ddkit teacher folder but looks like a Hugging Face model: "
            f"use hf:{path}"
        )
    net, meta = load_teacher(path)
    s = DatasetSpec.from_dict(meta.get("spec", {}))
    if spec is not None and (s.num_classes, s.shape) != (spec.num_classes, spec.shape):
        raise ConfigError(
            f"teacher in {str(path)!r} was trained on {meta.get('dataset')!r} ({s.num_classes} "
            f"classes, {s.channels}x{list(s.image_size)}), which does not fit {spec.name!r} "
            f"({spec.num_classes} classes, {spec.channels}x{list(spec.image_size)})"
        )
    return ExternalNetwork(net, teacher_record(path, meta))


def teacher_record(folder: str | os.PathLike, meta: dict[str, Any]) -> NetworkRecord:
    """The record of a ``ddkit teacher`` folder from its ``teacher.json`` (``meta``); its
    source is the folder's absolute path."""
    s = DatasetSpec.from_dict(meta.get("spec", {}))
    return NetworkRecord(
        str(Path(folder).resolve()), "teacher", str(meta["model"]), s.num_classes, s.shape,
        meta.get("sha256"), int(meta.get("bytes", 0)),
    )  # fmt: skip


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    from ddkit.io import load_tensors

    state = load_tensors(path)  # a corrupt or truncated file: FileFormatError
    try:
        with safe_open(str(path), framework="pt") as f:
            return state, dict(f.metadata() or {})
    except (UnicodeEncodeError, OSError):  # a path safetensors cannot open: name the model
        return state, {}


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from a ``.pt`` / ``.pth`` file, read with ``weights_only=True``; a dict
    under ``state_dict`` / ``model`` / ``model_state_dict`` and a ``module.`` prefix (data
    parallel) are unwrapped."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle refusal, not a zip, truncated: all mean "not a checkpoint"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise FileFormatError(
            f"{str(path)!r} is not a torch checkpoint of tensors (read with weights_only=True: "
            f"{first[:100]}); save model.state_dict(), not the pickled model"
        ) from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(v, torch.Tensor) for v in obj.values())
    ):
        raise FileFormatError(f"{str(path)!r} holds no state_dict (a dict of named tensors)")
    if all(str(k).startswith("module.") for k in obj):
        obj = {str(k)[len("module.") :]: v for k, v in obj.items()}
    return obj


def _recorded(
    path: Path, meta: dict[str, str]
) -> tuple[int | None, int | None, tuple[int, ...] | None]:
    """``(classes, channels, image size)`` as the file's metadata records them (``None``:
    not recorded); malformed values are a :class:`FileFormatError`."""
    try:
        classes, channels = (
            int(meta[k]) if k in meta else None for k in ("ddkit.num_classes", "ddkit.in_channels")
        )
        size = meta.get("ddkit.image_size")
        return classes, channels, tuple(int(s) for s in size.split("x")) if size else None
    except ValueError:
        raise FileFormatError(f"{str(path)!r} has malformed ddkit.* metadata") from None


def _geometry(
    path: Path, meta: dict[str, str], spec: DatasetSpec | None, backbone: bool
) -> tuple[int, int, tuple[int, int]]:
    """``(classes, channels, image size)`` to build the checkpoint's model for: the dataset's,
    after checking them against what the file records; the file's without a dataset."""
    recorded = _recorded(path, meta)
    if spec is None:
        if None in recorded:
            raise ConfigError(
                f"checkpoint {str(path)!r} does not record its input and classes; pass the "
                "dataset (spec=) it is for"
            )
        return recorded  # type: ignore[return-value]
    if recorded[0] is not None and not backbone:
        refuse_classes(f"checkpoint {str(path)!r}", recorded[0], spec)
    if recorded[1:] != (None, None) and recorded[1:] != (spec.channels, spec.image_size):
        raise ConfigError(
            f"checkpoint {str(path)!r} was made for {recorded[1]}x{list(recorded[2] or ())} "
            f"inputs; dataset {spec.name!r} has {spec.channels}x{list(spec.image_size)}"
        )
    classes = recorded[0] if backbone and recorded[0] is not None else spec.num_classes
    return classes, spec.channels, spec.image_size


def _build(
    path: Path,
    model: str,
    state: dict[str, torch.Tensor],
    geometry: tuple[int, int, Any],
    backbone: bool,
) -> nn.Module:
    """Registered ``model`` for ``geometry`` with ``state`` loaded (strictly); the global RNG
    is left as it was. A classifier of another width is a class-count refusal (for a
    ``backbone``, the model is built with the checkpoint's classes instead)."""
    from ddkit.models import create_model

    classes, channels, size = geometry
    with torch.random.fork_rng(devices=[]):  # the init is overwritten
        net = create_model(model, num_classes=classes, in_channels=channels, image_size=size)
    expected = net.state_dict()
    for key, value in state.items():
        want = expected.get(key)
        if key.startswith("classifier.") and want is not None and value.shape != want.shape:
            if value.ndim >= 1 and value.shape[1:] == want.shape[1:]:
                if backbone:
                    return _build(path, model, state, (value.shape[0], *geometry[1:]), False)
                raise ConfigError(
                    f"checkpoint {str(path)!r} has {value.shape[0]} classes; the dataset has "
                    f"{classes} (use a network trained on this dataset's classes)"
                )
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        line = " ".join(str(e).split())
        raise FileFormatError(
            f"weights in {str(path)!r} do not fit model {model!r} (missing or wrong weights: "
            f"{line[:160]})"
        ) from None
    net.num_classes_ = classes
    return net


def save_network(module: nn.Module, path: str | os.PathLike, *, model: str | None = None) -> Path:
    """Write ``module``'s state_dict to ``path`` (``.safetensors``, atomically) with metadata
    naming the architecture (``model``, default ``module.model_name`` as
    :func:`~ddkit.models.create_model` sets it), its input and its class count, so that
    ``file:PATH`` loads it without ``#MODEL``."""
    name = model or getattr(module, "model_name", None)
    if not name:
        raise ConfigError("save_network needs the architecture's name: pass model=")
    meta = {"ddkit.model": str(name)}
    shape = getattr(module, "input_shape", None)
    if shape is not None:
        meta["ddkit.in_channels"] = str(int(shape[0]))
        meta["ddkit.image_size"] = f"{int(shape[1])}x{int(shape[2])}"
    head = getattr(module, "classifier", None)
    weight = getattr(head, "weight", None) if head is not None else None
    if isinstance(weight, torch.Tensor):
        meta["ddkit.num_classes"] = str(int(weight.shape[0]))
    save_tensors(path, dict(module.state_dict()), metadata=meta)
    return Path(path)


def source_bytes(source: str | os.PathLike) -> int:
    """Bytes of the weights ``source`` names, read without loading the network (what an
    evaluation that needs it must ship): a teacher folder's ``teacher.safetensors``, a
    checkpoint file, a Hugging Face model's weight files; 0 for timm / torchvision names."""
    kind, rest = _split(os.fspath(source))
    if kind in ("timm", "torchvision"):
        return 0
    if kind == "hf":
        from ddkit.models.pretrained import hf_folder, weight_files

        folder = Path(rest) if Path(rest).is_dir() else None
        if folder is None:
            transformers = require_extra("transformers", "transformers", f"network source {rest}")
            folder = hf_folder(transformers, rest)
        return sum(f.stat().st_size for f in weight_files(folder))
    path, _ = _path_and_model(rest)
    if path.is_dir():
        path = path / WEIGHTS_FILE
    if not path.is_file():
        raise FileFormatError(f"no weights at {str(path)!r}")
    return path.stat().st_size
