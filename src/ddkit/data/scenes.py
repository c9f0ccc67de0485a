"""A compositional retrieval benchmark, offline (issue 86): ``scenes-mnist-fashion`` and
``scenes-mnist5k``.

**Each image is a composition of real objects; the captions are generated from a grammar, not
written by people.** A ``64 x 64`` RGB canvas (black) is cut into four regions (top left, top
right, bottom left, bottom right, ``32 x 32`` each); two or three of them hold a *group*: one
large object (the real ``28 x 28`` image) or one to four small ones (the same images halved to
``14 x 14`` by 2 x 2 averaging, each in its own quarter of the region), all of one class, in
one of eight colours, shifted by a few pixels at random. The objects are real images: MNIST
digits and Fashion-MNIST items (``scenes-mnist-fashion``, twenty kinds; full MNIST and
Fashion-MNIST from the data root), or mnist5k's digits (``scenes-mnist5k``, ten kinds,
embedded). Train scenes take their objects from the base datasets' train splits, test scenes
from their test splits (ddkit's convention split, test = index % 5 == 0, for mnist5k).

The caption names every group in a random order, from the grammar
``[count] [size] [colour] [kind] (at the [region] | in the [region] corner)``, groups joined by
``,`` and ``and``: "a large red 7 at the top left, three small blue sandals at the bottom
right and a small white 2 at the top right". With twenty kinds, eight colours, two sizes, four
counts and four regions, nearly every caption is unique, so a handful of random pairs says
little about the rest; :func:`parse_caption` turns a caption back into the :data:`Scene` it
describes. ``captions_per_image`` (1 or 2, default 1) gives each image its captions in both
location phrasings, each in its own random order.

Everything is drawn from ``torch.Generator`` objects seeded by ``(seed, name, split)``
(:func:`ddkit.rng.derive_seed`): same name and seed, same pixels and captions. Each image's
groups stay with it (:attr:`~ddkit.data.paired.PairedDataset.attributes`: kind, colour, size,
count per region, kind -1 and count 0 where a region is empty), for analysis only.
Retrieval on it measures whether a set keeps objects, their attributes and where they are,
bound together; it needs no download, and says nothing about COCO or Flickr30k.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from ddkit.data import readers as _readers  # noqa: F401  (the bases mnist, fashionmnist)
from ddkit.data.biased import PALETTE
from ddkit.data.builtin import DATASETS
from ddkit.data.captioned import COLOUR_NAMES
from ddkit.data.dataset import convention_test_rows, to_labels, to_nchw
from ddkit.data.paired import PairedOptions, RawPairs, register_paired
from ddkit.errors import ConfigError, DataError
from ddkit.rng import derive_seed

__all__ = [
    "BENCHMARKS",
    "COLOURS",
    "REGIONS",
    "Group",
    "Scene",
    "compose_scenes",
    "describe",
    "parse_caption",
    "scene_benchmark",
    "scene_of",
]

#: The regions of the canvas, in the order of their rows (top first) and columns.
REGIONS = ("top left", "top right", "bottom left", "bottom right")
#: Rows of :data:`ddkit.data.biased.PALETTE` the objects are painted in (violet and teal, close
#: to blue and cyan, left out) and their names.
_PALETTE_ROWS = (0, 1, 2, 3, 4, 5, 6, 8)
COLOURS = tuple(COLOUR_NAMES[i] for i in _PALETTE_ROWS)
SIZES = ("small", "large")
COUNTS = ("a", "two", "three", "four")
MAX_COUNT = len(COUNTS)
MIN_GROUPS, MAX_GROUPS = 2, 3
CANVAS = 64
_REGION, _LARGE, _SMALL = CANVAS // 2, 28, 14
DIGITS = tuple(str(d) for d in range(10))
#: Fashion-MNIST's classes in one word each ("top" would read as a region).
GARMENTS = ("tee", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
            "bag", "boot")  # fmt: skip
#: How a group's place is phrased: caption ``j`` of an image uses phrasing ``j``.
PLACES = ("at the {region}", "in the {region} corner")
MAX_CAPTIONS_PER_IMAGE = len(PLACES)
ATTRIBUTES = tuple(
    f"{r.replace(' ', '_')}_{f}" for r in REGIONS for f in ("kind", "colour", "size", "count")
)


@dataclass(frozen=True)
class _Variant:
    bases: tuple[str, ...]  # base datasets, their kinds in this order
    train: int  # scenes
    test: int


#: Benchmark name -> its base datasets and how many train and test scenes it composes.
BENCHMARKS = {
    "scenes-mnist-fashion": _Variant(("mnist", "fashionmnist"), 20_000, 1_000),
    "scenes-mnist5k": _Variant(("mnist5k",), 2_000, 500),
}


@dataclass(frozen=True)
class Group:
    """One group of a scene: ``count`` objects of one ``kind`` ("7", "sandal"), ``colour``
    and ``size`` in ``region`` (names from :data:`REGIONS`, :data:`COLOURS`, :data:`SIZES`)."""

    region: str
    kind: str
    colour: str
    size: str
    count: int


#: A scene: its groups, in the order of :data:`REGIONS`.
Scene = tuple[Group, ...]


def _plural(kind: str) -> str:
    return kind + ("es" if kind.endswith("ss") else "s")


def describe(scene: Scene, order: list[int], place: int = 0) -> str:
    """The caption of ``scene``: its groups in ``order`` (indices into ``scene``), each placed
    with phrasing ``place`` of :data:`PLACES`."""
    parts = []
    for i in order:
        g = scene[i]
        noun = g.kind if g.count == 1 else _plural(g.kind)
        where = PLACES[place].format(region=g.region)
        parts.append(f"{COUNTS[g.count - 1]} {g.size} {g.colour} {noun} {where}")
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


_NOUNS = {
    **{k: (k, 1) for k in DIGITS + GARMENTS},
    **{_plural(k): (k, 2) for k in DIGITS + GARMENTS},
}
_GROUP = re.compile(
    rf"^(?P<count>{'|'.join(COUNTS)}) (?P<size>{'|'.join(SIZES)}) "
    rf"(?P<colour>{'|'.join(COLOURS)}) (?P<noun>\w+) "
    rf"(?:at the (?P<at>{'|'.join(REGIONS)})|in the (?P<corner>{'|'.join(REGIONS)}) corner)$"
)


def parse_caption(text: str) -> Scene:
    """The scene a caption of this grammar describes (:func:`describe` inverted), its groups
    in region order; a caption outside the grammar is a one-line DataError naming the part."""
    words = " ".join(re.sub(r"\s*,\s*", " , ", text.strip().lower()).split())
    groups = []
    for part in re.split(r" , | and ", words):
        m = _GROUP.match(part)
        noun = _NOUNS.get(m["noun"]) if m else None
        count = COUNTS.index(m["count"]) + 1 if m else 0
        if m is None or noun is None or (noun[1] == 1) != (count == 1):
            raise DataError(f"caption part {part!r} is outside the scenes grammar: {text!r}")
        groups.append(Group(m["at"] or m["corner"], noun[0], m["colour"], m["size"], count))
    regions = [g.region for g in groups]
    if len(set(regions)) != len(regions):
        raise DataError(f"caption {text!r} names a region twice")
    return tuple(sorted(groups, key=lambda g: REGIONS.index(g.region)))


def scene_of(attributes: torch.Tensor, kinds: tuple[str, ...]) -> Scene:
    """The scene one row of ``attributes`` (:data:`ATTRIBUTES`) records; ``kinds`` names
    the kind ids."""
    row = attributes.view(len(REGIONS), 4).tolist()
    return tuple(
        Group(REGIONS[r], kinds[k], COLOURS[c], SIZES[s], n)
        for r, (k, c, s, n) in enumerate(row)
        if n > 0
    )


# ------------------------------------------------------------------------------ drawing
@dataclass(frozen=True)
class _Draws:
    """What one split's scenes are made of, per scene and region (and sub-cell ``(n, 4, 4)``)."""

    kind: torch.Tensor  # (n, 4), -1 where empty
    colour: torch.Tensor  # (n, 4)
    large: torch.Tensor  # (n, 4) bool
    count: torch.Tensor  # (n, 4), 0 where empty
    cells: torch.Tensor  # (n, 4, 4): sub-cell order, the first ``count`` hold objects
    shift: torch.Tensor  # (n, 4, 4, 2): down and right, as a share in [0, 1) of the room left
    rows: torch.Tensor  # (n, 4, 4): the object image of each slot

    def attributes(self) -> torch.Tensor:
        parts = (self.kind, self.colour, self.large.long(), self.count)
        return torch.stack(parts, dim=2).reshape(len(self.kind), -1)


def _draw(labels: torch.Tensor, kinds: int, n: int, g: torch.Generator) -> _Draws:
    """The random content of ``n`` scenes over objects of classes ``labels`` (``kinds`` of
    them, each present)."""
    regions = len(REGIONS)
    groups = torch.randint(MIN_GROUPS, MAX_GROUPS + 1, (n, 1), generator=g)
    occupied = torch.rand(n, regions, generator=g).argsort(1).argsort(1) < groups
    kind = torch.randint(kinds, (n, regions), generator=g)
    colour = torch.randint(len(COLOURS), (n, regions), generator=g)
    large = torch.rand(n, regions, generator=g) < 0.5
    count = torch.where(large, 1, torch.randint(1, MAX_COUNT + 1, (n, regions), generator=g))
    cells = torch.rand(n, regions, 4, generator=g).argsort(2)
    shift = torch.rand(n, regions, 4, 2, generator=g)
    sizes = torch.bincount(labels, minlength=kinds)
    order = torch.argsort(labels, stable=True)
    starts = torch.cumsum(sizes, 0) - sizes
    u = torch.rand(n, regions, 4, generator=g)
    k = kind[:, :, None].expand(-1, -1, 4)
    rows = order[starts[k] + (u * sizes[k]).long().clamp_max(sizes[k] - 1)]
    kind = torch.where(occupied, kind, -1)
    count = torch.where(occupied, count, 0)
    return _Draws(
        kind, torch.where(occupied, colour, 0), large & occupied, count, cells, shift, rows
    )


def _paint(objects: np.ndarray, d: _Draws) -> torch.Tensor:
    """The canvases of draws ``d``: ``(n, 3, 64, 64)`` uint8 from grey ``objects``
    ``(M, 28, 28)`` uint8."""
    n = len(d.kind)
    canvas = np.zeros((n, 3, CANVAS, CANVAS), dtype=np.uint8)
    rgb = PALETTE[list(_PALETTE_ROWS)].numpy()
    kind, colour, large, count = (t.numpy() for t in (d.kind, d.colour, d.large, d.count))
    cells, shift, rows = d.cells.numpy(), d.shift.numpy(), d.rows.numpy()
    for i, r in zip(*np.nonzero(kind >= 0)):
        top, left = (r // 2) * _REGION, (r % 2) * _REGION
        for j in range(count[i, r]):
            grey = objects[rows[i, r, j]].astype(np.float32)
            y, x, room = top, left, _REGION - _LARGE + 1
            if not large[i, r]:  # in its own quarter of the region
                grey = grey.reshape(_SMALL, 2, _SMALL, 2).mean((1, 3))
                half, cell = _REGION // 2, cells[i, r, j]
                y, x, room = y + (cell // 2) * half, x + (cell % 2) * half, half - _SMALL + 1
            y, x, size = (
                y + int(shift[i, r, j, 0] * room),
                x + int(shift[i, r, j, 1] * room),
                len(grey),
            )
            ink = np.rint(rgb[colour[i, r], :, None, None] * grey[None]).astype(np.uint8)
            patch = canvas[i, :, y : y + size, x : x + size]
            np.maximum(patch, ink, out=patch)
    return torch.from_numpy(canvas)


def _grey_bytes(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Grey 28 x 28 objects as ``(M, 28, 28)`` uint8 (8-bit kept, ``[0, 1]`` scaled)."""
    if isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 3:
        x = images
    else:
        x = (to_nchw(images).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        x = x[:, 0] if x.shape[1] == 1 else x
    if x.shape[1:] != (_LARGE, _LARGE):
        raise DataError(f"scenes compose grey 28x28 objects, got {tuple(x.shape[1:])}")
    return x


def compose_scenes(
    objects: np.ndarray | torch.Tensor,
    labels: torch.Tensor,
    kinds: tuple[str, ...],
    n: int,
    *,
    seed: int,
    split: str,
    captions_per_image: int = 1,
) -> RawPairs:
    """``n`` scenes (see the module) composed of grey ``objects`` ``(M, 28, 28)`` (8-bit, or
    in ``[0, 1]``) of classes ``labels`` named ``kinds``, with their
    captions, all drawn from ``(seed, split)``."""
    grey = _grey_bytes(objects)
    labels = to_labels(labels, "object labels")
    if len(labels) != len(grey) or bool((torch.bincount(labels, minlength=len(kinds)) == 0).any()):
        raise DataError(f"scenes need one label per object and every one of {len(kinds)} kinds")
    g = torch.Generator().manual_seed(derive_seed(seed, "scenes", split))
    draws = _draw(labels, len(kinds), n, g)
    attributes = draws.attributes()
    captions = []
    for row in attributes:
        scene = scene_of(row, kinds)
        orders = torch.rand(captions_per_image, len(scene), generator=g).argsort(1)
        captions.append([describe(scene, o.tolist(), p) for p, o in enumerate(orders)])
    ids = [f"{split}/{i}" for i in range(n)]
    return RawPairs(_paint(grey, draws), captions, ids, attributes, ATTRIBUTES)


def _objects(variant: _Variant) -> dict[str, tuple[np.ndarray, torch.Tensor]]:
    """Per split, the objects of ``variant``'s bases and their kind ids (bases one after the
    other: a second base's classes come after the first's)."""
    parts: dict[str, list[tuple[np.ndarray, torch.Tensor]]] = {"train": [], "test": []}
    offset = 0
    for base in variant.bases:
        raw = DATASETS.get(base)(None)
        x, y = _grey_bytes(raw.train_images), to_labels(raw.train_labels, f"{base} labels")
        if raw.test_images is None:
            test = convention_test_rows(len(x)).numpy()
            split = {"train": (x[~test], y[~test]), "test": (x[test], y[test])}
        else:
            yt = to_labels(raw.test_labels, f"{base} test labels")
            split = {"train": (x, y), "test": (_grey_bytes(raw.test_images), yt)}
        for name, (xs, ys) in split.items():
            parts[name].append((xs, ys + offset))
        offset += int(raw.num_classes or int(y.max()) + 1)
    return {
        name: (np.concatenate([p[0] for p in ps]), torch.cat([p[1] for p in ps]))
        for name, ps in parts.items()
    }


def scene_benchmark(
    name: str, *, seed: int = 0, captions_per_image: int = 1
) -> dict[str, RawPairs]:
    """The train and test :class:`~ddkit.data.paired.RawPairs` of the benchmark ``name``
    (:data:`BENCHMARKS`): its scenes composed of its bases' objects, split by split."""
    ok = isinstance(captions_per_image, int) and not isinstance(captions_per_image, bool)
    if not ok or not 1 <= captions_per_image <= MAX_CAPTIONS_PER_IMAGE:
        raise ConfigError(
            f"captions_per_image must be an integer in [1, {MAX_CAPTIONS_PER_IMAGE}] for "
            f"{name!r}, got {captions_per_image!r}"
        )
    variant = BENCHMARKS[name]
    kinds = DIGITS + (GARMENTS if len(variant.bases) > 1 else ())
    objects = _objects(variant)
    return {
        split: compose_scenes(
            *objects[split], kinds, getattr(variant, split), seed=seed, split=split,
            captions_per_image=captions_per_image,
        )
        for split in ("train", "test")
    }  # fmt: skip


def _reader(name: str):  # noqa: ANN202 - a PairedReader
    def read(options: PairedOptions) -> dict[str, RawPairs]:
        options.refuse(name, "root", "image_size", "image_root")
        per_image = 1 if options.captions_per_image is None else options.captions_per_image
        return scene_benchmark(name, seed=options.seed, captions_per_image=per_image)

    return read


for _name, _variant in BENCHMARKS.items():
    _embedded = all(getattr(DATASETS.get(b), "builtin", False) for b in _variant.bases)
    register_paired(
        _name,
        _reader(_name),
        needs_root=False,
        help=f"compositional scenes of real {' and '.join(_variant.bases)} objects, "
        f"captions from a grammar ({'embedded' if _embedded else 'data root'})",
    )
