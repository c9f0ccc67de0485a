"""`SyntheticSet`: the one file format for distilled sets and coresets.

On disk a synthetic set is a folder with ``data.safetensors`` (images, labels, optional learned
lr, extra tensors) and ``meta.json`` (dataset spec, provenance, and the SHA-256 of the tensor
file, so a tampered or mismatched file is refused, and the SHA-256 of the rest of meta.json, so
an edited spec or decoding setting is refused too). Nothing is unpickled. A set whose images a
codec decodes from its stored tensors (:mod:`ddkit.data.codecs`) is written without the
images (format version 2, ``images_decoded``) and decoded again on load; every other set is
written as in version 1, which still loads.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddkit.data.codecs import STORED_IMAGES, Codec, decode_saved, image_bytes
from ddkit.data.dataset import ImageDataset, check_images, class_labels, denormalise
from ddkit.data.label_budget import (
    check_view_boxes,
    decoded_labels,
    label_tensor_keys,
    labels_decoded,
)
from ddkit.data.set_meta import (  # noqa: F401 - META_FILE, SETTINGS_KEY, settings_digest: public here
    MAX_META_BYTES,
    META_FILE,
    SETTINGS_KEY,
    check_meta_types,
    check_settings,
    settings_digest,
)
from ddkit.data.spec import DatasetSpec
from ddkit.data.zca import ZCA
from ddkit.errors import ConfigError, DataError, FileFormatError
from ddkit.io import (
    atomic_replace_dir,
    atomic_write_json,
    check_replaceable_dir,
    load_tensors,
    made_as,
    read_json,
    recover_replaced_dir,
    safe_name,
    sha256_file,
    write_safetensors,
)
from ddkit.meter import check_memory

FORMAT_VERSION = 2  # 2: a set decoded from stored tensors may omit its images (``images_decoded``)
TENSOR_FILE = "data.safetensors"


def _nbytes(t: torch.Tensor) -> int:
    return int(t.numel() * t.element_size())


#: A paired set's text tensors: real caption token ids, learned token embeddings and their
#: mask, or learned text features in a frozen text tower's output space (written by
#: :mod:`ddkit.eval.retrieval`, exported by :meth:`SyntheticSet.to_hf`).
TEXT_IDS, TEXT_EMB, TEXT_MASK = "text.ids", "text.embeddings", "text.mask"
TEXT_FEAT = "text.features"


def _version() -> str:
    from ddkit import __version__

    return __version__


def _one_lr(value: Any) -> float:
    """A set's learned learning rate as one float: one finite positive number (a tensor or
    list of one counts), else a one-line :class:`DataError`."""
    if isinstance(value, torch.Tensor | np.ndarray):
        value = value.tolist()
    items = value if isinstance(value, list | tuple) else [value]
    while len(items) == 1 and isinstance(items[0], list | tuple):
        items = items[0]
    if len(items) != 1 or isinstance(items[0], bool | str):
        raise DataError(f"learned lr must be one number, got {value!r}")
    try:
        lr = float(items[0])
    except (TypeError, ValueError):
        raise DataError(f"learned lr must be a number, got {value!r}") from None
    if not np.isfinite(lr) or lr <= 0:
        raise DataError(f"learned lr must be a positive finite number, got {lr}")
    return lr


#: provenance key a loaded set gets when its meta.json has no settings checksum
#: (``settings_sha256`` deleted after an edit, or a set saved before there was one): what it
#: records of how it was made (its evaluation recipe) is then not vouched for
UNCHECKED_KEY = "settings_unchecked"


@dataclass(eq=False)
class SyntheticSet:
    """A small labelled image set: images ``(N, C, H, W)`` in the spec's normalised space,
    labels hard ``(N,)`` int64, soft ``(N, K)`` probabilities or (``regression=True``) real-valued
    ``(N, K)`` regression targets, an optional learned learning
    rate, extra tensors (e.g. ZCA matrices, per-view soft labels) and provenance ``meta``."""

    images: torch.Tensor
    labels: torch.Tensor
    spec: DatasetSpec
    lr: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    #: labels ``(N, K)`` are real-valued regression targets (learned by KIP / FRePo), not
    #: probabilities: MSE protocols train on them, cross-entropy ones on their argmax
    regression: bool = False

    def __post_init__(self) -> None:
        self.images = self.images.detach().float().contiguous()
        self.labels = self.labels.detach().contiguous()
        check_images(self.images, self.spec)
        n, k = len(self.images), self.spec.num_classes
        if self.labels.ndim == 1:
            if self.labels.dtype != torch.long:
                raise DataError("hard labels must be int64")
            if len(self.labels) != n:
                raise DataError(f"{n} images but {len(self.labels)} labels")
            if n and (self.labels.min() < 0 or self.labels.max() >= k):
                raise DataError(f"labels out of range [0, {k - 1}]")
        elif self.labels.ndim == 2:
            self.labels = self.labels.float()
            if tuple(self.labels.shape) != (n, k):
                raise DataError(
                    f"soft labels must have shape ({n}, {k}), got {tuple(self.labels.shape)}"
                )
            if not torch.isfinite(self.labels).all():
                raise DataError("label vectors must be finite")
            if not self.regression and (self.labels < 0).any():
                raise DataError("soft labels must be non-negative (or pass regression=True)")
            if not self.regression and not torch.allclose(
                self.labels.sum(1), torch.ones(n, device=self.labels.device), atol=1e-4
            ):
                raise DataError(
                    "soft labels must be probability vectors (rows summing to 1); real-valued "
                    "regression targets need regression=True"
                )
        else:
            raise DataError(f"labels must be (N,) or (N, K), got {tuple(self.labels.shape)}")
        if self.regression and self.labels.ndim != 2:
            raise DataError("regression labels must be vectors (N, K)")
        if self.lr is not None:
            self.lr = _one_lr(self.lr)

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def soft(self) -> bool:
        return self.labels.ndim == 2

    @property
    def hard_labels(self) -> torch.Tensor:
        """Hard labels (argmax of soft labels)."""
        return self.labels.argmax(1) if self.soft else self.labels

    @property
    def ipc(self) -> int:
        """Images per class (the largest class count)."""
        return int(torch.bincount(self.hard_labels, minlength=self.spec.num_classes).max())

    def to(self, device: torch.device | str) -> SyntheticSet:
        """This set with its tensors (images, labels, extras) on ``device`` (``fit`` returns a
        set on the CPU, wherever the method computed)."""
        import dataclasses

        extras = {k: v.to(device) for k, v in self.extras.items()}
        return dataclasses.replace(
            self, images=self.images.to(device), labels=self.labels.to(device), extras=extras
        )

    def as_dataset(self) -> ImageDataset:
        """The set as a real split with hard labels (soft ones by their argmax): an
        :class:`ImageDataset` that ddkit's functions take as training data, and a
        ``torch.utils.data.Dataset`` of ``(image, label)`` pairs for a ``DataLoader``. For the
        stored labels (soft, regression) or ``[0, 1]`` pixels: :meth:`torch_dataset`."""
        return ImageDataset(self.images, self.hard_labels, self.spec)

    def torch_dataset(self, *, pixels: bool = False) -> torch.utils.data.TensorDataset:
        """The set as a ``torch.utils.data.Dataset`` of ``(image, label)`` pairs, for any
        PyTorch training loop: images as ddkit's evaluation networks see them (normalised, and
        ZCA-whitened where the set is) or, with ``pixels=True``, in ``[0, 1]``; the stored
        labels (class indices, soft labels or regression targets, see ``regression``)."""
        from torch.utils.data import TensorDataset

        return TensorDataset(self.pixels() if pixels else self.images, self.labels)

    @classmethod
    def from_real(
        cls,
        data: ImageDataset,
        index: torch.Tensor | None = None,
        *,
        meta: dict[str, Any] | None = None,
    ) -> SyntheticSet:
        """Wrap real rows (all, or ``index``) as a set, e.g. a coreset or the full-data row."""
        sub = data if index is None else data.subset(index)
        return cls(sub.images.clone(), sub.labels.clone(), data.spec, meta=dict(meta or {}))

    @classmethod
    def from_codec(
        cls, codec: Codec, stored: torch.Tensor, spec: DatasetSpec, **fields: Any
    ) -> SyntheticSet:
        """The set a codec's ``stored`` tensor gives: its decoded images, and what the codec
        records (:meth:`~ddkit.data.codecs.Codec.record`). ``fields`` go to the constructor
        (``labels``, one per decoded image -- hard class labels by default --, ``lr``,
        ``meta``, ``extras``, ``regression``)."""
        with torch.no_grad():
            images = codec.decode(stored).cpu().float().clone()
        k = spec.num_classes
        fields.setdefault("labels", class_labels(k, len(images) // k))
        syn = cls(images, spec=spec, **fields)
        syn.meta["codec"] = codec.spec_string
        meta, tensors = codec.record(stored.detach(), spec)
        for key, t in tensors.items():
            t = t.detach().cpu()
            syn.extras[key] = (t.float() if t.is_floating_point() else t).clone()
        if codec.counts_stored:
            meta = {"stored_tensors": [*tensors, "labels"], "emitted_per_class": len(syn) // k,
                    **meta}  # fmt: skip
        syn.meta.update(meta)
        return syn

    @property
    def stored_images(self) -> torch.Tensor:
        """The images a method actually stores: for multi-formation sets (IDM, IDC) the
        undecoded images in ``extras['formation.stored']``, else ``images``."""
        return self.extras.get(STORED_IMAGES, self.images)

    def storage_bytes(self) -> dict[str, int]:
        """Bytes of the distilled content per component: ``images`` (stored images; decoded
        training images of multi-formation sets are not counted twice), ``labels`` (the labels
        as stored: hard int64 or float32 vectors, or their encoded form under a label budget
        (:mod:`ddkit.data.label_budget`), with per-view labels, view parameters and per-region
        labels), ``lr``, ``codec`` / ``generator`` (the tensors a set's images are decoded
        from: a codec's, or a method's generator or memory such as DiM's or RTP's, named by
        ``meta['stored_tensors']``; its images then count 0), ``extras`` (any other extra
        tensor, e.g. ZCA matrices) and ``total``. A set whose labels the teacher regenerates
        (budget ``regen``) counts its hard labels and view parameters here; the teacher's
        bytes are counted by :func:`ddkit.eval.accounting.storage_report`."""
        named = self.meta.get("stored_tensors")
        labels = self._label_bytes(own=not named or "labels" in named)  # else decoded with images
        parts = {"images": 0, "labels": labels, "lr": 4 if self.lr is not None else 0,
                 "codec": 0, "generator": 0, "extras": 0}  # fmt: skip
        if named:  # only the named tensors are stored; the images are decoded from them
            missing = [k for k in named if k != "labels" and k not in self.extras]
            if missing:
                raise DataError(f"the set names stored tensors it lacks: {missing}")
            source = "codec" if self.meta.get("codec") else "generator"
            for k in (k for k in named if k != "labels"):
                parts["extras" if k.startswith("zca.") else source] += _nbytes(self.extras[k])
        else:
            parts["images"] = _nbytes(self.stored_images)
            skip = {STORED_IMAGES, *label_tensor_keys(self.extras)}
            parts["extras"] = sum(_nbytes(t) for k, t in self.extras.items() if k not in skip)
        parts["total"] = sum(parts.values())
        return parts

    def _label_bytes(self, own: bool = True) -> int:
        """Bytes of the labels as stored: the label tensor (when ``own`` and not decoded from
        encoded labels, :func:`~ddkit.data.label_budget.labels_decoded`) and every label extra."""
        stored = own and not labels_decoded(self.meta, self.extras)
        return (_nbytes(self.labels) if stored else 0) + sum(
            _nbytes(self.extras[k]) for k in label_tensor_keys(self.extras)
        )

    def _labels_encoded(self) -> bool:
        """Whether the labels are saved as their encoded form alone (a label budget's
        ``label.*`` / ``view_*`` tensors); labels that no longer decode from it are refused."""
        decoded = decoded_labels(self.meta, self.extras, self.spec.num_classes)
        if decoded is None:
            return False
        if not torch.equal(decoded, self.labels.cpu()):
            raise DataError(
                "the set's labels differ from those its label budget encodes "
                f"({self.meta['label_budget']}); build it with ddkit.eval.relabel.relabel"
            )
        return True

    # ------------------------------------------------------------------ files
    def decoded_images(self) -> torch.Tensor | None:
        """The images decoded afresh from the set's stored tensors (a codec's parameters, IDM's
        multi-formation images), or ``None`` when the set stores its images themselves."""
        return decode_saved(self.spec, self.meta, self.extras)

    def save(self, path: str | os.PathLike, *, compact: bool = True) -> Path:
        """Write ``path/`` (data.safetensors + meta.json) atomically; returns the path. With
        ``compact`` a set whose images decode exactly from its stored tensors is written
        without them (only what :meth:`storage_bytes` counts, plus labels) and decoded on
        :meth:`load`; any other set is written whole (format version 1, as before)."""
        decoded = self.decoded_images() if compact else None
        omit = decoded is not None and torch.equal(decoded, self.images)
        tensors = {} if omit else {"images": self.images}
        if not self._labels_encoded():
            tensors["labels"] = self.labels
        if self.lr is not None:
            tensors["lr"] = torch.tensor([self.lr], dtype=torch.float32)
        for k, v in self.extras.items():
            tensors[f"extra.{k}"] = v.detach().contiguous().cpu()

        def fill(tmp: Path) -> None:
            write_safetensors(tmp / TENSOR_FILE, tensors)
            meta = {
                "format": "ddkit.synthetic",
                "format_version": FORMAT_VERSION if omit else 1,
                "ddkit_version": _version(),
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "spec": {**self.spec.to_dict(), "modality": self.spec.modality},
                "num_images": len(self),
                "label_mode": "regression" if self.regression else "soft" if self.soft else "hard",
                "images_decoded": omit,
                "lr": self.lr,
                "bytes": self.storage_bytes(),
                "sha256": sha256_file(tmp / TENSOR_FILE),
                "provenance": self.meta,
            }
            meta[SETTINGS_KEY] = settings_digest(meta)
            atomic_write_json(tmp / META_FILE, meta)

        atomic_replace_dir(path, fill, owned=_SAVED_SET, kind="a saved set")
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, trust_settings: bool = False) -> SyntheticSet:
        """Load and verify a saved set; corrupt, tampered or mismatched files raise
        FileFormatError. ``trust_settings`` accepts a set decoded from stored tensors that was
        saved before meta.json had a checksum of its own (to re-save it)."""
        p = Path(path)
        recover_replaced_dir(p)
        if not p.is_dir():
            raise FileFormatError(
                f"no synthetic set at {str(p)!r} (expected a folder with {META_FILE})"
            )
        meta = read_json(p / META_FILE, max_bytes=MAX_META_BYTES)
        if not isinstance(meta, dict) or meta.get("format") != "ddkit.synthetic":
            raise FileFormatError(f"{str(p / META_FILE)!r} is not a ddkit synthetic-set file")
        check_meta_types(meta, p / META_FILE)
        if meta["format_version"] > FORMAT_VERSION:
            raise FileFormatError(
                f"{str(p)!r} was written by a newer ddkit (format {meta['format_version']})"
            )
        tfile = p / TENSOR_FILE
        if not tfile.is_file():
            raise FileFormatError(f"missing file {str(tfile)!r}")
        if sha256_file(tfile) != meta.get("sha256"):
            raise FileFormatError(
                f"{str(tfile)!r} does not match its checksum in meta.json (tampered or mismatched)"
            )
        tensors = load_tensors(tfile)
        try:
            spec = DatasetSpec.from_dict(meta.get("spec", {}))
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            raise FileFormatError(f"{str(p / META_FILE)!r} has a malformed spec ({e})") from None
        check_settings(meta, p, trust_settings)
        num_images = meta.get("num_images")
        if not isinstance(num_images, int) or num_images < 0:
            raise FileFormatError(f"{str(p / META_FILE)!r}: num_images must be a count")
        check_memory(  # before anything is decoded (a decoded set may be far larger than its file)
            f"the {num_images:,} images of {str(p)!r}",
            num_images * image_bytes(spec),
            "it is not a set ddkit can load here",
            FileFormatError,
        )
        decoded = bool(meta.get("images_decoded"))
        lr = tensors.get("lr")  # one number, checked by the set
        extras = {k[len("extra.") :]: v for k, v in tensors.items() if k.startswith("extra.")}
        provenance = {k: v for k, v in meta.get("provenance", {}).items() if k != UNCHECKED_KEY}
        if SETTINGS_KEY not in meta:  # nothing vouches for its recorded settings (a recipe)
            provenance[UNCHECKED_KEY] = True
        try:  # crop boxes that labels are regenerated from, or views replayed by
            check_view_boxes(extras, spec.image_size, num_images)
        except DataError as e:
            raise FileFormatError(f"{str(tfile)!r}: {e}") from None
        if labels_decoded(provenance, extras) and "labels" not in tensors:
            tensors["labels"] = _decode_labels(provenance, extras, spec, tfile)
        if ("images" not in tensors and not decoded) or "labels" not in tensors:
            raise FileFormatError(f"{str(tfile)!r} lacks images or labels")
        try:
            images = tensors["images"] if not decoded else _decode(spec, meta, extras, tfile)
            if len(images) != num_images:
                raise DataError(f"{len(images)} images, but meta.json says {num_images}")
            return cls(
                images,
                tensors["labels"],
                spec,
                lr=lr,
                meta=provenance,
                extras=extras,
                regression=meta.get("label_mode") == "regression",
            )
        except DataError as e:
            raise FileFormatError(f"{str(p)!r} does not match its metadata: {e}") from None

    # ------------------------------------------------------------------ pictures
    def zca(self):
        """The ZCA whitening the images live in (``spec.transform == "zca"``, matrices in
        ``extras['zca.*']``), or ``None`` for a set without a transform."""
        if self.spec.transform is None:
            return None
        if self.spec.transform != "zca":
            raise FileFormatError(f"unknown image transform {self.spec.transform!r}")
        return ZCA.from_tensors({k[4:]: v for k, v in self.extras.items() if k.startswith("zca.")})

    def pixels(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Images in the raw pixel scale (ZCA undone, de-normalised), clamped to [0, 1]: all of
        them, or those of ``rows`` (indices). Only image sets (and the images of a paired set's
        image-text pairs) have pixels: a table set exports as CSV (:meth:`export_csv`)."""
        if not self.spec.kind.pixels:
            raise DataError(
                f"{self.spec.modality} rows have no pixels; a table set exports as CSV "
                "(--to FILE.csv), a series set is read with SyntheticSet.load"
            )
        x = self.images if rows is None else self.images[rows]
        zca = self.zca()
        x = x if zca is None else zca.inverse(x)
        return denormalise(x, self.spec).clamp(0, 1)

    def save_grid(
        self, path: str | os.PathLike, *, max_per_class: int = 10, min_cell: int = 32
    ) -> Path:
        """Write a PNG picture of the set, as its modality draws one
        (:meth:`~ddkit.data.modalities.base.Modality.draw`): for images a grid, one row per
        class of up to ``max_per_class`` images; a table set as per-class histograms of its
        columns (:func:`ddkit.viz.feature_histograms`; a graph set likewise, of its node
        features), a series set as per-class line plots (:func:`ddkit.viz.series_lines`)."""
        return self.spec.kind.draw(self, path, max_per_class=max_per_class, min_cell=min_cell)

    def export_npz(self, path: str | os.PathLike) -> Path:
        """Write the images as pixels in [0, 1] (``x_train``, ``(N, H, W)`` for one channel,
        else ``(N, H, W, C)``), hard labels (``y_train``), soft labels if any
        (``soft_labels``), ``class_names`` and the learned lr if any, as an uncompressed
        ``.npz`` (readable by ``ddkit --dataset npz`` and by numpy without pickle)."""
        self.spec.kind.check_export("a .npz of x_train, y_train")
        pix = self.pixels().permute(0, 2, 3, 1).numpy().astype(np.float32)
        arrays: dict[str, np.ndarray] = {
            "x_train": pix[..., 0] if pix.shape[-1] == 1 else pix,
            "y_train": self.hard_labels.numpy().astype(np.int64),
            "class_names": np.array([str(c) for c in self.spec.class_names]),
        }
        if self.soft:
            arrays["soft_labels"] = self.labels.float().numpy()
        if self.lr is not None:
            arrays["lr"] = np.array(self.lr, dtype=np.float64)
        from ddkit.io import atomic_write

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        atomic_write(path, write)
        return Path(path)

    def export_csv(self, path: str | os.PathLike, target: str = "label") -> Path:
        """Write a table set as CSV: its columns in their raw scale, each categorical column as
        the category of its largest score (:func:`ddkit.data.table.decode_rows`), and the class
        name (argmax of soft labels) in column ``target``; readable by ``--dataset csv
        --target label``."""
        import csv

        from ddkit.data.table import decode_rows
        from ddkit.io import atomic_write

        self.spec.kind.check_export("a CSV table")
        rows = decode_rows(self.images, self.spec)
        names = [c.name for c in self.spec.columns]
        if target in names:
            raise DataError(f"the table has a column {target!r}; choose another target name")
        classes = [self.spec.class_names[k] for k in self.hard_labels.tolist()]

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                out = csv.writer(f)
                out.writerow([*names, target])
                out.writerows([*(row[n] for n in names), c] for row, c in zip(rows, classes))

        atomic_write(path, write)
        return Path(path)

    def export_hf(self, path: str | os.PathLike, *, pixels: bool = True) -> Path:
        """Write the set in the Hugging Face ``datasets`` library's on-disk format (a folder
        that ``datasets.load_from_disk`` reads), atomically; needs the extra ``ddkit[hf]``.

        Columns: ``image``, float32 ``(C, H, W)`` -- pixels in ``[0, 1]`` (:meth:`pixels`) or,
        with ``pixels=False``, the stored rows as ddkit's networks see them (normalised, and
        ZCA-whitened where the set is; any modality); ``label``, the class as a ``ClassLabel``
        carrying the class names where labels are hard, else the soft label (or regression
        target) vector, with its argmax as a ``ClassLabel`` in ``hard_label``. A paired set's
        text comes too (:meth:`~ddkit.data.modalities.base.Modality.hf_columns`): ``caption`` and ``caption_ids``, or its learned
        ``text_embeddings`` / ``text_mask``, and LoRS's ``similarity_*`` factors. The
        dataset's description ends with a JSON line (``ddkit: {...}``) of what a reader needs
        to use the images as ddkit does: source dataset, mean / std, transform, learned lr."""
        from ddkit.errors import require_extra

        hf = require_extra("datasets", "hf", "export to the datasets format (--format hf)")
        text, text_features = self.spec.kind.hf_columns(self, hf)
        images = (self.pixels() if pixels else self.images).numpy().astype(np.float32)
        names = hf.ClassLabel(names=[str(c) for c in self.spec.class_names])
        columns: dict[str, Any] = {"image": images}
        features: dict[str, Any] = {"image": hf.Array3D(images.shape[1:], "float32")}
        if self.soft:
            k = self.spec.num_classes
            columns["label"] = self.labels.float().numpy()
            features |= {"label": hf.Sequence(hf.Value("float32"), length=k), "hard_label": names}
            columns["hard_label"] = self.hard_labels.numpy()
        else:
            columns["label"], features["label"] = self.labels.numpy(), names
        columns |= text
        features |= text_features
        facts = {"dataset": self.spec.name, "pixels": pixels, "mean": self.spec.mean,
                 "std": self.spec.std, "transform": None if pixels else self.spec.transform,
                 "regression": self.regression, "lr": self.lr, "ddkit": _version()}  # fmt: skip
        if "similarity_alpha" in self.meta:
            facts["similarity_alpha"] = self.meta["similarity_alpha"]
        what = "pixels in [0, 1]" if pixels else "rows as ddkit's networks see them"
        info = hf.DatasetInfo(
            description=f"ddkit synthetic set of {self.spec.name}: {len(self)} images "
            f"(C, H, W), {what}\nddkit: {json.dumps(facts)}",
            features=hf.Features(features),
        )
        data = hf.Dataset.from_dict(columns, features=info.features, info=info)
        quiet = hf.are_progress_bars_disabled()
        hf.disable_progress_bars()  # the CLI prints its own line
        try:
            atomic_replace_dir(path, lambda tmp: data.save_to_disk(str(tmp)),
                               owned=_hf_dataset_folder, kind="a Hugging Face dataset folder")  # fmt: skip
        finally:
            if not quiet:
                hf.enable_progress_bars()
        return Path(path)

    def export_folder(self, path: str | os.PathLike) -> Path:
        """Write one PNG per image under ``path/<class folder>/`` (an image-folder dataset);
        folders are named by :func:`class_folder_names`, so nothing lands outside ``path``."""
        from PIL import Image

        self.spec.kind.check_export("PNG folders")
        root = Path(path)
        folders = class_folder_names(self.spec.class_names)
        pix = (self.pixels() * 255).round().to(torch.uint8)
        counts: dict[int, int] = {}
        for img, y in zip(pix, self.hard_labels.tolist()):
            d = root / folders[y]
            d.mkdir(parents=True, exist_ok=True)
            arr = img.permute(1, 2, 0).numpy()
            arr = arr[..., 0] if arr.shape[2] == 1 else arr
            i = counts[y] = counts.get(y, -1) + 1
            Image.fromarray(arr).save(d / f"{i:05d}.png")
        return root


_SAVED_SET = made_as(META_FILE, "ddkit.synthetic")


def check_set_destination(path: str | os.PathLike) -> None:
    """Refuse (:class:`ConfigError`) a folder :meth:`SyntheticSet.save` would not replace (see
    :func:`~ddkit.io.check_replaceable_dir`), so a command can say so before its work."""
    check_replaceable_dir(path, _SAVED_SET, "a saved set")


def _hf_dataset_folder(folder: Path) -> bool:
    """Whether ``folder`` is what ``datasets``' ``save_to_disk`` writes for one dataset."""
    return (folder / "dataset_info.json").is_file() and (folder / "state.json").is_file()


def class_folder_names(class_names: Sequence[str]) -> list[str]:
    """One safe, distinct folder name per class: characters other than letters, digits, ``-``,
    ``_`` and ``.`` become ``_``, leading dots go (no ``..``, no hidden folders), an empty name
    becomes ``class<k>``, and a repeated name gets ``-<k>`` appended."""
    out: list[str] = []
    for k, name in enumerate(class_names):
        safe = safe_name(name, f"class{k}", max_length=255)
        if safe in out:
            safe = f"{safe}-{k}"
        out.append(safe)
    return out


def _decode(
    spec: DatasetSpec, meta: dict[str, Any], extras: dict[str, torch.Tensor], where: Path
) -> torch.Tensor:
    """The images of a set saved without them, decoded from its stored tensors."""
    provenance = meta.get("provenance", {})
    try:
        images = decode_saved(spec, provenance, extras)
    except (ConfigError, KeyError, RuntimeError, TypeError, ValueError) as e:
        raise FileFormatError(f"{str(where)!r}: its images cannot be decoded ({e})") from None
    if images is None:
        raise FileFormatError(
            f"{str(where)!r} has no images and names no codec to decode them from"
        )
    return images


def _decode_labels(
    provenance: dict[str, Any], extras: dict[str, torch.Tensor], spec: DatasetSpec, where: Path
) -> torch.Tensor | None:
    """The soft labels of a set saved as their encoded form (a label budget)."""
    try:
        return decoded_labels(provenance, extras, spec.num_classes)
    except (DataError, RuntimeError, ValueError) as e:
        raise FileFormatError(f"{str(where)!r}: its labels cannot be decoded ({e})") from None


def resolve_synthetic_path(path: str | os.PathLike) -> Path:
    """Accept a run folder (with ``synthetic/``) or a synthetic-set folder."""
    p = Path(path)
    if (p / "synthetic" / "meta.json").exists():
        return p / "synthetic"
    return p
