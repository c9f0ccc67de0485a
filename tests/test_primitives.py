"""Shared primitives: seeds (ddkit.rng), batched inference and re-initialisation
(ddkit.models.helpers), fresh networks (methods.common.RandomNetwork), the model pool
(methods.pool) and data fingerprints (data.fingerprint)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ddkit.data.dataset import ImageDataset
from ddkit.data.fingerprint import fingerprint
from ddkit.errors import ConfigError
from ddkit.methods.base import flatten_state, restore_state
from ddkit.methods.common import RandomNetwork, fresh_network
from ddkit.methods.pool import ModelPool
from ddkit.models import (
    MODELS,
    build_network,
    create_model,
    predict,
    reinitializable,
    reinitialize,
)
from ddkit.rng import derive_seed, draw_seed, seeded_global_rng
from ddkit.testing import tiny_digits


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------- seeds
def test_draw_seed_is_the_old_inline_draw_and_advances_the_generator_alike():
    a, b = _g(5), _g(5)
    for _ in range(3):
        assert draw_seed(a) == int(torch.randint(0, 2**62, (1,), generator=b))
    assert torch.equal(a.get_state(), b.get_state())


def test_derive_seed_values_are_stable():
    # recorded from trajectory.experts.derive_seed before it moved to ddkit.rng: expert files
    # on disk depend on these values
    assert derive_seed(0, 3, "init") == 5662192219384941061
    assert derive_seed(7, 1, 2) == 895426440550530111


# ---------------------------------------------------------------------------- re-initialisation
#: Every registered family, plus the norm variants whose layers differ (BatchNorm buffers,
#: GroupNorm, no norm).
MODEL_NAMES = sorted(
    set(MODELS.names())
    | {"convnet-bn", "convnet2-gn-max", "convnet-none", "alexnet-bn", "vgg11-bn", "resnet10-in"}
)


#: Deep ConvNets pool below 1x1 on 8x8 images.
_SIZE = {"convnet4": 16, "convnet5": 32, "convnet6": 64}


#: Series models take (D, 1, L) rows.
_SERIES = ("conv1d", "resnet1d")


def _build(name: str, seed: int) -> nn.Module:
    with seeded_global_rng(seed):
        size = (1, 16) if name.startswith(_SERIES) else _SIZE.get(name, 8)
        return create_model(name, num_classes=10, in_channels=3, image_size=size)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_reinitialize_equals_a_module_built_under_the_seed(name: str):
    want = _build(name, 11)
    net = _build(name, 4)
    with torch.no_grad():  # also disturb everything a trained network would have changed
        for t in [*net.parameters(), *net.buffers()]:
            t.add_(1)
    assert reinitializable(net)
    before = torch.random.get_rng_state()
    assert reinitialize(net, 11) is net
    assert torch.equal(torch.random.get_rng_state(), before)  # global RNG untouched
    got, ref = net.state_dict(), want.state_dict()
    assert got.keys() == ref.keys()
    for key in ref:
        assert torch.equal(got[key], ref[key]), f"{name}: {key}"


class _BareParameter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.scale = nn.Parameter(torch.randn(2))  # no reset_parameters above it


def test_reinitialize_refuses_a_module_it_cannot_reach():
    net = _BareParameter()
    assert not reinitializable(net)
    assert reinitializable(net.lin)
    with pytest.raises(ConfigError):
        reinitialize(net, 0)


@pytest.mark.parametrize(
    ("name", "dtype"), [("convnet", torch.float32), ("convnet-bn", torch.float64), ("vit", None)]
)
def test_random_network_draws_what_fresh_network_builds(name: str, dtype):
    train = tiny_digits().train
    nets = RandomNetwork(name, train.spec, dtype=dtype or torch.float32)
    a, b = _g(3), _g(3)
    for _ in range(2):
        got = nets.draw(a)
        ref = fresh_network(name, train, b)
        if dtype is not None:
            ref = ref.to(dtype)
        assert got is nets.network
        for (k, x), (_, y) in zip(got.state_dict().items(), ref.state_dict().items()):
            assert torch.equal(x, y), k
        with torch.no_grad():  # the next draw must not see this
            for p in got.parameters():
                p.mul_(0)
    assert torch.equal(a.get_state(), b.get_state())


def test_random_network_rebuilds_a_model_it_cannot_reinitialise(monkeypatch):
    import ddkit.methods.common as common

    train = tiny_digits().train
    monkeypatch.setattr(common, "reinitializable", lambda m: False)
    nets = RandomNetwork("convnet", train.spec)
    assert not nets.in_place
    got, ref = nets.draw(_g(1)), fresh_network("convnet", train, _g(1))
    for x, y in zip(got.parameters(), ref.parameters()):
        assert torch.equal(x, y)


# ---------------------------------------------------------------------------- predict
def test_predict_equals_a_plain_forward():
    net = _build("convnet-bn", 2)
    x = torch.randn(23, 3, 8, 8, generator=_g(0))
    net.train()
    got = predict(net, x, batch_size=5)
    assert net.training  # mode restored
    net.eval()
    with torch.no_grad():
        want = torch.cat([net(x[i : i + 5]) for i in range(0, 23, 5)])
        want_embed = net.embed(x)
    assert torch.equal(got, want)
    assert not got.requires_grad
    emb = predict(net, x, batch_size=7, method="embed", post=lambda f: f.double())
    assert emb.dtype == torch.float64
    torch.testing.assert_close(emb, want_embed.double())
    fn_out = predict(lambda b: net(b).argmax(1), x, batch_size=100)
    assert torch.equal(fn_out, want.argmax(1))
    assert predict(net, x[:0]).numel() == 0
    with pytest.raises(ConfigError):
        predict(net, x, batch_size=0)


# ---------------------------------------------------------------------------- model pool
def _flat(net: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])


def test_pool_push_drop_get():
    nets = [_build("convnet-bn", s) for s in range(3)]
    state: dict = {}
    pool = ModelPool(state, _build("convnet-bn", 9), 2, prefix="q", score="acc")
    assert set(state) == {"q_params", "q_momentum", "q_buffers", "q_acc"} and len(pool) == 0
    for i, net in enumerate(nets):
        pool.push(net, score=float(i))
    assert len(pool) == 2  # the oldest (nets[0]) was dropped
    for j, net in enumerate(nets[1:]):
        assert torch.equal(pool.params(j), _flat(net))
        assert torch.equal(pool.momentum(j), torch.zeros_like(_flat(net)))
        assert all(torch.equal(a, b) for a, b in zip(pool.buffers(j), net.buffers()))
        assert pool.score(j) == float(j + 1)
    assert len(state["q_buffers"]) == 2 * len(list(nets[0].buffers()))
    pool.set_score(0, 42.0)
    assert state["q_acc"][0] == 42.0
    pool.drop(0)
    assert len(pool) == 1 and torch.equal(pool.params(0), _flat(nets[2]))


def test_pool_call_load_store():
    net = _build("convnet-bn", 5).eval()
    pool = ModelPool({}, _build("convnet-bn", 9).eval(), 3)
    pool.push(net)
    x = torch.randn(4, 3, 8, 8, generator=_g(1))
    with torch.no_grad():
        want_embed, want = net.embed(x), net(x)
    assert torch.equal(pool.call(0, "embed", x), want_embed)
    assert torch.equal(pool.call(0, "forward", x), want)
    assert torch.equal(pool.call(0, "classifier", want_embed), want)
    loaded = pool.load(0)
    assert loaded is pool.template and torch.equal(_flat(loaded), _flat(net))
    with torch.no_grad():
        for p in loaded.parameters():
            p.add_(1)
    loaded.train()(x)  # BatchNorm updates the template's running statistics
    pool.store(0)
    assert torch.equal(pool.params(0), _flat(loaded))
    assert all(torch.equal(a, b) for a, b in zip(pool.buffers(0), loaded.buffers()))
    # momentum views write into the stored vector
    for v in pool.split(pool.momentum(0)):
        v.fill_(2.0)
    assert bool((pool.momentum(0) == 2.0).all())


def test_pool_checkpoint_round_trip():
    state: dict = {}
    pool = ModelPool(state, _build("convnet-bn", 9), 3, prefix="queue", score="acc")
    for s in range(4):
        pool.push(_build("convnet-bn", s), score=s / 2)
    tensors, scalars = flatten_state(state)
    fresh: dict = {}
    again = ModelPool(fresh, _build("convnet-bn", 9), 3, prefix="queue", score="acc")
    again.push(_build("convnet-bn", 7))  # whatever it held is replaced
    restore_state(fresh, tensors, scalars)
    assert len(again) == 3
    for j in range(3):
        assert torch.equal(again.params(j), pool.params(j))
        assert torch.equal(again.momentum(j), pool.momentum(j))
        assert all(torch.equal(a, b) for a, b in zip(again.buffers(j), pool.buffers(j)))
        assert again.score(j) == pool.score(j)


@pytest.mark.parametrize("entry", [torch.zeros(2), [torch.zeros(2)], 3, ["a", "b"]])
def test_restoring_a_checkpoint_that_lacks_an_entry_is_refused_in_one_line(entry):
    tensors, scalars = flatten_state({"images": torch.ones(2)})
    fresh = {"images": torch.zeros(2), "added_later": entry}
    with pytest.raises(ConfigError, match="the checkpoint holds no 'added_later'") as err:
        restore_state(fresh, tensors, scalars)
    assert "\n" not in str(err.value) and "without --resume" in str(err.value)


# ---------------------------------------------------------------------------- fingerprint
def test_fingerprint_equals_the_recorded_expert_fingerprints():
    # recorded with trajectory.experts._fingerprint (and decoupled.teacher.dataset_fingerprint)
    # before they were moved onto ddkit.data.fingerprint: expert and teacher cache folders on
    # disk are keyed by these strings
    train = tiny_digits().train
    assert fingerprint(train) == "826a8883a99df4a1"
    x = torch.arange(3 * 64, dtype=torch.float32).view(3, 1, 8, 8) / 64
    small = ImageDataset(x, torch.tensor([0, 1, 9]), train.spec)
    assert fingerprint(small) == "e70ac5950cd75b0a"
    assert fingerprint(small.images, small.labels) == "e70ac5950cd75b0a"
    from ddkit.eval.teacher import dataset_fingerprint

    assert dataset_fingerprint(small) == "ac72e40bccf7ba35"
    assert len(fingerprint(small, length=20)) == 20
    assert fingerprint(small, "other") != fingerprint(small)
    with pytest.raises(TypeError):
        fingerprint(3)  # type: ignore[arg-type]


def test_build_network_is_create_model_under_the_seed():
    spec = tiny_digits().train.spec
    a = build_network("convnet", spec, 5)
    with seeded_global_rng(5):
        b = create_model(
            "convnet", num_classes=10, in_channels=spec.channels, image_size=spec.image_size
        )
    assert torch.equal(_flat(a), _flat(b))


def test_sgd_step_is_torch_sgd_with_dampening_zero():
    from ddkit.eval.train import sgd_step

    g = torch.Generator().manual_seed(0)
    p1 = [torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(4, generator=g)]
    p1 = [p.double() for p in p1]
    p2 = [p.clone().requires_grad_(True) for p in p1]
    momenta = [torch.zeros_like(p) for p in p1]
    opt = torch.optim.SGD(p2, lr=0.1, momentum=0.9, weight_decay=5e-3)
    for _ in range(3):
        grads = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in p1]
        sgd_step(p1, grads, momenta, lr=0.1, momentum=0.9, weight_decay=5e-3)
        for p, gr in zip(p2, grads):
            p.grad = gr.clone()
        opt.step()
    for a, b in zip(p1, p2):
        torch.testing.assert_close(a, b.detach())


def test_adam_step_is_torch_adam():
    from ddkit.eval.train import adam_step

    g = torch.Generator().manual_seed(0)
    p1 = [torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(4, generator=g).double()]
    p2 = [p.clone().requires_grad_(True) for p in p1]
    first, second = [torch.zeros_like(p) for p in p1], [torch.zeros_like(p) for p in p1]
    opt = torch.optim.Adam(p2, lr=0.01, betas=(0.8, 0.99), eps=1e-6)
    for step in range(1, 5):
        grads = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in p1]
        adam_step(p1, grads, first, second, step=step, lr=0.01, betas=(0.8, 0.99), eps=1e-6)
        for p, gr in zip(p2, grads):
            p.grad = gr.clone()
        opt.step()
    for a, b in zip(p1, p2):
        torch.testing.assert_close(a, b.detach())
