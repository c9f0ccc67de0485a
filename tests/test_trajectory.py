"""Trajectory matching: expert buffers (resume, locks, ZCA), the TESLA gradient, MTT/TESLA/DATM."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from paths import as_float64
from safetensors.torch import load_file

from ddkit.claims import try_claim
from ddkit.errors import ConfigError, FileFormatError
from ddkit.methods.trajectory.experts import (
    ExpertSettings,
    _epoch_file,
    _lock_path,
    load_experts,
    train_experts,
)
from ddkit.testing import tiny_digits

TINY = "convnet2-w8"


def _tiny_train():
    return tiny_digits().train


def _files(root: Path) -> dict[str, tuple]:
    """Every snapshot's tensors (as raw bytes) and header metadata. (The header's key order is not
    stable in safetensors, so whole files are not compared byte for byte.)"""
    from safetensors import safe_open

    out = {}
    for p in sorted(root.rglob("epoch_*.safetensors")):
        with safe_open(str(p), "pt") as f:
            tensors = {k: f.get_tensor(k).numpy().tobytes() for k in f.keys()}
            out[str(p.relative_to(root))] = (tensors, f.metadata())
    return out


# ----------------------------------------------------------------------------- TESLA == MTT
@pytest.mark.parametrize("label_mode", ["hard", "prob", "logits"])
def test_tesla_gradient_equals_unrolled_mtt_float64(label_mode):
    from ddkit.augment import DSA
    from ddkit.methods.trajectory.student import (
        FlatModel,
        Student,
        make_plan,
        tesla_step,
        unrolled_step,
    )
    from ddkit.models import create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = create_model(TINY, num_classes=3, in_channels=1, image_size=8).double()
    fm = FlatModel(net)
    g = torch.Generator().manual_seed(0)
    start = fm.flatten(net)
    target = start + 0.05 * torch.randn(start.shape, generator=g, dtype=torch.float64)
    images = torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64, requires_grad=True)
    lr = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    if label_mode == "hard":
        labels = torch.tensor([0, 0, 1, 1, 2, 2])
    elif label_mode == "prob":
        labels = torch.softmax(torch.randn(6, 3, generator=g, dtype=torch.float64), -1)
    else:
        labels = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    dsa = DSA("color_crop_cutout_scale_rotate")
    plan = make_plan(6, 5, 4, g, dsa, (8, 8))  # N=5 steps, batches of 4 (wrapping permutations)

    student = Student(fm, dsa, label_mode)
    loss = unrolled_step(student, start, target, images, lr, labels, plan)
    loss.backward()
    for k in (0, 1, 2, 5):  # sqrt checkpoints, every state, segments of 2, one segment
        r = tesla_step(student, start, target, images, lr, labels, plan, checkpoint_every=k)
        assert r.loss == pytest.approx(float(loss.detach()), rel=1e-12)
        torch.testing.assert_close(r.grad_images, images.grad, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(r.grad_lr, lr.grad, rtol=1e-9, atol=1e-12)
        if label_mode == "logits":
            torch.testing.assert_close(r.grad_labels, labels.grad, rtol=1e-9, atol=1e-12)
        else:
            assert r.grad_labels is None
    assert images.grad.abs().max() > 0 and lr.grad.abs() > 0


def test_batchnorm_student_is_refused(tmp_path):
    from ddkit.methods.trajectory.student import FlatModel
    from ddkit.models import create_model

    with pytest.raises(ConfigError, match="BatchNorm"):
        FlatModel(create_model("convnet2-w8-bn", num_classes=3, in_channels=1, image_size=8))
    with pytest.raises(ConfigError, match="BatchNorm"):
        train_experts(_tiny_train(), "convnet2-w8-bn", 1, 1, tmp_path / "bn")


# ----------------------------------------------------------------------------- experts
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_experts_resume_is_bit_identical(tmp_path, momentum):
    train = _tiny_train()
    settings = ExpertSettings(lr=0.01, momentum=momentum, batch_size=64, seed=3)
    full = tmp_path / "full"
    train_experts(train, TINY, 2, 4, full, settings)
    # "killed" after 2 epochs: train 2, then resume to 4
    part = tmp_path / "part"
    train_experts(train, TINY, 2, 2, part, settings)
    train_experts(train, TINY, 2, 4, part, settings, resume=True)
    assert _files(full) == _files(part)
    # killed mid-expert: drop the last snapshots of expert 1 and resume
    crash = tmp_path / "crash"
    train_experts(train, TINY, 2, 4, crash, settings)
    for ep in (3, 4):
        _epoch_file(crash, 1, ep).unlink()
    with pytest.raises(ConfigError, match="resume"):
        train_experts(train, TINY, 2, 4, crash, settings)
    train_experts(train, TINY, 2, 4, crash, settings, resume=True)
    assert _files(full) == _files(crash)
    buf = load_experts(full)
    assert len(buf) == 2 and buf.epochs == 4
    assert not torch.equal(buf.params(0, 0), buf.params(0, 4))
    assert not torch.equal(buf.params(0, 0), buf.params(1, 0))  # experts differ


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.paths_agree("float64")
def test_experts_trained_together_match_one_at_a_time(tmp_path, momentum):
    """Experts trained together (vmap), one at a time, and resumed at different epochs give
    the same snapshots (float64 training; snapshots are stored in float32)."""
    train = as_float64(_tiny_train())
    settings = ExpertSettings(lr=0.01, momentum=momentum, batch_size=64, seed=3)
    one = tmp_path / "one"
    train_experts(train, TINY, 3, 3, one, settings, together=1)
    together = tmp_path / "together"
    train_experts(train, TINY, 3, 3, together, settings, together=3)
    # a resumed group whose experts stand at different epochs advances them in lockstep
    mixed = tmp_path / "mixed"
    train_experts(train, TINY, 3, 3, mixed, settings, together=1)
    for e, epochs in ((1, (2, 3)), (2, (1, 2, 3))):
        for ep in epochs:
            _epoch_file(mixed, e, ep).unlink()
    train_experts(train, TINY, 3, 3, mixed, settings, together=3, resume=True)
    reference = _files(one)
    for root in (together, mixed):
        files = _files(root)
        assert files.keys() == reference.keys()
        for name, (tensors, meta) in files.items():
            ref_tensors, ref_meta = reference[name]
            assert tensors.keys() == ref_tensors.keys()
            got_all, want_all = (load_file(str(r / name)) for r in (root, one))
            for key in tensors:
                got, want = got_all[key], want_all[key]  # params float32, momentum float64
                assert torch.allclose(got, want, rtol=1e-5, atol=1e-6), (root.name, name, key)
            assert {k: v for k, v in meta.items() if k != "train_loss"} == {
                k: v for k, v in ref_meta.items() if k != "train_loss"
            }
            if "train_loss" in ref_meta:
                assert float(meta["train_loss"]) == pytest.approx(
                    float(ref_meta["train_loss"]), rel=1e-4
                )
    buf = load_experts(together)
    assert not torch.equal(buf.params(0, 3), buf.params(1, 3))  # each its own expert
    with pytest.raises(ConfigError, match="together"):
        train_experts(train, TINY, 1, 1, tmp_path / "bad", together=0)


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"batch_size": 1.5}, "batch_size must be an integer >= 1, got 1.5"),
        ({"lr": 0.0}, r"lr must be > 0, got 0.0"),
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\), got 1.0"),
    ],
)
def test_expert_settings_are_checked_when_built(kw, message):
    with pytest.raises(ConfigError, match=message):
        ExpertSettings(**kw)


def test_experts_metadata_and_settings_mismatch(tmp_path):
    from safetensors import safe_open

    train = _tiny_train()
    root = tmp_path / "e"
    train_experts(train, TINY, 1, 1, root, ExpertSettings(batch_size=64))
    meta = json.loads((root / "experts.json").read_text())
    assert (
        meta["model"] == TINY and meta["lr"] == 0.01 and meta["zca"] is False and meta["seed"] == 0
    )
    assert meta["spec"]["name"] == "tiny-digits" and meta["momentum"] == 0.0
    with safe_open(str(_epoch_file(root, 0, 1)), "pt") as f:
        header = f.metadata()
    assert header["dataset"] == "tiny-digits" and header["model"] == TINY and header["epoch"] == "1"
    assert json.loads(header["mean"]) == list(train.spec.mean) and header["zca"] == "false"
    with pytest.raises(ConfigError, match="different lr"):
        train_experts(train, TINY, 1, 1, root, ExpertSettings(lr=0.1, batch_size=64))
    with pytest.raises(FileFormatError, match="experts.json"):
        load_experts(tmp_path / "nothing")


def test_lock_prevents_double_claim(tmp_path):
    root = tmp_path / "locks"
    root.mkdir()
    assert try_claim(_lock_path(root, 0))  # ours
    assert try_claim(_lock_path(root, 0))  # re-entrant for the same process
    # a live other process holds expert 1
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        _lock_path(root, 1).write_text(json.dumps({"pid": other.pid, "host": socket.gethostname()}))
        assert not try_claim(_lock_path(root, 1))
        # train_experts skips the claimed expert and trains the rest
        buf = train_experts(_tiny_train(), TINY, 3, 1, root, ExpertSettings(batch_size=64))
        assert buf.experts == [0, 2]
        assert not (root / "expert_001").exists()
    finally:
        other.kill()
        other.wait()
    # the holder died: its lock is stale and can be taken over
    assert try_claim(_lock_path(root, 1))
    assert json.loads(_lock_path(root, 1).read_text())["pid"] == os.getpid()


def test_zca_experts_and_distilled_set(tmp_path):
    from ddkit.data.synthetic import SyntheticSet
    from ddkit.methods import create_method

    train = _tiny_train()
    root = tmp_path / "zca"
    buf = train_experts(train, TINY, 1, 3, root, ExpertSettings(batch_size=64, zca=True))
    assert (root / "zca.safetensors").exists() and buf.zca and buf.spec.transform == "zca"
    m = create_method(
        "mtt",
        model=TINY,
        experts_dir=str(root),
        zca=True,
        syn_steps=2,
        expert_epochs=1,
        max_start_epoch=2,
        iterations=1,
        lr_img=1.0,
    )
    syn = m.fit(train, 1, seed=0)
    assert syn.spec.transform == "zca"
    assert any(k.startswith("zca.") for k in syn.extras)
    pix = syn.pixels()
    assert pix.shape == syn.images.shape and 0 <= float(pix.min()) and float(pix.max()) <= 1
    syn.save(tmp_path / "set")
    back = SyntheticSet.load(tmp_path / "set")
    torch.testing.assert_close(back.pixels(), pix)
    with pytest.raises(ConfigError, match="zca"):
        create_method("mtt", model=TINY, experts_dir=str(root), zca=False).fit(train, 1, seed=0)


# ----------------------------------------------------------------------------- methods
def _method(name, tmp_path, **kw):
    from ddkit.methods import create_method

    cfg = dict(
        model=TINY,
        num_experts=2,
        expert_train_epochs=4,
        expert_batch=64,
        experts_cache=str(tmp_path / "cache"),
        syn_steps=3,
        expert_epochs=1,
        max_start_epoch=2,
        lr_img=10.0,
    )
    cfg.update(kw)
    return create_method(name, **cfg)


@pytest.mark.parametrize("name", ["mtt", "tesla", "datm"])
def test_distill_resume_equals_uninterrupted(tmp_path, name):
    train = _tiny_train()
    full = _method(name, tmp_path).fit(train, 2, iterations=4, seed=5)
    _method(name, tmp_path).fit(
        train, 2, iterations=2, seed=5, checkpoint_dir=tmp_path / "ck", checkpoint_every=1
    )
    resumed = _method(name, tmp_path).fit(
        train, 2, iterations=4, seed=5, checkpoint_dir=tmp_path / "ck", resume=True
    )
    assert torch.equal(full.images, resumed.images) and torch.equal(full.labels, resumed.labels)
    assert full.lr == resumed.lr
    assert Path(full.meta["experts_dir"]).parent == tmp_path / "cache"


def test_divergence_watch_says_once_when_a_third_of_its_window_exceeds_one():
    from ddkit.methods.trajectory.methods import DivergenceWatch

    w, window = DivergenceWatch(), DivergenceWatch.window
    assert all(w.update(0.9) is None for _ in range(window))
    need = math.ceil(DivergenceWatch.share * window)
    said = [w.update(1.5) for _ in range(need)]
    assert said == [None] * (need - 1) + [need]
    assert all(w.update(3.0) is None for _ in range(window))  # said once


def test_a_diverging_trajectory_run_warns_once_and_a_stable_one_does_not(tmp_path, monkeypatch):
    """pad's mnist5k IPC-10 test cell diverged unseen (loss 0.76 -> 1.56, a third of its updates
    skipped); a run now says so. A step size of 1 makes the tiny student overshoot its target."""
    from ddkit.methods.trajectory.methods import DivergenceWatch

    monkeypatch.setattr(DivergenceWatch, "window", 3)
    train = _tiny_train()
    with warnings.catch_warnings(record=True) as stable:
        warnings.simplefilter("always")
        _method("mtt", tmp_path, iterations=4).fit(train, 2, seed=0)
    assert not [w for w in stable if "diverging" in str(w.message)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _method("mtt", tmp_path, iterations=5, syn_lr=1.0).fit(train, 2, seed=0)
    said = [w for w in caught if "diverging" in str(w.message)]
    assert len(said) == 1 and said[0].category is RuntimeWarning
    assert re.match(r"mtt: in 3 of the last 3 iterations .* diverging", str(said[0].message))


@pytest.mark.paths_agree("fp32", steps=1)
def test_mtt_and_tesla_take_the_same_step(tmp_path):
    """With hard labels, one MTT iteration (unrolled autograd) and one TESLA-backward iteration
    give the same images and learned lr (float32 rounding of one step only)."""
    train = _tiny_train()
    a = _method("mtt", tmp_path, iterations=1).fit(train, 2, seed=1)
    b = _method("mtt", tmp_path, iterations=1, backward="tesla").fit(train, 2, seed=1)
    torch.testing.assert_close(a.images, b.images, rtol=1e-4, atol=1e-5)
    assert a.lr == pytest.approx(b.lr, rel=1e-4)
    assert not torch.equal(
        a.images, _method("mtt", tmp_path, iterations=0).fit(train, 2, seed=1).images
    )


def test_labels_per_method(tmp_path):
    train = _tiny_train()
    mtt = _method("mtt", tmp_path, iterations=1).fit(train, 2, seed=0)
    assert mtt.labels.dtype == torch.int64 and mtt.lr is not None and mtt.lr > 0
    tesla = _method("tesla", tmp_path, iterations=1).fit(train, 2, seed=0)
    datm = _method("datm", tmp_path, iterations=1, lr_label=50.0, loss_threshold=0.0).fit(
        train, 2, seed=0
    )
    for s in (tesla, datm):
        assert s.soft and torch.allclose(s.labels.sum(1), torch.ones(len(s)))
        assert torch.equal(s.hard_labels, torch.arange(10).repeat_interleave(2))
    # DATM learns its labels; TESLA's are fixed expert outputs
    d0 = _method("datm", tmp_path, iterations=0).fit(train, 2, seed=0)
    assert not torch.allclose(d0.labels, datm.labels)
    t0 = _method("tesla", tmp_path, iterations=0).fit(train, 2, seed=0)
    assert torch.equal(t0.labels, tesla.labels)


def test_datm_window_grows(tmp_path):
    from ddkit.methods.trajectory.methods import DATM

    m = DATM(min_start_epoch=1, max_start_epoch=3, max_start_epoch_final=7, expansion_iterations=8)
    windows = [m._window(it) for it in (0, 2, 4, 8, 100)]
    assert windows == [(1, 3), (1, 4), (1, 5), (1, 7), (1, 7)]
    assert DATM(max_start_epoch=3)._window(50) == (0, 3)  # no growth without a final bound
    # the window is checked against the experts' length
    with pytest.raises(ConfigError, match="exceed"):
        _method("datm", tmp_path, max_start_epoch=2, max_start_epoch_final=9).fit(
            _tiny_train(), 1, seed=0
        )


def test_presets():
    from ddkit.methods import METHODS, load_all, resolve_config

    load_all()
    for name in ("mtt", "tesla", "datm"):
        cls = METHODS.get(name)
        assert resolve_config(cls, "cifar10", 10)["lr_lr"] == 1e-5  # not the typo'd value
        assert resolve_config(cls, "cifar10", 1)["lr_lr"] == 1e-7
        for preset in cls.presets:
            cfg = cls(**resolve_config(cls, *preset.key)).config  # every preset is a valid config
            final = getattr(cfg, "max_start_epoch_final", None) or cfg.max_start_epoch
            assert final - 1 + cfg.expert_epochs <= cfg.expert_train_epochs, (name, preset.key)
            assert cfg.lr_lr <= 1e-5 and cfg.lr_img > 0
    mtt10 = resolve_config(METHODS.get("mtt"), "cifar10", 10)
    assert (mtt10["syn_steps"], mtt10["expert_epochs"], mtt10["max_start_epoch"]) == (30, 2, 20)
    datm10 = resolve_config(METHODS.get("datm"), "cifar10", 10)
    assert (datm10["syn_steps"], datm10["max_start_epoch"], datm10["max_start_epoch_final"]) == (
        80,
        10,
        20,
    )


@pytest.mark.parametrize("name", ["mtt", "tesla", "datm"])
def test_conformance(name):
    from ddkit.testing import check_method

    check_method(name)


def test_experts_cli(tmp_path):
    from ddkit.cli import main

    out = tmp_path / "cli"
    argv = [
        "experts",
        "--dataset",
        "digits",
        "--model",
        TINY,
        "--num-experts",
        "1",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    assert load_experts(out).epochs == 1
    assert main(argv + ["--lr", "0.5"]) == 2  # different settings in the same folder: clear error
    two = tmp_path / "two"
    argv[argv.index("1")] = "2"  # two experts, trained together
    argv[argv.index(str(out))] = str(two)
    assert main(argv + ["--together", "2", "--device", "cpu"]) == 0
    assert len(load_experts(two)) == 2
    assert main(argv + ["--together", "0"]) == 2


def test_label_temperature_calibration():
    from ddkit.methods.trajectory.methods import _label_temperature

    logits = torch.randn(50, 10, generator=torch.Generator().manual_seed(0)) * 0.1
    assert _label_temperature(logits, 2.0, 0.0) == 2.0
    t = _label_temperature(logits, 1.0, 0.9)
    conf = torch.softmax(logits / t, 1).max(1).values.mean()
    assert conf == pytest.approx(0.9, abs=1e-4) and t < 0.1
    with pytest.raises(ConfigError, match="label_confidence"):
        _label_temperature(logits, 1.0, 0.05)


def test_two_processes_share_one_expert_folder(tmp_path):
    """Two processes started together on one folder split the experts between them; the result
    equals a single-process run."""
    code = (
        "import sys, torch; torch.set_num_threads(1)\n"
        "from ddkit.testing import tiny_digits\n"
        "from ddkit.methods.trajectory.experts import ExpertSettings, train_experts\n"
        f"train_experts(tiny_digits().train, {TINY!r}, 4, 2, sys.argv[1], ExpertSettings(batch_size=64), "
        "resume=True)\n"
    )
    shared = tmp_path / "shared"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(shared)], env=env) for _ in range(2)]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    single = tmp_path / "single"
    train_experts(_tiny_train(), TINY, 4, 2, single, ExpertSettings(batch_size=64))
    assert load_experts(shared).experts == [0, 1, 2, 3]
    assert _files(shared) == _files(single)
    assert not list(shared.glob("*.lock"))


# ----------------------------------------------------------------------------- smooth objective
def _matching_fd_vs_autograd(model_name: str) -> tuple[float, float]:
    """Directional derivative of the MTT loss w.r.t. the images: autograd vs a float64 central
    difference (h = 1e-5), for a freshly initialised ``model_name`` on real digits images."""
    from ddkit.data import load_dataset
    from ddkit.methods.trajectory.student import (
        FlatModel,
        Student,
        _grad_fn,
        make_plan,
        unrolled_step,
    )
    from ddkit.models import create_model

    train = load_dataset("digits").train
    gen = torch.Generator().manual_seed(1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = create_model(model_name, num_classes=10, in_channels=1, image_size=(8, 8)).double()
    fm = FlatModel(net)
    fm.base = fm.base.double()
    start = fm.flatten(net)
    x_all, y_all = train.images.double(), train.labels
    student = Student(fm)
    step = _grad_fn(student)
    target = start
    for _ in range(90):  # a short "expert" (two epochs of the preset): SGD on real mini-batches
        target = target - 0.01 * step(
            target, x_all, y_all, torch.randint(len(x_all), (32,), generator=gen), None
        )
    x = torch.cat([x_all[y_all == c][:1] for c in range(10)]).clone().requires_grad_(True)
    plan = make_plan(10, 10, 0, torch.Generator().manual_seed(0), None, (8, 8))
    lr = torch.tensor(0.01, dtype=torch.float64)

    def loss(z):
        return unrolled_step(student, start, target.detach(), z, lr, torch.arange(10), plan)

    loss(x).backward()
    u = x.grad / x.grad.norm()
    h = 1e-5
    with torch.no_grad():
        fd = float((loss(x + h * u) - loss(x - h * u)) / (2 * h))
    return float(x.grad.norm()), fd


def test_digits_presets_give_a_smooth_matching_objective():
    """Instance norm over 2x2 maps (ConvNet-3 on 8x8) makes the unrolled objective too rough for
    gradients to mean anything; the digits presets use a student for which they do."""
    from ddkit.methods import create_method
    from ddkit.models import create_model
    from ddkit.models.helpers import MIN_NORMALISED_VALUES, smallest_normalised_group

    rough = create_model("convnet", num_classes=10, in_channels=1, image_size=(8, 8))
    assert smallest_normalised_group(rough, (1, 8, 8)) == 4 < MIN_NORMALISED_VALUES
    ad, fd = _matching_fd_vs_autograd("convnet")
    assert abs(ad - fd) > 0.1 * abs(ad)  # the measurement that motivated the presets
    for name in ("mtt", "tesla", "datm"):
        for ipc in (1, 10, 50):
            model = create_method(name, dataset="digits", ipc=ipc).config.model
            net = create_model(model, num_classes=10, in_channels=1, image_size=(8, 8))
            n = smallest_normalised_group(net, (1, 8, 8))
            assert n is None or n >= MIN_NORMALISED_VALUES, (name, ipc, model, n)
    model = create_method("mtt", dataset="digits", ipc=10).config.model
    ad, fd = _matching_fd_vs_autograd(model)
    assert abs(ad - fd) <= 1e-4 * abs(ad), (model, ad, fd)


def test_rough_student_warns(tmp_path):
    from ddkit.methods import create_method

    m = create_method(
        "mtt",
        model="convnet",
        num_experts=1,
        expert_train_epochs=3,
        expert_batch=64,
        experts_cache=str(tmp_path),
        syn_steps=2,
        expert_epochs=1,
        max_start_epoch=2,
        iterations=1,
    )
    with pytest.warns(UserWarning, match="normalises groups of only 4 values"):
        m.fit(_tiny_train(), 1, seed=0)


def test_expert_cache_keys_are_unchanged(tmp_path):
    """Expert folders are keyed by the data fingerprint and seeds derived from it; both were
    recorded before they moved to ddkit.data.fingerprint / ddkit.rng (users' caches on disk)."""
    from ddkit.methods import create_method
    from ddkit.methods.trajectory import experts
    from ddkit.methods.trajectory.methods import _auto_cache_dir
    from ddkit.rng import derive_seed

    assert experts.derive_seed is derive_seed
    m = create_method("mtt", experts_cache="cache")
    assert str(_auto_cache_dir(m.config, tiny_digits().train)) == str(
        Path("cache") / "tiny-digits-convnet-c3d70ef9b4"
    )
    settings = ExpertSettings(batch_size=64, augment=None)
    train_experts(tiny_digits().train, "convnet2", 1, 1, tmp_path, settings)
    meta = json.loads((tmp_path / "experts.json").read_text())
    assert meta["data_fingerprint"] == "826a8883a99df4a1"
