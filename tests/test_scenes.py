"""The compositional scenes benchmark (issue 86): captions parse back to the scene drawn, the
pixels show it, and generation is a function of the seed."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from ddkit.data import scenes
from ddkit.data.paired import is_paired, load_paired_splits
from ddkit.data.scenes import (
    COLOURS,
    DIGITS,
    GARMENTS,
    REGIONS,
    Group,
    compose_scenes,
    describe,
    parse_caption,
    scene_of,
)
from ddkit.data.tokenize import DEFAULT_MAX_LEN, split_words
from ddkit.errors import ConfigError, DataError

KINDS = DIGITS + GARMENTS
_RGB = scenes.PALETTE[list(scenes._PALETTE_ROWS)].numpy()


def _objects(per_kind: int = 3, kinds: int = len(KINDS)) -> tuple[np.ndarray, torch.Tensor]:
    """Flat grey squares, a grey level per kind (100 + 7 * kind), so a pixel names its kind."""
    labels = torch.arange(kinds).repeat_interleave(per_kind)
    levels = (100 + 7 * labels).numpy().astype(np.uint8)
    return np.broadcast_to(levels[:, None, None], (len(labels), 28, 28)).copy(), labels


def _compose(n: int = 300, seed: int = 0, split: str = "train", per_image: int = 2):
    return compose_scenes(*_objects(), KINDS, n, seed=seed, split=split,
                          captions_per_image=per_image)  # fmt: skip


def test_every_caption_parses_back_to_the_scene_drawn():
    raw = _compose()
    for attrs, captions in zip(raw.attributes, raw.captions):
        scene = scene_of(attrs, KINDS)
        assert 2 <= len(scene) <= scenes.MAX_GROUPS
        assert len(captions) == 2 and captions[0] != captions[1]  # both phrasings
        for caption in captions:
            assert parse_caption(caption) == scene
            assert len(split_words(caption)) <= DEFAULT_MAX_LEN


def test_the_pixels_show_each_region_s_group():
    raw = _compose(n=200)
    half = scenes.CANVAS // 2
    for image, attrs in zip(raw.images.numpy(), raw.attributes):
        found = {g.region: g for g in scene_of(attrs, KINDS)}
        for r, region in enumerate(REGIONS):
            top, left = (r // 2) * half, (r % 2) * half
            patch = image[:, top : top + half, left : left + half]
            lit = patch.max(0) > 0
            g = found.get(region)
            if g is None:
                assert not lit.any()
                continue
            side = 28 if g.size == "large" else 14
            assert lit.sum() == g.count * side * side  # size and count
            level = 100 + 7 * KINDS.index(g.kind)
            colour = np.rint(_RGB[COLOURS.index(g.colour)] * level)
            assert (patch[:, lit] == colour[:, None]).all()  # kind and colour


def test_the_same_seed_draws_the_same_scenes_and_another_seed_others():
    a, b, c = _compose(seed=3), _compose(seed=3), _compose(seed=4)
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert not torch.equal(a.images, c.images) and a.captions != c.captions
    test = _compose(seed=3, split="test")
    assert a.captions != test.captions  # each split draws its own


def test_captions_are_nearly_unique():
    captions = [c[0] for c in _compose(n=2000, per_image=1).captions]
    assert len({frozenset(parse_caption(c)) for c in captions}) > 0.95 * len(captions)


def test_the_longest_caption_fits_the_default_width():
    worst = tuple(Group(r, "pullover", "magenta", "small", 4) for r in REGIONS[:3])
    for place in range(len(scenes.PLACES)):
        caption = describe(worst, [0, 1, 2], place)
        assert len(split_words(caption)) <= DEFAULT_MAX_LEN
        assert parse_caption(caption) == worst


@pytest.mark.parametrize(
    "text",
    ["a large red 7", "two small red 7 at the top left", "a small red 7s at the top left",
     "a small purple 7 at the top left", "a small red 7 at the top left and a large blue 3 at "
     "the top left", "a small red hat at the top left"],
)  # fmt: skip
def test_a_caption_outside_the_grammar_is_refused_in_one_line(text):
    with pytest.raises(DataError) as e:
        parse_caption(text)
    assert "\n" not in str(e.value)


def _fake_objects(variant):
    kinds = 10 * len(variant.bases)
    return {s: _objects(2, kinds) for s in ("train", "test")}


@pytest.fixture
def small_scenes(monkeypatch):
    """The benchmarks over flat squares, 60 train and 30 test scenes each."""
    monkeypatch.setattr(scenes, "_objects", _fake_objects)
    for name, variant in scenes.BENCHMARKS.items():
        small = dataclasses.replace(variant, train=60, test=30)
        monkeypatch.setitem(scenes.BENCHMARKS, name, small)


def test_the_full_benchmark_is_large_enough():
    full = scenes.BENCHMARKS["scenes-mnist-fashion"]
    assert full.bases == ("mnist", "fashionmnist") and (full.train, full.test) >= (20_000, 1_000)


def test_the_scenes_are_registered_paired_datasets(small_scenes):
    assert is_paired("scenes-mnist5k") and is_paired("scenes-mnist-fashion")
    splits = load_paired_splits("scenes-mnist5k", seed=1, captions_per_image=2)
    assert (len(splits.train), len(splits.test)) == (60, 30)
    assert splits.train.images.shape[1:] == (3, 64, 64) and splits.train.num_captions == 120
    for i in (0, 1, 2):
        parsed = parse_caption(splits.train.texts[i])
        assert parsed == scene_of(splits.train.attributes[splits.train.caption_image[i]], DIGITS)
    with pytest.raises(ConfigError, match="captions_per_image"):
        load_paired_splits("scenes-mnist5k", captions_per_image=3)
    with pytest.raises(ConfigError, match="takes no root"):
        load_paired_splits("scenes-mnist5k", root="/tmp")


def test_the_command_line_distils_and_evaluates_scenes(tmp_path, small_scenes, capsys):
    from ddkit.cli import main
    from ddkit.testing import method_test_overrides

    options = [f"--set={k}={v}" for k, v in method_test_overrides("vl-herding").items()]
    run = tmp_path / "run"
    argv = ["distill", "--dataset", "scenes-mnist5k", "--method", "vl-herding", "--ipc", "4",
            "--out", str(run), "--quiet", *options]  # fmt: skip
    assert main(argv) == 0
    argv = ["evaluate", str(run), "--dataset", "scenes-mnist5k", "--runs", "1", "--epochs", "1"]
    assert main(argv) == 0
    assert "random pairs" in capsys.readouterr().out
    assert json.loads((run / "eval.json").read_text())["kind"] == "retrieval"
