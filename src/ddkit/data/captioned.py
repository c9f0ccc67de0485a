"""A synthetic caption benchmark, offline (issue 71): ``captioned-digits``,
``captioned-mnist5k``, ``captioned-mnist`` and ``captioned-fashionmnist``.

**The captions are generated from templates, not written by people.** Each grey image of the
base dataset (sklearn's digits, mnist5k, MNIST, Fashion-MNIST) is painted with an object
colour (one of the ten colours of :data:`ddkit.data.biased.PALETTE`) and a different
background colour (one of the other nine, or black), both drawn at random from ``seed``, and
gets ``captions_per_image`` captions (default 5, at most 8) that state its three attributes,
the digit or garment, its colour and the background colour, in distinct phrasings drawn from
the same seed ("a red 3 on a black background", "the digit three written in red over black").
Retrieval on it measures whether a method keeps these attributes and their binding in an
image, not language understanding; it stands in for COCO / Flickr30k where those cannot be
downloaded, and says nothing about how a method does on them.

Colours are drawn independently of the class (unlike the biased datasets, which tie them), per
split from ``(seed, split)``; the base datasets' splits are kept (ddkit's convention split,
test = index % 5 == 0, for digits and mnist5k). Same name and seed, same data. Each image's
attributes stay with it (:attr:`~ddkit.data.paired.PairedDataset.attributes`: object,
colour, background; colour 10 is black).
"""

from __future__ import annotations

import torch

from ddkit.data import readers as _readers  # noqa: F401  (the bases mnist, fashionmnist)
from ddkit.data.builtin import DATASETS, RawData
from ddkit.data.dataset import convention_test_rows, to_labels, to_nchw
from ddkit.data.paired import PairedOptions, RawPairs, register_paired
from ddkit.errors import ConfigError
from ddkit.rng import derive_seed

__all__ = ["BENCHMARKS", "COLOUR_NAMES", "caption_benchmark", "caption_benchmark_split"]

ATTRIBUTES = ("object", "colour", "background")
#: Colour names of :data:`ddkit.data.biased.PALETTE`, then black (a background only).
COLOUR_NAMES = ("red", "green", "blue", "yellow", "magenta", "cyan", "orange", "violet",
                "white", "teal", "black")  # fmt: skip
_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_DIGIT_PHRASES = (
    "a {fg} {numeral} on a {bg} background",
    "the digit {word} written in {fg} over {bg}",
    "a {fg} handwritten {word} against a {bg} background",
    "a handwritten number {numeral}, coloured {fg}, on {bg}",
    "{word} in {fg} on a {bg} backdrop",
    "an image of the number {word}: {fg} strokes, {bg} background",
    "a {bg} picture with a {fg} {word} in the middle",
    "digit {numeral}, {fg} on {bg}",
)
_GARMENT_PHRASES = (
    "a {fg} {word} on a {bg} background",
    "a photo of a {word} in {fg} over {bg}",
    "a {fg} {word} against a {bg} backdrop",
    "a {word}, coloured {fg}, on {bg}",
    "{fg} {word} shown on a plain {bg} background",
    "an image of a {word}: {fg} on {bg}",
    "a {bg} picture with a {fg} {word} in the middle",
    "{word}, {fg} on {bg}",
)
MAX_CAPTIONS_PER_IMAGE = len(_DIGIT_PHRASES)
DEFAULT_CAPTIONS_PER_IMAGE = 5

#: Benchmark name -> (base dataset, whether its classes are digits).
BENCHMARKS = {
    "captioned-digits": ("digits", True),
    "captioned-mnist5k": ("mnist5k", True),
    "captioned-mnist": ("mnist", True),
    "captioned-fashionmnist": ("fashionmnist", False),
}


def _paint(grey: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    """Grey images ``(N, 1, H, W)`` in ``[0, 1]`` as RGB: the object (ink) in colour ``fg``,
    the rest in colour ``bg``, blended by the grey value."""
    from ddkit.data.biased import PALETTE

    colours = torch.cat([PALETTE, torch.zeros(1, 3)])  # index 10: black
    return grey * colours[fg][:, :, None, None] + (1 - grey) * colours[bg][:, :, None, None]


def caption_benchmark_split(
    grey: torch.Tensor, labels: torch.Tensor, names: list[str], *, digits: bool,
    captions_per_image: int, seed: int, split: str,
) -> RawPairs:  # fmt: skip
    """One split of the benchmark (see the module): images ``grey`` ``(N, 1, H, W)`` in
    ``[0, 1]`` of classes ``labels`` (named ``names``) painted, each with
    ``captions_per_image`` captions in distinct phrasings, all drawn from ``(seed, split)``."""
    n = len(labels)
    g = torch.Generator().manual_seed(derive_seed(seed, "captioned", split))
    fg = torch.randint(10, (n,), generator=g)
    bg = (fg + torch.randint(1, 11, (n,), generator=g)) % 11  # never the object's colour
    phrases = _DIGIT_PHRASES if digits else _GARMENT_PHRASES
    order = torch.argsort(torch.rand(n, len(phrases), generator=g), dim=1)[:, :captions_per_image]
    captions = []
    for i, (c, f, b) in enumerate(zip(labels.tolist(), fg.tolist(), bg.tolist())):
        words = {"fg": COLOUR_NAMES[f], "bg": COLOUR_NAMES[b],
                 "numeral": names[c], "word": _NUMBERS[c] if digits else names[c]}  # fmt: skip
        captions.append([phrases[p].format(**words) for p in order[i].tolist()])
    images = (_paint(grey, fg, bg) * 255).round().clamp(0, 255).to(torch.uint8)
    attrs = torch.stack([labels, fg, bg], dim=1)
    return RawPairs(images, captions, [f"{split}/{i}" for i in range(n)], attrs, ATTRIBUTES)


def caption_benchmark(
    name: str,
    root: str | None = None,
    *,
    captions_per_image: int = DEFAULT_CAPTIONS_PER_IMAGE,
    seed: int = 0,
) -> dict[str, RawPairs]:
    """The train and test :class:`~ddkit.data.paired.RawPairs` of the benchmark ``name``
    (:data:`BENCHMARKS`), from its base dataset's splits (``root``: where a base read from
    disk is)."""
    ok = isinstance(captions_per_image, int) and not isinstance(captions_per_image, bool)
    if not ok or not 1 <= captions_per_image <= MAX_CAPTIONS_PER_IMAGE:
        raise ConfigError(
            f"captions_per_image must be an integer in [1, {MAX_CAPTIONS_PER_IMAGE}], "
            f"got {captions_per_image!r}"
        )
    base, digits = BENCHMARKS[name]
    loader = DATASETS.get(base)
    if getattr(loader, "needs_root", False) and root is None:
        raise ConfigError(f"dataset {name!r} paints {base!r}, read from disk: pass root=PATH")
    if getattr(loader, "builtin", False) and root is not None:
        raise ConfigError(
            f"dataset {name!r} is built in (it paints {base!r}) and takes no --root; drop --root"
        )
    raw: RawData = loader(root)
    x, y = to_nchw(raw.train_images), to_labels(raw.train_labels, "train labels")
    if raw.test_images is None:
        test = convention_test_rows(len(x))
        xt, yt, x, y = x[test], y[test], x[~test], y[~test]
    else:
        xt, yt = to_nchw(raw.test_images), to_labels(raw.test_labels, "test labels")
    names = [str(c).lower() for c in (raw.class_names or range(10))]
    return {
        split: caption_benchmark_split(
            grey.clamp(0, 1), labels, names, digits=digits, captions_per_image=captions_per_image,
            seed=seed, split=split,
        )
        for split, grey, labels in (("train", x, y), ("test", xt, yt))
    }  # fmt: skip


def _reader(name: str):  # noqa: ANN202 - a PairedReader
    def read(options: PairedOptions) -> dict[str, RawPairs]:
        options.refuse(name, "image_size", "image_root")
        per_image = options.captions_per_image
        per_image = DEFAULT_CAPTIONS_PER_IMAGE if per_image is None else per_image
        return caption_benchmark(
            name, options.root, captions_per_image=per_image, seed=options.seed
        )

    return read


for _name, (_base, _digits) in BENCHMARKS.items():
    _needs_root = getattr(DATASETS.get(_base), "needs_root", False)
    _where = "embedded" if _base in ("digits", "mnist5k") else "data root"
    register_paired(
        _name,
        _reader(_name),
        needs_root=_needs_root,
        help=f"synthetic caption benchmark: {_base} painted, captions from templates ({_where})",
    )
