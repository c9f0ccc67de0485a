"""A saved set feeds a plain PyTorch loop: SyntheticSet.torch_dataset() in a DataLoader."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from ddkit.data import load_dataset
from ddkit.data.synthetic import SyntheticSet


def test_torch_dataset_feeds_a_dataloader_and_a_training_loop(tmp_path):
    train = load_dataset("digits").train
    index = torch.arange(0, len(train), 7)
    SyntheticSet.from_real(train, index).save(tmp_path / "set")
    syn = SyntheticSet.load(tmp_path / "set")

    data = syn.torch_dataset()
    assert len(data) == len(syn)
    images, labels = next(iter(DataLoader(data, batch_size=len(syn))))
    assert torch.equal(images, syn.images) and torch.equal(labels, train.labels[index])

    net = nn.Sequential(nn.Flatten(), nn.Linear(images[0].numel(), syn.spec.num_classes))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    torch.manual_seed(0)
    loader = DataLoader(data, batch_size=32, shuffle=True)
    losses = []
    for _ in range(20):
        for x, y in loader:
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]  # it learns from the set


def test_torch_dataset_keeps_soft_labels_and_gives_pixels_on_request():
    train = load_dataset("digits").train
    soft = torch.softmax(torch.randn(20, 10, generator=torch.Generator().manual_seed(0)), 1)
    syn = SyntheticSet(train.images[:20], soft, train.spec)
    x, y = syn.torch_dataset(pixels=True)[3]
    assert torch.equal(y, soft[3]) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert torch.allclose(x, syn.pixels()[3])


def test_distill_and_evaluate_print_the_bytes_a_set_stores(tmp_path, capsys):
    from ddkit.cli import main

    run = tmp_path / "run"
    assert main(["distill", "--dataset", "digits", "--method", "random", "--ipc", "2", "--quiet",
                 "--out", str(run)]) == 0  # fmt: skip
    stored = SyntheticSet.load(run / "synthetic").storage_bytes()["total"]
    assert f"{stored:,} bytes of distilled content" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--protocol", "smoke", "--runs", "1", "--quiet"]) == 0
    assert f"20 images ({stored:,} bytes)" in capsys.readouterr().out
