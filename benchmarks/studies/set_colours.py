"""Which colours the sets of the Colored MNIST benchmark hold (issue 36; docs/benchmarks/bias-and-pruning.md,
"Biased data"): how many of a set's images carry a colour other than their class's, and how far the
images' colours have moved from the palette.

Each image's colour is the mean RGB of its bright pixels (those at least half as bright as the
image's brightest, brightness = the largest channel), in the raw pixel scale
(:meth:`SyntheticSet.pixels`); its nearest palette colour
(:data:`ddkit.data.biased.PALETTE`, Euclidean) names it. Reported per set: the share of images
whose nearest colour is not their class's (*off-colour*), the mean distance from an image's
colour to its class's colour, and the mean distance to the nearest palette colour (0 for a
real row; a blend of two colours lies between them). The same measure on each ratio's real
training split is printed first, as the check that it reads the painted colours (its
off-colour share must equal the ratio). Sets stored as decoded images (idm's multi-formation:
each image an upsampled quarter, its strokes blurred and dimmer) are listed as left out: the
palette has colours that differ only in brightness (teal is half of cyan, orange and yellow
are near), so a dimmer stroke reads as another colour.

For the methods that start from the random rows of the same cell (``--from-random``: dm and dm
re-weighted, ``init=real`` under the same seed), each set is also set beside its start: the
images that started off-colour, their mean distance to their class's colour at the start and
at the end, and the relative pixel change (L2 of the change over L2 of the start) of the
off-colour and of the other images. That the start is those rows is checked, not assumed: the
labels must match and the median correlation of the images' brightness with the random rows'
is recorded (near 1 when the set started there).

Reads the run folders of ``benchmarks/campaigns/biased_mnist5k.sh`` (``--runs``); no training, no test
split.

Writes ``benchmarks/results/biased-mnist5k/set_colours.json`` and prints a Markdown table::

    python benchmarks/studies/set_colours.py --runs runs/biased-mnist5k
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch

from ddkit.data import load_dataset
from ddkit.data.biased import PALETTE
from ddkit.data.dataset import denormalise
from ddkit.data.synthetic import SyntheticSet
from ddkit.io import atomic_write_json

CELL = re.compile(r"colored-mnist5k-c(?P<ratio>[\d.]+)-(?P<method>[a-z-]+)-ipc(?P<ipc>\d+)$")


def image_colours(pixels: torch.Tensor) -> torch.Tensor:
    """Each image's colour ``(N, 3)``: the mean RGB of its pixels at least half as bright as
    its brightest (brightness: the largest channel) of ``pixels`` ``(N, 3, H, W)`` in [0, 1]."""
    bright = pixels.amax(1)  # (N, H, W)
    mask = (bright >= 0.5 * bright.flatten(1).amax(1)[:, None, None]).unsqueeze(1)
    return (pixels * mask).sum((2, 3)) / mask.sum((2, 3)).clamp_min(1)


def colour_summary(pixels: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Off-colour share and mean distances (module docstring) of images with hard ``labels``."""
    colours = image_colours(pixels)
    distances = torch.cdist(colours, PALETTE)  # (N, colours)
    return {
        "images": len(labels),
        "off_colour_share": float((distances.argmin(1) != labels).float().mean()),
        "distance_to_class_colour": float(distances.gather(1, labels[:, None]).mean()),
        "distance_to_palette": float(distances.amin(1).mean()),
    }


def movement_from_start(
    start: torch.Tensor, end: torch.Tensor, labels: torch.Tensor
) -> dict[str, float | int | None]:
    """How the images of a set moved from their ``start`` pixels to their ``end`` ones (both
    ``(N, 3, H, W)``, class ``labels``): module docstring. The off-colour images' figures are
    ``None`` where the start holds none."""
    start_colours = image_colours(start)
    off = torch.cdist(start_colours, PALETTE).argmin(1) != labels
    target = PALETTE[labels]
    to_class_start = (start_colours - target).norm(dim=1)
    to_class_end = (image_colours(end) - target).norm(dim=1)
    change = (end - start).flatten(1).norm(dim=1) / start.flatten(1).norm(dim=1)
    a, b = (x.amax(1).flatten(1) for x in (start, end))
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    correlation = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)

    def mean_over_off(values: torch.Tensor) -> float | None:
        return float(values[off].mean()) if off.any() else None

    return {
        "brightness_correlation_median": float(correlation.median()),
        "off_colour_at_start": int(off.sum()),
        "off_colour_to_class_colour_start": mean_over_off(to_class_start),
        "off_colour_to_class_colour_end": mean_over_off(to_class_end),
        "relative_change_off_colour": mean_over_off(change),
        "relative_change_others": float(change[~off].mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="runs/biased-mnist5k")
    ap.add_argument("--out", default="benchmarks/results/biased-mnist5k/set_colours.json")
    ap.add_argument("--from-random", default="dm,dm-kde")
    args = ap.parse_args()
    from_random = set(filter(None, args.from_random.split(",")))
    folders = sorted(Path(args.runs).iterdir()) if Path(args.runs).is_dir() else []
    cells = [(m, d) for d in folders if (m := CELL.match(d.name)) and (d / "synthetic").is_dir()]
    if not cells:
        raise SystemExit(f"set_colours: no Colored MNIST run folders under {args.runs}")
    real = {}
    for ratio in sorted({m["ratio"] for m, _ in cells}, key=float):
        train = load_dataset(f"colored-mnist5k-c{ratio}").train
        pixels = denormalise(train.images, train.spec).clamp(0, 1)
        real[ratio] = {"ratio_percent": float(ratio), **colour_summary(pixels, train.labels)}
    rows, left_out = [], []
    for m, folder in cells:
        s = SyntheticSet.load(folder / "synthetic")
        if s.meta.get("images_decoded"):
            left_out.append(folder.name)
            continue
        pixels = s.pixels()
        row = {
            "ratio_percent": float(m["ratio"]), "method": m["method"], "ipc": int(m["ipc"]),
            **colour_summary(pixels, s.hard_labels),
        }  # fmt: skip
        start = folder.parent / folder.name.replace(f"-{m['method']}-", "-random-") / "synthetic"
        if m["method"] in from_random and start.is_dir():
            r = SyntheticSet.load(start)
            if torch.equal(r.hard_labels, s.hard_labels):
                row["from_random"] = movement_from_start(r.pixels(), pixels, s.hard_labels)
        rows.append(row)
    rows.sort(key=lambda r: (r["ipc"], r["ratio_percent"], r["method"]))
    atomic_write_json(args.out, {
        "real_train": list(real.values()), "sets": rows, "left_out_decoded": left_out,
    })  # fmt: skip
    print("| set | conflicting % | IPC | off-colour (%) | to class colour | to palette |")
    print("|---|---|---|---|---|---|")
    for r in real.values():
        print(f"| real train split | {r['ratio_percent']:g} | – | "
              f"{100 * r['off_colour_share']:.2f} | {r['distance_to_class_colour']:.3f} | "
              f"{r['distance_to_palette']:.3f} |")  # fmt: skip
    for r in rows:
        print(f"| {r['method']} | {r['ratio_percent']:g} | {r['ipc']} | "
              f"{100 * r['off_colour_share']:.2f} | {r['distance_to_class_colour']:.3f} | "
              f"{r['distance_to_palette']:.3f} |")  # fmt: skip
    if left_out:
        print(f"left out (decoded images): {', '.join(left_out)}")
    print(
        "\n| set | conflicting % | IPC | off-colour at start | their distance to the class "
        "colour: start → end | relative change: off-colour / others | brightness corr. |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if r.get("from_random", {}).get("off_colour_at_start"):  # none: nothing to follow
            f = r["from_random"]
            print(f"| {r['method']} | {r['ratio_percent']:g} | {r['ipc']} | "
                  f"{f['off_colour_at_start']} | {f['off_colour_to_class_colour_start']:.3f} → "
                  f"{f['off_colour_to_class_colour_end']:.3f} | "
                  f"{f['relative_change_off_colour']:.3f} / {f['relative_change_others']:.3f} | "
                  f"{f['brightness_correlation_median']:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
