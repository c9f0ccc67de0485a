"""The prepared GPU script (benchmarks/gpu/beside_reference.py, issue 74) in its CPU smoke mode.

The reference implementations live in the ignored benchmarks/gpu/reference/ (prepare.sh fetches
them); in a clean clone the peer sides are skipped with that reason, and ddkit's sides and the
stand-in modules (benchmarks/gpu/shims.py) are still exercised.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "benchmarks" / "gpu"


@pytest.fixture(scope="module")
def bench():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("beside_reference", GPU / "beside_reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["beside_reference"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("beside_reference", None)


@pytest.fixture
def smoke_args(bench, tmp_path, monkeypatch):  # noqa: ANN001, ANN201
    bench.write_smoke_mnist(tmp_path, per_class=12)
    monkeypatch.setenv("BESIDE_CIFAR_SIZES", "60,20")
    args = type("Args", (), {"warmup": 1, "timed": 2, "smoke": True, "inline": True})()
    return args, tmp_path


def _reference_present(bench, repo: str) -> bool:  # noqa: ANN001
    return (bench.REFERENCE / bench.REPOS[repo]).is_dir()


def _check_side(side: dict, timed: int) -> None:
    assert "error" not in side, side.get("error")
    assert len(side["timed_seconds"]) == timed
    assert side["s_per_iteration"] > 0


@pytest.mark.parametrize("row", ["dm-mnist-ipc10", "sre2l-recover-224"])
def test_smoke_row(bench, smoke_args, row):  # noqa: ANN001
    """A row's ddkit side always, its peer side where the reference code is present."""
    args, data = smoke_args
    r = bench.ROWS[row]
    before = set(sys.modules)
    _check_side(bench.run_inline(r, "ddkit", args, data), args.timed)
    if not _reference_present(bench, r.repo):
        pytest.skip(f"reference code absent ({bench.REFERENCE}; benchmarks/gpu/prepare.sh)")
    peer = bench.run_inline(r, "peer", args, data)
    _check_side(peer, args.timed)
    # the reference's modules and the stand-ins are gone again (nothing leaks into other tests)
    assert not {m for m in set(sys.modules) - before if m.split(".")[0] in ("torchvision", "utils")}


def test_shims_mnist_and_transforms(bench, smoke_args):  # noqa: ANN001
    """The stand-in torchvision reads the IDX files as ddkit does and normalises like
    torchvision's ToTensor + Normalize; RandomResizedCrop keeps the requested size."""
    _, data = smoke_args
    saved = {k: sys.modules.get(k) for k in ("torchvision", "torchvision.datasets",
             "torchvision.transforms", "torchvision.models", "torchvision.utils", "kornia",
             "wandb")}  # fmt: skip
    sys.path.insert(0, str(GPU))
    try:
        import shims

        shims.install(data, lambda: torch.nn.Identity())
        from torchvision import datasets, transforms

        t = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5], [0.25])])
        ds = datasets.MNIST(str(data), train=True, transform=t)
        x, y = ds[3]
        raw = ds.data[3].float() / 255
        assert x.shape == (1, 28, 28) and y == int(ds.targets[3])
        assert torch.allclose(x[0], (raw - 0.5) / 0.25)
        crop = transforms.RandomResizedCrop(20)(torch.rand(2, 3, 32, 32))
        assert crop.shape == (2, 3, 20, 20)
        a, _ = shims.generated_cifar10(train=True)
        b, _ = shims.generated_cifar10(train=True)
        assert torch.equal(a, b)  # the same generated data in every process
    finally:
        sys.path.remove(str(GPU))
        sys.modules.pop("shims", None)
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def test_reference_fixes_keep_the_text_otherwise(bench):  # noqa: ANN001
    """The two fixes touch only the patterns they name."""
    import re

    pattern, repl = bench.FIXES["utils.py"]
    src = "    theta[:] = theta[0]\n    theta[:] = other[0]\n"
    assert re.sub(pattern, repl, src, flags=re.M) == (
        "    theta[:] = theta[0].clone()\n    theta[:] = other[0]\n"
    )
    pattern, repl = bench.FIXES["networks.py"]
    assert re.sub(pattern, repl, "out = out.view(out.size(0), -1)") == (
        "out = out.reshape(out.size(0), -1)"
    )


@pytest.mark.slow
def test_smoke_every_row(bench, tmp_path):  # noqa: ANN001
    """The whole --smoke run (every row, both sides, one process per side as on the GPU)."""
    import json
    import subprocess

    out = tmp_path / "smoke.json"
    subprocess.run([sys.executable, str(GPU / "beside_reference.py"), "--smoke", "--out",
                    str(out)], check=True, cwd=ROOT, capture_output=True)  # fmt: skip
    rows = json.loads(out.read_text())["rows"]
    assert [r["row"] for r in rows] == list(bench.ROWS)
    for r in rows:
        _check_side(r["sides"]["ddkit"], 1)
        if _reference_present(bench, bench.ROWS[r["row"]].repo):
            _check_side(r["sides"]["peer"], 1)
            assert r["ratio_ddkit_to_peer"] == pytest.approx(r["ddkit_s"] / r["peer_s"])
        else:
            assert "reference code absent" in r["sides"]["peer"]["skipped"]


def test_resume_keeps_only_rows_measured_on_both_sides(bench, tmp_path):  # noqa: ANN001
    import json

    rows = [{"row": "dm-mnist-ipc10", "peer_s": 0.5, "ddkit_s": 0.1},
            {"row": "dm-mnist-ipc50", "peer_s": None, "ddkit_s": 0.2},  # peer skipped
            {"row": "sre2l-recover-224", "peer_s": 0.3, "ddkit_s": None}]  # fmt: skip
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps({"rows": rows}))
    assert list(bench._measured_rows(path)) == ["dm-mnist-ipc10"]
    assert bench._measured_rows(tmp_path / "absent.json") == {}
