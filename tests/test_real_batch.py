"""Cost that follows the data (issue 82): a step never draws one real image twice, and a method
says what its step costs and which option changes it."""

from __future__ import annotations

import io

import pytest
import torch

from ddkit.data.dataset import ImageDataset
from ddkit.methods import create_method
from ddkit.methods.common import real_batch_note, real_batch_size
from ddkit.progress import Progress
from ddkit.testing_data import tiny_digits


def _small_classes() -> ImageDataset:
    """tiny-digits' train split: 20-28 rows per class, far below the default real batch."""
    return tiny_digits().train


def test_real_batch_is_capped_at_the_smallest_class() -> None:
    train = _small_classes()
    smallest = min(train.class_counts)
    assert real_batch_size(256, train) == smallest
    assert real_batch_size(3, train) == 3


@pytest.mark.parametrize("method", ["dm", "idm"])
def test_distribution_matching_draws_no_image_twice(method: str) -> None:
    """dm's default batch_real (256) on classes of ~24 rows: every step's batch is each class's
    rows without repeats (before: 256 draws with replacement from each class)."""
    train = _small_classes()
    m = create_method(method, batch_real=256, augment="none")
    m.start(train, 1, seed=0, iterations=2)
    rows = m._real_batch(torch.Generator().manual_seed(1)).index
    assert rows.shape == (train.spec.num_classes, min(train.class_counts))
    for c in range(train.spec.num_classes):
        assert len(set(rows[c].tolist())) == rows.shape[1]
        assert bool((train.labels[rows[c]] == c).all())


@pytest.mark.filterwarnings("ignore:model .convnet. normalises")
@pytest.mark.parametrize("method", ["dm", "dc"])
def test_step_cost_names_the_real_side_and_its_option(method: str) -> None:
    train = _small_classes()
    k, smallest = train.spec.num_classes, min(train.class_counts)
    m = create_method(method, batch_real=256, augment="none")
    m.start(train, 1, seed=0, iterations=1)
    note = m.step_cost()
    assert f"{smallest * k:,} real images per step" in note
    assert "capped from 256" in note and "--set batch_real=N" in note


def test_real_batch_note_says_nothing_capped_when_the_batch_fits() -> None:
    assert "capped" not in real_batch_note(8, 8, 10, "batch_real")
    assert real_batch_note(8, 8, 10, "batch_real").startswith("80 real images per step")


def test_progress_writes_the_note_once_before_its_first_line() -> None:
    out = io.StringIO()
    p = Progress("dm", 3, setting="lines", stream=out, every_seconds=0.0, note="what it costs")
    assert out.getvalue() == "dm: what it costs\n"  # before the first step, which may be long
    for _ in range(3):
        p.update(1)
    p.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "dm: what it costs"
    assert sum("what it costs" in line for line in lines) == 1
    assert len(lines) > 1


def test_dry_run_estimate_names_what_a_step_costs() -> None:
    from ddkit.runs import estimate_distill

    splits = tiny_digits()
    cost = estimate_distill(
        dataset="tiny-digits", method="dm", ipc=1, iterations=3, splits=splits,
        options={"batch_real": 256, "augment": "none"},
    )  # fmt: skip
    k, smallest = splits.train.spec.num_classes, min(splits.train.class_counts)
    assert f"{smallest * k:,} real images per step" in cost.line("dm")
