"""`ddkit export` (PNG folders, .npz that ddkit reads back) and `ddkit plot` (PNG charts)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ddkit.cli import main
from ddkit.data import load_dataset
from ddkit.data.synthetic import SyntheticSet


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("plots") / "run"
    args = ["distill", "--dataset", "digits", "--method", "dm", "--ipc", "2", "--quiet"]
    assert main([*args, "--iterations", "6", "--set", "batch_real=8", "--out", str(out)]) == 0
    return out


def test_export_npz_reads_back_as_a_dataset(run, tmp_path, capsys):
    assert main(["export", str(run), "--to", str(tmp_path / "set.npz")]) == 0
    syn = SyntheticSet.load(run / "synthetic")
    back = load_dataset("npz", root=str(tmp_path / "set.npz"))
    assert len(back.train) + len(back.test) == len(syn) == 20
    with np.load(tmp_path / "set.npz", allow_pickle=False) as z:
        assert np.allclose(z["x_train"], syn.pixels()[:, 0].numpy(), atol=1e-6)
        assert z["y_train"].tolist() == syn.hard_labels.tolist()
        assert z["class_names"].tolist() == [str(i) for i in range(10)]
    assert main(["export", str(run), "--to", str(tmp_path / "set.npz")]) == 2  # never overwritten
    assert "already exists" in capsys.readouterr().err


def test_export_png_folder(run, tmp_path):
    assert main(["export", str(run), "--to", str(tmp_path / "pngs")]) == 0
    files = sorted((tmp_path / "pngs").rglob("*.png"))
    assert len(files) == 20 and {f.parent.name for f in files} == {str(i) for i in range(10)}
    assert Image.open(files[0]).size == (8, 8)


def _png(path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.verify()
        return Image.open(path).size


def test_plot_curve_and_compare(run, capsys):
    assert main(["plot", "curve", str(run)]) == 0 and _png(run / "curve.png")[0] > 100
    assert main(["plot", "compare", str(run)]) == 0
    width, height = _png(run / "compare.png")
    assert height > 10 * 32 and width > 5 * 32  # 10 rows; 2 synthetic + gap + 2 real per row
    assert main(["plot", "curve"]) == 2 and "needs a run folder" in capsys.readouterr().err


def test_plot_bench_draws_a_suites_rows(tmp_path):
    rows = [
        {
            "dataset": "d",
            "method": m,
            "ipc": ipc,
            "mean": acc,
            "std": 0.01,
            "storage_bytes": 64 * ipc,
        }
        for m, base in (("random", 0.5), ("dm", 0.7))
        for ipc, acc in ((1, base), (10, base + 0.1))
    ] + [{"dataset": "d", "method": "full", "ipc": None, "mean": 0.99, "std": 0.0}]
    (tmp_path / "s.json").write_text(json.dumps({"rows": rows}))
    assert main(["plot", "bench", "--suite", "s", "--results", str(tmp_path)]) == 0
    assert _png(tmp_path / "s-accuracy-ipc.png")[0] > 300
    assert main(["plot", "bench", "--suite", "s", "--results", str(tmp_path), "--x", "bytes"]) == 0
    assert _png(tmp_path / "s-accuracy-bytes.png")[0] > 300
    assert main(["plot", "bench", "--suite", "nope", "--results", str(tmp_path)]) == 2


def test_grid_rows_carry_class_names(run, tmp_path):
    from ddkit.viz import image_grid

    syn = SyntheticSet.load(run / "synthetic")
    plain = image_grid(syn.pixels(), syn.hard_labels, 10, tmp_path / "a.png")
    named = image_grid(
        syn.pixels(), syn.hard_labels, 10, tmp_path / "b.png", class_names=["zero"] * 10
    )
    assert _png(named)[0] > _png(plain)[0] and _png(named)[1] == _png(plain)[1]
    pix = torch.tensor(np.array(Image.open(named).convert("L")), dtype=torch.float32)
    assert (pix[:, :10] < 128).any()  # dark text in the name margin


def test_dollar_signs_in_names_are_drawn_as_text_not_math(tmp_path):
    from ddkit.plots import plot_accuracies, plot_accuracy_vs_ipc

    names = [r"$\frac{a$", "$x^{$", "a$b$c"]  # odd but legal dataset / method names
    rows = [{"dataset": names[0], "method": m, "ipc": 1, "mean": 0.5, "std": 0.0}
            for m in names]  # fmt: skip
    plot_accuracy_vs_ipc(rows, tmp_path / "ipc.png")
    plot_accuracies({n: (0.5, 0.1) for n in names}, tmp_path / "acc.png", title=names[1])
    assert _png(tmp_path / "ipc.png")[0] > 100 and _png(tmp_path / "acc.png")[0] > 100


def test_wrong_row_shapes_in_a_results_file_end_in_one_line_not_a_traceback(tmp_path, capsys):
    for content in ([], {"rows": 3}, {"rows": [1, {"method": "x"}]}):
        (tmp_path / "s.json").write_text(json.dumps(content))
        code = main(["plot", "bench", "--suite", "s", "--results", str(tmp_path)])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and "s.json" in err, err
