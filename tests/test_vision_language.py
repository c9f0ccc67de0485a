"""Vision-language distillation (issue 71): the paired methods, the dual encoders, the retrieval
evaluation and the command line, on tiny seeded pairs (ddkit.testing.tiny_paired)."""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest
import torch

from ddkit.errors import ConfigError
from ddkit.eval.retrieval import (
    METRICS,
    SIM_RIGHT,
    TEXT_EMB,
    TEXT_FEAT,
    contrastive_loss,
    evaluate_retrieval,
    recall_at_k,
)
from ddkit.methods import METHODS, create_method, load_all
from ddkit.models.text import EncoderSpec, TrainableView, build_dual_encoder
from ddkit.testing import method_test_overrides, tiny_paired

load_all()
PAIRED = [n for n in METHODS.names() if METHODS.get(n).needs == "paired"]
SPLITS = tiny_paired()


def _fit(name: str, seed: int = 0, ipc: int = 4, **kw):
    m = create_method(name, modality="paired", **{**method_test_overrides(name), **kw})
    return m.fit(SPLITS.train, ipc, seed=seed, progress=False)


def test_the_paired_methods_are_registered():
    assert {"vl-mtt", "vl-random", "vl-herding"} <= set(PAIRED)


@pytest.mark.parametrize("name", PAIRED)
def test_every_paired_method_fits_and_evaluates(name):
    syn = _fit(name)
    assert len(syn) == 4 and syn.spec.modality == "paired" and syn.meta["method"] == name
    report = evaluate_retrieval(syn, SPLITS.test, SPLITS.train, runs=2, epochs=1)
    assert [r.name for r in report.results] == [name, "random pairs", "full data"]
    for row in report.results:
        assert len(row.runs) == 2 and all(0.0 <= row.mean(m) <= 1.0 for m in METRICS)
    assert "i2t_r1" in report.table() and report.to_dict()["kind"] == "retrieval"


def test_the_paired_checks_report_a_broken_paired_method():
    """The conformance walk shared with image methods catches a paired method that draws from
    the global RNG and writes into the input captions (the paired modality names the captions
    as an input, :meth:`~ddkit.data.modalities.base.Modality.fit_inputs`)."""
    from ddkit.methods.vision_language.coresets import VLRandom
    from ddkit.testing import check_all

    class Broken(VLRandom):
        name = "broken-pairs-for-test"

        def init(self, train, ipc, generator, iterations):
            torch.rand(1)  # global RNG: not allowed
            train.captions[0, 0] += 1  # the input is not the method's to change
            super().init(train, ipc, generator, iterations)

    METHODS.add(Broken.name, Broken)
    try:
        failures = check_all([Broken.name], tiny_paired())[Broken.name]
    finally:
        METHODS.remove(Broken.name)
    text = "\n".join(failures)
    assert "global RNG" in text and "input dataset's tensors were modified" in text, text
    assert check_all(["vl-random"]) == {"vl-random": []}


def test_the_full_data_row_can_be_left_out_and_the_random_row_stays_the_same():
    syn = _fit("vl-random")
    both = evaluate_retrieval(syn, SPLITS.test, SPLITS.train, runs=1, epochs=1, seed=2)
    lean = evaluate_retrieval(
        syn, SPLITS.test, SPLITS.train, runs=1, epochs=1, seed=2, full_data=False
    )
    assert [r.name for r in lean.results] == ["vl-random", "random pairs"]
    assert lean.result("random pairs").runs == both.result("random pairs").runs
    alone = evaluate_retrieval(
        syn, SPLITS.test, SPLITS.train, runs=1, epochs=1, seed=2, full_data=False,
        random_pairs=False,
    )  # fmt: skip
    assert [r.name for r in alone.results] == ["vl-random"]
    assert alone.result("vl-random").runs == both.result("vl-random").runs


def _reference_recall(sims, owner, k):
    """Plain loops: an image is found at k if one of its captions is among its k best
    (ties against it); a caption if its image is among its k best."""
    n, m = sims.shape
    i2t = t2i = 0
    for i in range(n):
        best = max(float(sims[i, j]) for j in range(m) if owner[j] == i)
        rank = sum(1 for j in range(m) if owner[j] != i and float(sims[i, j]) >= best)
        i2t += rank < k
    for j in range(m):
        mine = float(sims[owner[j], j])
        rank = sum(1 for i in range(n) if i != owner[j] and float(sims[i, j]) >= mine)
        t2i += rank < k
    return i2t / n, t2i / m


def test_recall_of_a_perfect_a_reversed_and_a_random_similarity():
    owner = torch.arange(12).repeat_interleave(2)  # 12 images, 2 captions each
    perfect = (owner[None, :] == torch.arange(12)[:, None]).float()
    assert all(v == 1.0 for v in recall_at_k(perfect, owner).values())
    # reversed: each image's own captions score lowest, so 22 captions of other images (and
    # 11 other images) outrank them: nothing is found at k <= 10
    assert all(v == 0.0 for v in recall_at_k(-perfect, owner).values())
    sims = torch.randn(12, 24, generator=torch.Generator().manual_seed(0)).round(decimals=1)
    got = recall_at_k(sims, owner)
    for k in (1, 5, 10):
        assert (got[f"i2t_r{k}"], got[f"t2i_r{k}"]) == pytest.approx(
            _reference_recall(sims, owner.tolist(), k)
        )


def test_soft_targets_at_identity_are_the_one_hot_loss():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    one_hot = contrastive_loss(a, b, 0.1)
    assert torch.allclose(one_hot, contrastive_loss(a, b, 0.1, torch.eye(5)))
    assert not torch.allclose(one_hot, contrastive_loss(a, b, 0.1, torch.ones(5, 5) / 5))


def test_same_seed_same_set_other_seed_other_set():
    one, two, other = _fit("vl-mtt"), _fit("vl-mtt"), _fit("vl-mtt", seed=1)
    assert torch.equal(one.images, two.images)
    assert torch.equal(one.extras[TEXT_EMB], two.extras[TEXT_EMB])
    assert not torch.equal(one.extras[TEXT_EMB], other.extras[TEXT_EMB])


def test_learned_similarity_moves_and_survives_save_load(tmp_path):
    syn = _fit("vl-mtt", similarity="learned", lr_sim=100.0)
    assert syn.extras[SIM_RIGHT].abs().sum() > 0  # the low-rank part was learned from zero
    back = type(syn).load(syn.save(tmp_path / "set"))
    assert back.extras.keys() == syn.extras.keys()
    assert all(torch.equal(back.extras[k], syn.extras[k]) for k in syn.extras)
    assert torch.equal(back.images, syn.images) and back.meta == json.loads(json.dumps(syn.meta))
    one = evaluate_retrieval(syn, SPLITS.test, runs=1, epochs=1, seed=3).to_dict()
    two = evaluate_retrieval(back, SPLITS.test, runs=1, epochs=1, seed=3).to_dict()
    assert one["results"][0]["runs"] == two["results"][0]["runs"]


def test_images_and_text_are_learned():
    start = create_method("vl-mtt", modality="paired", **method_test_overrides("vl-mtt"))
    first = start.initial_set(SPLITS.train, 4, seed=0)
    syn = _fit("vl-mtt")
    assert not torch.equal(first.images, syn.images)
    assert not torch.equal(first.extras[TEXT_EMB], syn.extras[TEXT_EMB])


def test_data_other_than_pairs_and_a_bad_ipc_are_refused_in_one_line():
    from ddkit.data.dataset import ImageDataset

    spec = dataclasses.replace(SPLITS.spec, modality="image", num_classes=1, class_names=("a",))
    images = ImageDataset(
        SPLITS.train.images, torch.zeros(len(SPLITS.train), dtype=torch.long), spec
    )
    m = create_method("vl-random", modality="paired")
    with pytest.raises(ConfigError, match="needs image-text pairs") as e:
        m.fit(images, 2, progress=False)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="number of pairs"):
        m.fit(SPLITS.train, len(SPLITS.train) + 1, progress=False)
    with pytest.raises(ConfigError, match="text_encoder"):
        create_method("vl-mtt", modality="paired", text_encoder="lstm")


def _tiny_bert(folder):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16,
    )  # fmt: skip
    torch.manual_seed(0)  # only the saved weights; the test reads them back
    transformers.BertModel(cfg).save_pretrained(folder)
    return folder


def _spec(text: str, lora: int = 0) -> EncoderSpec:
    tok = SPLITS.train.tokenizer
    return EncoderSpec(
        image="convnet2-w8", text=text, dim=8, token_dim=8, width=16, lora_rank=lora,
        vocab_size=tok.vocab_size, max_len=tok.max_len, pad_id=tok.pad_id,
    )  # fmt: skip


def test_a_local_hugging_face_text_tower_with_lora_trains_adapters_and_heads(tmp_path):
    pytest.importorskip("peft")
    folder = _tiny_bert(tmp_path / "bert")
    model = build_dual_encoder(_spec(f"hf:{folder}", lora=2), 3, (8, 8), seed=0)
    names = TrainableView(model).names
    text = [n for n in names if n.startswith("text.")]
    assert text and all("lora_" in n for n in text)  # the pretrained weights stay frozen
    assert any(n.startswith("text_head.") for n in names)
    syn = _fit("vl-mtt", text_encoder=f"hf:{folder}", lora_rank=2, ipc=3)
    assert syn.extras[TEXT_EMB].shape[-1] == 16  # BERT's input-embedding width
    report = evaluate_retrieval(syn, SPLITS.test, runs=1, epochs=1)
    assert 0.0 <= report.results[0].mean("t2i_r5") <= 1.0


def test_a_frozen_hugging_face_text_tower_takes_output_space_text(tmp_path):
    folder = _tiny_bert(tmp_path / "bert")
    syn = _fit("vl-mtt", text_encoder=f"hf:{folder}", text_space="output", ipc=3)
    assert tuple(syn.extras[TEXT_FEAT].shape) == (3, 16)  # BERT's hidden size
    report = evaluate_retrieval(syn, SPLITS.test, runs=1, epochs=1)
    assert 0.0 <= report.results[0].mean("t2i_r5") <= 1.0
    with pytest.raises(ConfigError, match="frozen text tower"):
        create_method("vl-mtt", modality="paired", text_encoder=f"hf:{folder}", lora_rank=2,
                      text_space="output")  # fmt: skip


@pytest.mark.parametrize(("module", "extra"), [("transformers", "transformers"), ("peft", "lora")])
def test_a_missing_extra_is_refused_in_one_line(tmp_path, monkeypatch, module, extra):
    folder = _tiny_bert(tmp_path / "bert")
    monkeypatch.setitem(sys.modules, module, None)  # import of it fails
    with pytest.raises(ConfigError, match=rf"pip install 'ddkit\[{extra}\]'") as e:
        build_dual_encoder(_spec(f"hf:{folder}", lora=2), 3, (8, 8), seed=0)
    assert "\n" not in str(e.value)


def test_the_command_line_distils_and_evaluates_pairs(tmp_path, monkeypatch, capsys):
    import ddkit.runs
    from ddkit.cli import main

    monkeypatch.setattr(ddkit.runs, "load_splits", lambda dataset, root: SPLITS)
    options = [f"--set={k}={v}" for k, v in method_test_overrides("vl-mtt").items()]
    run = tmp_path / "run"
    argv = ["distill", "--dataset", "captioned-digits", "--method", "vl-mtt", "--ipc", "4",
            "--iterations", "1", "--out", str(run), "--quiet", *options]  # fmt: skip
    assert main(argv) == 0
    assert "4 image-text pairs" in capsys.readouterr().out
    argv = ["evaluate", str(run), "--dataset", "captioned-digits", "--runs", "1", "--epochs", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "recall@k" in out and "random pairs" in out and "full data" in out
    saved = json.loads((run / "eval.json").read_text())
    assert saved["kind"] == "retrieval" and len(saved["results"]) == 3
    assert main([*argv, "--models", "convnet"]) != 0  # a network flag: refused in one line
    assert "does not apply to this paired set" in capsys.readouterr().err


def test_experts_kept_in_a_cache_give_the_same_set(tmp_path):
    plain = _fit("vl-mtt")
    first = _fit("vl-mtt", expert_cache=str(tmp_path))
    assert len(list(tmp_path.glob("vl-experts-*.safetensors"))) == 1
    again = _fit("vl-mtt", expert_cache=str(tmp_path), ipc=5)  # another size, the same experts
    assert len(list(tmp_path.glob("vl-experts-*.safetensors"))) == 1
    assert torch.equal(plain.extras[TEXT_EMB], first.extras[TEXT_EMB])
    assert len(again) == 5


def test_a_diverging_run_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="diverged at iteration") as e:
        _fit("vl-mtt", lr_img=1e38, iterations=3)
    assert "\n" not in str(e.value)


def test_a_clip_folder_serves_images_with_lora_and_its_text_model_is_refused(tmp_path):
    pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    small = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
             "num_attention_heads": 2}  # fmt: skip
    text = transformers.CLIPTextConfig(vocab_size=64, max_position_embeddings=16, **small)
    vision = transformers.CLIPVisionConfig(image_size=16, patch_size=8, **small)
    config = transformers.CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict())
    torch.manual_seed(0)  # only the saved weights; the test reads them back
    transformers.CLIPModel(config).save_pretrained(tmp_path / "clip")
    spec = dataclasses.replace(_spec("bag", lora=2), image=f"hf:{tmp_path / 'clip'}")
    model = build_dual_encoder(spec, 3, (8, 8), seed=0)
    image = [n for n in TrainableView(model).names if n.startswith("image.")]
    assert image and all("lora_" in n for n in image)
    a, _ = model(SPLITS.train.images[:3])
    assert a.shape == (3, 8) and torch.isfinite(a).all()
    spec = dataclasses.replace(spec, text=f"hf:{tmp_path / 'clip'}")
    with pytest.raises(ConfigError, match="does not take inputs_embeds") as e:
        build_dual_encoder(spec, 3, (8, 8), seed=0)
    assert "\n" not in str(e.value)


def test_a_caption_is_drawn_for_each_image_among_its_own():
    from ddkit.eval.retrieval import caption_of_each

    rows = torch.tensor([5, 0, 7])
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(40):
        picks = caption_of_each(SPLITS.train, rows, g)
        assert SPLITS.train.caption_image[picks].tolist() == rows.tolist()
        seen.update(picks.tolist())
    assert len(seen) == 6  # both captions of each of the three images come up
