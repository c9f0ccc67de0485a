"""Paired (image-caption) data, issue 71: the readers on fabricated miniatures of each layout
(CSV, JSONL, Hugging Face folder, Karpathy COCO / Flickr30k), the tokenizers (built-in word
level, a Hugging Face one from a folder), the synthetic caption benchmark, splits by image and
the one-line refusals of bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ddkit.data import captions as captions_mod
from ddkit.data import load_dataset
from ddkit.data.paired import (
    PairedDataset,
    is_paired,
    load_paired,
    load_paired_splits,
    paired_from_arrays,
)
from ddkit.data.tokenize import (
    HFTokenizer,
    Tokenizer,
    WordTokenizer,
    make_tokenizer,
    split_words,
    tokenizer_from_dict,
)
from ddkit.errors import ConfigError, DataError, DDKitError, FileFormatError

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (90, 90, 90)]


def _pngs(folder: Path, n: int = 6, size: int = 8, sub: str = "") -> list[str]:
    """``n`` solid-colour ``size`` x ``size`` PNGs under ``folder/sub``; their relative paths."""
    from PIL import Image

    (folder / sub).mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        name = f"{sub}/img{i}.png" if sub else f"img{i}.png"
        Image.new("RGB", (size, size), COLOURS[i % len(COLOURS)]).save(folder / name)
        names.append(name)
    return names


def _caps(i: int) -> list[str]:
    return [f"picture number {i}", f"A colour swatch, {i}!"]


def _csv(tmp_path: Path, splits: list[str] | None = None, rows: list[str] | None = None) -> Path:
    names = _pngs(tmp_path)
    head = "image,caption" + (",split" if splits else "")
    if rows is None:
        rows = [
            f"{name},{c}" + (f",{splits[i]}" if splits else "")
            for i, name in enumerate(names)
            for c in (f"picture number {i}", f'"A colour swatch, {i}!"')
        ]
    (tmp_path / "captions.csv").write_text("\n".join([head, *rows]) + "\n")
    return tmp_path / "captions.csv"


def refused(error: type[Exception], match: str, *args, **kw) -> str:
    """``load_paired_splits(*args, **kw)`` raises ``error`` with one line matching ``match``."""
    with pytest.raises(error, match=match) as err:
        load_paired_splits(*args, **kw)
    assert "\n" not in str(err.value), str(err.value)
    return str(err.value)


# ----------------------------------------------------------------- tokenizers


def test_word_tokenizer_lowercases_splits_punctuation_and_round_trips():
    assert split_words("A red 3, on BLACK.") == ["a", "red", "3", ",", "on", "black", "."]
    tok = WordTokenizer.build(["a red 3, on black.", "a blue 7 on red"], max_len=8)
    ids = tok.encode(["A red 7, on blue.", "purple"])
    assert ids.shape == (2, 8) and ids.dtype == torch.long
    assert tok.decode(ids) == ["a red 7 , on blue .", "<unk>"]
    assert (ids[1, 1:] == tok.pad_id).all() and ids[1, 0] == tok.unk_id
    long = tok.encode(["a " * 20])
    assert long.shape == (1, 8) and (long != tok.pad_id).all()  # truncated to max_len


def test_word_vocabulary_is_deterministic_frequency_then_alphabetical():
    texts = ["b a c", "a b", "a", "d"]
    one = WordTokenizer.build(texts)
    assert one.vocab == ("<pad>", "<unk>", "a", "b", "c", "d")
    assert WordTokenizer.build(list(reversed(texts))).vocab == one.vocab
    assert WordTokenizer.build(texts, max_vocab=4).vocab == ("<pad>", "<unk>", "a", "b")
    assert WordTokenizer.build(texts, min_count=2).vocab == ("<pad>", "<unk>", "a", "b")


def test_tokenizers_save_and_restore_through_json(tmp_path):
    tok = WordTokenizer.build(["one two", "two three"], max_len=5)
    back = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
    assert isinstance(back, Tokenizer) and back.vocab == tok.vocab and back.max_len == 5
    assert torch.equal(back.encode(["three two x"]), tok.encode(["three two x"]))
    with pytest.raises(FileFormatError, match="unknown kind"):
        tokenizer_from_dict({"kind": "bpe"})
    with pytest.raises(FileFormatError, match="invalid tokenizer record"):
        tokenizer_from_dict({"kind": "word"})


def _hf_tokenizer_folder(tmp_path: Path) -> Path:
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "a": 2, "red": 3, "square": 4, "blue": 5}
    raw = RawTokenizer(WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="[PAD]", unk_token="[UNK]")
    fast.save_pretrained(tmp_path / "tok")
    return tmp_path / "tok"


def test_hf_tokenizer_from_a_local_folder(tmp_path):
    folder = _hf_tokenizer_folder(tmp_path)
    tok = make_tokenizer(f"hf:{folder}", max_len=6)
    assert isinstance(tok, HFTokenizer) and tok.pad_id == 0 and tok.vocab_size == 6
    ids = tok.encode(["a red square", "blue thing"])
    assert ids.tolist() == [[2, 3, 4, 0, 0, 0], [5, 1, 0, 0, 0, 0]]
    assert tok.decode(ids[:1]) == ["a red square"]
    back = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
    assert torch.equal(back.encode(["blue square"]), tok.encode(["blue square"]))
    # the paired readers take it by name
    splits = load_paired_splits(_csv(tmp_path), tokenizer=f"hf:{folder}", max_len=6)
    assert splits.tokenizer.name == f"hf:{folder}" and splits.train.captions.shape[1] == 6


def test_tokenizer_settings_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="unknown tokenizer 'bpe'"):
        make_tokenizer("bpe", ["a"])
    with pytest.raises(ConfigError, match="is not a folder"):
        make_tokenizer(f"hf:{tmp_path / 'nothing'}")
    with pytest.raises(ConfigError, match=r"max_len .* must be an integer"):
        make_tokenizer("word", ["a"], max_len=0)
    (tmp_path / "empty").mkdir()
    pytest.importorskip("transformers")
    with pytest.raises(FileFormatError, match="cannot load a tokenizer"):
        make_tokenizer(f"hf:{tmp_path / 'empty'}")


# ----------------------------------------------------------------- arrays, the dataset


def test_paired_from_arrays_first_captions_and_subset():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    caps = [["a cat"], ["a dog", "the dog runs"], ["a bird"], ["two cats", "cats", "cat pair"]]
    ds = paired_from_arrays(images, caps, max_len=4, image_ids=["c", "d", "b", "cc"])
    assert isinstance(ds, PairedDataset) and len(ds) == 4 and ds.num_captions == 7
    assert ds.images.shape == (4, 3, 8, 8) and ds.spec.modality == "paired"
    assert ds.spec.num_classes == 0
    assert ds.caption_image.tolist() == [0, 1, 1, 2, 3, 3, 3]
    firsts = ds.tokenizer.decode(ds.first_captions())
    assert firsts == ["a cat", "a dog", "a bird", "two cats"]
    sub = ds.subset(torch.tensor([3, 1]))
    assert sub.image_ids == ("cc", "d") and sub.texts == ("two cats", "cats", "cat pair",
                                                           "a dog", "the dog runs")  # fmt: skip
    assert sub.caption_image.tolist() == [0, 0, 0, 1, 1]
    assert torch.equal(sub.images[1], ds.images[1])
    # a second split, normalised and tokenized as the first
    other = paired_from_arrays(images[:2], [["a cat"], ["an owl"]], tokenizer=ds.tokenizer,
                               spec=ds.spec)  # fmt: skip
    assert torch.equal(other.images, ds.images[:2]) and other.tokenizer is ds.tokenizer
    assert other.captions[1, 1] == ds.tokenizer.unk_id


@pytest.mark.parametrize(
    ("captions", "match"),
    [
        ([["a"], []], r"image '1' has no captions"),
        ([["a"], ["  "]], r"image '1' has an empty caption"),
        ([["a"]], r"give one list of captions per image \(2 images\)"),
    ],
)
def test_paired_from_arrays_refuses_missing_captions(captions, match):
    with pytest.raises(DataError, match=match):
        paired_from_arrays(np.zeros((2, 8, 8), np.uint8), captions)


def test_paired_from_arrays_refuses_repeated_image_ids():
    with pytest.raises(DataError, match="image id 'x' is given twice"):
        paired_from_arrays(np.zeros((2, 8, 8), np.uint8), [["a"], ["b"]], image_ids=["x", "x"])


# ----------------------------------------------------------------- CSV / JSONL


def test_csv_one_row_per_caption_split_by_image(tmp_path):
    splits = load_paired_splits(_csv(tmp_path))  # no split column: every 5th image is test
    assert len(splits.train) == 4 and len(splits.test) == 2
    assert splits.test.image_ids == ("img0.png", "img5.png")
    assert not set(splits.train.image_ids) & set(splits.test.image_ids)
    for part in (splits.train, splits.test):
        assert part.num_captions == 2 * len(part)  # both captions of every image, together
    assert splits.train.texts[:2] == ("picture number 1", "A colour swatch, 1!")
    assert splits.train.images.shape == (4, 3, 8, 8)
    # the images are the files': img1 is pure green
    raw = splits.train.images[0] * torch.tensor(splits.spec.std).view(3, 1, 1)
    raw = raw + torch.tensor(splits.spec.mean).view(3, 1, 1)
    assert torch.allclose(raw[:, 0, 0], torch.tensor([0.0, 1.0, 0.0]), atol=1e-5)
    # the vocabulary is the train split's: test words unseen in train are unknown
    assert "0" not in splits.tokenizer.vocab and "1" in splits.tokenizer.vocab


def test_csv_split_column_and_load_paired_of_one_split(tmp_path):
    file = _csv(tmp_path, splits=["train", "train", "restval", "val", "test", "test"])
    splits = load_paired_splits(file)
    assert splits.train.image_ids == ("img0.png", "img1.png", "img2.png")
    assert splits.val.image_ids == ("img3.png",) and len(splits.test) == 2
    test = load_paired(file, "test")
    assert torch.equal(test.images, splits.test.images) and test.spec == splits.spec
    with pytest.raises(ConfigError, match="unknown split 'dev'; valid: train, val, test"):
        load_paired(file, "dev")


def test_val_fraction_holds_out_whole_images_seeded(tmp_path):
    file = _csv(tmp_path)
    a = load_paired_splits(file, val_fraction=0.25, seed=3)
    b = load_paired_splits(file, val_fraction=0.25, seed=3)
    assert len(a.val) == 1 and a.val.num_captions == 2 and a.val.image_ids == b.val.image_ids
    assert not set(a.val.image_ids) & set(a.train.image_ids)
    refused(ConfigError, r"has a val split already; leave val_fraction at 0",
            _csv(tmp_path, splits=["train", "val"] * 3), val_fraction=0.5)  # fmt: skip
    one = tmp_path / "one.jsonl"
    one.write_text('{"image": "img0.png", "caption": "alone"}\n')
    refused(DataError, r"the train split has no images \(without a test split", one)


def test_jsonl_with_a_list_of_captions_per_image(tmp_path):
    names = _pngs(tmp_path, sub="pics")
    lines = [json.dumps({"image": n, "captions": _caps(i), "split": "test" if i > 3 else "train"})
             for i, n in enumerate(names)]  # fmt: skip
    lines.insert(2, json.dumps({"image": names[0], "caption": "one more for image zero"}))
    file = tmp_path / "pairs.jsonl"
    file.write_text("\n".join(lines) + "\n\n")
    splits = load_paired_splits(file, image_size=4)
    assert splits.train.images.shape == (4, 3, 4, 4) and len(splits.test) == 2
    assert splits.train.num_captions == 9 and splits.train.caption_image.tolist()[:3] == [0, 0, 0]
    assert is_paired(file) and is_paired(tmp_path / "pairs.jsonl")


def test_images_of_different_sizes_need_image_size(tmp_path):
    file = _csv(tmp_path)
    _pngs(tmp_path, n=1, size=10)  # img0.png is now 10x10
    refused(DataError, r"pass image_size to resize", file)
    assert load_paired_splits(file, image_size=(8, 8)).train.images.shape[-2:] == (8, 8)


# ----------------------------------------------------------------- Karpathy


def _karpathy(tmp_path: Path, kind: str = "coco") -> Path:
    if kind == "coco":
        names = _pngs(tmp_path, n=3, sub="train2014") + _pngs(tmp_path, n=3, sub="val2014")
    else:
        names = _pngs(tmp_path, n=6)
    splits = ["train", "train", "restval", "val", "test", "test"]
    images = []
    for i, name in enumerate(names):
        folder, _, file = name.rpartition("/")
        entry = {"filename": file, "imgid": i, "split": splits[i],
                 "sentences": [{"raw": c, "tokens": c.split()} for c in _caps(i)]}  # fmt: skip
        if folder:
            entry["filepath"] = folder
        images.append(entry)
    out = tmp_path / f"dataset_{kind}.json"
    out.write_text(json.dumps({"images": images, "dataset": kind}))
    return out


@pytest.mark.parametrize("kind", ["coco", "flickr30k"])
def test_karpathy_layouts_restval_is_train(tmp_path, kind):
    file = _karpathy(tmp_path, kind)
    splits = load_paired_splits(tmp_path)  # the folder holding the split file
    assert len(splits.train) == 3 and len(splits.val) == 1 and len(splits.test) == 2
    assert splits.train.num_captions == 6 and is_paired(tmp_path) and is_paired(file)
    if kind == "coco":
        assert splits.train.image_ids[0] == "train2014/img0.png"
    by_name = load_paired_splits(kind, root=str(tmp_path))  # --dataset coco --root PATH
    assert torch.equal(by_name.test.images, splits.test.images) and is_paired(kind)
    refused(ConfigError, r"takes no captions_per_image", kind, root=str(tmp_path),
            captions_per_image=2)  # fmt: skip
    refused(ConfigError, r"pass root=PATH", kind)
    # images elsewhere: image_root
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    file.rename(moved / file.name)
    refused(DataError, r"does not exist, nor 5 other\(s\); fix the paths or pass image_root",
            moved / file.name)  # fmt: skip
    assert len(load_paired_splits(moved / file.name, image_root=tmp_path).test) == 2


def test_karpathy_refusals(tmp_path):
    file = _karpathy(tmp_path)
    doc = json.loads(file.read_text())
    doc["images"][1]["split"] = "holdout"
    file.write_text(json.dumps(doc))
    refused(DataError, r"unknown split 'holdout' \(images\[1\]\); valid: train, val, test", file)
    doc["images"][1]["split"] = "train"
    doc["images"][1]["sentences"] = []
    file.write_text(json.dumps(doc))
    refused(DataError, r"image 'train2014/img1.png' has no captions", file)
    doc["images"][1]["sentences"] = [{"raw": ""}]
    file.write_text(json.dumps(doc))
    refused(DataError, r"empty caption \(images\[1\], image 'train2014/img1.png'\)", file)
    doc["images"][1] = dict(doc["images"][4], split="train")  # the test image again, in train
    file.write_text(json.dumps(doc))
    refused(DataError, r"'val2014/img1.png' is in both the train and the test split", file)
    file.write_text(json.dumps({"dataset": "coco"}))
    refused(FileFormatError, r"not a Karpathy split file", file)
    file.write_text("{not json")
    refused(FileFormatError, r"corrupt JSON", file)


# ----------------------------------------------------------------- Hugging Face folder


def test_hf_datasets_folder_with_image_and_text_columns(tmp_path):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    def table(start: int, n: int, one_per_row: bool):
        images = [Image.new("RGB", (8, 8), COLOURS[i % 6]) for i in range(start, start + n)]
        if one_per_row:  # one row per caption, rows of an image share its image_id
            rows = [(im, c, f"id{start + i}") for i, im in enumerate(images)
                    for c in _caps(start + i)]  # fmt: skip
            cols = {"image": [r[0] for r in rows], "caption": [r[1] for r in rows],
                    "image_id": [r[2] for r in rows]}  # fmt: skip
            feats = {"caption": datasets.Value("string"), "image_id": datasets.Value("string")}
        else:
            cols = {"image": images, "captions": [_caps(start + i) for i in range(n)]}
            feats = {"captions": datasets.Sequence(datasets.Value("string"))}
        features = datasets.Features({"image": datasets.Image(), **feats})
        return datasets.Dataset.from_dict(cols, features=features)

    dd = datasets.DatasetDict({"train": table(0, 4, True), "test": table(4, 2, False)})
    dd.save_to_disk(str(tmp_path / "hf"))
    assert is_paired(tmp_path / "hf")
    splits = load_paired_splits(tmp_path / "hf")
    assert splits.train.image_ids == ("id0", "id1", "id2", "id3") and len(splits.test) == 2
    assert splits.train.num_captions == 8 and splits.test.num_captions == 4
    assert splits.test.image_ids == ("test/0", "test/1")
    # one Dataset: the convention split, by image
    table(0, 6, False).save_to_disk(str(tmp_path / "one"))
    one = load_paired_splits(tmp_path / "one")
    assert len(one.train) == 4 and one.test.image_ids == ("0", "5")
    # a split column decides (Flickr30k as hubs save it: one part, a split and an id per row)
    flickr = table(0, 3, False).add_column("split", ["test", "train", "val"])
    flickr = flickr.add_column("img_id", ["a", "b", "c"])
    datasets.DatasetDict({"test": flickr}).save_to_disk(str(tmp_path / "flickr"))
    by_row = load_paired_splits(tmp_path / "flickr")
    assert (by_row.train.image_ids, by_row.val.image_ids, by_row.test.image_ids) == (
        ("b",), ("c",), ("a",))  # fmt: skip
    # no text column
    bare = datasets.Dataset.from_dict({"image": [Image.new("L", (8, 8))], "label": [0]},
                                      features=datasets.Features({"image": datasets.Image(),
                                                                  "label": datasets.Value("int64")}))  # fmt: skip
    bare.save_to_disk(str(tmp_path / "bare"))
    refused(DataError, r"no caption column among \['image', 'label'\]", tmp_path / "bare")


# ----------------------------------------------------------------- refusals


def test_csv_refusals_name_the_problem_and_the_fix(tmp_path):
    names = _pngs(tmp_path)
    _csv(tmp_path, rows=[f"{names[0]},a caption", f"{names[1]},"])
    refused(DataError, r"empty caption \(data row 2, image 'img1.png'\); write the caption",
            tmp_path)  # fmt: skip
    _csv(tmp_path, rows=[f"{names[0]},a caption", "nothing.png,a caption"])
    refused(DataError, r"image file '.*nothing.png' \(image 'nothing.png'\) does not exist",
            tmp_path)  # fmt: skip
    _csv(tmp_path, rows=[])
    refused(DataError, r"needs a header row \(image,caption\) and at least one data row",
            tmp_path)  # fmt: skip
    (tmp_path / "captions.csv").write_text("path,text\nimg0.png,a\n")
    refused(DataError, r"no 'image' column \(columns: path, text\)", tmp_path)
    _csv(tmp_path, splits=["train", "test", "train", "train", "train", "train"],
         rows=[f"{names[0]},a,train", f"{names[0]},b,test"])  # fmt: skip
    refused(DataError, r"image 'img0.png' is in both the train and the test split", tmp_path)
    _csv(tmp_path, splits=["x"], rows=[f"{names[0]},a,later"])
    refused(DataError, r"unknown split 'later' \(data row 1\)", tmp_path)
    _csv(tmp_path, rows=[f"{names[0]},{'word ' * 1000}"])
    refused(DataError, r"caption of 5,000 characters", tmp_path)
    (tmp_path / "captions.csv").write_bytes(b"image,caption\nimg0.png,\xff\xfe\n")
    refused(FileFormatError, r"is not UTF-8 text", tmp_path)


def test_unreadable_files_and_bounds(tmp_path, monkeypatch):
    file = _csv(tmp_path)
    (tmp_path / "img2.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    refused(FileFormatError, r"img2.png: cannot read image", file)
    file = tmp_path / "p.jsonl"
    file.write_text('{"image": "img0.png", "caption": "a"}\n{"image": \n')
    refused(FileFormatError, r"line 2 is not JSON", file)
    file.write_text('{"image": "img0.png", "captions": []}\n')
    refused(DataError, r"line 1: 'captions' must be a non-empty list", file)
    file.write_text('{"image": "img0.png", "captions": ["b", 7]}\n')
    refused(DataError, r"a caption is text, got int '7' \(line 1, image 'img0.png'\)", file)
    file.write_text('{"image": "img0.png", "caption": "a", "captions": ["b"]}\n')
    refused(DataError, r"needs 'caption' \(a string\) or 'captions' \(a list\)", file)
    monkeypatch.setattr(captions_mod, "MAX_CAPTION_FILE_BYTES", 16)
    refused(FileFormatError, r"is larger than the 16 bytes ddkit reads", file)
    refused(ConfigError, r"is not a paired dataset ddkit reads", tmp_path / "img0.png")
    refused(ConfigError, r"no such file or folder", tmp_path / "absent.csv")


# ----------------------------------------------------------------- the caption benchmark


@pytest.fixture(scope="module")
def digits():
    return load_paired_splits("captioned-digits", captions_per_image=3)


def test_caption_benchmark_captions_describe_what_is_painted(digits):
    from ddkit.data.captioned import COLOUR_NAMES

    train = digits.train
    assert train.num_captions == 3 * len(train) and len(digits.test) > 0
    assert train.images.shape[1:] == (3, 8, 8) and train.attribute_names[1] == "colour"
    words = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    for row in (0, 17, 400):
        digit, fg, bg = train.attributes[row].tolist()
        assert fg != bg
        for text in (t for t, i in zip(train.texts, train.caption_image.tolist()) if i == row):
            assert COLOUR_NAMES[fg] in text and COLOUR_NAMES[bg] in text
            assert str(digit) in split_words(text) or words[digit] in split_words(text)
        # the image shows it: the background pixels (corners of an 8x8 digit) are bg's colour
    raw = train.images * torch.tensor(digits.spec.std).view(1, 3, 1, 1)
    raw = raw + torch.tensor(digits.spec.mean).view(1, 3, 1, 1)
    black = train.attributes[:, 2] == 10
    assert raw[black][:, :, 0, 0].abs().max() < 1e-4  # a blank corner on black stays black
    phrasings = {t.split(" ")[0] for t in train.texts}
    assert len(phrasings) > 3  # several phrasings


def test_caption_benchmark_same_seed_same_data_other_seed_other_data(digits):
    again = load_paired_splits("captioned-digits", captions_per_image=3)
    assert torch.equal(again.train.images, digits.train.images)
    assert (
        again.train.texts == digits.train.texts and again.tokenizer.vocab == digits.tokenizer.vocab
    )
    other = load_paired_splits("captioned-digits", captions_per_image=3, seed=1)
    assert not torch.equal(other.train.attributes[:, 1:], digits.train.attributes[:, 1:])
    assert torch.equal(other.train.attributes[:, 0], digits.train.attributes[:, 0])


def test_caption_benchmark_is_a_paired_dataset_the_class_loader_refuses():
    assert is_paired("captioned-digits") and is_paired("captioned-mnist")
    assert not is_paired("digits")
    from ddkit.methods.base import dataset_modality

    assert dataset_modality("captioned-fashionmnist") == "paired"
    with pytest.raises(ConfigError, match="holds image-caption pairs without classes") as err:
        load_dataset("captioned-digits")
    assert "\n" not in str(err.value)
    refused(ConfigError, r"captions_per_image must be an integer in \[1, 8\]", "captioned-digits",
            captions_per_image=9)  # fmt: skip
    refused(ConfigError, r"'captioned-digits' takes no image_size", "captioned-digits",
            image_size=16)  # fmt: skip


def test_every_refusal_here_is_a_ddkit_error(tmp_path):
    """A sweep: garbage in each layout's place ends in a DDKitError, never another exception."""
    _pngs(tmp_path)
    for name, text in {"captions.csv": "image,caption\n\"img0.png,a\n", "x.jsonl": "[1, 2]\n",
                       "dataset_coco.json": '{"images": [3]}'}.items():  # fmt: skip
        (tmp_path / name).write_text(text)
        with pytest.raises(DDKitError):
            load_paired_splits(tmp_path / name)


CLI_REFUSED = {
    "missing image": (
        ["img0.png,a cat", "gone.png,a dog"],
        r"image file .*gone.png.* does not exist",
    ),
    "empty caption": (['img0.png,""', "img1.png,a dog"], r"empty caption \(data row 1"),
    "image in two splits": (
        ["img0.png,a cat,train", "img0.png,a cat again,test"],
        r"image 'img0.png' is in both the train and the test split",
    ),
    "unknown split": (["img0.png,a cat,holdout"], r"unknown split 'holdout' \(data row 1\)"),
}


@pytest.mark.parametrize("case", list(CLI_REFUSED))
def test_command_line_refuses_bad_caption_files_in_one_line(tmp_path, capsys, case):
    """As tests/test_hostile_readers.py: ``ddkit distill --dataset captions --root FILE`` exits 2
    with exactly one ``ddkit: error:`` line naming the problem."""
    from ddkit.cli import main

    rows, match = CLI_REFUSED[case]
    _pngs(tmp_path, n=2)
    head = "image,caption,split" if rows[0].count(",") == 2 else "image,caption"
    (tmp_path / "c.csv").write_text("\n".join([head, *rows]) + "\n")
    argv = ["distill", "--dataset", "captions", "--root", str(tmp_path / "c.csv"), "--method"]
    rc = main([*argv, "vl-random", "--ipc", "1", "--out", str(tmp_path / "run"), "--quiet"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, (rc, lines)
    assert lines[0].startswith("ddkit: error: ") and re.search(match, lines[0]), lines[0]
    assert not (tmp_path / "run").exists()


def test_a_dataset_name_is_never_read_as_a_file_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _csv(tmp_path / "digits")  # a folder 'digits' holding captions.csv
    assert not is_paired("digits") and is_paired("./digits") and is_paired(tmp_path / "digits")


def test_the_paired_modality_and_need():
    ds = paired_from_arrays(np.zeros((2, 8, 8), np.uint8), [["a"], ["b"]], name="pairs")
    assert ds.spec.kind.layout == "(C, H, W)" and "dsa" in ds.spec.kind.augmentations
    ds.spec.check_needs("paired", "method 'vl'")
    with pytest.raises(
        ConfigError,
        match="method 'dsa' distils labelled rows; dataset 'pairs' holds image-caption pairs",
    ):
        ds.spec.check_needs("image", "method 'dsa'")
    digits = load_dataset("digits")
    with pytest.raises(ConfigError, match=r"needs image-caption pairs; .* e.g. captioned-digits"):
        digits.spec.check_needs("paired", "method 'vl'")
    from ddkit.data.spec import DatasetSpec

    assert DatasetSpec.from_dict(ds.spec.to_dict()) == ds.spec


@pytest.mark.parametrize("method", ["dm", "random"])
def test_a_method_for_labelled_rows_refuses_pairs_in_one_line(tmp_path, capsys, method):
    """Pairs have no classes: dm (differentiable rows) and random (a selector) are refused
    before any work, naming the kind of method that fits, and no run folder is left."""
    from ddkit.cli import main

    argv = ["distill", "--dataset", "captioned-digits", "--method", method, "--ipc", "1"]
    rc = main([*argv, "--iterations", "1", "--out", str(tmp_path / "run"), "--quiet"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, (rc, lines)
    assert "holds image-caption pairs without classes" in lines[0]
    assert not (tmp_path / "run").exists()
