"""Synthetic text in the text tower's output space (issue 86): vl-mtt's text_space="output", the
``text.features`` set format and its retrieval evaluation, as Wu et al. (TMLR 2024) and LoRS
(ICML 2024) learn frozen-BERT outputs; valid only with a frozen text tower."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from ddkit.data.synthetic import TEXT_FEAT, SyntheticSet
from ddkit.errors import ConfigError, DataError
from ddkit.eval import towers as towers_module
from ddkit.eval.retrieval import (
    Pairs,
    RetrievalRecipe,
    evaluate_retrieval,
    paired_set,
    set_pairs,
    split_pairs,
    train_pairs,
)
from ddkit.eval.towers import freeze_towers
from ddkit.methods import create_method, load_all
from ddkit.models.text import EncoderSpec, build_dual_encoder
from ddkit.testing import method_test_overrides
from ddkit.testing_data import tiny_scenes

load_all()
SPLITS = tiny_scenes()


def _spec() -> EncoderSpec:
    tok = SPLITS.train.tokenizer
    sizes = {"image": "convnet2-w8", "dim": 8, "token_dim": 8, "width": 16}
    return EncoderSpec(**sizes, vocab_size=tok.vocab_size, max_len=tok.max_len, pad_id=tok.pad_id)


def _frozen(seed: int = 0):
    """A dual encoder whose towers (its own random ones) are frozen; the heads train."""
    model = build_dual_encoder(_spec(), 3, 64, seed)
    towers = {k: v for k, v in model.state_dict().items() if k.startswith(("image.", "text."))}
    return freeze_towers(model, towers)


def _output_set(model, n: int = 4):
    with torch.no_grad():
        real = split_pairs(SPLITS.train, model)
        features = model.text(real.emb[:n], real.mask[:n])
    return paired_set(real.images[:n], SPLITS.train.spec, _spec(), features=features)


def test_training_the_heads_on_tower_outputs_matches_training_through_the_frozen_tower():
    through = _frozen().double()
    on_features = copy.deepcopy(through)
    with torch.no_grad():
        real = split_pairs(SPLITS.train, through)
        real = Pairs(real.images.double(), real.emb, real.mask, real.caption_image)
        features = through.text(real.emb, real.mask)
    outputs = Pairs(real.images, None, None, real.caption_image, features=features)
    recipe = RetrievalRecipe(epochs=2, optimizer="sgd", lr=0.5, batch=16, runs=1)
    train_pairs(through, real, recipe, torch.Generator().manual_seed(0))
    train_pairs(on_features, outputs, recipe, torch.Generator().manual_seed(0))
    a, b = dict(through.named_parameters()), dict(on_features.named_parameters())
    assert not torch.equal(a["text_head.weight"], _frozen().double().text_head.weight)
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=0, atol=1e-10), name


def test_an_output_space_set_survives_save_load_and_passes_the_set_checks(tmp_path):
    syn = _output_set(_frozen())
    assert syn.meta["text_space"] == "output" and tuple(syn.extras[TEXT_FEAT].shape) == (4, 16)
    back = SyntheticSet.load(syn.save(tmp_path / "set"))
    assert torch.equal(back.extras[TEXT_FEAT], syn.extras[TEXT_FEAT])
    assert back.meta["text_space"] == "output"
    assert back.meta["encoder"] == json.loads(json.dumps(syn.meta["encoder"]))
    assert SPLITS.train.spec.kind.set_problems(back, SPLITS.train, 4) == []
    pairs = set_pairs(back, _frozen())
    assert pairs.emb is None and len(pairs) == 4
    assert tuple(pairs.text_of(torch.arange(2))["features"].shape) == (2, 16)


def test_features_are_refused_in_one_line_with_a_trainable_tower_or_a_wrong_width():
    syn = _output_set(_frozen())
    scratch = build_dual_encoder(_spec(), 3, 64, 0)
    with pytest.raises(ConfigError, match="frozen text tower: towers='pretrained'") as e:
        set_pairs(syn, scratch)
    assert "\n" not in str(e.value)
    syn.extras[TEXT_FEAT] = syn.extras[TEXT_FEAT][:, :5]
    with pytest.raises(DataError, match="16-d outputs") as e:
        set_pairs(syn, _frozen())
    assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def tower_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("towers")


def _output_mtt(cache, **kw):
    kw = {**method_test_overrides("vl-mtt"), "towers": "pretrained", "tower_epochs": 1,
          "tower_cache": str(cache), "text_space": "output", **kw}  # fmt: skip
    return create_method("vl-mtt", modality="paired", **kw)


def test_vl_mtt_starts_from_real_captions_tower_outputs(tower_cache):
    method = _output_mtt(tower_cache, lr_feat=0.0)
    syn = method.fit(SPLITS.train, 4, seed=0, progress=False)
    model, train = method.model_, SPLITS.train
    with torch.no_grad():
        real = split_pairs(train, model)
        outputs = model.text(real.emb, real.mask)
    for row, feature in zip(syn.meta["initial_rows"], syn.extras[TEXT_FEAT]):
        own = outputs[train.caption_image == row]
        assert (own - feature).abs().amax(1).min() < 1e-5


def test_vl_mtt_learns_output_space_text_over_pretrained_towers(tower_cache):
    method = _output_mtt(tower_cache)
    syn = method.fit(SPLITS.train, 4, seed=0, progress=False)
    model = method.model_
    width = model.text.num_features
    assert tuple(syn.extras[TEXT_FEAT].shape) == (4, width) and "text.embeddings" not in syn.extras
    assert syn.meta["text_space"] == "output" and "collapse" in syn.meta
    # the towers are the cached ones, untouched by a further step that moves the features
    state = towers_module.load_tensors(next(tower_cache.iterdir()))
    before = method.state_["text"].detach().clone()
    metrics = method.step(99)
    assert not torch.equal(before, method.state_["text"])
    # the loss is the two encoders' terms, each recorded
    assert metrics["loss"] == pytest.approx(metrics["loss_image"] + metrics["loss_text"])
    assert metrics["loss_image"] > 0 and metrics["loss_text"] > 0
    for side in ("image", "text"):
        tower = getattr(model, side).tower.state_dict()
        assert all(torch.equal(v, state[f"{side}.{k}"]) for k, v in tower.items())
    report = evaluate_retrieval(syn, SPLITS.test, SPLITS.train, runs=1, epochs=1, full_data=False)
    assert report.meta["towers"] == "pretrained"
    assert [r.name for r in report.results] == ["vl-mtt", "random pairs"]


def test_output_space_text_with_trainable_towers_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="towers='pretrained'") as e:
        create_method("vl-mtt", modality="paired", text_space="output")
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="must be one of"):
        create_method("vl-mtt", modality="paired", text_space="tokens")


def test_a_dry_run_stands_in_for_the_experts_in_the_output_space(tower_cache):
    from ddkit import runs

    options = {**method_test_overrides("vl-mtt"), "towers": "pretrained", "tower_epochs": 1,
               "tower_cache": str(tower_cache), "text_space": "output"}  # fmt: skip
    cost = runs.estimate_distill(dataset="tiny-scenes", method="vl-mtt", ipc=4,
                                 options=options, splits=SPLITS)  # fmt: skip
    assert "vl-mtt experts" in cost.line("vl-mtt") and "one epoch of one expert" in cost.line(
        "vl-mtt"
    )


def test_the_learned_recipe_trains_each_side_at_its_rate_and_decays_them_at_half():
    """The papers' evaluation (LoRS's Algorithm 2): SGD at the set's learned rates, one per
    side, divided by 10 after half the epochs; a side at rate 0 does not move."""
    seen = []

    def record(model):
        return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    model = _frozen().double()
    real = split_pairs(SPLITS.train, model)
    real = Pairs(real.images.double(), real.emb, real.mask, real.caption_image)
    recipe = RetrievalRecipe(
        epochs=4, optimizer="learned", rates=(0.0, 0.5), momentum=0.0, batch=len(real), runs=1
    )
    before = record(model)
    train_pairs(model, real, recipe, torch.Generator().manual_seed(0),
                on_epoch=lambda e: seen.append(record(model)))  # fmt: skip
    after = seen[-1]
    for name in before:
        moved = not torch.equal(before[name], after[name])
        assert moved == name.startswith("text_head."), name
    # one full-batch step per epoch: the decayed epoch (4 // 2 + 1 = 3) moves by a tenth
    step = [(seen[e]["text_head.bias"] - (seen[e - 1] if e else before)["text_head.bias"]).norm()
            for e in range(4)]  # fmt: skip
    assert step[3] < 0.2 * step[2] and step[2] > 0.3 * step[1]


def test_the_learned_recipe_reads_a_vl_mtt_set_s_rates_and_refuses_a_set_without_them(
    tower_cache,
):
    from ddkit.eval.retrieval import learned_rates

    syn = _output_mtt(tower_cache).fit(SPLITS.train, 4, seed=0, progress=False)
    rates = learned_rates(syn)
    assert rates == (syn.meta["student_lr"]["image"], syn.meta["student_lr"]["text"])
    report = evaluate_retrieval(
        syn, SPLITS.test, SPLITS.train, recipe=RetrievalRecipe(optimizer="learned"),
        runs=1, epochs=2, full_data=False,
    )  # fmt: skip
    assert report.recipe.rates == rates and report.to_dict()["recipe"]["optimizer"] == "learned"
    syn.meta.pop("student_lr")
    with pytest.raises(ConfigError, match="learned student rates") as e:
        evaluate_retrieval(syn, SPLITS.test, SPLITS.train,
                           recipe=RetrievalRecipe(optimizer="learned"), runs=1, epochs=1)  # fmt: skip
    assert "\n" not in str(e.value)


def test_experts_trained_with_momentum_are_other_experts_kept_apart(tower_cache, tmp_path):
    """The papers' buffers train the experts with momentum and weight decay; such experts are
    other trajectories, cached under their own key (the plain key unchanged)."""
    plain = _output_mtt(tower_cache, expert_cache=str(tmp_path), iterations=1)
    plain.fit(SPLITS.train, 4, seed=0, progress=False)
    heavy = _output_mtt(tower_cache, expert_cache=str(tmp_path), iterations=1,
                        expert_momentum=0.9, expert_weight_decay=5e-4)  # fmt: skip
    heavy.fit(SPLITS.train, 4, seed=0, progress=False)
    assert len(list(tmp_path.glob("vl-experts-*"))) == 2
    first, second = plain.experts_[0], heavy.experts_[0]
    assert torch.equal(first[0], second[0]) and not torch.allclose(first[-1], second[-1])
    with pytest.raises(ConfigError, match="expert_momentum"):
        _output_mtt(tower_cache, expert_momentum=1.0)


def test_the_experts_and_the_student_s_first_rate_follow_the_towers_unless_given(tower_cache):
    from ddkit.methods.vision_language.mtt import EXPERT_RATES, VLMTTConfig

    assert VLMTTConfig().expert_rate() == EXPERT_RATES["scratch"]
    assert VLMTTConfig(towers="pretrained").expert_rate() == EXPERT_RATES["pretrained"]
    assert VLMTTConfig(towers="pretrained", expert_lr=0.3).expert_rate() == 0.3
    for given, first in [(0.0, EXPERT_RATES["pretrained"]), (0.3, 0.3)]:  # the student's start
        method = _output_mtt(tower_cache, iterations=1, lr_lr=0.0, student_lr=given)
        syn = method.fit(SPLITS.train, 4, seed=0, progress=False)
        assert syn.meta["student_lr"] == pytest.approx({"image": first, "text": first})
