"""Soft labels under a byte budget (issue 69): encodings, their bytes, their decoding bounds,
FKD-style regeneration from stored crops, and evaluation of budgeted sets."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from ddkit.data.label_budget import LabelBudget, decode_probs, parse_label_budget
from ddkit.data.synthetic import TENSOR_FILE, SyntheticSet
from ddkit.errors import ConfigError, DataError
from ddkit.eval import evaluate
from ddkit.eval.relabel import decompress_view_labels, encode_labels, regenerate_labels, relabel
from ddkit.methods import create_method
from ddkit.testing import method_test_overrides, tiny_digits

MODES = ["full", "fp16", "int8", "topk:3", "topk:3+fp16", "topk:3+int8", "regen"]
N, V = 12, 3


@pytest.fixture(scope="module")
def tiny():
    return tiny_digits()


@pytest.fixture(scope="module")
def teacher(saved_tiny_teacher):
    return saved_tiny_teacher


@pytest.fixture(scope="module")
def base(tiny, teacher):
    """Twelve real images with hard labels that name the saved teacher."""
    syn = SyntheticSet.from_real(tiny.train, torch.arange(N))
    syn.meta["teacher_dir"] = str(teacher[1])
    return syn


def _relabel(base, net, budget, views, seed=1):
    g = torch.Generator().manual_seed(seed) if views else None
    return relabel(base, net, 2.0, views=views, generator=g, budget=budget)


def _random_probs(k: int = 10, rows: int = 400) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    sharpness = torch.logspace(-1, 1.5, rows).unsqueeze(1)  # flat to nearly one-hot rows
    return torch.softmax(torch.randn(rows, k, generator=g) * sharpness, dim=1)


# ----------------------------------------------------------------------------- spellings
@pytest.mark.parametrize("text", [*MODES, "topk:12", "topk:1+int8"])
def test_spellings_parse_to_themselves(text):
    assert parse_label_budget(text).spelling == text


@pytest.mark.parametrize(
    "text", ["top5", "soft:top5", "topk:0", "topk:x", "topk:", "fp8", "topk:3+fp32", "full+fp16"]
)
def test_bad_spellings_are_refused_in_one_line(text):
    with pytest.raises(ConfigError) as e:
        parse_label_budget(text)
    assert "\n" not in str(e.value) and repr(text) in str(e.value)


# ----------------------------------------------------------------------------- round trips, bytes
@pytest.mark.parametrize("views", [0, V])
@pytest.mark.parametrize("budget", MODES)
def test_each_budget_round_trips_and_counts_the_bytes_it_stores(
    base, teacher, tmp_path, budget, views
):
    syn = _relabel(base, teacher[0], budget, views)
    back = SyntheticSet.load(syn.save(tmp_path / "set"))
    assert torch.equal(back.labels, syn.labels) and back.meta["label_budget"] == budget
    assert sorted(back.extras) == sorted(syn.extras)
    assert all(torch.equal(back.extras[k], syn.extras[k]) for k in syn.extras)
    assert back.storage_bytes() == syn.storage_bytes()
    # the label bytes counted are those of the label tensors in the file
    with safe_open(str(tmp_path / "set" / TENSOR_FILE), "pt") as f:
        stored = {k: f.get_tensor(k) for k in f.keys()}
    label_keys = [
        k for k in stored if k == "labels" or k.startswith(("extra.label.", "extra.view_"))
    ]
    nbytes = sum(stored[k].numel() * stored[k].element_size() for k in label_keys)
    assert syn.storage_bytes()["labels"] == nbytes > 0
    assert syn.storage_bytes()["images"] == stored["images"].numel() * 4
    # ... and what the budget says a row costs
    k = syn.spec.num_classes
    b = parse_label_budget(budget)
    kept = k if b.topk is None else b.topk
    value = {"fp32": 4, "fp16": 2, "int8": 1}[b.precision]
    row = kept * value + (2 * kept if b.topk else 0) + (4 if b.precision == "int8" else 0)
    params = N * V * (4 * 2 + 1)  # int16 box x4 + uint8 flip per view
    if budget == "regen":
        expected = 8 * N + (params if views else 0)
    elif budget == "full" and not views:
        expected = 4 * N * k
    else:
        expected = row * N * (V if views else 1) + (params if views else 0)
    assert nbytes == expected


def test_topk_with_every_class_is_the_full_labels(base, teacher):
    k = base.spec.num_classes
    for views in (0, V):
        for precision in ("", "+fp16", "+int8"):
            full = _relabel(base, teacher[0], precision[1:] or "full", views)
            topk = _relabel(base, teacher[0], f"topk:{k}{precision}", views)
            assert torch.equal(topk.labels, full.labels)
            assert all(torch.equal(topk.extras[x], full.extras[x]) for x in full.extras)
            assert sorted(topk.extras) == sorted(full.extras)
    per_image = _relabel(base, teacher[0], "full", 0)
    torch.testing.assert_close(per_image.labels, relabel(base, teacher[0], 2.0).labels)


def test_topk_keeps_the_largest_values_and_spreads_the_rest_uniformly():
    p = _random_probs()
    enc = LabelBudget(3).encode(p)
    d = decode_probs(enc, 10)
    torch.testing.assert_close(d.sum(1), torch.ones(len(p)))
    top, idx = p.topk(3, dim=1)
    assert torch.equal(enc["indices"].long(), idx)
    torch.testing.assert_close(d.gather(1, idx), top, atol=1e-6, rtol=0)
    rest = d.scatter(1, idx, float("nan"))
    others = rest[~rest.isnan()].view(len(p), 7)
    assert torch.equal(others, others[:, :1].expand(-1, 7))  # one value for every other class
    torch.testing.assert_close(others[:, 0], (1 - top.sum(1)) / 7, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- quantisation bounds
def test_fp16_decodes_within_its_rounding_bound():
    """float16 rounding: |h - p| <= u p + eta (u = 2^-11 unit roundoff, eta = 2^-25 half the
    subnormal spacing). Renormalising by S = 1 + E, |E| <= u + K eta, gives
    |d - p| = |e - p E| / (1 + E) <= (u p + eta + p (u + K eta)) / (1 - u - K eta)."""
    p = _random_probs()
    k = p.shape[1]
    d = decode_probs(LabelBudget(precision="fp16").encode(p), k)
    u, eta = 2.0**-11, 2.0**-25
    big_e = u + k * eta
    bound = (u * p + eta + p * big_e) / (1 - big_e) + 4 * torch.finfo(torch.float32).eps
    assert ((d - p).abs() <= bound).all()
    assert (d >= 0).all() and torch.allclose(d.sum(1), torch.ones(len(p)), atol=1e-6)
    assert ((d - p).abs() > 0).any()  # the bound is met by a lossy code, not an exact one


def test_int8_decodes_within_its_quantisation_step():
    """Codes q = round(p / s), s = max(p) / 255: |q s - p| <= s / 2 per class. Renormalising by
    S = 1 + E, |E| <= K s / 2, gives |d - p| <= (s / 2) (1 + K p) / (1 - K s / 2)."""
    p = _random_probs()
    k = p.shape[1]
    enc = LabelBudget(precision="int8").encode(p)
    assert enc["values"].dtype == torch.uint8 and (enc["values"].amax(1) == 255).all()
    d = decode_probs(enc, k)
    s = p.amax(1, keepdim=True) / 255
    bound = (s / 2) * (1 + k * p) / (1 - k * s / 2) + 4 * torch.finfo(torch.float32).eps
    assert ((d - p).abs() <= bound).all()
    assert (d >= 0).all() and torch.allclose(d.sum(1), torch.ones(len(p)), atol=1e-6)
    loose = (s / 4) * (1 + k * p) / (1 - k * s / 2)  # half the bound is broken somewhere
    assert ((d - p).abs() > loose).any()


# ----------------------------------------------------------------------------- regeneration
@pytest.mark.parametrize("views", [0, V])
def test_regenerated_labels_equal_the_stored_ones(base, teacher, views):
    stored = _relabel(base, teacher[0], "full", views)
    regen = _relabel(base, teacher[0], "regen", views)
    assert not regen.soft and torch.equal(regen.labels, base.labels)
    assert "teacher_dir" in regen.meta and "teacher" in regen.meta["label_storage"]
    again = regenerate_labels(regen)  # the teacher recorded in meta['teacher_dir']
    assert torch.equal(again.labels, stored.labels)
    for key in stored.extras:
        assert torch.equal(again.extras[key], stored.extras[key])
    with pytest.raises(DataError, match="stores its labels"):
        regenerate_labels(stored)


def test_regen_bytes_and_the_teacher_in_the_storage_report(base, teacher):
    from ddkit.eval.accounting import storage_report

    regen = _relabel(base, teacher[0], "regen", V)
    r = storage_report(regen, train_size_bytes=10**6, protocol="soft")
    weights = (teacher[1] / "teacher.safetensors").stat().st_size
    assert r["teacher"] == weights and r["labels"] == 8 * N and r["label_budget"] == "regen"
    assert r["view_labels"] == regen.storage_bytes()["labels"] - 8 * N
    from ddkit.eval.protocol import get_protocol

    hard = get_protocol("soft").with_(name="soft-hard", targets="hard")
    r = storage_report(regen, train_size_bytes=10**6, protocol=hard)
    assert r["teacher"] == 0 and r["labels"] == 8 * N and r["view_labels"] == 0
    top = _relabel(base, teacher[0], "topk:2+fp16", 0)
    r = storage_report(top, train_size_bytes=10**6, protocol="soft")
    assert r["labels"] == N * 2 * (2 + 2) and r["view_labels"] == 0 and r["teacher"] == 0


# ----------------------------------------------------------------------------- evaluation
def test_budgeted_sets_evaluate_as_their_decoded_labels(base, teacher, tiny, tmp_path):
    kw = {"runs": 1, "epochs": 2, "seed": 0, "progress": False}
    for budget, views in (("int8", 0), ("topk:2+fp16", V)):
        syn = SyntheticSet.load(_relabel(base, teacher[0], budget, views).save(tmp_path / budget))
        got = evaluate(syn, tiny.test, "soft", **kw).results[0].accuracies
        extras = {}
        if views:  # the same views, their decoded labels stored in full
            extras = {k: syn.extras[k].clone() for k in ("view_boxes", "view_flip")}
            extras["view_values"] = decompress_view_labels(syn)
        same = SyntheticSet(syn.images, syn.labels.clone(), syn.spec, extras=extras)
        assert got == evaluate(same, tiny.test, "soft", **kw).results[0].accuracies
    regen = _relabel(base, teacher[0], "regen", V)
    full = _relabel(base, teacher[0], "full", V)
    assert (
        evaluate(regenerate_labels(regen), tiny.test, "soft", **kw).results[0].accuracies
        == evaluate(full, tiny.test, "soft", **kw).results[0].accuracies
    )


def test_labels_that_no_longer_match_their_encoding_are_not_saved(base, teacher, tmp_path):
    syn = _relabel(base, teacher[0], "fp16", 0)
    syn.labels = torch.roll(syn.labels, 1, dims=1)
    with pytest.raises(DataError, match="label budget encodes"):
        syn.save(tmp_path / "set")


def test_encode_labels_applies_a_budget_to_any_soft_set(base, teacher):
    soft = relabel(base, teacher[0], 2.0)
    enc = encode_labels(soft, "topk:2")
    assert enc.meta["label_budget"] == "topk:2" and enc.storage_bytes()["labels"] == N * 2 * 6
    with pytest.raises(DataError, match="probability vectors"):
        encode_labels(base, "fp16")
    with pytest.raises(ConfigError, match="regen"):
        encode_labels(soft, "regen")


# ----------------------------------------------------------------------------- methods
def test_decoupled_methods_refuse_bad_budgets_in_one_line():
    for kw, match in (
        ({"label_budget": "top5"}, "not understood"),
        ({"label_budget": "fp16", "labels": "hard"}, "needs soft labels"),
        ({"label_budget": "topk:2", "labels": "views", "label_topk": 2}, "not label_topk too"),
    ):
        with pytest.raises(ConfigError, match=match) as e:
            create_method("sre2l", **kw)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("budget,labels", [("int8", "soft"), ("regen", "views")])
def test_rded_stores_its_labels_under_the_budget(tiny, teacher, tmp_path, budget, labels):
    cfg = {**method_test_overrides("rded"), "teacher": str(teacher[1]), "labels": labels}
    syn = create_method("rded", **cfg, label_budget=budget).fit(tiny.train, 2, seed=0)
    assert syn.meta["label_budget"] == budget
    back = SyntheticSet.load(syn.save(tmp_path / "set"))
    assert torch.equal(back.labels, syn.labels)
    if budget == "regen":
        assert not syn.soft and regenerate_labels(back).soft
    else:
        plain = create_method("rded", **cfg).fit(tiny.train, 2, seed=0)
        d = (syn.labels - plain.labels).abs()
        assert (d <= plain.labels.amax(1, keepdim=True) / 255 * 6).all()  # int8 step, 10 classes
        assert syn.storage_bytes()["labels"] == len(syn) * (10 + 4)


def test_sre2l_stores_top_k_view_labels(tiny, teacher):
    cfg = {**method_test_overrides("sre2l"), "teacher": str(teacher[1]), "labels": "views"}
    cfg |= {"label_views": 2, "iterations": 1}
    top = create_method("sre2l", **cfg, label_budget="topk:2").fit(tiny.train, 1, seed=0)
    full = create_method("sre2l", **cfg, label_budget="full").fit(tiny.train, 1, seed=0)
    assert torch.equal(top.images, full.images)
    assert top.storage_bytes()["labels"] == 10 * 2 * (2 * 6 + 9)  # 2 views: top-2 + box + flip
    views = decompress_view_labels(full)
    top2, idx = views.topk(2, dim=-1)
    assert torch.equal(top.extras["view_indices"].long(), idx)
    assert torch.equal(top.extras["view_values"], top2)
