"""DM / IDM (ddkit.methods.matching.distribution): loss and vectorisation against plain float64
references, partitioning, determinism and resume, presets, errors; slow learning tests."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from ddkit.augment import DSA, default_strategy
from ddkit.data.codecs.formation import decode, encode_real, merge, partition
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.methods import create_method
from ddkit.methods.matching.distribution import (
    DM,
    IDM,
    augment_per_class,
    embedding_match_loss,
    match_embeddings,
    sample_class_draws,
)
from ddkit.models import create_model
from ddkit.testing import tiny_digits


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


pytestmark = pytest.mark.usefixtures("global_rng_untouched")


# ------------------------------------------------------------------ loss and vectorisation
def test_embedding_match_loss_matches_float64_class_loop():
    g = _g(1)
    real = torch.randn(4, 7, 5, generator=g, dtype=torch.float64)
    syn = torch.randn(4, 3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    ref = torch.zeros((), dtype=torch.float64)
    for c in range(4):  # the reference: one class at a time, explicit means
        mr = sum(real[c, i] for i in range(7)) / 7
        ms = sum(syn[c, j] for j in range(3)) / 3
        ref = ref + ((mr - ms) ** 2).sum()
    got = embedding_match_loss(real, syn)
    assert torch.allclose(got, ref, rtol=1e-13, atol=1e-13)
    (g_got,) = torch.autograd.grad(got, syn)
    (g_ref,) = torch.autograd.grad(ref, syn)
    assert torch.allclose(g_got, g_ref, rtol=1e-13, atol=1e-13)
    # the closed form: d/ds_cj = -2/S (mean_real_c - mean_syn_c)
    expect = (-2 / 3) * (real.mean(1) - syn.detach().mean(1)).unsqueeze(1).expand(-1, 3, -1)
    assert torch.allclose(g_got, expect, atol=1e-13)


def test_augment_per_class_equals_class_loop_float64():
    dsa = DSA(default_strategy(3, "cifar10"))
    k = 16  # enough classes for several families to be drawn
    x = torch.randn(k, 5, 3, 8, 8, generator=_g(2), dtype=torch.float64)
    draws = sample_class_draws(dsa, k, _g(3), (8, 8))
    assert len({d.families for d in draws}) >= 3
    got = augment_per_class(dsa, x, draws)
    ref = torch.stack([dsa.apply(x[c], draws[c]) for c in range(k)])
    assert got.shape == x.shape
    assert torch.allclose(got, ref, atol=1e-12, rtol=0)


def _double_net(seed: int = 0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = create_model("convnet-w16", num_classes=10, in_channels=1, image_size=8).double()
    return net


@pytest.mark.parametrize("chunk", [0, 10])
def test_match_embeddings_vectorised_equals_loop_float64(chunk):
    net = _double_net()
    dsa = DSA(default_strategy(1, "digits"))
    real = torch.randn(10, 6, 1, 8, 8, generator=_g(4), dtype=torch.float64)
    syn = torch.randn(10, 2, 1, 8, 8, generator=_g(5), dtype=torch.float64, requires_grad=True)
    draws = sample_class_draws(dsa, 10, _g(6), (8, 8))
    rm_v, se_v = match_embeddings(net.embed, real, syn, dsa, draws, vectorize=True, chunk=chunk)
    rm_l, se_l = match_embeddings(net.embed, real, syn, dsa, draws, vectorize=False)
    assert rm_v.shape == (10, net.num_features) and se_v.shape == (10, 2, net.num_features)
    assert torch.allclose(rm_v, rm_l, atol=1e-12) and torch.allclose(se_v, se_l, atol=1e-12)
    assert not rm_v.requires_grad  # the real side carries no graph
    gv = torch.autograd.grad(((rm_v - se_v.mean(1)) ** 2).sum(), syn)[0]
    gl = torch.autograd.grad(((rm_l - se_l.mean(1)) ** 2).sum(), syn)[0]
    assert torch.allclose(gv, gl, atol=1e-12)


def test_default_chunk_bounds_memory_without_changing_a_bit():
    # embed_chunk=512 (the default) embeds whole classes at a time; each class's mean is
    # computed from the same rows as in one forward, so float32 results are identical
    train = tiny_digits().train
    opts = {"batch_real": 128, "iterations": 2}  # 1,280 real images: three pieces
    chunked = create_method("dm", **opts).fit(train, 1, seed=0)
    whole = create_method("dm", **opts, embed_chunk=0).fit(train, 1, seed=0)
    assert create_method("dm").config.embed_chunk == 512
    assert torch.equal(chunked.images, whole.images)


@pytest.mark.parametrize("name,extra", [("dm", {}), ("idm", {"factor": 2, "net_init_num": 2})])
def test_vectorised_step_equals_class_loop_float64(name, extra):
    train = tiny_digits().train
    cfg = dict(batch_real=12, dtype="float64", model="convnet-w16", **extra)
    if name == "idm":
        cfg.update(net_num=3, model_train_steps=2, batch_net=32, net_generate_interval=1)
    vec, loop = (
        create_method(name, vectorize=True, **cfg),
        create_method(name, vectorize=False, **cfg),
    )
    a, b = vec.fit(train, 2, iterations=2, seed=3), loop.fit(train, 2, iterations=2, seed=3)
    start = create_method(name, vectorize=True, **cfg).fit(train, 2, iterations=0, seed=3)
    assert (a.images - start.images).abs().max() > 1e-3  # the steps changed the images
    xa, xb = vec.state_["images"].detach(), loop.state_["images"].detach()
    assert xa.dtype == torch.float64
    assert torch.allclose(xa, xb, atol=1e-10, rtol=0)
    assert torch.equal(a.labels, b.labels)


def test_dm_step_decreases_matching_loss_for_fixed_draws():
    """A gradient step on the synthetic images lowers the loss of the draws it was computed on."""
    train = tiny_digits().train
    m = DM(batch_real=12, model="convnet-w16", iterations=0, lr_img=0.1)
    m.fit(train, 2, seed=0)
    g = m.state_["generator"]
    state = g.get_state()
    loss0 = m.step(0)["loss"]
    g.set_state(state)  # same network, batch and augmentation again
    loss1 = m.step(1)["loss"]
    assert loss1 < loss0


# ------------------------------------------------------------------ partitioning (IDM)
@pytest.mark.parametrize("size,factor", [((8, 8), 2), ((28, 28), 2), ((28, 28), 3), ((9, 12), 4)])
def test_partition_merge_round_trip(size, factor):
    x = torch.randn(3, 2, *size, generator=_g(7))
    tiles = partition(x, factor)
    ph, pw = -(-size[0] // factor), -(-size[1] // factor)
    assert tiles.shape == (3 * factor * factor, 2, ph, pw)
    assert torch.equal(merge(tiles, factor, size), x)
    # row-major tiles of image 0: tile 1 is the top row's second tile
    assert torch.equal(tiles[1], x[0, :, :ph, pw : 2 * pw])


def test_decode_shape_order_and_identity():
    x = torch.randn(4, 3, 8, 8, generator=_g(8))
    assert decode(x, 1) is x
    d = decode(x, 2)
    assert d.shape == (16, 3, 8, 8)
    top_right_of_second = F.interpolate(
        x[1:2, :, :4, 4:], size=(8, 8), mode="bilinear", align_corners=False
    )
    assert torch.allclose(d[4 + 1], top_right_of_second[0])
    # constant tiles survive encode -> decode exactly
    consts = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 3, 8, 8)
    enc = encode_real(consts, 2)
    assert enc.shape == (2, 3, 8, 8)
    assert torch.allclose(decode(enc, 2), consts)


def test_idm_result_is_decoded_with_stored_images_recorded(tmp_path):
    train = tiny_digits().train
    m = create_method("idm", factor=2, **IDM.test_overrides)
    syn = m.fit(train, 1, iterations=2, seed=0)
    k = train.spec.num_classes
    assert syn.images.shape == (4 * k, 1, 8, 8)
    assert torch.bincount(syn.labels, minlength=k).tolist() == [4] * k
    assert (
        syn.meta["formation_factor"] == 2 and syn.meta["stored_ipc"] == 1 and syn.meta["ipc"] == 1
    )
    stored = syn.extras["formation.stored"]
    assert stored.shape == (k, 1, 8, 8)
    assert torch.allclose(decode(stored, 2), syn.images)
    syn.save(tmp_path / "s")
    back = SyntheticSet.load(tmp_path / "s")
    assert torch.equal(back.images, syn.images) and back.meta["formation_factor"] == 2
    # factor 1 (auto for 8x8): plain stored images, no extras
    plain = create_method("idm", **IDM.test_overrides).fit(train, 1, iterations=1, seed=0)
    assert plain.images.shape == (k, 1, 8, 8) and not plain.extras


def test_idm_initialisation_stitches_real_images_of_the_class():
    train = tiny_digits().train
    m = IDM(factor=2, init="real", **IDM.test_overrides)
    m.fit(train, 2, iterations=0, seed=0)
    idx = train.sample_per_class(2 * 4, _g(0))  # the draw init makes first: (K, ipc * f^2)
    assert (train.labels[idx] == torch.arange(10).view(10, 1)).all()
    expect = encode_real(train.images[idx.flatten()], 2)
    assert torch.equal(m.state_["images"].detach(), expect)


# ------------------------------------------------------------------ determinism, resume, queue
@pytest.mark.parametrize("name", ["dm", "idm"])
def test_same_seed_same_set_other_seed_differs(name):
    train = tiny_digits().train
    over = {"factor": 2} if name == "idm" else {}
    make = lambda: create_method(name, **{**(DM if name == "dm" else IDM).test_overrides, **over})  # noqa: E731
    a, b = make().fit(train, 2, iterations=3, seed=0), make().fit(train, 2, iterations=3, seed=0)
    c = make().fit(train, 2, iterations=3, seed=1)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)


def test_idm_resume_is_exact_with_partitioning_and_queue(tmp_path):
    train = tiny_digits().train
    cfg = {**IDM.test_overrides, "factor": 2, "net_num": 2, "train_net_num": 2}
    full = create_method("idm", **cfg).fit(train, 1, iterations=5, seed=0)
    create_method("idm", **cfg).fit(
        train, 1, iterations=3, seed=0, checkpoint_dir=tmp_path, checkpoint_every=1
    )
    m = create_method("idm", **cfg)
    resumed = m.fit(train, 1, iterations=5, seed=0, checkpoint_dir=tmp_path, resume=True)
    assert torch.equal(full.images, resumed.images)
    assert len(m.state_["queue_params"]) == 2  # capped at net_num: the oldest network was dropped


def test_idm_queue_training_learns_and_weights_ce():
    train = tiny_digits().train
    m = IDM(
        model="convnet-w16",
        batch_real=8,
        net_num=1,
        net_init_num=1,
        net_generate_interval=100,
        train_net_num=1,
        model_train_steps=5,
        batch_net=64,
        lr_net=0.05,
    )
    m.fit(train, 1, iterations=0, seed=0)
    p0 = m.state_["queue_params"][0].clone()
    logs = [m.step(i) for i in range(1, 8)]  # no push: iteration % 100 != 0
    assert logs[0]["ce_loss"] == 0.0  # an untrained network (accuracy 0) does not regularise
    assert all(log["ce_loss"] > 0.0 for log in logs[1:])
    assert not torch.equal(p0, m.state_["queue_params"][0])
    assert logs[-1]["net_train_acc"] > 2 * logs[0]["net_train_acc"]  # the queue network learns


# ------------------------------------------------------------------ presets and errors
def test_presets_are_data():
    assert create_method("idm", dataset="cifar10", ipc=50).config.ce_weight == 0.1
    assert create_method("idm", dataset="cifar100", ipc=10).config.model_train_steps == 50
    dm = create_method("dm", dataset="cifar10", ipc=10).config
    assert (dm.iterations, dm.lr_img, dm.momentum_img, dm.batch_real, dm.init) == (
        20000,
        1.0,
        0.5,
        256,
        "real",
    )
    assert create_method("dm", dataset="digits", ipc=1).config.batch_real == 128
    assert IDM().factor_for((32, 32)) == 2 and IDM().factor_for((8, 8)) == 1
    assert IDM(factor=3).factor_for((8, 8)) == 3


def test_bad_options_raise_clear_errors():
    with pytest.raises(ConfigError, match="init must be 'real' or 'noise'"):
        DM(init="zeros")
    with pytest.raises(ConfigError, match="unknown DSA operation"):
        DM(augment="color_warp")
    with pytest.raises(ConfigError, match="net_init_num"):
        IDM(net_num=2, net_init_num=3)
    with pytest.raises(ConfigError, match="unknown option"):
        DM(ce_weight=1.0)
    with pytest.raises(ConfigError, match="larger than the image size"):
        IDM(factor=9, **IDM.test_overrides).fit(tiny_digits().train, 1, iterations=1)


# ------------------------------------------------------------------ does it learn (slow)
_PROTOCOL = dict(name="dm-test", epochs=300, augment="dsa", runs=5)


@functools.lru_cache(maxsize=1)
def _digits():
    from ddkit.data import load_dataset

    return load_dataset("digits")


def _score(method: str, **kw) -> float:
    from ddkit.eval import EvalProtocol, evaluate

    d = _digits()
    syn = create_method(method, dataset="digits", ipc=1, **kw).fit(d.train, 1, seed=0)
    return evaluate(syn, d.test, EvalProtocol(**_PROTOCOL), seed=0).results[0].mean


@functools.lru_cache(maxsize=1)
def _random_score() -> float:
    return _score("random")  # the same real images DM/IDM start from (same seed, same first draw)


def _compare_with_random(name: str, iterations: int, **overrides) -> tuple[float, float]:
    ours, rnd = _score(name, iterations=iterations, **overrides), _random_score()
    print(
        f"\n{name} digits IPC 1 ({iterations} it): {100 * ours:.1f}% vs random real "
        f"{100 * rnd:.1f}% (ConvNet-3, 300 epochs DSA, 5 runs, seed 0)"
    )
    return ours, rnd


@pytest.mark.slow
def test_dm_beats_random_real_on_digits_ipc1():
    dm, rnd = _compare_with_random("dm", iterations=100, batch_real=64)
    assert dm > rnd + 0.02, (dm, rnd)


@pytest.mark.slow
def test_idm_beats_random_real_on_digits_ipc1():
    idm, rnd = _compare_with_random("idm", iterations=50, batch_real=64)
    assert idm > rnd + 0.02, (idm, rnd)


def test_dm_network_is_reused_and_needs_no_gradient():
    """DM draws its random network by re-initialising one module (no module built per
    iteration), whose weights never require a gradient (no backward into them)."""
    m = create_method("dm", batch_real=4)
    m.fit(tiny_digits().train, 1, iterations=0, seed=0)
    net = m.nets_.network
    m.step(0)
    m.step(1)
    assert m.nets_.network is net
    assert not any(p.requires_grad for p in net.parameters())
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.paths_agree("float64")
def test_real_batch_embedded_in_pieces_equals_all_at_once_float64(monkeypatch):
    """Under a memory budget too small for the whole real batch at once, DM gathers, augments
    and embeds it a piece at a time (float64): the same images."""
    from ddkit.meter import BUDGET_ENV
    from ddkit.methods.matching.class_rows import CHUNK_SHARE

    train = tiny_digits().train
    kw = {**DM.test_overrides, "dtype": "float64", "iterations": 2}
    whole = create_method("dm", **kw)
    a = whole.fit(train, 2, seed=0)
    assert whole.embed_chunk_ == kw.get("embed_chunk", DM.Config().embed_chunk)
    fp = whole.footprint_  # a budget whose share for the real batch holds about one class
    one_class = kw["batch_real"] * (fp.inference + 2 * 8 * train.images[0].numel())
    monkeypatch.setenv(BUDGET_ENV, str(CHUNK_SHARE * one_class + 40 * fp.training))
    pieces = create_method("dm", **kw)
    b = pieces.fit(train, 2, seed=0)
    assert pieces.embed_chunk_ < 10 * kw["batch_real"]
    torch.testing.assert_close(a.images, b.images, rtol=1e-10, atol=1e-10)


def test_class_rows_gather_only_the_classes_asked():
    from ddkit.methods.matching.class_rows import ClassRows

    source = torch.arange(12.0).view(6, 1, 2, 1)
    rows = ClassRows(source, torch.tensor([[0, 1], [2, 3], [4, 5]]))
    assert rows.shape == (3, 2, 1, 2, 1) and len(rows) == 3
    assert torch.equal(rows[1], source[[2, 3]])
    assert torch.equal(rows[1:], source[2:].view(2, 2, 1, 2, 1))
    assert torch.equal(rows.classes([2, 0])[0], source[[4, 5]])


def test_a_step_that_cannot_fit_the_budget_is_refused_before_it_starts(monkeypatch, tmp_path):
    from ddkit.meter import BUDGET_ENV

    # 2 MiB: the network fits, not even one class's 10 synthetic images through it
    monkeypatch.setenv(BUDGET_ENV, str(2 * 2**20))
    m = create_method("dm", **DM.test_overrides, iterations=2)
    with pytest.raises(ConfigError, match=r"matching step \(1 of 10 classes x 10 .*--model"):
        m.fit(tiny_digits().train, 10, seed=0)
