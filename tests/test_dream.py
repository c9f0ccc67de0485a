"""DREAM (representative real batches, Liu et al. ICCV 2023) as an option of the matching methods:
the representative rows, the refresh interval, seeding, resume, conformance with it on."""

from __future__ import annotations

import json

import pytest
import torch

from ddkit.data.dataset import from_arrays
from ddkit.errors import ConfigError
from ddkit.methods import create_method
from ddkit.methods.clustering import representative_positions
from ddkit.methods.matching import dream
from ddkit.testing import check_method, method_test_overrides, tiny_digits

SIZES = (31, 3, 3, 3)  # one large blob and three small ones per class


def _blobs() -> tuple[torch.Tensor, torch.Tensor]:
    """Per class of 2, four planted blobs of 8x8 images (a bright quadrant each, slight noise),
    sizes :data:`SIZES`, rows shuffled. Returns ``(images (N, 8, 8), blob of each row)``."""
    g = torch.Generator().manual_seed(0)
    blob = torch.cat([torch.full((n,), b) for b, n in enumerate(SIZES)])
    images = torch.zeros((len(blob), 8, 8))
    for b in range(4):
        r, c = divmod(b, 2)
        images[blob == b, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] = 1.0
    images = images + 0.05 * torch.rand(images.shape, generator=g)
    order = torch.randperm(len(blob), generator=g)
    return images[order], blob[order]


def _blob_data():
    """Two classes, each holding the four blobs (the second class's images transposed)."""
    x, blob = _blobs()
    images = torch.cat([x, x.transpose(1, 2)])
    labels = torch.arange(2).repeat_interleave(len(x))
    splits = from_arrays(images, labels, images[:4], labels[:4], name="blobs", num_classes=2)
    return splits.train, torch.cat([blob, blob])


def test_representative_rows_cover_every_planted_cluster():
    x, blob = _blobs()
    points = torch.stack([x.flatten(1), x.flatten(1) + 3.0])  # two groups
    valid = torch.ones(points.shape[:2], dtype=torch.bool)
    for seed in range(5):
        pos = representative_positions(points, valid, 4, 4, torch.Generator().manual_seed(seed))
        for group in range(2):
            assert sorted(blob[pos[group]].tolist()) == [0, 1, 2, 3]
    # random batches of the same size miss a small blob almost every time
    g = torch.Generator().manual_seed(0)
    hits = sum(
        blob[torch.randperm(len(blob), generator=g)[:4]].unique().numel() == 4 for _ in range(50)
    )
    assert hits < 5


def test_representative_rows_go_round_robin_over_clusters():
    x, blob = _blobs()
    points = x.flatten(1)[None]
    valid = torch.ones(points.shape[:2], dtype=torch.bool)
    pos = representative_positions(points, valid, 4, 13, torch.Generator().manual_seed(0))[0]
    assert pos.unique().numel() == 13  # distinct rows
    # rounds 1-3 take one row of every blob, nearest its centre first; the small blobs (three
    # rows each) are then spent, so round 4 is the large blob's
    for r in range(3):
        assert blob[pos[4 * r : 4 * r + 4]].unique().numel() == 4
    assert torch.bincount(blob[pos], minlength=4).tolist() == [4, 3, 3, 3]
    centre = x.flatten(1)[blob == 0].mean(0)
    d = (x.flatten(1)[pos[blob[pos] == 0]] - centre).norm(dim=1)
    assert (d[1:] >= d[:-1]).all()  # within a cluster, nearest first


def test_representative_rows_refuse_a_batch_larger_than_a_group():
    points, valid = torch.zeros((1, 3, 2)), torch.ones((1, 3), dtype=torch.bool)
    with pytest.raises(ConfigError, match="smallest group"):
        representative_positions(points, valid, 2, 4, torch.Generator())


@pytest.mark.parametrize("name", ["dm", "dc"])
def test_dream_batch_of_a_method_holds_every_planted_cluster(name):
    train, blob = _blob_data()
    opts = {**method_test_overrides(name), "model": "convnet2-w8", "real_batch": "dream"}
    opts["batch_real"] = 4
    method = create_method(name, **opts)
    method.start(train, 1, seed=0, iterations=1)
    method.step(0)
    rows = method.state_["dream_rows"]
    assert rows.shape == (2, 4)
    for c in range(2):
        assert (train.labels[rows[c]] == c).all()
        assert sorted(blob[rows[c]].tolist()) == [0, 1, 2, 3]


def test_dream_start_takes_a_row_of_every_planted_cluster():
    train, blob = _blob_data()
    method = create_method("dm", model="convnet2-w8", init="dream", batch_real=4)
    start = method.initial_set(train, 4, seed=0, iterations=1)
    for c in range(2):
        got = start.images[4 * c : 4 * c + 4].flatten(1)
        match = torch.cdist(got, train.images.flatten(1)).argmin(1)  # each is a real row
        assert torch.allclose(train.images[match].flatten(1), got)
        assert sorted(blob[match].tolist()) == [0, 1, 2, 3]


@pytest.mark.parametrize(("name", "iterations", "interval", "expected"), [
    ("dm", 7, 3, [0, 3, 6]),  # one matching step per iteration
    ("dc", 3, 4, [0, 4]),  # outer_loop 2: six matching steps
])  # fmt: skip
def test_the_refresh_interval_is_honoured(monkeypatch, name, iterations, interval, expected):
    calls, seen = [], []
    original = dream.representative_rows

    def counting(*args, **kwargs):
        calls.append(len(seen))
        return original(*args, **kwargs)

    original_indices = dream.RepresentativeBatches.indices

    def recording(self, *args):
        out = original_indices(self, *args)
        seen.append(out.clone())
        return out

    monkeypatch.setattr(dream, "representative_rows", counting)
    monkeypatch.setattr(dream.RepresentativeBatches, "indices", recording)
    opts = {**method_test_overrides(name), "real_batch": "dream", "dream_interval": interval}
    opts["model"] = "convnet2-w8"
    create_method(name, **opts).fit(tiny_digits().train, 2, seed=0, iterations=iterations)
    assert calls == expected
    for step in range(1, len(seen)):  # the rows change only where the clustering was refreshed
        if step not in expected:
            assert torch.equal(seen[step], seen[step - 1])


@pytest.mark.parametrize("name", ["dm", "dc"])
def test_same_seed_gives_the_same_set_with_dream(name):
    opts = {**method_test_overrides(name), "real_batch": "dream", "init": "dream"}
    opts.update(dream_interval=2, model="convnet2-w8")
    train = tiny_digits().train
    a = create_method(name, **opts).fit(train, 2, seed=3, iterations=3)
    b = create_method(name, **opts).fit(train, 2, seed=3, iterations=3)
    assert torch.equal(a.images, b.images)
    rand = create_method(name, **{**opts, "real_batch": "random", "init": "real"})
    assert not torch.equal(a.images, rand.fit(train, 2, seed=3, iterations=3).images)


def test_a_resumed_dream_run_matches_an_uninterrupted_one(tmp_path):
    opts = {**method_test_overrides("dm"), "real_batch": "dream", "dream_interval": 3}
    train = tiny_digits().train
    whole = create_method("dm", **opts).fit(train, 2, seed=0, iterations=5)
    create_method("dm", **opts).fit(
        train, 2, seed=0, iterations=2, checkpoint_dir=tmp_path, checkpoint_every=1
    )
    resumed = create_method("dm", **opts).fit(
        train, 2, seed=0, iterations=5, checkpoint_dir=tmp_path, resume=True
    )
    assert torch.equal(whole.images, resumed.images)


def test_a_checkpoint_from_before_the_dream_options_still_resumes(tmp_path):
    opts = method_test_overrides("dm")
    train = tiny_digits().train
    create_method("dm", **opts).fit(train, 2, seed=0, iterations=1, checkpoint_dir=tmp_path)
    state = json.loads((tmp_path / "state.json").read_text())
    for key in ("real_batch", "dream_interval", "dream_clusters", "dream_kmeans_iterations"):
        del state["config"][key]  # as written before the options existed
    (tmp_path / "state.json").write_text(json.dumps(state))
    create_method("dm", **opts).fit(
        train, 2, seed=0, iterations=2, checkpoint_dir=tmp_path, resume=True
    )
    changed = {**opts, "real_batch": "dream"}
    with pytest.raises(ConfigError, match="different config"):
        create_method("dm", **changed).fit(
            train, 2, seed=0, iterations=3, checkpoint_dir=tmp_path, resume=True
        )


@pytest.mark.parametrize("name", ["dc", "dm"])
def test_conformance_with_dream_on(name):
    opts = {"real_batch": "dream", "init": "dream", "dream_interval": 2, "model": "convnet2-w8"}
    check_method(name, overrides=opts)


@pytest.mark.parametrize(("option", "value", "message"), [
    ("real_batch", "kmeans", "real_batch must be 'random' or 'dream'"),
    ("dream_interval", 0, "dream_interval must be >= 1"),
    ("dream_clusters", 0, "dream_clusters must be >= 1"),
    ("init", "centres", "init must be"),
])  # fmt: skip
def test_bad_dream_options_are_refused_in_one_line(option, value, message):
    with pytest.raises(ConfigError, match=message):
        create_method("dsa", **{option: value})
