"""Local Hugging Face folders, read by ddkit before ``transformers`` reads them (issue 83).

ddkit never runs code that comes with a model: every ``from_pretrained`` passes
``trust_remote_code=False``, and a folder that asks for its own code -- an ``auto_map`` in
``config.json`` or ``tokenizer_config.json``, or a ``model_type`` this ``transformers`` does not
ship -- is refused in one line before ``transformers`` sees it (so it never asks "Do you wish to
run the custom code?"). The size a ``config.json`` describes is estimated from its numbers and
checked against the memory budget (:func:`ddkit.meter.check_memory`) before the model is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ddkit.errors import FileFormatError
from ddkit.io import read_json
from ddkit.meter import BUDGET_ENV, check_memory

__all__ = [
    "LOAD_OPTIONS",
    "check_hf_folder",
    "check_hf_size",
    "hf_config_parameters",
    "refuse_remote_code",
]

#: keywords of every ``from_pretrained`` call: offline (each call also passes
#: ``trust_remote_code=False`` itself, where a reader and a grep see it)
LOAD_OPTIONS: dict[str, Any] = {"local_files_only": True}
#: the files whose ``auto_map`` would make transformers import code from the folder
_CONFIGS = ("config.json", "tokenizer_config.json")
#: bytes per parameter of the estimate (float32, as transformers builds by default)
_PARAM_BYTES = 4


def _config(path: Path) -> dict[str, Any]:
    """``path`` read as a JSON object, ``{}`` when it is absent."""
    if not path.is_file():
        return {}
    data = read_json(path)
    if not isinstance(data, dict):
        raise FileFormatError(f"{str(path)!r} is no JSON object; save the folder again")
    return data


def _asks_for_code(data: Any) -> bool:
    """Whether an ``auto_map`` appears anywhere in ``data`` (nested configs included)."""
    if isinstance(data, dict):
        return "auto_map" in data or any(_asks_for_code(v) for v in data.values())
    return isinstance(data, list) and any(_asks_for_code(v) for v in data)


def refuse_remote_code(transformers: Any, folder: Path, what: str) -> None:
    """Refuse (one line) the folder of ``what`` if it asks transformers to run code of its own:
    an ``auto_map`` in its config or tokenizer config, or a ``model_type`` transformers does
    not know (it could only be read by such code)."""
    for name in _CONFIGS:
        if _asks_for_code(_config(folder / name)):
            raise FileFormatError(
                f"{what}: {str(folder / name)!r} has an auto_map, code of its own that ddkit "
                "never runs; use a model of an architecture transformers ships"
            )
    model_type = _config(folder / "config.json").get("model_type")
    known = transformers.models.auto.configuration_auto.CONFIG_MAPPING_NAMES
    if model_type is not None and model_type not in known:
        raise FileFormatError(
            f"{what} has no config transformers reads: model_type {model_type!r} in "
            f"{str(folder / 'config.json')!r} is not one transformers {transformers.__version__} "
            "ships, and ddkit runs no code of a folder's own; use an architecture it ships"
        )


def _count(data: dict[str, Any], *keys: str) -> int:
    """The first of ``keys`` that holds a whole number >= 0 (``0`` when none does)."""
    for key in keys:
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return 0


def hf_config_parameters(data: dict[str, Any]) -> int:
    """The parameters a transformer's config describes, estimated from its numbers: a token
    table (``vocab_size x hidden_size``) and per layer the attention's four ``hidden^2``
    projections and the MLP's two ``hidden x intermediate`` ones (``intermediate`` defaults to
    four times ``hidden``); the configs nested in it (a CLIP's towers) added."""
    hidden = _count(data, "hidden_size", "d_model", "n_embd")
    layers = _count(data, "num_hidden_layers", "num_layers", "n_layer")
    inner = _count(data, "intermediate_size", "d_ff", "n_inner") or 4 * hidden
    own = _count(data, "vocab_size") * hidden + layers * (4 * hidden * hidden + 2 * hidden * inner)
    return own + sum(hf_config_parameters(v) for v in data.values() if isinstance(v, dict))


def check_hf_size(folder: Path, what: str) -> None:
    """Refuse (ConfigError, one line) the model of ``what`` whose ``config.json`` describes
    more parameters than the memory budget holds, before anything is built."""
    params = hf_config_parameters(_config(folder / "config.json"))
    check_memory(
        f"{what} ({str(folder / 'config.json')!r}: about {params:,} parameters)",
        params * _PARAM_BYTES,
        f"use a smaller model, or raise ${BUDGET_ENV}",
    )


def check_hf_folder(transformers: Any, folder: Path, what: str) -> None:
    """:func:`refuse_remote_code` and :func:`check_hf_size`: what a model folder must pass
    before transformers reads it."""
    refuse_remote_code(transformers, folder, what)
    check_hf_size(folder, what)
