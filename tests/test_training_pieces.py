"""A training batch too large for the memory budget is trained a piece at a time with its
gradients summed: the same step as one pass (issue 82, ddkit.eval.train.sgd_train)."""

from __future__ import annotations

import pytest
import torch

from ddkit.eval.train import TrainRecipe, sgd_train
from ddkit.models import create_model
from ddkit.models.footprint import module_footprint


def _trained(pieces: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[torch.nn.Module, list]:
    """A float64 ConvNet (instance norm: no statistics across rows) after two epochs of 24
    images in batches of 8, with or without a memory budget that holds only 3 rows."""
    torch.manual_seed(0)  # the same initial weights for both (torch's default initialisation)
    net = create_model("convnet2-w8", num_classes=3, in_channels=1, image_size=(8, 8)).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(24, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (24,), generator=g)
    if pieces:
        per_row = module_footprint(net, (1, 8, 8)).training
        monkeypatch.setenv("DDKIT_MEMORY_BUDGET", str(2 * 3 * per_row + 1))  # half: 3 rows
    seen: list = []
    recipe = TrainRecipe(epochs=2, lr=0.05, batch_size=8)
    sgd_train(
        net,
        x,
        y,
        recipe,
        generator=torch.Generator().manual_seed(2),
        on_batch=lambda epoch, idx, logits: seen.append((idx, logits)),
    )
    return net, seen


def test_pieces_take_the_same_step_as_one_pass(monkeypatch):
    whole, seen_whole = _trained(False, monkeypatch)
    with pytest.warns(UserWarning, match=r"pieces of 3 with their gradients summed"):
        pieced, seen_pieced = _trained(True, monkeypatch)
    for (name, a), b in zip(whole.state_dict().items(), pieced.state_dict().values()):
        assert torch.allclose(a, b, rtol=0, atol=1e-12), name
    assert len(seen_whole) == len(seen_pieced) == 6
    for (ia, la), (ib, lb) in zip(seen_whole, seen_pieced):  # on_batch sees whole batches
        assert torch.equal(ia, ib) and torch.allclose(la, lb, rtol=0, atol=1e-12)


def test_a_batch_that_fits_is_one_pass(monkeypatch, recwarn):
    _trained(False, monkeypatch)
    assert not [w for w in recwarn if "pieces of" in str(w.message)]
