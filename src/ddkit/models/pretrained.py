"""Pretrained networks of other packages behind ddkit's image convention (issue 69): Hugging
Face ``transformers`` models (``hf:PATH_OR_NAME``, offline), ``timm:NAME`` and
``torchvision:NAME``; the loaders :func:`ddkit.models.external.load_network` dispatches to.

:class:`PixelAdapter` maps ddkit's normalised ``(N, C, H, W)`` rows to what the network
expects: the dataset's normalisation undone, a grey channel repeated for a three-channel
network, the image resized (bilinear) to the network's input size and normalised with the
network's statistics -- read from ``preprocessor_config.json`` and the model's config where they
are recorded (timm: ``pretrained_cfg``; torchvision: the weights' transforms). Where nothing is
recorded the network gets raw ``[0, 1]`` pixels at the dataset's size. Deviation from the image
processors: the whole image is resized, no resize-then-centre-crop.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ddkit.data.hf_folders import LOAD_OPTIONS, check_hf_folder
from ddkit.data.spec import DatasetSpec
from ddkit.errors import ConfigError, FileFormatError, require_extra
from ddkit.io import read_json, sha256_file
from ddkit.models.network_record import ExternalNetwork, NetworkRecord, refuse_classes

__all__ = ["PixelAdapter", "from_hf", "from_timm", "from_torchvision", "hf_folder", "weight_files"]

_HF_WEIGHTS = ("*.safetensors", "*.bin")


class PixelAdapter(nn.Module):
    """An outside network behind ddkit's image convention: ``forward(x)`` takes the dataset's
    normalised ``(N, C, H, W)`` rows and returns logits, ``embed(x)`` the features the network's
    head reads. Between them: undo the dataset's normalisation, repeat a grey channel for a
    three-channel network, resize (bilinear, antialiased when shrinking) to ``size``, apply the
    network's ``mean`` / ``std``. ``state_dict()`` is the wrapped network's (prefix ``net.``)."""

    def __init__(
        self,
        net: nn.Module,
        *,
        logits: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None,
        features: Callable[[nn.Module, torch.Tensor], torch.Tensor],
        spec: DatasetSpec | None,
        channels: int,
        size: tuple[int, int] | None,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        name: str,
    ) -> None:
        super().__init__()
        if spec is not None and spec.transform is not None:
            raise ConfigError(
                f"dataset {spec.name!r} is {spec.transform}-whitened; an outside network needs "
                "pixels (load the dataset without the transform)"
            )
        if spec is not None and spec.channels not in (1, channels):
            raise ConfigError(
                f"network {name!r} takes {channels}-channel images; dataset {spec.name!r} has "
                f"{spec.channels}"
            )
        self.net, self.model_name = net, name
        self._logits, self._features = logits, features
        self.channels, self.size = int(channels), size
        c = spec.channels if spec is not None else channels
        in_mean = spec.mean if spec is not None else (0.0,) * c
        in_std = spec.std if spec is not None else (1.0,) * c
        for key, value in (("in_mean", in_mean), ("in_std", in_std), ("out_mean", mean),
                           ("out_std", std)):  # fmt: skip
            t = torch.tensor(value, dtype=torch.float32).view(1, -1, 1, 1)
            self.register_buffer(key, t, persistent=False)
        if spec is not None or size is not None:  # what forward() takes, where it is known
            self.input_shape = (c, *(spec.image_size if spec is not None else size))

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input for ddkit rows ``x``."""
        raw = x * self.in_std + self.in_mean
        if raw.shape[1] != self.channels:
            raw = raw.expand(-1, self.channels, -1, -1)
        if self.size is not None and tuple(raw.shape[-2:]) != tuple(self.size):
            shrink = raw.shape[-2] > self.size[0] or raw.shape[-1] > self.size[1]
            raw = F.interpolate(
                raw, size=self.size, mode="bilinear", align_corners=False, antialias=shrink
            )
        return (raw - self.out_mean) / self.out_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._logits is None:
            raise ConfigError(
                f"network {self.model_name!r} is a backbone without a classification head; "
                "use its embed() features"
            )
        return self._logits(self.net, self.pixels(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``(N, D)``: what the network's head reads."""
        return self._features(self.net, self.pixels(x))


def _head_input(head: nn.Module) -> Callable[[nn.Module, torch.Tensor], torch.Tensor]:
    """Features as the input of ``head`` (a forward pre-hook), flattened to ``(N, D)``."""

    def features(net: nn.Module, px: torch.Tensor) -> torch.Tensor:
        seen: list[torch.Tensor] = []
        handle = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
        try:
            net(px)
        finally:
            handle.remove()
        return seen[-1].flatten(1)

    return features


# ------------------------------------------------------------------------------ hf:
def from_hf(rest: str, spec: DatasetSpec | None, backbone: bool) -> ExternalNetwork:
    transformers = require_extra("transformers", "transformers", f"network source hf:{rest}")
    folder = hf_folder(transformers, rest)
    check_hf_folder(transformers, folder, f"hf:{rest}")
    try:
        config = transformers.AutoConfig.from_pretrained(
            str(folder), trust_remote_code=False, **LOAD_OPTIONS
        )
    except (OSError, ValueError, KeyError) as e:
        raise FileFormatError(f"hf:{rest} has no config transformers reads ({_first(e)})") from None
    net, head = _hf_model(transformers, folder, rest, backbone)
    classes = int(config.num_labels) if head is not None else None
    if spec is not None and classes is not None and not backbone:
        refuse_classes(f"hf:{rest}", classes, spec)
    size, mean, std = _hf_input(folder, config)
    channels = int(getattr(config, "num_channels", 3) or 3)
    adapter = PixelAdapter(
        net,
        logits=(lambda m, px: m(pixel_values=px).logits) if head is not None else None,
        features=_head_input(head) if head is not None else _pooled,
        spec=spec, channels=channels, size=size, mean=mean, std=std,
        name=f"hf:{rest}",
    )  # fmt: skip
    sha, nbytes = _files_digest(weight_files(folder))
    source = f"hf:{folder}" if Path(rest).is_dir() else f"hf:{rest}"
    record = NetworkRecord(
        source, "hf", str(getattr(config, "model_type", "?")), classes,
        (channels, *size) if size else None, sha, nbytes,
    )  # fmt: skip
    return ExternalNetwork(adapter, record)


def hf_folder(transformers: Any, rest: str) -> Path:
    """The local folder of ``rest``: itself, or the cached snapshot of a model name."""
    if Path(rest).is_dir():
        if not (Path(rest) / "config.json").is_file():
            raise FileFormatError(f"{rest!r} is no Hugging Face model folder (no config.json)")
        return Path(rest).resolve()
    try:
        found = transformers.utils.cached_file(rest, "config.json", local_files_only=True)
    except (OSError, ValueError):
        found = None
    if not found:
        raise FileFormatError(
            f"no Hugging Face model {rest!r} here: ddkit loads offline, from a local folder or a "
            "name already in the Hugging Face cache"
        )
    return Path(found).parent


def _hf_model(
    transformers: Any, folder: Path, rest: str, backbone: bool
) -> tuple[nn.Module, nn.Module | None]:
    """``(model, its classification head or None)``. A checkpoint whose classifier weights are
    missing is refused unless ``backbone`` (then the backbone alone is kept)."""
    with _quiet(transformers), torch.random.fork_rng(devices=[]):
        try:
            net, info = transformers.AutoModelForImageClassification.from_pretrained(
                str(folder), output_loading_info=True, trust_remote_code=False, **LOAD_OPTIONS
            )
        except ValueError:  # no image-classification class for this config: a backbone
            net, info = transformers.AutoModel.from_pretrained(
                str(folder), output_loading_info=True, trust_remote_code=False, **LOAD_OPTIONS
            )
            if not backbone:
                raise ConfigError(
                    f"hf:{rest} has no image-classification head; use it as a backbone "
                    "(backbone=True, its embed() features)"
                ) from None
            return net, None
        except OSError as e:
            raise FileFormatError(f"hf:{rest} has no readable weights ({_first(e)})") from None
    missing = list(info.get("missing_keys", ()))
    head = getattr(net, "classifier", None)
    if missing and backbone and all(k.startswith("classifier") for k in missing):
        return getattr(net, net.base_model_prefix), None
    if missing:
        raise FileFormatError(
            f"hf:{rest} lacks weights for {len(missing)} tensors ({missing[0]}, ...): a "
            "checkpoint without its classification head is a backbone (backbone=True)"
        )
    if head is None:
        raise ConfigError(f"hf:{rest}: ddkit finds no 'classifier' head on {type(net).__name__}")
    return net, head


@contextlib.contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    """transformers' loading report and progress bar off; ddkit reports what matters in one
    line."""
    logging = transformers.utils.logging
    level, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def _pooled(net: nn.Module, px: torch.Tensor) -> torch.Tensor:
    """A backbone's features: its pooled output, else its last hidden state averaged over
    tokens (3-D) or positions (4-D)."""
    out = net(pixel_values=px)
    pooled = getattr(out, "pooler_output", None)
    if pooled is not None:
        return pooled.flatten(1)
    h = out.last_hidden_state
    return h.mean(1) if h.ndim == 3 else h.flatten(2).mean(-1)


def _hf_input(folder: Path, config: Any) -> tuple[tuple[int, int] | None, tuple, tuple]:
    """``(size, mean, std)`` the model expects, from ``preprocessor_config.json`` (crop size,
    size, mean / std where it normalises) and ``config.image_size``; raw ``[0, 1]`` pixels
    (mean 0, std 1) where nothing is recorded."""
    pre = folder / "preprocessor_config.json"
    p = read_json(pre) if pre.is_file() else {}
    p = p if isinstance(p, dict) else {}
    channels = int(getattr(config, "num_channels", 3) or 3)
    mean, std = (0.0,) * channels, (1.0,) * channels
    if p.get("do_normalize", True) and p.get("image_mean") and p.get("image_std"):
        mean = tuple(float(v) for v in _per_channel(p["image_mean"], channels))
        std = tuple(float(v) for v in _per_channel(p["image_std"], channels))
    size = None
    for entry in ([p.get("crop_size")] if p.get("do_center_crop") else []) + [p.get("size")]:
        size = size or _hw(entry)
    return size or _hw(getattr(config, "image_size", None)), mean, std


def _per_channel(value: Any, channels: int) -> list[float]:
    values = value if isinstance(value, list | tuple) else [value]
    return list(values) * channels if len(values) == 1 else list(values)


def _hw(entry: Any) -> tuple[int, int] | None:
    """A size as an image processor or config records it: an int, ``[h, w]``,
    ``{"height", "width"}`` or ``{"shortest_edge"}`` (taken square)."""
    if isinstance(entry, int):
        return (entry, entry)
    if isinstance(entry, list | tuple) and len(entry) == 2:
        return (int(entry[0]), int(entry[1]))
    if isinstance(entry, dict):
        if "height" in entry and "width" in entry:
            return (int(entry["height"]), int(entry["width"]))
        if "shortest_edge" in entry:
            return (int(entry["shortest_edge"]),) * 2
    return None


def weight_files(folder: Path) -> list[Path]:
    for pattern in _HF_WEIGHTS:
        files = sorted(folder.glob(pattern))
        if files:
            return files
    return []


def _files_digest(files: list[Path]) -> tuple[str | None, int]:
    """SHA-256 of one weights file, or of the ``name sha256`` lines of several (shards)."""
    if not files:
        return None, 0
    nbytes = sum(f.stat().st_size for f in files)
    if len(files) == 1:
        return sha256_file(files[0]), nbytes
    lines = "".join(f"{f.name} {sha256_file(f)}\n" for f in files)
    return hashlib.sha256(lines.encode()).hexdigest(), nbytes


def _first(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:160]


# ------------------------------------------------------------------------------ timm / tv
@dataclass(frozen=True)
class _NetInput:
    """What a packaged model takes: images of ``shape`` ``(C, H, W)`` normalised with its
    ``mean`` and ``std``."""

    shape: tuple[int, int, int]
    mean: tuple
    std: tuple


def from_timm(name: str, spec: DatasetSpec | None, backbone: bool) -> ExternalNetwork:
    """A pretrained timm model; size and normalisation from its ``pretrained_cfg``."""
    timm = require_extra("timm", "timm", f"network source timm:{name}")
    with _package_errors(f"timm:{name}"), torch.random.fork_rng(devices=[]):
        net = timm.create_model(name, pretrained=True)
    cfg = dict(getattr(net, "pretrained_cfg", {}) or {})
    c, h, w = cfg.get("input_size", (3, 224, 224))
    mean, std = tuple(cfg.get("mean", (0.0,) * c)), tuple(cfg.get("std", (1.0,) * c))
    classes = int(net.num_classes) if net.num_classes else None
    features = lambda m, px: m.forward_head(m.forward_features(px), pre_logits=True)  # noqa: E731
    net_input = _NetInput((c, h, w), mean, std)
    return _packaged("timm", name, net, classes, spec, backbone, net_input, features)


def from_torchvision(name: str, spec: DatasetSpec | None, backbone: bool) -> ExternalNetwork:
    """A torchvision model with its ``DEFAULT`` weights; size and normalisation from them."""
    tv = require_extra("torchvision", "torchvision", f"network source torchvision:{name}")
    with _package_errors(f"torchvision:{name}"), torch.random.fork_rng(devices=[]):
        weights = tv.models.get_model_weights(name).DEFAULT
        net = tv.models.get_model(name, weights=weights)
    t = weights.transforms()
    size = (int(t.crop_size[0]),) * 2
    classes = len(weights.meta.get("categories", ())) or None
    head = getattr(net, "fc", None) or getattr(net, "classifier", None) or net.head
    net_input = _NetInput((3, *size), tuple(t.mean), tuple(t.std))
    return _packaged(
        "torchvision", name, net, classes, spec, backbone, net_input, _head_input(head)
    )


@contextlib.contextmanager
def _package_errors(source: str) -> Iterator[None]:
    """An unknown name or weights the package cannot get (offline, not cached): one line."""
    try:
        yield
    except (RuntimeError, ValueError, KeyError, OSError) as e:
        raise ConfigError(f"{source}: the package cannot load it ({_first(e)})") from None


def _packaged(
    kind: str,
    name: str,
    net: nn.Module,
    classes: int | None,
    spec: DatasetSpec | None,
    backbone: bool,
    net_input: _NetInput,
    features: Callable[[nn.Module, torch.Tensor], torch.Tensor],
) -> ExternalNetwork:
    """A timm / torchvision model behind :class:`PixelAdapter` and its record (no weights file
    of ours: the package's own cache holds it, named by ``name``)."""
    if spec is not None and classes is not None and not backbone:
        refuse_classes(f"{kind}:{name}", classes, spec)
    shape = net_input.shape
    adapter = PixelAdapter(
        net, logits=lambda m, px: m(px), features=features, spec=spec, channels=shape[0],
        size=tuple(shape[1:]), mean=net_input.mean, std=net_input.std, name=f"{kind}:{name}",
    )  # fmt: skip
    return ExternalNetwork(adapter, NetworkRecord(f"{kind}:{name}", kind, name, classes, shape,
                                                  None, 0))  # fmt: skip
