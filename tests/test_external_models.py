"""Networks from outside (issue 69): checkpoints of registered architectures, Hugging Face
models, timm / torchvision names and modules through ddkit.models.external.load_network, as
teachers of the decoupled methods and of teacher-kd evaluation."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from ddkit.data import from_arrays
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, FileFormatError, UnknownNameError
from ddkit.eval import evaluate
from ddkit.io import save_tensors, sha256_file
from ddkit.methods import create_method
from ddkit.models import create_model
from ddkit.models.external import load_network, save_network, source_bytes
from ddkit.testing import method_test_overrides, tiny_digits

MODEL = "convnet3-bn-w8"


@pytest.fixture(scope="module")
def tiny():
    return tiny_digits()


def _net(seed: int = 0, k: int = 10, model: str = MODEL) -> torch.nn.Module:
    """A registered model for 1x8x8 inputs with random BN statistics (a stand-in teacher)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = create_model(model, num_classes=k, in_channels=1, image_size=8)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg, msg
    return msg


# ----------------------------------------------------------------------------- file:
def test_checkpoints_load_and_give_the_original_outputs(tiny, tmp_path):
    net = _net()
    x = tiny.train.images[:6]
    save_network(net, tmp_path / "t.safetensors")
    torch.save(net.state_dict(), tmp_path / "t.pt")
    torch.save({"state_dict": net.state_dict()}, tmp_path / "wrapped.pth")
    save_tensors(tmp_path / "bare.safetensors", net.state_dict())  # no metadata: #MODEL needed
    rng = torch.random.get_rng_state()
    sources = [
        f"file:{tmp_path / 't.safetensors'}",
        str(tmp_path / "t.safetensors"),  # a plain path is a file source
        f"file:{tmp_path / 't.pt'}#{MODEL}",
        f"file:{tmp_path / 'wrapped.pth'}#{MODEL}",
        f"file:{tmp_path / 'bare.safetensors'}#{MODEL}",
    ]
    for source in sources:
        got = load_network(source, spec=tiny.train.spec)
        assert torch.equal(got.module(x), net(x)), source
        assert not any(p.requires_grad for p in got.module.parameters())
        r = got.record
        assert (r.kind, r.model, r.num_classes, r.input_size) == ("file", MODEL, 10, (1, 8, 8))
        path = source.removeprefix("file:").split("#")[0]
        assert r.sha256 == sha256_file(path) and r.bytes == source_bytes(source)
    assert torch.equal(torch.random.get_rng_state(), rng)  # loading draws nothing
    # the file records its input and classes: no dataset needed
    alone = load_network(f"file:{tmp_path / 't.safetensors'}").module
    assert torch.equal(alone(x), net(x))


def test_a_teacher_folder_and_a_module_are_sources_too(tiny, tmp_path):
    from ddkit.eval.teacher import save_teacher

    net = _net(1)
    meta = {"model": MODEL, "spec": tiny.train.spec.to_dict(), "dataset": "tiny-digits"}
    folder = save_teacher(net, tmp_path / "teacher", meta)
    x = tiny.train.images[:4]
    for source in (folder, str(folder), f"file:{folder}"):
        got = load_network(source, spec=tiny.train.spec)
        assert torch.equal(got.module(x), net(x)) and got.record.kind == "teacher"
        assert got.record.source == str(folder.resolve())
    mod = load_network(_net(2), spec=tiny.train.spec)
    assert mod.record.kind == "module" and mod.record.num_classes == 10


def test_file_refusals_are_one_line(tiny, tmp_path):
    spec = tiny.train.spec
    three = from_arrays(torch.rand(30, 8, 8), torch.arange(30) % 3, name="three", num_classes=3)
    save_network(_net(), tmp_path / "t.safetensors")
    torch.save(_net().state_dict(), tmp_path / "t.pt")
    with torch.random.fork_rng(devices=[]):
        big = create_model(MODEL, num_classes=10, in_channels=1, image_size=16)
    save_network(big, tmp_path / "big.safetensors")
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    torch.save({"w": [1, 2, 3]}, tmp_path / "lists.pt")
    torch.save(_net(), tmp_path / "pickled.pt")  # a whole module: refused, never unpickled
    partial = {k: v for k, v in _net().state_dict().items() if not k.startswith("classifier")}
    torch.save(partial, tmp_path / "partial.pt")
    cases = [
        (f"file:{tmp_path / 'missing.safetensors'}", spec, FileFormatError, "no checkpoint"),
        (f"file:{tmp_path / 'notes.pt'}#{MODEL}", spec, FileFormatError, "not a torch checkpoint"),
        (f"file:{tmp_path / 'junk.safetensors'}#{MODEL}", spec, FileFormatError, "corrupt"),
        (f"file:{tmp_path / 'model.onnx'}", spec, FileFormatError, "not a checkpoint ddkit"),
        (f"file:{tmp_path / 'lists.pt'}#{MODEL}", spec, FileFormatError, "holds no state_dict"),
        (f"file:{tmp_path / 'pickled.pt'}#{MODEL}", spec, FileFormatError, "model.state_dict()"),
        (f"file:{tmp_path / 'partial.pt'}#{MODEL}", spec, FileFormatError, "missing or wrong"),
        (f"file:{tmp_path / 't.pt'}", spec, ConfigError, "does not name its architecture"),
        (f"file:{tmp_path / 't.pt'}#nosuchnet3", spec, UnknownNameError, "nosuchnet"),
        (f"file:{tmp_path / 't.pt'}#convnet3-w8", spec, FileFormatError, "do not fit"),
        (f"file:{tmp_path / 't.safetensors'}", three.train.spec, ConfigError, "10 classes"),
        (f"file:{tmp_path / 't.pt'}#{MODEL}", three.train.spec, ConfigError, "10 classes"),
        (f"file:{tmp_path / 't.pt'}#{MODEL}", None, ConfigError, "pass the dataset"),
        (f"file:{tmp_path / 'big.safetensors'}", spec, ConfigError, "made for 1x[16, 16]"),
        ("onnx:model.onnx", spec, ConfigError, "unknown network source"),
        ("hf:", spec, ConfigError, "names nothing"),
    ]
    for source, s, error, words in cases:
        with pytest.raises(error) as e:
            load_network(source, spec=s)
        assert words in _one_line(e), (source, str(e.value))
    # as a backbone the class count is the checkpoint's own
    body = load_network(f"file:{tmp_path / 't.pt'}#{MODEL}", spec=three.train.spec, backbone=True)
    assert body.record.num_classes == 10
    assert torch.equal(
        body.module.embed(three.train.images[:2]), _net().embed(three.train.images[:2])
    )
    written = sorted(p.name for p in tmp_path.iterdir())
    made = ["t.safetensors", "big.safetensors", "t.pt", "notes.pt", "junk.safetensors"]
    assert written == sorted(
        made + ["model.onnx", "lists.pt", "pickled.pt", "partial.pt"]
    )  # nothing new


# ----------------------------------------------------------------------------- hf:
def _hf_vit(folder, *, labels: int = 10, processor: dict | None = None):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=16, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=32, num_labels=labels,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.ViTForImageClassification(config).eval()
    model.save_pretrained(folder)
    if processor is not None:
        (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return model


def _hf_resnet(folder, labels: int = 10):
    transformers = pytest.importorskip("transformers")
    config = transformers.ResNetConfig(
        num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=labels,
        layer_type="basic",
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.ResNetForImageClassification(config).eval()
    model.save_pretrained(folder)
    return model


def test_a_transformers_model_loads_by_hf_folder(tiny, tmp_path):
    processor = {"image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.25, 0.3],
                 "do_normalize": True, "size": {"height": 16, "width": 16}}  # fmt: skip
    model = _hf_vit(tmp_path / "vit", processor=processor)
    spec = tiny.train.spec
    got = load_network(f"hf:{tmp_path / 'vit'}", spec=spec)
    x = tiny.train.images[:5]
    logits = got.module(x)
    assert logits.shape == (5, 10)
    r = got.record
    assert (r.kind, r.model, r.num_classes, r.input_size) == ("hf", "vit", 10, (3, 16, 16))
    assert r.sha256 == sha256_file(tmp_path / "vit" / "model.safetensors")
    # what the model sees: raw pixels, grey repeated, resized to 16 px, its normalisation
    raw = x * spec.std[0] + spec.mean[0]
    px = torch.nn.functional.interpolate(raw.expand(-1, 3, -1, -1), size=(16, 16),
                                         mode="bilinear", align_corners=False)  # fmt: skip
    mean = torch.tensor(processor["image_mean"]).view(1, 3, 1, 1)
    std = torch.tensor(processor["image_std"]).view(1, 3, 1, 1)
    expected = model(pixel_values=(px - mean) / std).logits
    torch.testing.assert_close(logits, expected)
    # embed(): what the head reads
    feats = got.module.embed(x)
    assert feats.shape == (5, 16)
    torch.testing.assert_close(model.classifier(feats), logits)


def test_an_hf_name_loads_from_the_cache_offline(tiny, tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    repo = tmp_path / "cache" / "models--someone--tiny-vit"
    _hf_vit(repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "cache"))
    got = load_network("hf:someone/tiny-vit", spec=tiny.train.spec)
    weights = repo / "snapshots" / "abc123" / "model.safetensors"
    assert got.record.source == "hf:someone/tiny-vit" and got.record.sha256 == sha256_file(weights)
    assert source_bytes("hf:someone/tiny-vit") == weights.stat().st_size
    assert got.module(tiny.train.images[:2]).shape == (2, 10)


def test_an_hf_backbone_and_a_checkpoint_without_its_head(tiny, tmp_path):
    transformers = pytest.importorskip("transformers")
    _hf_vit(tmp_path / "vit")
    backbone = transformers.ViTModel.from_pretrained(str(tmp_path / "vit"), add_pooling_layer=False)
    backbone.save_pretrained(tmp_path / "body")
    with pytest.raises(FileFormatError) as e:
        load_network(f"hf:{tmp_path / 'body'}", spec=tiny.train.spec)
    assert "backbone" in _one_line(e)
    body = load_network(f"hf:{tmp_path / 'body'}", spec=tiny.train.spec, backbone=True)
    assert body.module.embed(tiny.train.images[:3]).shape == (3, 16)
    assert body.record.num_classes is None
    with pytest.raises(ConfigError, match="backbone without a classification head"):
        body.module(tiny.train.images[:3])
    from ddkit.eval.teacher import resolve_teacher

    source = f"hf:{tmp_path / 'body'}"
    net, where = resolve_teacher(teacher=source, spec=tiny.train.spec, backbone=True)
    assert where == source
    torch.testing.assert_close(
        net.embed(tiny.train.images[:3]), body.module.embed(tiny.train.images[:3])
    )


def test_hf_refusals_are_one_line(tiny, tmp_path, monkeypatch):
    _hf_vit(tmp_path / "vit5", labels=5)
    (tmp_path / "empty").mkdir()
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text('{"model_type": "no-such-architecture"}')
    cases = [
        (f"hf:{tmp_path / 'vit5'}", ConfigError, "5 classes"),
        (f"hf:{tmp_path / 'empty'}", FileFormatError, "no config.json"),
        ("hf:nobody/no-such-model-here", FileFormatError, "offline"),
        (f"hf:{tmp_path / 'odd'}", FileFormatError, "no config transformers reads"),
        (f"file:{tmp_path / 'vit5'}", FileFormatError, f"use hf:{tmp_path / 'vit5'}"),
    ]
    for source, error, words in cases:
        with pytest.raises(error) as e:
            load_network(source, spec=tiny.train.spec)
        assert words in _one_line(e), (source, str(e.value))
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    with pytest.raises(ConfigError) as e:
        load_network(f"hf:{tmp_path / 'vit5'}", spec=tiny.train.spec)
    assert "pip install 'ddkit[transformers]'" in _one_line(e)


@pytest.mark.parametrize("package", ["timm", "torchvision"])
def test_timm_and_torchvision_are_refused_without_the_package(tiny, package, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(ConfigError) as e:
        load_network(f"{package}:resnet18", spec=tiny.train.spec)
    assert f"pip install 'ddkit[{package}]'" in _one_line(e)


class _Tiny(torch.nn.Module):
    """A 3-channel network with a timm-like and a torchvision-like face."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # the same weights every time
            torch.manual_seed(0)
            self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1))
            self.fc = torch.nn.Linear(4, classes)
        self.num_classes = classes
        self.pretrained_cfg = {"input_size": (3, 12, 12), "mean": (0.4,) * 3, "std": (0.2,) * 3}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x.flatten(1) if pre_logits else self.fc(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _fake_packages(monkeypatch) -> None:
    """timm and torchvision stand-ins with the calls the loaders make (create_model /
    get_model_weights, get_model), so the loading paths run where the packages are absent."""
    import types

    timm = types.ModuleType("timm")
    timm.create_model = lambda name, pretrained: _Tiny() if name == "tiny" else _unknown(name)
    preset = types.SimpleNamespace(crop_size=[12], mean=[0.4] * 3, std=[0.2] * 3)
    weights = types.SimpleNamespace(
        transforms=lambda: preset, meta={"categories": list("abcdefghij")}
    )
    tv = types.ModuleType("torchvision")
    tv.models = types.SimpleNamespace(
        get_model_weights=lambda name: (
            types.SimpleNamespace(DEFAULT=weights) if name == "tiny" else _unknown(name)
        ),
        get_model=lambda name, weights: _Tiny(),
    )
    monkeypatch.setitem(sys.modules, "timm", timm)
    monkeypatch.setitem(sys.modules, "torchvision", tv)


def _unknown(name: str):
    raise RuntimeError(f"Unknown model ({name})")


@pytest.mark.parametrize("package", ["timm", "torchvision"])
def test_timm_and_torchvision_loading_paths(tiny, package, monkeypatch):
    _fake_packages(monkeypatch)
    got = load_network(f"{package}:tiny", spec=tiny.train.spec)
    x = tiny.train.images[:3]
    raw = (x * tiny.train.spec.std[0] + tiny.train.spec.mean[0]).expand(-1, 3, -1, -1)
    px = torch.nn.functional.interpolate(raw, size=(12, 12), mode="bilinear", align_corners=False)
    torch.testing.assert_close(got.module(x), _Tiny()((px - 0.4) / 0.2))
    assert got.module.embed(x).shape == (3, 4)
    assert got.record.to_dict()["input_size"] == [3, 12, 12] and got.record.num_classes == 10
    with pytest.raises(ConfigError) as e:
        load_network(f"{package}:nonesuch", spec=tiny.train.spec)
    assert "Unknown model" in _one_line(e)


# ----------------------------------------------------------------------------- as teachers
@pytest.mark.filterwarnings("ignore:.*under-trained")
def test_sre2l_with_a_file_teacher_round_trips_and_evaluates_with_it(tiny, tmp_path):
    net = _net(3)
    source = f"file:{save_network(net, tmp_path / 'teacher.safetensors')}"
    opts = {**method_test_overrides("sre2l"), "iterations": 2, "teacher": source}
    syn = create_method("sre2l", **opts).fit(tiny.train, 1, seed=0)
    assert syn.meta["teacher_dir"] == source and syn.meta["teacher_model"] == MODEL
    assert syn.meta["teacher"]["sha256"] == sha256_file(tmp_path / "teacher.safetensors")
    back = SyntheticSet.load(syn.save(tmp_path / "set"))
    assert back.meta["teacher"] == syn.meta["teacher"]
    kw = dict(epochs=1, runs=1, models=["convnet-w8"], seed=0)
    by_meta = evaluate(back, tiny.test, "teacher-kd", **kw)
    by_module = evaluate(back, tiny.test, "teacher-kd", teacher=net, **kw)
    assert by_meta.meta["teacher_dir"] == source
    assert by_meta.results[0].accuracies == by_module.results[0].accuracies
    from ddkit.eval.accounting import storage_report

    bytes_ = storage_report(back, train_size_bytes=10_000, protocol="teacher-kd")
    assert bytes_["teacher"] == (tmp_path / "teacher.safetensors").stat().st_size
    # another network under the same name is not the teacher the set records
    save_network(_net(4), tmp_path / "teacher.safetensors")
    with pytest.raises(FileFormatError) as e:
        evaluate(back, tiny.test, "teacher-kd", **kw)
    assert "changed since they were recorded" in _one_line(e)


def test_rded_with_an_hf_teacher(tiny, tmp_path):
    _hf_resnet(tmp_path / "resnet")
    source = f"hf:{tmp_path / 'resnet'}"
    opts = {**method_test_overrides("rded"), "teacher": source, "labels": "soft"}
    syn = create_method("rded", **opts).fit(tiny.train, 1, seed=0)
    assert syn.meta["teacher_dir"] == source and syn.meta["teacher"]["kind"] == "hf"
    assert syn.labels.shape == (10, 10)
    again = create_method("rded", **opts).fit(tiny.train, 1, seed=0)
    assert torch.equal(syn.images, again.images) and torch.equal(syn.labels, again.labels)


def test_edc_takes_sources_as_further_teachers_and_sre2l_refuses_one_without_bn(tiny, tmp_path):
    extra = f"file:{save_network(_net(5, model='convnet2-bn-w8'), tmp_path / 'two.safetensors')}"
    opts = {**method_test_overrides("edc"), "iterations": 2, "extra_teachers": (extra,)}
    syn = create_method("edc", **opts).fit(tiny.train, 1, seed=0)
    assert syn.meta["extra_teacher_dirs"] == [extra]
    _hf_vit(tmp_path / "vit")
    opts = {**method_test_overrides("sre2l"), "teacher": f"hf:{tmp_path / 'vit'}"}
    with pytest.raises(ConfigError) as e:
        create_method("sre2l", **opts).fit(tiny.train, 1, seed=0)
    assert "no BatchNorm" in _one_line(e)


def test_cli_teacher_flag_for_distill_and_evaluate(tmp_path, capsys):
    from ddkit.cli import main
    from ddkit.data import load_dataset

    spec = load_dataset("digits").train.spec
    net = create_model(MODEL, num_classes=10, in_channels=1, image_size=spec.image_size)
    source = f"file:{save_network(net, tmp_path / 't.safetensors')}"
    run = tmp_path / "run"
    args = ["distill", "--dataset", "digits", "--method", "rded", "--ipc", "1", "--quiet"]
    bad = args + ["--teacher", f"file:{tmp_path / 'nope.pt'}", "--out", str(run)]
    assert main(bad) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ddkit: error:") and "\n" not in err and "no checkpoint" in err
    assert not run.exists()  # nothing written
    assert main(args + ["--teacher", source, "--set", "num_crops=2", "--out", str(run)]) == 0
    capsys.readouterr()
    code = main(
        ["evaluate", str(run), "--protocol", "teacher-kd", "--epochs", "1", "--runs", "1",
         "--models", "convnet-w8", "--quiet", "--teacher", source]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    rep = json.loads((run / "eval.json").read_text())
    assert rep["meta"]["teacher_dir"] == source
