"""A saved set's meta.json: its constants, the checksum of its settings (``settings_sha256``)
and the types of its fields, checked when a set is loaded (:mod:`ddkit.data.synthetic`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ddkit.errors import FileFormatError
from ddkit.io import json_sha256

META_FILE = "meta.json"
#: the most a set's meta.json may weigh (spec, class names, codec settings: kilobytes in practice)
MAX_META_BYTES = 16 * 2**20
#: meta.json's field holding the SHA-256 of the rest of meta.json (spec, label mode, the codec
#: settings its images are decoded by): ``sha256`` covers only the tensor file
SETTINGS_KEY = "settings_sha256"

#: meta.json fields a reader relies on, with the JSON type each must have (and whether required)
_META_TYPES: dict[str, tuple[type, bool]] = {
    "format_version": (int, True),
    "sha256": (str, True),
    "spec": (dict, True),
    "provenance": (dict, False),
    "bytes": (dict, False),
    SETTINGS_KEY: (str, False),
}


def settings_digest(meta: dict[str, Any]) -> str:
    """The SHA-256 of ``meta`` (as JSON, keys sorted) without its own :data:`SETTINGS_KEY`."""
    return json_sha256({k: v for k, v in meta.items() if k != SETTINGS_KEY})


def check_settings(meta: dict[str, Any], where: Path, trust: bool) -> None:
    """Refuse a meta.json edited after saving, and (unless ``trust``) a set decoded from its
    stored tensors by settings that no checksum covers (saved before :data:`SETTINGS_KEY`)."""
    recorded = meta.get(SETTINGS_KEY)
    if recorded is None:
        if meta.get("images_decoded") and not trust:
            raise FileFormatError(
                f"{str(where)!r} was saved before ddkit checksummed the settings its images are "
                f"decoded by; if you trust its meta.json, re-save it: ddkit export {str(where)!r} "
                "--to NEW --format set"
            )
        return
    if recorded != settings_digest(meta):
        raise FileFormatError(
            f"{str(where / META_FILE)!r}: meta.json was edited after the set was saved (it does "
            "not match its settings_sha256); save the set again from its source"
        )


def check_meta_types(meta: dict[str, Any], where: Path) -> None:
    for key, (kind, required) in _META_TYPES.items():
        if key not in meta and not required:
            continue
        value = meta.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise FileFormatError(
                f"{str(where)!r}: {key} must be {kind.__name__}, got {type(value).__name__}"
            )
