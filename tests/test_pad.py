"""PAD (Li et al., 2024) on DATM: the easy-to-hard expert schedule, the parameter mask, the
expert cache that never mixes plain and scheduled experts."""

from __future__ import annotations

import pytest
import torch

from ddkit.errors import ConfigError
from ddkit.methods.trajectory.pad import PADSchedule, ScheduleSettings, keep_mask
from ddkit.testing import method_test_overrides, tiny_digits


def _schedule(**kw) -> PADSchedule:
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0] * 40 + [1] * 25 + [2] * 33)[torch.randperm(98, generator=g)]
    hardness = torch.rand(98, generator=g, dtype=torch.float64)
    return PADSchedule(hardness, labels, ScheduleSettings(**kw))


def test_schedule_adds_hard_rows_in_order_then_removes_easy_ones():
    s = _schedule(
        init_ratio=0.5,
        add_end_epoch=4,
        rm_epoch_first=6,
        rm_epoch_second=8,
        rm_easy_ratio_first=0.1,
        rm_easy_ratio_second=0.3,
    )
    previous = None
    for epoch in range(5):  # adding: each class's easiest floor(p n_c) rows, p growing to 1
        rows = set(s.rows(epoch).tolist())
        p = min(1.0, 0.5 + 0.5 * epoch / 4)
        for c in range(3):
            members = torch.nonzero(s.labels == c).flatten()
            easiest = members[torch.argsort(s.hardness[members])][: int(p * len(members))]
            assert rows & set(members.tolist()) == set(easiest.tolist())
            if previous is not None:  # the rows added are harder than every row already in
                old = [r for r in previous if s.labels[r] == c]
                new = [r for r in rows - previous if s.labels[r] == c]
                assert new and s.hardness[new].min() > s.hardness[old].max()
        previous = rows
    assert len(s.rows(4)) == len(s.rows(6)) == 98  # the whole set until rm_epoch_first
    for epoch, ratio in ((7, 0.1), (9, 0.3)):  # then the easiest rows leave
        rows = set(s.rows(epoch).tolist())
        for c in range(3):
            members = torch.nonzero(s.labels == c).flatten()
            order = members[torch.argsort(s.hardness[members])]
            cut = int(ratio * len(members))
            assert rows & set(members.tolist()) == set(order[cut:].tolist())


def test_schedule_key_changes_with_scores_and_settings():
    a, b = _schedule(), _schedule(init_ratio=0.5)
    c = PADSchedule(a.hardness.flip(0), a.labels)
    assert a.key() == _schedule().key()
    assert len({str(a.key()), str(b.key()), str(c.key())}) == 3


def test_keep_mask_drops_the_smallest_errors_or_the_shallowest_parameters():
    err = torch.tensor([0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.0, 0.4])
    keep = keep_mask(err, 0.5, "error")
    assert keep.tolist() == [True, False, True, False, True, False, False, True]
    assert keep_mask(err, 0.25, "depth").tolist() == [False] * 2 + [True] * 6
    assert keep_mask(err, 0.5, "none").all() and keep_mask(err, 0.0, "error").all()


def test_masked_loss_and_its_tesla_gradient_float64():
    """The masked matching loss is the kept error over the kept normaliser, and TESLA's
    gradient of it equals autograd's through the unrolled steps."""
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
        net = create_model("convnet2-w8", num_classes=3, in_channels=1, image_size=8).double()
    fm = FlatModel(net)
    g = torch.Generator().manual_seed(1)
    start = fm.flatten(net)
    target = start + 0.05 * torch.randn(start.shape, generator=g, dtype=torch.float64)
    images = torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64, requires_grad=True)
    lr = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    plan = make_plan(6, 4, 3, g, None, (8, 8))
    seen = {}

    def keep(err):
        seen["mask"] = keep_mask(err, 0.5, "error")
        return seen["mask"]

    student = Student(fm)
    loss = unrolled_step(student, start, target, images, lr, labels, plan, keep=keep)
    loss.backward()
    mask = seen["mask"]
    assert mask.sum() == fm.num_params - int(0.5 * fm.num_params)
    plain = unrolled_step(student, start, target, images.detach(), lr.detach(), labels, plan)
    assert float(loss.detach()) != pytest.approx(float(plain))
    r = tesla_step(student, start, target, images, lr, labels, plan, keep=keep)
    assert r.loss == pytest.approx(float(loss.detach()), rel=1e-10)
    torch.testing.assert_close(r.grad_images, images.grad, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(r.grad_lr, lr.grad, rtol=1e-8, atol=1e-12)


def _pad(tmp_path, **kw):
    from ddkit.methods import create_method

    cfg = {
        **method_test_overrides("pad"),
        "experts_cache": str(tmp_path / "experts"),
        "scores_cache": str(tmp_path / "scores"),
        **kw,
    }
    return create_method("pad", **cfg)


def test_pad_experts_are_cached_apart_and_plain_experts_are_refused(tmp_path):
    from ddkit.methods import create_method
    from ddkit.methods.trajectory.experts import load_experts

    train = tiny_digits().train
    syn = _pad(tmp_path).fit(train, 1, seed=0)
    folder = syn.meta["experts_dir"]
    assert load_experts(folder).meta["schedule"] == syn.meta["pad_schedule"]
    datm_cfg = {**method_test_overrides("datm"), "experts_cache": str(tmp_path / "experts")}
    plain = create_method("datm", **datm_cfg).fit(train, 1, seed=0).meta["experts_dir"]
    assert plain != folder  # same recipe, another folder: the schedule is in the key
    a, b = load_experts(folder), load_experts(plain)
    assert torch.equal(a.params(0, 0), b.params(0, 0))  # same seeded start...
    assert not torch.equal(a.params(0, 1), b.params(0, 1))  # ...trained on other rows
    with pytest.raises(ConfigError, match="not trained on this PAD schedule"):
        _pad(tmp_path, experts_dir=plain).fit(train, 1, seed=0)


def test_pad_refuses_a_schedule_out_of_order(tmp_path):
    with pytest.raises(ConfigError, match="add_end_epoch <= rm_epoch_first"):
        _pad(tmp_path, add_end_epoch=3, rm_epoch_first=2)


def test_scheduled_experts_resume_bit_for_bit(tmp_path):
    """An expert cut off after epoch 1 continues on the schedule's rows to the same snapshots."""
    from ddkit.methods.trajectory.experts import ExpertSettings
    from ddkit.methods.trajectory.pad import train_scheduled_experts

    train = tiny_digits().train
    g = torch.Generator().manual_seed(0)
    schedule = PADSchedule(
        torch.rand(len(train), generator=g, dtype=torch.float64),
        train.labels,
        ScheduleSettings(init_ratio=0.5, add_end_epoch=2, rm_epoch_first=2, rm_epoch_second=2),
    )
    kw = dict(model="convnet2-w8", num_experts=1, epochs=3, settings=ExpertSettings(batch_size=64))
    whole = train_scheduled_experts(train, schedule, out_dir=tmp_path / "a", **kw)
    cut = tmp_path / "b"
    train_scheduled_experts(train, schedule, out_dir=cut, **kw)
    for epoch in (2, 3):
        (cut / "expert_000" / f"epoch_{epoch:03d}.safetensors").unlink()
    resumed = train_scheduled_experts(train, schedule, out_dir=cut, **kw)
    for epoch in range(4):
        assert torch.equal(whole.params(0, epoch), resumed.params(0, epoch))
    assert resumed.meta["schedule"] == schedule.key()
