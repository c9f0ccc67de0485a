"""Export to the Hugging Face datasets on-disk format (SyntheticSet.export_hf, ddkit export
--format hf): values, labels and class names read back through datasets.load_from_disk; the
refusal in one line naming the extra when the package is missing."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest
import torch

from ddkit.cli import main
from ddkit.data import load_dataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError

datasets = pytest.importorskip("datasets")


@pytest.fixture(scope="module")
def train():
    return load_dataset("digits").train


def _facts(data) -> dict:
    return json.loads(data.info.description.rsplit("ddkit: ", 1)[1])


def test_hard_labels_and_class_names_round_trip(tmp_path, train):
    names = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    index = torch.arange(0, len(train), 37)
    spec = dataclasses.replace(train.spec, class_names=names)
    syn = SyntheticSet(train.images[index], train.labels[index], spec)
    syn.export_hf(tmp_path / "hf")
    data = datasets.load_from_disk(str(tmp_path / "hf"))

    assert len(data) == len(syn) and data.features["label"].names == list(names)
    rows = data.with_format("numpy")[:]
    assert np.array_equal(rows["image"], syn.pixels().numpy())  # float32 (C, H, W) pixels
    assert rows["label"].tolist() == train.labels[index].tolist()
    assert data.features["label"].int2str(rows["label"].tolist()) == [
        names[k] for k in train.labels[index]
    ]
    facts = _facts(data)
    assert facts["dataset"] == "digits" and facts["pixels"] is True
    assert facts["mean"] == list(train.spec.mean) and not list(tmp_path.glob(".hf.*"))


def test_soft_labels_and_normalised_rows(tmp_path, train):
    soft = torch.softmax(torch.randn(20, 10, generator=torch.Generator().manual_seed(0)), 1)
    syn = SyntheticSet(train.images[:20], soft, train.spec, lr=0.01)
    syn.export_hf(tmp_path / "hf", pixels=False)
    data = datasets.load_from_disk(str(tmp_path / "hf"))

    rows = data.with_format("numpy")[:]
    assert np.array_equal(rows["image"], syn.images.numpy())
    assert np.array_equal(rows["label"], soft.numpy())
    assert rows["hard_label"].tolist() == soft.argmax(1).tolist()
    assert data.features["hard_label"].names == list(train.spec.class_names)
    assert _facts(data)["lr"] == 0.01 and _facts(data)["pixels"] is False


def test_cli_export_hf(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["distill", "--dataset", "digits", "--method", "random", "--ipc", "2", "--quiet",
                 "--out", str(run)]) == 0  # fmt: skip
    assert main(["export", str(run), "--to", str(tmp_path / "hf"), "--format", "hf"]) == 0
    assert "load_from_disk" in capsys.readouterr().out
    data = datasets.load_from_disk(str(tmp_path / "hf"))
    syn = SyntheticSet.load(run / "synthetic")
    assert np.array_equal(data.with_format("numpy")[:]["image"], syn.pixels().numpy())
    assert data[:]["label"] == syn.labels.tolist()


def test_a_missing_extra_is_refused_in_one_line_naming_it(tmp_path, train, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if the extra were not installed
    syn = SyntheticSet.from_real(train, torch.arange(10))
    with pytest.raises(ConfigError, match=r"pip install 'ddkit\[hf\]'"):
        syn.export_hf(tmp_path / "hf")
    syn.save(tmp_path / "set")
    assert (
        main(["export", str(tmp_path / "set"), "--to", str(tmp_path / "hf"), "--format", "hf"]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "needs the optional package 'datasets'" in err
    assert not (tmp_path / "hf").exists()
