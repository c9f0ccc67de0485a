"""Label pruning and stored logits in the label-budget vocabulary (issue 85): LPLD's random
pruning of per-view labels (``prune:R``) and LPQLD's top-k logits (``logits:K``), their bytes,
their seeds, their round trip, their refusals and their evaluation."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from ddkit.data.label_budget import decode_probs, lpqld_temperature, parse_label_budget
from ddkit.data.synthetic import TENSOR_FILE, SyntheticSet
from ddkit.errors import ConfigError
from ddkit.eval import evaluate
from ddkit.eval.prepare import training_data
from ddkit.eval.protocol import get_protocol
from ddkit.eval.relabel import (
    encode_labels,
    expand_views,
    regenerate_labels,
    relabel,
    view_label_bytes,
)
from ddkit.testing import tiny_digits

N, V = 10, 6
NEW = [
    "prune:2",
    "prune:3+fp16",
    "prune:3+int8",
    "prune:2+topk:3",
    "prune:2+topk:3+fp16",
    "prune:6+topk:2+int8",
    "logits:3",
    "logits:4+fp16",
    "prune:3+logits:4+fp16",
]


@pytest.fixture(scope="module")
def tiny():
    return tiny_digits()


@pytest.fixture(scope="module")
def teacher(saved_tiny_teacher):
    return saved_tiny_teacher


@pytest.fixture(scope="module")
def base(tiny, teacher):
    syn = SyntheticSet.from_real(tiny.train, torch.arange(N))
    syn.meta["teacher_dir"] = str(teacher[1])
    return syn


def _relabel(base, net, budget, views=V, seed=1):
    g = torch.Generator().manual_seed(seed) if views else None
    return relabel(base, net, 2.0, views=views, generator=g, budget=budget)


# ----------------------------------------------------------------------------- spellings
@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        *((s, s) for s in NEW),
        ("topk:5+prune:2", "prune:2+topk:5"),
        ("int8+prune:4", "prune:4+int8"),
        ("fp16+logits:50+prune:10", "prune:10+logits:50+fp16"),
        ("full+prune:3", "prune:3"),
        ("prune:1", "full"),
    ],
)
def test_spellings_parse_to_their_canonical_form(text, canonical):
    assert parse_label_budget(text).spelling == canonical
    assert parse_label_budget(canonical).spelling == canonical


@pytest.mark.parametrize(
    "text",
    [
        "prune:0",
        "prune:-2",
        "prune:2.5",
        "prune",
        "prune:2+prune:3",
        "regen+prune:2",
        "topk:3+logits:3",
        "logits:3+int8",
        "logits:0",
        "fp16+int8",
    ],
)
def test_impossible_spellings_are_refused_in_one_line(text):
    with pytest.raises(ConfigError) as e:
        parse_label_budget(text)
    assert "\n" not in str(e.value) and repr(text) in str(e.value)


def test_impossible_prunes_for_the_views_are_refused_in_one_line(base, teacher):
    cases = [
        (lambda: _relabel(base, teacher[0], f"prune:{V + 1}"), "none"),  # R larger than V
        (lambda: _relabel(base, teacher[0], "prune:2", views=0), "per-view"),
        (lambda: encode_labels(relabel(base, teacher[0], 2.0), "prune:2"), "views"),
        (lambda: encode_labels(relabel(base, teacher[0], 2.0), "logits:3"), "views"),
        (lambda: view_label_bytes(f"prune:{V + 1}", N, V, 10), "none"),
    ]
    for make, match in cases:
        with pytest.raises(ConfigError, match=match) as e:
            make()
        assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- bytes, round trip
@pytest.mark.parametrize("budget", NEW)
def test_new_budgets_round_trip_and_count_exactly_the_kept_views(base, teacher, tmp_path, budget):
    syn = _relabel(base, teacher[0], budget)
    back = SyntheticSet.load(syn.save(tmp_path / "set"))
    assert torch.equal(back.labels, syn.labels)
    assert sorted(back.extras) == sorted(syn.extras)
    assert all(torch.equal(back.extras[k], syn.extras[k]) for k in syn.extras)
    assert back.storage_bytes() == syn.storage_bytes()
    b = parse_label_budget(budget)
    kept = V // (b.prune or 1)
    assert syn.extras["view_boxes"].shape[:2] == (N, kept)
    assert syn.meta["label_views"] == V and syn.meta.get("label_views_kept", V) == kept
    with safe_open(str(tmp_path / "set" / TENSOR_FILE), "pt") as f:
        stored = {k: f.get_tensor(k) for k in f.keys()}
    views = {k: t for k, t in stored.items() if k.startswith("extra.view_")}
    in_file = sum(t.numel() * t.element_size() for t in views.values())
    # every stored per-view tensor is one row per kept view of each image
    assert all(t.shape[:2] == (N, kept) for t in views.values())
    assert "labels" not in stored  # decoded from the views, not stored twice
    assert syn.storage_bytes()["labels"] == in_file
    assert view_label_bytes(budget, N, V, syn.spec.num_classes) == in_file
    # and the bytes follow from the kept rows: (values, indices, scale) per label + box + flip
    k = syn.spec.num_classes
    width = k if b.topk is None or b.topk >= k else b.topk
    value = {"fp32": 4, "fp16": 2, "int8": 1}[b.precision]
    per_view = width * value + (2 * width if width < k else 0) + (4 if b.precision == "int8" else 0)
    assert in_file == N * kept * (per_view + 4 * 2 + 1)


def test_bytes_from_shapes_need_no_memory_at_imagenet_scale():
    # 50,000 images x 300 views x 1,000 classes: 60 GB as float32, counted on the meta device
    views = 50_000 * 300
    assert view_label_bytes("fp16", 50_000, 300, 1000) == views * (1000 * 2 + 9)
    assert view_label_bytes("prune:10+logits:50+fp16", 50_000, 300, 1000) == (
        views // 10 * (50 * 2 + 50 * 2 + 9)
    )
    assert view_label_bytes("regen", 50_000, 300, 1000) == views * 9


# ----------------------------------------------------------------------------- seeds
def test_same_seed_keeps_the_same_views_of_the_same_draws(base, teacher):
    full = _relabel(base, teacher[0], "full")
    a = _relabel(base, teacher[0], "prune:3")
    b = _relabel(base, teacher[0], "prune:3")
    assert all(torch.equal(a.extras[k], b.extras[k]) for k in a.extras)
    assert torch.equal(a.labels, b.labels)

    # the kept views are views the unpruned set drew, with their labels
    def view(s, i, j):
        return (
            s.extras["view_boxes"][i, j],
            s.extras["view_flip"][i, j],
            s.extras["view_values"][i, j],
        )

    for i in range(N):
        for j in range(V // 3):
            box, flip, value = view(a, i, j)
            assert any(
                torch.equal(box, b2) and torch.equal(flip, f2) and torch.allclose(value, v2)
                for b2, f2, v2 in (view(full, i, r) for r in range(V))
            )
    other = _relabel(base, teacher[0], "prune:3", seed=2)
    assert not torch.equal(other.extras["view_boxes"], a.extras["view_boxes"])


def test_prune_views_keeps_distinct_sorted_views_per_image():
    b = parse_label_budget("prune:4")
    kept = b.prune_views(50, 12, torch.Generator().manual_seed(0))
    assert kept.shape == (50, 3)
    assert (kept.diff(dim=1) > 0).all() and kept.min() >= 0 and kept.max() < 12
    again = b.prune_views(50, 12, torch.Generator().manual_seed(0))
    assert torch.equal(kept, again)
    assert len({tuple(r) for r in kept.tolist()}) > 1  # each image draws its own


# ----------------------------------------------------------------------------- regen
def test_regeneration_and_pruning_do_not_combine(base, teacher):
    regen = _relabel(base, teacher[0], "regen")
    for budget in ("prune:2", "logits:3"):
        with pytest.raises(ConfigError, match="regenerate_labels") as e:
            regenerate_labels(regen, teacher[0], budget=budget)
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="fewer views"):
        _relabel(base, teacher[0], "prune:2+regen")
    # regen of V / R views is what pruning regenerated labels amounts to
    fewer = _relabel(base, teacher[0], "regen", views=V // 2)
    assert fewer.storage_bytes()["labels"] == 8 * N + view_label_bytes(
        "regen", N, V // 2, base.spec.num_classes
    )


# ----------------------------------------------------------------------------- logits
def test_logits_decode_as_the_softmax_of_the_kept_classes():
    z = torch.randn(7, 10, generator=torch.Generator().manual_seed(0))
    b = parse_label_budget("logits:3")
    parts = b.encode(z)
    p = decode_probs(parts, 10, temperature=2.0)
    top, idx = z.topk(3, dim=1)
    expected = torch.zeros(7, 10).scatter_(1, idx, torch.softmax(top / 2.0, dim=1))
    torch.testing.assert_close(p, expected)
    assert ((p > 0).sum(1) == 3).all()
    full = decode_probs(parse_label_budget("logits").encode(z), 10, temperature=2.0)
    torch.testing.assert_close(full, torch.softmax(z / 2.0, dim=1))


def test_logits_of_every_class_are_the_teachers_soft_labels(base, teacher):
    k = base.spec.num_classes
    logits = _relabel(base, teacher[0], f"logits:{k}")
    full = _relabel(base, teacher[0], "full")
    torch.testing.assert_close(logits.labels, full.labels)
    assert logits.meta["label_budget"] == "logits"


def test_lpqld_temperature_steps_down_to_its_floor():
    temps = [lpqld_temperature(e, 300) for e in range(300)]
    assert temps[0] == 20.0 and temps[29] == 20.0
    assert temps[30] == pytest.approx(14.0)
    assert temps[-1] == 2.0 and all(a >= b for a, b in zip(temps, temps[1:]))
    with pytest.raises(ConfigError):
        lpqld_temperature(0, 0)


# ----------------------------------------------------------------------------- evaluation
def test_a_pruned_set_trains_on_its_kept_views_only(base, teacher, tiny, tmp_path):
    syn = SyntheticSet.load(_relabel(base, teacher[0], "prune:3").save(tmp_path / "p"))
    data = training_data(syn, get_protocol("soft"))
    kept = expand_views(syn)
    assert len(data.images) == N * V and data.meta["view_reuse"] == 3.0
    # every row is a kept view with its own stored label, each kept view reused 3 times
    rows = torch.arange(N * V) % len(kept)
    assert torch.equal(data.images, kept.images[rows])
    assert torch.equal(data.targets, kept.labels[rows])
    kw = {"runs": 1, "epochs": 2, "seed": 0, "progress": False}
    report = evaluate(syn, tiny.test, "soft", **kw)
    assert 0.0 <= report.results[0].accuracies[0] <= 1.0
    again = evaluate(syn, tiny.test, "soft", **kw)
    assert report.results[0].accuracies == again.results[0].accuracies


@pytest.mark.parametrize(("budget", "kept"), [("full", V), ("prune:3", V // 3)])
def test_one_view_per_epoch_walks_view_e_mod_v_of_every_image(base, teacher, budget, kept):
    from ddkit.eval.train import TrainRecipe, sgd_train
    from ddkit.models import build_network

    syn = _relabel(base, teacher[0], budget)
    data = training_data(syn, get_protocol("soft-fkd"))
    assert data.rows_per_epoch == N and data.meta["views_per_epoch"] == 1
    walked: dict[int, list[int]] = {}
    recipe = TrainRecipe(epochs=2 * kept + 1, lr=0.01, batch_size=4)
    net = build_network("mlp", syn.spec, 0)
    sgd_train(
        net, data.images, data.targets, recipe, generator=torch.Generator().manual_seed(0),
        on_batch=lambda e, idx, _logits: walked.setdefault(e, []).extend(idx.tolist()),
        rows_at=data.rows_at,
    )  # fmt: skip
    for epoch, rows in walked.items():  # each image once, by its view (epoch mod kept views)
        assert sorted(rows) == [i * kept + epoch % kept for i in range(N)]


def test_an_unknown_view_order_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="unknown views 'some'; valid: all, one"):
        get_protocol("soft").with_(views="some")


def test_an_lpqld_set_evaluates(base, teacher, tiny):
    syn = _relabel(base, teacher[0], "prune:2+logits:4+fp16")
    report = evaluate(syn, tiny.test, "soft", runs=1, epochs=1, seed=0, progress=False)
    assert len(report.results[0].accuracies) == 1


# ----------------------------------------------------------------------------- methods
def test_rded_stores_pruned_view_labels(tiny, teacher, tmp_path):
    from ddkit.methods import create_method
    from ddkit.testing import method_test_overrides

    cfg = {**method_test_overrides("rded"), "teacher": str(teacher[1]), "labels": "views"}
    cfg |= {"label_views": 4}
    syn = create_method("rded", **cfg, label_budget="prune:2+fp16").fit(tiny.train, 1, seed=0)
    assert syn.meta["label_budget"] == "prune:2+fp16" and syn.meta["label_views_kept"] == 2
    k = syn.spec.num_classes
    assert syn.storage_bytes()["labels"] == view_label_bytes("prune:2+fp16", len(syn), 4, k)
    back = SyntheticSet.load(syn.save(tmp_path / "set"))
    assert torch.equal(back.labels, syn.labels)


@pytest.mark.parametrize("budget", ["logits:5+fp16", "prune:2+logits:5"])
def test_random_baselines_are_relabelled_per_view_like_a_logits_set(base, teacher, tiny, budget):
    from ddkit.eval.accounting import _relabel_like
    from ddkit.eval.relabel import has_view_labels

    syn = _relabel(base, teacher[0], budget)
    real = SyntheticSet.from_real(tiny.train, torch.arange(N, 2 * N))
    (like,) = _relabel_like(syn, [real], teacher[0], seed=0)
    assert has_view_labels(like) and like.meta["label_budget"] == syn.meta["label_budget"]
