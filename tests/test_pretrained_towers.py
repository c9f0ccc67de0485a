"""Pretrained frozen towers (issue 86, ddkit.eval.towers): cached once per data and recipe, the
same weights from the same seed, frozen under retrieval training and vl-mtt, one-line
refusals; on tiny composed scenes (flat grey squares as objects)."""

from __future__ import annotations

import pytest
import torch

from ddkit.errors import ConfigError, DataError
from ddkit.eval import towers as towers_module
from ddkit.eval.retrieval import RetrievalRecipe, evaluate_retrieval, split_pairs, train_pairs
from ddkit.eval.towers import (
    TowerRecipe,
    cached_towers,
    freeze_towers,
    pretrain_towers,
    towers_of,
)
from ddkit.methods import create_method, load_all
from ddkit.models.text import EncoderSpec, TrainableView, build_dual_encoder
from ddkit.testing import method_test_overrides, tiny_paired
from ddkit.testing_data import tiny_scenes

load_all()
RECIPE = TowerRecipe(epochs=1, batch=32)
SPLITS = tiny_scenes()


def _spec(train=SPLITS.train, **kw) -> EncoderSpec:
    tok = train.tokenizer
    sizes = {"image": "convnet2-w8", "dim": 8, "token_dim": 8, "width": 16, **kw}
    return EncoderSpec(**sizes, vocab_size=tok.vocab_size, max_len=tok.max_len, pad_id=tok.pad_id)  # fmt: skip


def _tower_params(model) -> dict[str, torch.Tensor]:
    return {
        n: p.detach().clone()
        for n, p in model.named_parameters()
        if not n.startswith(("image_head", "text_head"))
    }


def test_a_second_call_reads_the_cache_without_pretraining(tmp_path, monkeypatch):
    first, path = cached_towers(SPLITS.train, _spec(), RECIPE, cache_root=tmp_path)
    assert path.is_file() and path.parent == tmp_path

    def refuse(*a, **k):
        raise AssertionError("pretrained again")

    monkeypatch.setattr(towers_module, "pretrain_towers", refuse)
    again, same = cached_towers(SPLITS.train, _spec(), RECIPE, cache_root=tmp_path)
    assert same == path and all(torch.equal(first[k], again[k]) for k in first)
    # another recipe or other towers are another file (the heads' size is not part of the key)
    assert towers_module.tower_cache_file(tmp_path, SPLITS.train, _spec(dim=16), RECIPE) == path
    other = TowerRecipe(epochs=2, batch=32)
    assert towers_module.tower_cache_file(tmp_path, SPLITS.train, _spec(), other) != path


def test_same_seed_same_towers_other_seed_other_towers():
    a = pretrain_towers(SPLITS.train, _spec(), RECIPE)
    b = pretrain_towers(SPLITS.train, _spec(), RECIPE)
    c = pretrain_towers(SPLITS.train, _spec(), TowerRecipe(epochs=1, batch=32, seed=1))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a[_first_conv(a)], c[_first_conv(c)])
    # the frozen token table is kept as it was: the text's input space is the same
    fresh = build_dual_encoder(_spec(), 3, 64, 0)
    assert torch.equal(a["text.table"], fresh.text.table)


def _first_conv(state: dict[str, torch.Tensor]) -> str:
    return next(k for k in state if k.startswith("image.") and k.endswith("weight"))


def test_frozen_towers_do_not_move_in_retrieval_training_only_the_heads_do():
    state = pretrain_towers(SPLITS.train, _spec(), RECIPE)
    model = freeze_towers(build_dual_encoder(_spec(), 3, 64, 0), state)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(trainable) == sorted(
        ["image_head.weight", "image_head.bias", "text_head.weight", "text_head.bias"]
    )
    before, heads = _tower_params(model), model.image_head.weight.detach().clone()
    with torch.no_grad():
        pairs = split_pairs(SPLITS.train, model)
    g = torch.Generator().manual_seed(0)
    train_pairs(model, pairs, RetrievalRecipe(epochs=2, batch=16, runs=1), g)
    after = _tower_params(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(heads, model.image_head.weight)
    assert not model.image.tower.training  # eval mode kept after train()


def test_retrieval_evaluation_with_pretrained_towers(tmp_path):
    syn = create_method("vl-random", modality="paired").fit(SPLITS.train, 4, seed=0, progress=False)
    syn.meta["encoder"] = _spec().to_dict()
    kw = dict(runs=1, epochs=1, seed=0, towers="pretrained", tower_cache=str(tmp_path))
    report = evaluate_retrieval(syn, SPLITS.test, SPLITS.train, **kw)
    assert report.meta["towers"] == "pretrained" and len(list(tmp_path.iterdir())) == 1
    assert {r.name for r in report.results} == {"vl-random", "random pairs", "full data"}
    with pytest.raises(ConfigError, match="train split"):
        evaluate_retrieval(syn, SPLITS.test, None, **kw)


def test_vl_mtt_with_pretrained_towers_matches_the_heads_only(tmp_path):
    kw = {**method_test_overrides("vl-mtt"), "towers": "pretrained", "tower_epochs": 1,
          "tower_cache": str(tmp_path)}  # fmt: skip
    method = create_method("vl-mtt", modality="paired", **kw)
    syn = method.fit(SPLITS.train, 4, seed=0, progress=False)
    cached = next(tmp_path.iterdir())
    state = towers_module.load_tensors(cached)
    model = method.model_
    view = TrainableView(model)
    assert all(n.startswith(("image_head", "text_head")) for n in view.names)
    tower = {k: v for k, v in model.image.tower.state_dict().items()}
    assert all(torch.equal(v, state[f"image.{k}"]) for k, v in tower.items())
    # one more distillation step: no gradient reaches the towers, they stay as cached
    method.step(99)
    assert all(p.grad is None for p in model.image.parameters())
    assert all(p.grad is None for p in model.text.parameters())
    assert all(
        torch.equal(v, state[f"image.{k}"]) for k, v in model.image.tower.state_dict().items()
    )
    source, recipe, cache = towers_of(syn.meta)
    assert (source, recipe.epochs, cache) == ("pretrained", 1, str(tmp_path))


def test_refusals_are_one_line():
    plain = tiny_paired()
    with pytest.raises(DataError, match="records none"):
        pretrain_towers(plain.train, _spec(plain.train), RECIPE)
    with pytest.raises(ConfigError, match="pretrained already"):
        pretrain_towers(SPLITS.train, _spec(text="hf:/nowhere"), RECIPE)
    with pytest.raises(ConfigError, match="towers must be one of"):
        towers_of({}, "imagenet")
    with pytest.raises(ConfigError, match="tower epochs"):
        TowerRecipe(epochs=0)
    with pytest.raises(ConfigError, match="towers"):
        create_method("vl-mtt", modality="paired", towers="imagenet")
    state = pretrain_towers(SPLITS.train, _spec(), RECIPE)
    with pytest.raises(ConfigError, match="does not fit"):
        freeze_towers(build_dual_encoder(_spec(width=32), 3, 64, 0), state)


def test_a_dry_run_times_the_pretraining_instead_of_caching_it(tmp_path):
    from ddkit.eval.dry_run import estimating

    with estimating() as costs:
        state, path = cached_towers(SPLITS.train, _spec(), RECIPE, cache_root=tmp_path)
    assert not path.exists() and any(k.startswith("text.") for k in state)
    assert len(costs) == 1 and costs[0].seconds > 0 and "towers" in costs[0].what


def test_experts_over_pretrained_towers_are_cached_apart_from_those_from_scratch(tmp_path):
    base = {**method_test_overrides("vl-mtt"), "expert_cache": str(tmp_path / "experts")}
    frozen = {**base, "towers": "pretrained", "tower_epochs": 1, "tower_cache": str(tmp_path)}
    sets = [
        create_method("vl-mtt", modality="paired", **kw).fit(
            SPLITS.train, 4, seed=0, progress=False
        )
        for kw in (frozen, frozen, base)
    ]
    assert len(list((tmp_path / "experts").iterdir())) == 2
    assert torch.equal(sets[0].images, sets[1].images)


def test_standardised_towers_give_train_features_of_zero_mean_and_unit_spread():
    """With ``standardize`` (the default), a frozen tower's outputs over the train split have
    mean 0 and standard deviation 1 per feature (the statistics are the train split's, fixed);
    without it they are the raw outputs, and a record from before the option reads as raw."""
    train = SPLITS.train
    state = pretrain_towers(train, _spec(), RECIPE)
    raw = pretrain_towers(train, _spec(), TowerRecipe(epochs=1, batch=32, standardize=False))
    assert "image_norm.mean" in state and not any("_norm." in k for k in raw)
    for s, standard in ((state, True), (raw, False)):
        model = freeze_towers(build_dual_encoder(_spec(), 3, 64, 0), s)
        with torch.no_grad():
            real = split_pairs(train, model)
            image, text = model.image(real.images), model.text(real.emb, real.mask)
        for out in (image, text):
            centred = out.mean(0).abs().max() < 1e-4 and (out.std(0) - 1).abs().max() < 1e-3
            assert bool(centred) == standard
    legacy = {"towers": {"source": "pretrained", "recipe": {"epochs": 1, "lr": 1e-3,
                                                            "batch": 32, "seed": 0}}}  # fmt: skip
    assert towers_of(legacy)[1].standardize is False
    assert towers_of({})[1].standardize is True
