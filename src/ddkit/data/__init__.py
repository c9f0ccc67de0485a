"""Datasets: specs, in-memory splits, built-in and on-disk datasets, synthetic sets."""

from ddkit.data import biased as _biased  # noqa: F401  (biased datasets register their families)
from ddkit.data import captioned as _captioned  # noqa: F401  (paired: the caption benchmark)
from ddkit.data import captions as _captions  # noqa: F401  (paired: caption files)
from ddkit.data import graph as _graph  # noqa: F401  (graph datasets register themselves)
from ddkit.data import layouts as _layouts  # noqa: F401  (the ImageNet family's layouts)
from ddkit.data import mlbench as _mlbench  # noqa: F401  (mlbench tables register themselves)
from ddkit.data import modalities as _modalities  # noqa: F401  (each modality registers itself)
from ddkit.data import npz as _npz  # noqa: F401  (the npz dataset registers itself)
from ddkit.data import readers as _readers  # noqa: F401  (on-disk readers register themselves)
from ddkit.data import scenes as _scenes  # noqa: F401  (paired: the compositional scenes)
from ddkit.data import series as _series  # noqa: F401  (time-series datasets register themselves)
from ddkit.data import shards as _shards  # noqa: F401  (tar shards, Hugging Face folders)
from ddkit.data import table as _table  # noqa: F401  (tabular datasets register themselves)
from ddkit.data.builtin import DATASETS, RawData, load_dataset, register_dataset
from ddkit.data.dataset import (
    ArrayExtras,
    DatasetSplits,
    ImageDataset,
    denormalise,
    from_arrays,
    normalise,
    stratified_split,
)
from ddkit.data.spec import DatasetSpec

__all__ = [
    "DATASETS",
    "ArrayExtras",
    "DatasetSpec",
    "DatasetSplits",
    "ImageDataset",
    "RawData",
    "denormalise",
    "from_arrays",
    "load_dataset",
    "normalise",
    "register_dataset",
    "stratified_split",
]
