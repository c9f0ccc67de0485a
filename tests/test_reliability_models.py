"""Reliability of what data names (issue 83): no code that comes with a Hugging Face folder is
ever run, sizes that a file, a set or a model name asks for are checked against the memory
budget before anything is built, and an untrained teacher is said to be one."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, DDKitError, FileFormatError
from ddkit.meter import BUDGET_ENV, PeakRSS
from ddkit.models import create_model
from ddkit.models.external import load_network
from ddkit.testing import tiny_digits

transformers = pytest.importorskip("transformers")

DDKIT = Path(sys.executable).with_name("ddkit")
#: a memory budget far below what the absurd sizes below ask for
BUDGET = "1000000000"
#: resident memory a refused request may add (it allocates nothing of its size)
SMALL_MB = 200


@pytest.fixture(scope="module")
def tiny():
    return tiny_digits()


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg, msg
    return msg


# ------------------------------------------------------------------------------ remote code
def _code_that_leaves(marker: Path, module: str) -> str:
    """A module that, when imported, leaves ``marker`` behind (what custom code could do)."""
    return f"from pathlib import Path\nPath({str(marker)!r}).write_text({module!r})\n"


def _custom_code_folder(folder: Path, marker: Path, *, tokenizer: bool = False) -> Path:
    """A Hugging Face folder whose config (and, with ``tokenizer``, tokenizer config) asks for
    its own code through ``auto_map``; importing any of that code writes ``marker``."""
    folder.mkdir(parents=True)
    config = {
        "model_type": "ddkit-custom-test",
        "architectures": ["XModel"],
        "hidden_size": 8,
        "auto_map": {
            "AutoConfig": "configuration_x.XConfig",
            "AutoModel": "modeling_x.XModel",
            "AutoModelForImageClassification": "modeling_x.XModel",
        },
    }
    (folder / "config.json").write_text(json.dumps(config))
    for module in ("configuration_x", "modeling_x", "tokenization_x"):
        (folder / f"{module}.py").write_text(_code_that_leaves(marker, module))
    if tokenizer:
        (folder / "config.json").unlink()  # a tokenizer folder: its own config only
        tok = {"auto_map": {"AutoTokenizer": ["tokenization_x.XTokenizer", None]}}
        (folder / "tokenizer_config.json").write_text(json.dumps(tok))
    return folder


def _load_text(folder: Path) -> object:
    from ddkit.models.text import load_hf_model

    return load_hf_model(str(folder), "text")


def _build_encoders(folder: Path, side: str) -> object:
    from ddkit.models.text import EncoderSpec, build_dual_encoder

    spec = EncoderSpec(image="convnet2-w8", text="bag", vocab_size=20, max_len=4)
    spec = dataclasses.replace(spec, **{side: f"hf:{folder}"})
    return build_dual_encoder(spec, 3, (8, 8), seed=0)


def _tokenizer(folder: Path) -> object:
    from ddkit.data.tokenize import make_tokenizer

    return make_tokenizer(f"hf:{folder}")


def _teacher_of_a_set(folder: Path) -> object:
    from ddkit.eval import evaluate

    data = tiny_digits()
    syn = SyntheticSet(data.train.images[:10], data.train.labels[:10], data.train.spec)
    syn.meta["teacher_dir"] = f"hf:{folder}"
    return evaluate(syn, data.test, "teacher-kd", epochs=1, runs=1, models=["convnet-w8"])


LOADERS = {
    "teacher": lambda folder: load_network(f"hf:{folder}", spec=tiny_digits().train.spec),
    "text_encoder": lambda folder: _build_encoders(folder, "text"),
    "image_encoder": lambda folder: _build_encoders(folder, "image"),
    "text_tower": _load_text,
    "set_teacher": _teacher_of_a_set,
}


@pytest.mark.parametrize("way", sorted(LOADERS))
def test_a_folder_asking_to_run_its_own_code_is_refused_and_its_code_never_runs(tmp_path, way):
    marker = tmp_path / "ran"
    folder = _custom_code_folder(tmp_path / "custom", marker)
    with pytest.raises(DDKitError) as e:
        LOADERS[way](folder)
    msg = _one_line(e)
    assert "auto_map" in msg and "config.json" in msg, msg
    assert not marker.exists()


def test_a_tokenizer_asking_to_run_its_own_code_is_refused_and_its_code_never_runs(tmp_path):
    marker = tmp_path / "ran"
    folder = _custom_code_folder(tmp_path / "tok", marker, tokenizer=True)
    with pytest.raises(DDKitError) as e:
        _tokenizer(folder)
    assert "auto_map" in _one_line(e) and "tokenizer_config.json" in str(e.value)
    assert not marker.exists()


def test_a_model_type_transformers_does_not_know_is_refused_before_transformers_reads_it(
    tmp_path, monkeypatch
):
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "no-such-architecture"}')
    asked: list[str] = []
    monkeypatch.setattr(
        transformers.AutoConfig, "from_pretrained", lambda *a, **k: asked.append("config")
    )
    with pytest.raises(FileFormatError) as e:
        load_network(f"hf:{folder}")
    assert "'no-such-architecture'" in _one_line(e) and "model_type" in str(e.value)
    assert not asked


def test_every_transformers_load_passes_trust_remote_code_false(tmp_path, monkeypatch):
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=8,
    )  # fmt: skip
    BertModel(cfg).save_pretrained(tmp_path / "bert")
    seen: list[object] = []
    real = transformers.AutoModel.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        seen.append(kwargs.get("trust_remote_code", "absent"))
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", classmethod(spy))
    _load_text(tmp_path / "bert")
    assert seen == [False]


def test_the_command_line_refuses_custom_code_even_when_told_yes(tmp_path):
    marker = tmp_path / "ran"
    folder = _custom_code_folder(tmp_path / "custom", marker)
    argv = [str(DDKIT), "distill", "--dataset", "digits", "--method", "rded", "--ipc", "1",
            "--quiet", "--teacher", f"hf:{folder}", "--out", str(tmp_path / "run")]  # fmt: skip
    done = subprocess.run(argv, input="y\n", capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip()
    assert "Traceback" not in err and "\n" not in err and "auto_map" in err, err
    assert "[y/N]" not in done.stdout + done.stderr
    assert not marker.exists()


# ------------------------------------------------------------------------------ sizes
def test_a_model_name_with_an_absurd_width_is_refused_before_it_is_built(monkeypatch):
    monkeypatch.setenv(BUDGET_ENV, BUDGET)
    for name in ("convnet-w100000", "convnet3-bn-w100000000", "mlp-w10000000"):
        with PeakRSS() as m, pytest.raises(ConfigError) as e:
            create_model(name, num_classes=10, in_channels=3, image_size=32)
        msg = _one_line(e)
        assert name in msg and "GiB" in msg and "parameters" in msg and BUDGET_ENV in msg, msg
        assert m.extra_mb < SMALL_MB
    create_model("convnet-w8", num_classes=10, in_channels=3, image_size=32)  # small: built


def test_an_absurd_model_name_is_refused_on_the_command_line(tmp_path):
    argv = [str(DDKIT), "distill", "--dataset", "digits", "--method", "dm", "--ipc", "1",
            "--iterations", "1", "--quiet", "--set", "model=convnet-w100000",
            "--out", str(tmp_path / "run")]  # fmt: skip
    env = {**os.environ, BUDGET_ENV: BUDGET}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip()
    assert "Traceback" not in err and "\n" not in err and "GiB" in err, err


def test_a_teacher_file_naming_an_absurd_model_is_refused_before_it_is_built(
    tiny, tmp_path, monkeypatch
):
    from ddkit.eval.teacher import save_teacher

    spec = tiny.train.spec
    net = create_model("convnet3-bn-w8", num_classes=10, in_channels=1, image_size=8)
    folder = save_teacher(net, tmp_path / "t", {"model": "convnet3-bn-w8", "spec": spec.to_dict()})
    meta = json.loads((folder / "teacher.json").read_text())
    meta["model"] = "convnet3-bn-w100000000"
    (folder / "teacher.json").write_text(json.dumps(meta))
    monkeypatch.setenv(BUDGET_ENV, BUDGET)
    with PeakRSS() as m, pytest.raises(FileFormatError) as e:
        load_network(folder, spec=spec)
    msg = _one_line(e)
    assert "convnet3-bn-w100000000" in msg and "GiB" in msg and str(folder) in msg, msg
    assert m.extra_mb < SMALL_MB


@pytest.mark.parametrize(
    ("field", "value"), [("width", 10**8), ("vocab_size", 10**11), ("dim", 10**9)]
)
def test_a_paired_set_recording_absurd_encoder_sizes_is_refused_before_building(
    monkeypatch, field, value
):
    from ddkit.data.synthetic import SyntheticSet as Set
    from ddkit.eval.retrieval import ENCODER_KEY, encoder_spec_for
    from ddkit.models.text import EncoderSpec, build_dual_encoder

    record = {**EncoderSpec(image="convnet2-w8", vocab_size=20, max_len=4).to_dict()}
    record[field] = value
    data = tiny_digits()
    syn = Set(data.train.images[:2], data.train.labels[:2], data.train.spec)
    syn.meta[ENCODER_KEY] = record
    monkeypatch.setenv(BUDGET_ENV, BUDGET)
    encoder = encoder_spec_for(syn, None)
    with PeakRSS() as m, pytest.raises(ConfigError) as e:
        build_dual_encoder(encoder, 3, (8, 8), seed=0)
    msg = _one_line(e)
    assert "GiB" in msg and f"{value:,}" in msg and BUDGET_ENV in msg, msg
    assert m.extra_mb < SMALL_MB


def test_a_hugging_face_config_too_large_is_refused_before_transformers_builds_it(
    tiny, tmp_path, monkeypatch
):
    from transformers import BertConfig, ViTConfig

    huge = {"hidden_size": 65536, "num_hidden_layers": 64, "num_attention_heads": 64,
            "intermediate_size": 4 * 65536}  # fmt: skip
    BertConfig(vocab_size=30522, **huge).save_pretrained(tmp_path / "bert")
    ViTConfig(image_size=8, patch_size=4, num_labels=10, **huge).save_pretrained(tmp_path / "vit")
    built: list[str] = []

    def refuse(*args, **kwargs):
        built.append("from_pretrained")
        raise AssertionError("transformers was asked to build the model")

    for auto in ("AutoModel", "AutoModelForImageClassification"):
        monkeypatch.setattr(getattr(transformers, auto), "from_pretrained", refuse)
    monkeypatch.setenv(BUDGET_ENV, BUDGET)
    for load in (
        lambda: load_network(f"hf:{tmp_path / 'vit'}", spec=tiny.train.spec),
        lambda: _load_text(tmp_path / "bert"),
    ):
        with pytest.raises(ConfigError) as e:
            load()
        msg = _one_line(e)
        assert "GiB" in msg and "parameters" in msg and BUDGET_ENV in msg, msg
    assert not built


# ------------------------------------------------------------------------------ teacher
def _agreement_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "agrees with" in str(w.message)]


def test_an_untrained_teacher_is_warned_about_once(tiny, tmp_path):
    from ddkit.eval.teacher import cached_teacher

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net, folder = cached_teacher(
            tiny.train, "convnet-w8", cache_root=tmp_path, epochs=1, lr=1e-12, augment=None
        )
    said = _agreement_warnings(caught)
    assert len(said) == 1, said
    accuracy = net.teacher_meta_["train_accuracy"]
    assert f"{100 * accuracy:.1f}%" in said[0] and "epochs" in said[0], said[0]
    with warnings.catch_warnings(record=True) as caught:  # loaded again: said again, once
        warnings.simplefilter("always")
        load_network(folder, spec=tiny.train.spec)
    assert len(_agreement_warnings(caught)) == 1


def test_a_teacher_that_agrees_with_its_labels_is_not_warned_about(tiny, tmp_path):
    from ddkit.eval.teacher import save_teacher
    from ddkit.models.teacher_files import untrained_below

    spec = tiny.train.spec
    net = create_model("convnet-w8", num_classes=10, in_channels=1, image_size=8)
    for accuracy, warned in ((untrained_below(10), 0), (untrained_below(10) / 2, 1)):
        meta = {"model": "convnet-w8", "spec": spec.to_dict(), "train_accuracy": accuracy}
        folder = save_teacher(net, tmp_path / f"t{warned}", meta)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            load_network(folder, spec=spec)
        assert len(_agreement_warnings(caught)) == warned
    assert 1 / 2 < untrained_below(2) < 1  # two classes: a bar below certainty


def test_a_model_size_is_remembered_per_default_dtype() -> None:
    """A size counted while float64 was the default (an exact-mode test) is not reused for a
    float32 model, whose weights take half the bytes."""
    from ddkit.models.registry import model_size

    kw = {"num_classes": 10, "in_channels": 1, "image_size": 8}
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        wide = model_size("convnet2-w8", **kw)
    finally:
        torch.set_default_dtype(previous)
    narrow = model_size("convnet2-w8", **kw)
    assert previous == torch.float32 and wide[1] == 2 * narrow[1]
