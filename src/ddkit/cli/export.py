"""``ddkit export``: a saved set as PNG folders, a .npz, a CSV, a Hugging Face datasets folder
or a set again."""

from __future__ import annotations

import argparse
from pathlib import Path

from ddkit.commands import Command, register_command
from ddkit.errors import ConfigError

HELP = "write a synthetic set as PNG files, a .npz, a datasets folder or a set again"


def add_arguments(x: argparse.ArgumentParser) -> None:
    x.add_argument("path", help="run folder or synthetic-set folder")
    x.add_argument("--to", required=True, help="output folder (PNGs, hf, set) or FILE.npz")
    x.add_argument(
        "--format",
        choices=["png", "npz", "set", "csv", "hf"],
        default=None,
        help="default: from --to; set: save it again (an older set's settings get a checksum); "
        "hf: the Hugging Face datasets on-disk format (extra 'hf')",
    )


def run(args: argparse.Namespace) -> int:
    from ddkit.data.synthetic import SyntheticSet, resolve_synthetic_path
    from ddkit.io import atomic_replace_dir

    out = Path(args.to)
    fmt = args.format or {".npz": "npz", ".csv": "csv"}.get(out.suffix, "png")
    if out.exists():
        raise ConfigError(f"{str(out)!r} already exists; choose another --to or remove it")
    # --format set re-saves: the user vouches for an older set's uncovered decoding settings
    syn = SyntheticSet.load(resolve_synthetic_path(args.path), trust_settings=fmt == "set")
    if fmt == "npz":
        syn.export_npz(out)
    elif fmt == "csv":
        syn.export_csv(out)
    elif fmt == "set":
        syn.save(out)
    elif fmt == "hf":
        syn.export_hf(out)
    else:
        atomic_replace_dir(out, syn.export_folder)
    what = {"png": "one PNG per image in <class>/ folders", "npz": "x_train, y_train, ...",
            "set": "a ddkit set, every setting checksummed",
            "hf": "datasets.load_from_disk reads it: image (pixels in [0, 1]), label"
            + "".join(f", {words}" for words in syn.spec.kind.exported_beside),
            "csv": "table rows, categories as their names, class in column label"}[fmt]  # fmt: skip
    print(f"wrote {out} ({len(syn)} images; {what})")
    return 0


register_command(Command("export", HELP, add_arguments, run, describe=False))
