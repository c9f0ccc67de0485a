"""Reliability audit (issue 83), image-text pairs and built-in data: caption files may name only
regular files inside their data folder; a paired set exported keeps its captions; a built-in
dataset refuses ``--root`` instead of ignoring it; an .npz whose labels defeat the every-5th-row
test split gets advice that fits it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ddkit.data import load_dataset
from ddkit.data.paired import load_paired_splits
from ddkit.data.paths import inside_root
from ddkit.errors import ConfigError, DataError

DDKIT = str(Path(sys.executable).with_name("ddkit"))


def _png(path: Path, colour: tuple[int, int, int] = (200, 30, 30)) -> str:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), colour).save(path)
    return str(path)


def _data(tmp_path: Path) -> tuple[Path, Path]:
    """A data folder holding three images, and a secret image outside it."""
    data = tmp_path / "data"
    for i in range(3):
        _png(data / f"img{i}.png", (40 * i, 90, 10))
    return data, Path(_png(tmp_path / "secret" / "outside.png", (1, 2, 3)))


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


# ----------------------------------------------------------------- reads outside the data


def _csv(data: Path, bad: str) -> Path:
    rows = ["image,caption", "img0.png,a red one", "img1.png,a green one", f"{bad},a stolen one"]
    (data / "captions.csv").write_text("\n".join(rows) + "\n")
    return data / "captions.csv"


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_a_caption_csv_may_not_name_an_image_outside_its_folder(tmp_path, how):
    data, secret = _data(tmp_path)
    if how == "symlink":
        (data / "link.png").symlink_to(secret)
    bad = {"absolute": str(secret), "dotdot": "../secret/outside.png", "symlink": "link.png"}[how]
    with pytest.raises(DataError, match=r"data row 3.*lies outside the data folder") as err:
        load_paired_splits(_csv(data, bad))
    assert "captions.csv" in _one_line(err)


def test_a_jsonl_and_a_karpathy_file_may_not_leave_their_folder(tmp_path):
    data, secret = _data(tmp_path)
    lines = [{"image": "img0.png", "caption": "a"}, {"image": str(secret), "caption": "b"}]
    (data / "c.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    with pytest.raises(DataError, match=r"c.jsonl: line 2.*lies outside") as err:
        load_paired_splits(data / "c.jsonl")
    _one_line(err)
    images = [
        {"filename": "img0.png", "split": "train", "sentences": [{"raw": "a"}]},
        {"filename": "outside.png", "filepath": "../secret", "split": "test",
         "sentences": [{"raw": "b"}]},
    ]  # fmt: skip
    (data / "dataset_coco.json").write_text(json.dumps({"images": images}))
    with pytest.raises(DataError, match=r"dataset_coco.json: images\[1\].*lies outside") as err:
        load_paired_splits(data / "dataset_coco.json")
    _one_line(err)


def test_a_fifo_named_as_an_image_is_refused_without_opening_it(tmp_path):
    data, _ = _data(tmp_path)
    os.mkfifo(data / "pipe.png")
    with pytest.raises(
        DataError, match=r"data row 3: image '.*pipe.png' is a FIFO, not a regular file"
    ):
        load_paired_splits(_csv(data, "pipe.png"))


def test_image_root_is_the_explicit_way_to_name_images_elsewhere(tmp_path):
    data, _ = _data(tmp_path)
    rows = ["image,caption", "data/img0.png,a", "data/img1.png,b", "secret/outside.png,c"]
    (data / "captions.csv").write_text("\n".join(rows) + "\n")
    splits = load_paired_splits(data / "captions.csv", image_root=tmp_path)  # holds both
    assert splits.train.num_captions + splits.test.num_captions == 3
    csv = _csv(data, "../secret/outside.png")
    with pytest.raises(DataError, match="lies outside"):
        load_paired_splits(csv, image_root=data)


def test_a_saved_dataset_may_not_point_its_images_outside_its_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    _, secret = _data(tmp_path)
    # save_to_disk embeds an Image column's files: save a plain struct, then call it an Image
    struct = {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}
    features = datasets.Features({"image": struct, "caption": datasets.Value("string")})
    rows = {"image": [{"bytes": None, "path": str(secret)}] * 2, "caption": ["a", "b"]}
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "hf"))
    info = tmp_path / "hf" / "dataset_info.json"
    doc = json.loads(info.read_text())
    doc["features"]["image"] = {"_type": "Image"}
    info.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"hf.*row 0.*lies outside the data folder") as err:
        load_paired_splits(tmp_path / "hf")
    _one_line(err)


def test_inside_root_resolves_links_and_refuses_what_leaves_the_root(tmp_path):
    data, secret = _data(tmp_path)
    (data / "ok.png").symlink_to(data / "img0.png")
    assert inside_root(data / "ok.png", data, "here", noun="image") == (data / "img0.png").resolve()
    for path in (secret, data / ".." / "secret" / "outside.png"):
        with pytest.raises(DataError, match=r"^here: image .* lies outside the data folder"):
            inside_root(path, data, "here", noun="image")
    with pytest.raises(DataError, match=r"is a folder, not a regular file"):
        inside_root(data, tmp_path, "here", noun="image")


def test_the_command_line_refuses_an_image_outside_the_data_in_one_line(tmp_path):
    data, secret = _data(tmp_path)
    csv = _csv(data, str(secret))
    argv = [DDKIT, "distill", "--dataset", "captions", "--root", str(csv), "--method",
            "vl-random", "--ipc", "2", "--out", str(tmp_path / "run"), "--quiet"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "lies outside the data folder" in done.stderr
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------- a paired set exported


def _paired_set(learned: bool = False):
    """A paired set of four 8x8 images with one caption each: real caption ids (a coreset), or
    learned text embeddings with LoRS's similarity factors."""
    from ddkit.data.paired import paired_from_arrays
    from ddkit.eval.retrieval import paired_set
    from ddkit.models.text import EncoderSpec

    texts = ["a red square", "a green square", "a blue dot", "two grey lines"]
    rng = np.random.default_rng(0)
    pairs = paired_from_arrays(rng.random((4, 8, 8, 3), dtype=np.float32), [[t] for t in texts])
    tok = pairs.tokenizer
    encoder = EncoderSpec(vocab_size=tok.vocab_size, max_len=tok.max_len, pad_id=tok.pad_id)
    if not learned:
        return paired_set(pairs.images, pairs.spec, encoder, ids=pairs.captions,
                          tokenizer=tok), texts  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    emb, mask = torch.randn(4, tok.max_len, 5, generator=gen), torch.ones(4, tok.max_len)
    sim = (torch.rand(4, generator=gen), torch.randn(4, 2, generator=gen),
           torch.randn(4, 2, generator=gen), 0.5)  # fmt: skip
    return paired_set(pairs.images, pairs.spec, encoder, emb=emb, mask=mask, similarity=sim), texts


def test_a_paired_set_exported_as_hf_keeps_its_captions(tmp_path):
    datasets = pytest.importorskip("datasets")
    syn, texts = _paired_set()
    syn.save(tmp_path / "set")
    argv = [DDKIT, "export", str(tmp_path / "set"), "--to", str(tmp_path / "hf"), "--format", "hf"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    data = datasets.load_from_disk(str(tmp_path / "hf"))
    assert data["caption"] == texts  # the word tokenizer's captions read back as text
    assert np.array_equal(np.array(data["caption_ids"]), syn.extras["text.ids"].numpy())
    assert np.array_equal(data.with_format("numpy")["image"], syn.pixels().numpy())


def test_a_learned_text_set_exported_as_hf_keeps_its_embeddings_and_similarity(tmp_path):
    datasets = pytest.importorskip("datasets")
    syn, _ = _paired_set(learned=True)
    syn.export_hf(tmp_path / "hf")
    rows = datasets.load_from_disk(str(tmp_path / "hf")).with_format("numpy")[:]
    for key in ("text.embeddings", "text.mask", "similarity.diag", "similarity.left"):
        assert np.array_equal(rows[key.replace(".", "_")], syn.extras[key].numpy()), key
    facts = json.loads(
        datasets.load_from_disk(str(tmp_path / "hf")).info.description.rsplit("ddkit: ", 1)[1]
    )
    assert facts["similarity_alpha"] == 0.5


@pytest.mark.parametrize("to", ["out.npz", "out.csv", "pngs"])
def test_formats_without_room_for_captions_refuse_a_paired_set_in_one_line(tmp_path, to):
    syn, _ = _paired_set()
    syn.save(tmp_path / "set")
    argv = [DDKIT, "export", str(tmp_path / "set"), "--to", str(tmp_path / to)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "captions" in done.stderr and "--format hf" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / to).exists()


# ----------------------------------------------------------------- --root of built-in data

BUILT_IN = ["digits", "mnist5k", "breast-cancer", "wine", "digits-tabular", "sbm-small",
            "gunpoint", "colored-mnist5k-c5"]  # fmt: skip


@pytest.mark.parametrize("name", BUILT_IN)
def test_a_built_in_dataset_refuses_a_root_it_would_ignore(tmp_path, name):
    with pytest.raises(ConfigError) as err:
        load_dataset(name, root=str(tmp_path))
    assert _one_line(err) == f"dataset {name!r} is built in and takes no --root; drop --root"


def test_a_caption_benchmark_of_built_in_data_refuses_a_root_too(tmp_path):
    with pytest.raises(ConfigError, match=r"'captioned-digits' .*built in.*drop --root") as err:
        load_paired_splits("captioned-digits", root=str(tmp_path))
    _one_line(err)


def test_datasets_that_read_a_root_still_read_it(tmp_path):
    from ddkit.data.builtin import DATASETS

    x = np.random.default_rng(0).random((20, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(20) % 2)
    assert len(load_dataset("npz", root=str(tmp_path / "d.npz")).train) == 16
    for c in range(2):
        for i in range(3):
            _png(tmp_path / "folder" / f"class{c}" / f"{i}.png", (100 * c, 50, i))
    assert load_dataset("imagefolder", root=str(tmp_path / "folder")).spec.num_classes == 2
    readers = ["mnist", "fashionmnist", "npz", "imagefolder", "webdataset", "hf-disk", "graph"]
    assert all(DATASETS.get(n).builtin is False for n in readers)
    assert all(DATASETS.get(n).builtin is True for n in BUILT_IN)


def test_the_command_line_refuses_root_for_digits_in_one_line(tmp_path):
    argv = [DDKIT, "distill", "--dataset", "digits", "--root", str(tmp_path), "--method",
            "random", "--ipc", "1", "--out", str(tmp_path / "run"), "--quiet"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "dataset 'digits' is built in and takes no --root; drop --root" in done.stderr
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------- .npz labels and their advice


def _npz_error(tmp_path: Path, y: np.ndarray, **test: np.ndarray) -> str:
    x = np.random.default_rng(0).random((len(y), 4, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, **test)
    with pytest.raises(DataError) as err:
        load_dataset("npz", root=str(tmp_path / "d.npz"))
    return _one_line(err)


@pytest.mark.parametrize("period", [5, 10])
def test_labels_that_cycle_with_the_test_split_are_told_to_shuffle_not_remap(tmp_path, period):
    text = _npz_error(tmp_path, np.arange(40) % period)  # labels already 0..K-1
    assert "remap" not in text and "every 5th row" in text, text
    assert "shuffle the rows, or give test arrays" in text, text
    assert text.startswith("class(es) 0" + (", 5" if period == 10 else "") + " have no training")


def test_a_class_only_in_the_given_test_arrays_is_named_as_such(tmp_path):
    y = np.arange(20) % 2
    text = _npz_error(tmp_path, y, x_test=np.zeros((3, 4, 4), np.float32),
                      y_test=np.array([0, 1, 2]))  # fmt: skip
    assert "class(es) 2 have test rows but no training rows" in text and "remap" not in text


def test_labels_that_skip_a_class_say_which_values_they_hold(tmp_path):
    text = _npz_error(tmp_path, np.arange(40) % 4 + 1)  # 1..4
    assert "class(es) 0 have no training rows" in text and "labels found: 1..4" in text, text
    assert "remap the labels to 0..K-1" in text


def test_text_labels_in_an_npz_are_told_how_to_become_class_indices(tmp_path):
    text = _npz_error(tmp_path, np.array(["cat", "dog"] * 10))
    assert "d.npz" in text and "y_train holds text labels ('cat', 'dog')" in text, text
    assert "class_names" in text and "np.unique" in text


def test_labels_both_sparse_and_cyclic_get_both_fixes_in_one_line(tmp_path):
    text = _npz_error(tmp_path, np.array([0, 2, 4, 6, 8] * 8))
    assert text.startswith("class(es) 0 have no training rows: all their rows are every 5th")
    assert text.endswith("class(es) 1, 3, 5, 7 have no rows at all: remap the labels to 0..K-1")
