"""Memory bounded by a chunk, not by the set (issue 82), for gradient matching: dc, dsa and idc
run a matching step a few classes per backward pass, the images' gradient accumulated across
the chunks, with the update of one pass; a budget too small for one pass chunks instead of
refusing, and a step that cannot fit one class is refused in one line."""

from __future__ import annotations

import pytest
import torch
from paths import as_float64

from ddkit.errors import ConfigError
from ddkit.meter import BUDGET_ENV, check_memory
from ddkit.methods import create_method
from ddkit.testing_data import tiny_digits

pytestmark = pytest.mark.usefixtures("global_rng_untouched")

#: Small enough for this machine: two matching steps per network, one network epoch between.
SMALL = {"model": "convnet2-w8", "outer_loop": 2, "inner_loop": 1, "batch_real": 6}
#: idc's own test settings (its networks train on real images between matching steps).
IDC = {**SMALL, "net_images": 32, "batch_net": 16, "codec": "formation:2"}


def _fit(name: str, ipc: int = 2, **kw):
    data = as_float64(tiny_digits().train)
    m = create_method(name, iterations=2, **kw)
    return m, m.fit(data, ipc, seed=1, progress=False)


@pytest.mark.paths_agree("float64")
@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("dc", SMALL),
        ("dc", {**SMALL, "vectorize": True}),
        ("dc", {**SMALL, "reweight": "kde"}),
        ("dsa", SMALL),
        ("idc", IDC),  # the gradient carried back through a multi-formation decoding
    ],
    ids=["dc", "dc-vectorised", "dc-kde", "dsa", "idc-formation"],
)
def test_classes_in_chunks_give_the_one_pass_update_float64(name: str, kw: dict) -> None:
    whole, a = _fit(name, **kw)
    assert whole.syn_classes_per_pass_ == 10  # every class fits the machine's budget
    pieces, b = _fit(name, class_chunk=3, **kw)
    assert pieces.syn_classes_per_pass_ == 3  # 3 + 3 + 3 + 1 classes per backward pass
    start = create_method(name, iterations=2, **kw).initial_set(as_float64(tiny_digits().train), 2)
    assert not torch.equal(a.images, start.images)  # the images did move
    torch.testing.assert_close(a.images, b.images, rtol=1e-10, atol=1e-10)


def test_a_budget_too_small_for_one_pass_chunks_instead_of_refusing(monkeypatch) -> None:
    train = tiny_digits().train
    k = train.spec.num_classes
    probe = create_method("dc", **SMALL)
    probe.start(train, 2, iterations=1)
    class_pass, fixed = probe._step_bytes(train.spec, 2, train.images.dtype)
    budget = fixed + 3 * class_pass  # three classes' passes at most
    monkeypatch.setenv(BUDGET_ENV, str(budget))
    with pytest.raises(ConfigError):  # one pass of every class would not fit it
        check_memory("one pass", k * class_pass + fixed, "")
    m = create_method("dc", **SMALL)
    m.fit(train, 2, iterations=1, seed=0, progress=False)
    assert 1 <= m.syn_classes_per_pass_ <= 3


def test_a_step_that_cannot_fit_one_class_is_refused_in_one_line(monkeypatch) -> None:
    monkeypatch.setenv(BUDGET_ENV, str(2 * 2**20))  # the network fits, one class does not
    with pytest.raises(ConfigError) as refused:
        create_method("dsa", model="convnet2", batch_real=8, iterations=1).fit(
            tiny_digits().train, 10, progress=False
        )
    text = str(refused.value)
    assert "\n" not in text
    assert "dsa's matching step (1 class(es) x 8 real and 10 synthetic 8x8 images" in text
    assert "per backward pass, of 10 classes" in text and "--set batch_real" in text


@pytest.mark.paths_agree("float64")
def test_a_ranks_share_of_the_classes_in_chunks_gives_its_one_pass_update_float64() -> None:
    """A rank of a class-split session (its ``classes_``, set here by hand) runs its share in
    chunks with the update of its one pass; the other classes' images stay where they were."""
    data = as_float64(tiny_digits().train)
    share, images = [1, 4, 7, 8], {}
    for per in (4, 3):
        m = create_method("dsa", **SMALL)
        m.start(data, 2, seed=1, iterations=2)
        start = m.state_["images"].detach().clone()
        m.classes_, m.syn_classes_per_pass_ = share, per
        for i in range(2):
            m.step(i)
        images[per] = m.state_["images"].detach().view(10, 2, -1)
    torch.testing.assert_close(images[4], images[3], rtol=1e-10, atol=1e-10)
    others = [c for c in range(10) if c not in share]
    assert torch.equal(images[3][others], start.view(10, 2, -1)[others])
    assert not torch.equal(images[3][share], start.view(10, 2, -1)[share])
