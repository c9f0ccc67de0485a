"""RepBlend's collapse diagnostics (issue 86, ddkit.methods.vision_language.diagnostics): the
measures on hand-made embeddings, and vl-mtt recording them (one-hot and LoRS's learned
similarity) in its step metrics and its set's meta, on tiny seeded pairs."""

from __future__ import annotations

import pytest
import torch

from ddkit.errors import DataError
from ddkit.methods import Callback, create_method, load_all
from ddkit.methods.vision_language.diagnostics import (
    COLLAPSE_KEYS,
    collapse_metrics,
    concentration_ratio,
    intra_modal_cosine,
    modality_gap,
)
from ddkit.testing import method_test_overrides, tiny_paired

load_all()
SPLITS = tiny_paired()


def test_identical_embeddings_are_fully_collapsed():
    z = torch.tensor([[3.0, 4.0, 0.0]]).repeat(5, 1) * torch.arange(1, 6.0)[:, None]
    assert intra_modal_cosine(z) == pytest.approx(1.0)
    assert concentration_ratio(z) == pytest.approx(1.0)
    assert modality_gap(z, z) == pytest.approx(0.0)


def test_orthogonal_embeddings_are_spread():
    z = torch.eye(4) * torch.tensor([1.0, 2.0, 3.0, 4.0])[:, None]  # lengths do not count
    assert intra_modal_cosine(z) == pytest.approx(0.0)
    assert concentration_ratio(z) == pytest.approx(1 / 4)
    # opposite directions: cosine -1, yet on one line
    line = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert intra_modal_cosine(line) == pytest.approx(-1.0)
    assert concentration_ratio(line) == pytest.approx(1.0)


def test_the_cosine_is_the_mean_over_distinct_pairs_and_the_gap_the_centroids_distance():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    u = torch.nn.functional.normalize(a.double(), dim=1)
    cos = u @ u.T
    plain = (cos.sum() - cos.diagonal().sum()) / (6 * 5)
    assert intra_modal_cosine(a) == pytest.approx(float(plain))
    v = torch.nn.functional.normalize(b.double(), dim=1)
    assert modality_gap(a, b) == pytest.approx(float((u.mean(0) - v.mean(0)).norm()))
    m = collapse_metrics(a, b)
    assert tuple(m) == COLLAPSE_KEYS and 1 / 5 <= m["image_concentration"] <= 1


def test_too_few_or_mismatched_embeddings_are_refused_in_one_line():
    with pytest.raises(DataError, match="at least 2"):
        intra_modal_cosine(torch.ones(1, 3))
    with pytest.raises(DataError, match="one shape"):
        collapse_metrics(torch.ones(3, 4), torch.ones(4, 4))


@pytest.mark.parametrize("similarity", ["onehot", "learned"])
def test_vl_mtt_records_the_diagnostics_in_its_metrics_and_meta(similarity):
    kw = {**method_test_overrides("vl-mtt"), "similarity": similarity, "diagnose_every": 1}
    method = create_method("vl-mtt", modality="paired", **kw)
    seen: list[dict[str, float]] = []

    class Keep(Callback):
        def on_step_end(self, method, iteration, metrics):
            seen.append(metrics)

    syn = method.fit(SPLITS.train, 4, seed=0, progress=False, callbacks=[Keep()])
    collapse = syn.meta["collapse"]
    assert set(collapse["final"]) == set(COLLAPSE_KEYS)
    history = collapse["history"]
    assert [h["iteration"] for h in history] == [0, 1, 2]  # the start, then every iteration
    assert all(set(COLLAPSE_KEYS) <= set(m) for m in seen)
    assert history[-1]["image_cosine"] == seen[-1]["image_cosine"]
    for h in history:
        assert -1 <= h["text_cosine"] <= 1 and 0 < h["text_concentration"] <= 1
    # the final values are those of the last iteration's set (no step after it)
    assert collapse["final"] == pytest.approx({k: history[-1][k] for k in COLLAPSE_KEYS})


def test_the_diagnostics_leave_the_set_as_it_was():
    base = method_test_overrides("vl-mtt")
    sets = [
        create_method("vl-mtt", modality="paired", **base, diagnose_every=every).fit(
            SPLITS.train, 4, seed=0, progress=False
        )
        for every in (0, 1)
    ]
    assert torch.equal(sets[0].images, sets[1].images)
    assert [h["iteration"] for h in sets[0].meta["collapse"]["history"]] == [0]


def test_a_resumed_run_keeps_the_history(tmp_path):
    kw = {**method_test_overrides("vl-mtt"), "diagnose_every": 1}

    class StopAfterOne(Callback):
        def stop_requested(self):
            return True

    def fit(**options):
        method = create_method("vl-mtt", modality="paired", **kw)
        return method.fit(SPLITS.train, 4, seed=0, progress=False, **options)

    whole = fit()
    fit(checkpoint_dir=tmp_path, callbacks=[StopAfterOne()])
    resumed = fit(checkpoint_dir=tmp_path, resume=True)
    assert resumed.meta["collapse"] == whole.meta["collapse"]
