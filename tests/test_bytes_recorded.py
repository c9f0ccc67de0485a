"""Storage bytes written with every set and every evaluation (issue 73): meta.json carries the
set's bytes under its settings checksum, eval.json the bytes of the set it judged, and the run
report shows them, for pixel, codec, soft-label and generator sets."""

from __future__ import annotations

import json

import pytest
import torch

from ddkit.data.synthetic import META_FILE, SyntheticSet
from ddkit.eval import EvalProtocol, evaluate
from ddkit.methods import create_method
from ddkit.report import _evaluation_tables
from ddkit.testing import method_test_overrides, tiny_digits

TINY = EvalProtocol(name="tiny", epochs=1, runs=1, models=("convnet2-w8",))


def _set(kind: str) -> SyntheticSet:
    train = tiny_digits().train
    method, extra = {
        "pixel": ("dm", {}),
        "codec": ("dm", {"codec": "fred:0.25"}),
        "soft labels": ("sre2l", {"labels": "soft"}),
        "generator": ("dim", {}),
    }[kind]
    return create_method(method, **{**method_test_overrides(method), **extra}).fit(train, 2, seed=0)


@pytest.mark.parametrize("kind", ["pixel", "codec", "soft labels", "generator"])
def test_meta_and_eval_json_record_the_sets_bytes(kind, tmp_path):
    syn = _set(kind)
    parts = syn.storage_bytes()
    folder = syn.save(tmp_path / "set")
    meta = json.loads((folder / META_FILE).read_text())
    assert meta["bytes"] == parts and parts["total"] == sum(
        v for k, v in parts.items() if k != "total"
    )
    if kind == "pixel":
        assert parts["images"] == syn.images.numel() * 4 and parts["extras"] == 0
    elif kind == "codec":
        assert parts["images"] == 0 and 0 < parts["codec"] < syn.images.numel() * 4
    elif kind == "soft labels":
        assert syn.soft and parts["labels"] == syn.labels.numel() * 4
    else:
        assert parts["generator"] > 0 and parts["codec"] == 0  # the generator's weights
    # an edited record is caught by the settings checksum
    meta["bytes"]["total"] += 1
    (folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(Exception, match="settings"):
        SyntheticSet.load(folder)
    report = evaluate(syn, tiny_digits().test, TINY, seed=0).to_dict()
    assert report["meta"]["bytes"] == parts
    assert f"{parts['total']:,}" in _evaluation_tables({"eval.json": report})


def test_a_set_saved_before_bytes_were_recorded_still_loads(tmp_path):
    syn = _set("pixel")
    folder = syn.save(tmp_path / "old")
    meta = json.loads((folder / META_FILE).read_text())
    meta.pop("bytes")
    meta.pop("settings_sha256")
    (folder / META_FILE).write_text(json.dumps(meta))
    assert torch.equal(SyntheticSet.load(folder).images, syn.images)
