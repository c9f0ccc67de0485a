"""Stand-ins for the few modules the reference implementations import and that a GPU machine
without internet (or this CPU machine, where torchvision is not installed) cannot serve.

:func:`install` puts them into ``sys.modules`` of the one process that runs a reference row
(never into ddkit's own processes). Each provides only what the reference scripts use:

* ``torchvision.datasets.MNIST``: the IDX files under ``<data root>/mnist`` (plain or gzipped,
  read with ddkit's IDX reader), each item ``(transform(image), label)`` with the image a
  ``(28, 28)`` uint8 tensor instead of a PIL image (no download).
* ``torchvision.datasets.CIFAR10``: :func:`generated_cifar10` (random 32x32x3 uint8 images, seeded;
  ``$BESIDE_CIFAR_SIZES`` = ``"train,test"`` counts, default 50,000 and 10,000), items as above.
* ``torchvision.transforms``: ``Compose``, ``ToTensor`` (uint8 ``HxW`` or ``HxWxC`` -> float
  ``CxHxW`` in [0, 1]), ``Normalize``, ``RandomResizedCrop`` (one box for the whole batch, scale
  (0.08, 1), ratio (3/4, 4/3), bilinear, as torchvision draws it on a batched tensor) and
  ``RandomHorizontalFlip`` (the whole batch with probability 1/2).
* ``torchvision.utils``: ``save_image`` does nothing; ``make_grid`` returns its input.
* ``torchvision.models``: ``resnet18`` is ddkit's ImageNet-stem ResNet-18 (1,000 classes) from
  the factory the benchmark passes (randomly initialised: no pretrained weights can be
  downloaded; the same network is ddkit's teacher in the row); ``mobilenet_v2`` (SRe2L's
  verifier, run every 100 iterations outside the timed ones) is a tiny linear stand-in.
* ``kornia``: imported by mtt-distillation's ``utils.py`` for ZCA only, which MNIST does not use.
* ``scipy.ndimage.interpolation`` (only where a SciPy without it is installed): ``rotate``.
* ``wandb``: ``init`` keeps the config, ``run.name`` is fixed, ``log`` calls ``on_log`` (the benchmark's iteration
  clock) and records nothing; ``Histogram`` / ``Image`` are inert.
"""

from __future__ import annotations

import math
import os
import random
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

MNIST_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # the statistics mtt-distillation normalises with
CIFAR10_STD = (0.2023, 0.1994, 0.2010)


def generated_cifar10(train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10-shaped random data, the same in every process: uint8 images ``(N, 32, 32, 3)``
    and labels ``(N,)`` (class ``i % 10``), from seed 0 (train) or 1 (test)."""
    sizes = os.environ.get("BESIDE_CIFAR_SIZES", "50000,10000").split(",")
    n = int(sizes[0 if train else 1])
    g = torch.Generator().manual_seed(0 if train else 1)
    images = torch.randint(0, 256, (n, 32, 32, 3), generator=g, dtype=torch.uint8)
    return images, torch.arange(n) % 10


def _idx(folder: Path, stem: str) -> torch.Tensor:
    from ddkit.data.readers import read_idx

    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return torch.from_numpy(read_idx(folder / name).copy())
    raise SystemExit(f"shim MNIST: {stem} not found under {folder} (sh benchmarks/gpu/prepare.sh)")


def _datasets(data_root: Path) -> types.ModuleType:
    mod = types.ModuleType("torchvision.datasets")

    class MNIST(torch.utils.data.Dataset):
        def __init__(self, root: str, train: bool = True, download: bool = False,
                     transform: Callable | None = None) -> None:  # fmt: skip
            images, labels = MNIST_FILES[bool(train)]
            self.data = _idx(data_root / "mnist", images)
            self.targets = _idx(data_root / "mnist", labels).long()
            self.transform = transform
            self.classes = [str(c) for c in range(10)]

        def __len__(self) -> int:
            return len(self.targets)

        def __getitem__(self, i: int) -> tuple[Any, int]:
            x = self.data[i]
            return (self.transform(x) if self.transform else x), int(self.targets[i])

    class CIFAR10(MNIST):
        def __init__(self, root: str, train: bool = True, download: bool = False,
                     transform: Callable | None = None) -> None:  # fmt: skip
            self.data, self.targets = generated_cifar10(train)
            self.transform = transform
            self.classes = [str(c) for c in range(10)]

    mod.MNIST, mod.CIFAR10 = MNIST, CIFAR10
    return mod


def _transforms() -> types.ModuleType:
    mod = types.ModuleType("torchvision.transforms")

    class Compose:
        def __init__(self, ts: list[Callable]) -> None:
            self.ts = ts

        def __call__(self, x: Any) -> Any:
            for t in self.ts:
                x = t(x)
            return x

    class ToTensor:
        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            x = x.float().div(255.0)
            return x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)

    class Normalize:
        def __init__(self, mean: list[float], std: list[float]) -> None:
            self.mean = torch.tensor(mean).view(-1, 1, 1)
            self.std = torch.tensor(std).view(-1, 1, 1)

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            return (x - self.mean.to(x.device)) / self.std.to(x.device)

    class RandomResizedCrop:
        def __init__(self, size: int, scale: tuple[float, float] = (0.08, 1.0),
                     ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> None:  # fmt: skip
            self.size, self.scale, self.ratio = size, scale, ratio

        def _box(self, h: int, w: int) -> tuple[int, int, int, int]:
            area = h * w
            log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
            for _ in range(10):
                target = area * random.uniform(*self.scale)
                aspect = math.exp(random.uniform(*log_ratio))
                cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
                if 0 < cw <= w and 0 < ch <= h:
                    return random.randint(0, h - ch), random.randint(0, w - cw), ch, cw
            return 0, 0, h, w

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            top, left, ch, cw = self._box(x.shape[-2], x.shape[-1])
            crop = x[..., top : top + ch, left : left + cw]
            return F.interpolate(crop, size=(self.size, self.size), mode="bilinear",
                                 align_corners=False, antialias=True)  # fmt: skip

    class RandomHorizontalFlip:
        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            return x.flip(-1) if random.random() < 0.5 else x

    for cls in (Compose, ToTensor, Normalize, RandomResizedCrop, RandomHorizontalFlip):
        setattr(mod, cls.__name__, cls)
    return mod


def _models(resnet18: Callable[[], torch.nn.Module]) -> types.ModuleType:
    mod = types.ModuleType("torchvision.models")
    mod.resnet18 = lambda pretrained=False, **kw: resnet18()
    mod.mobilenet_v2 = lambda pretrained=False, **kw: torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 1000)
    )
    return mod


def _wandb(on_log: Callable[[dict[str, Any]], None]) -> types.ModuleType:
    mod = types.ModuleType("wandb")
    mod.config = types.SimpleNamespace(_items={})

    def init(config: Any = None, **kw: Any) -> None:
        mod.config._items = dict(vars(config)) if config is not None else {}

    mod.init = init
    mod.run = types.SimpleNamespace(name="beside-reference")  # distill.py's save folder name
    mod.log = lambda data, step=None, **kw: on_log(data)
    mod.finish = lambda: None
    mod.Histogram = mod.Image = lambda *a, **kw: None
    return mod


def install(
    data_root: Path,
    resnet18: Callable[[], torch.nn.Module],
    on_log: Callable[[dict[str, Any]], None] = lambda data: None,
) -> None:
    """Put the stand-ins into ``sys.modules`` (module docstring)."""
    tv = types.ModuleType("torchvision")
    tv.datasets, tv.transforms = _datasets(data_root), _transforms()
    tv.models = _models(resnet18)
    tv.utils = types.ModuleType("torchvision.utils")
    tv.utils.save_image = lambda *a, **kw: None
    tv.utils.make_grid = lambda x, *a, **kw: x
    kornia = types.ModuleType("kornia")
    kornia.enhance = types.SimpleNamespace()  # ZCA only; MNIST rows never reach it
    try:  # deprecated since SciPy 1.8: DC's and MTT's utils.py import rotate from there
        import scipy.ndimage.interpolation  # noqa: F401
    except ImportError:
        import scipy.ndimage

        interpolation = types.ModuleType("scipy.ndimage.interpolation")
        interpolation.rotate = scipy.ndimage.rotate
        sys.modules["scipy.ndimage.interpolation"] = interpolation
    for name, mod in {"torchvision": tv, "torchvision.datasets": tv.datasets,
                      "torchvision.transforms": tv.transforms, "torchvision.models": tv.models,
                      "torchvision.utils": tv.utils, "kornia": kornia,
                      "wandb": _wandb(on_log)}.items():  # fmt: skip
        sys.modules[name] = mod
