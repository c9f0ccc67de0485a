"""Modalities in the data layer and tabular datasets end to end (issue 39), on fabricated tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ddkit.data import ArrayExtras, from_arrays
from ddkit.data.spec import Column, DatasetSpec
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, DataError, FileFormatError

COLUMNS = (
    Column("age"),
    Column("colour", "categorical", ("red", "green", "blue")),
    Column("height"),
)


def fabricated_table(n: int = 120, seed: int = 0):
    """Two separable classes: a numeric shift and a class-dependent category."""
    g = np.random.default_rng(seed)
    y = np.arange(n) % 2
    cat = np.where(y == 1, 2, 0)
    x = np.zeros((n, 5), np.float32)
    x[:, 0] = g.normal(3.0 * y, 1.0)
    x[np.arange(n), 1 + cat] = 1.0
    x[:, 4] = g.normal(-2.0 * y, 1.0) + 170.0
    return x, y


def table_splits(n: int = 120):
    x, y = fabricated_table(n)
    table = ArrayExtras(modality="table", columns=COLUMNS)
    return from_arrays(x[:, :, None, None], y, name="fab", num_classes=2, extras=table)


def test_table_spec_lays_rows_as_features_and_keeps_one_hot_columns_raw():
    splits = table_splits()
    spec = splits.spec
    assert spec.modality == "table" and spec.shape == (5, 1, 1)
    assert spec.mean[1:4] == (0.0, 0.0, 0.0) and spec.std[1:4] == (1.0, 1.0, 1.0)
    assert abs(spec.mean[4] - 169.0) < 1.0  # numeric columns are standardised
    assert torch.equal(splits.train.images[:, 1:4].sum(1).flatten(), torch.ones(len(splits.train)))


def test_spec_round_trip_keeps_modality_and_column_types(tmp_path):
    splits = table_splits()
    syn = SyntheticSet.from_real(splits.train, torch.arange(4))
    back = SyntheticSet.load(syn.save(tmp_path / "s"))
    assert back.spec == splits.spec
    assert [c.kind for c in back.spec.columns] == ["numeric", "categorical", "numeric"]
    assert back.spec.columns[1].categories == ("red", "green", "blue")


def test_image_spec_json_is_unchanged_and_old_sets_still_load(tmp_path):
    spec = DatasetSpec("d", 2, 1, (8, 8), (0.5,), (0.2,))
    assert "modality" not in spec.to_dict() and "columns" not in spec.to_dict()
    assert DatasetSpec.from_dict(spec.to_dict()) == spec and spec.modality == "image"
    syn = SyntheticSet(torch.zeros(2, 1, 8, 8), torch.tensor([0, 1]), spec)
    import json

    meta = json.loads((syn.save(tmp_path / "s") / "meta.json").read_text())
    assert meta["spec"]["modality"] == "image"  # the set format names the modality


def test_spec_refuses_a_table_whose_columns_do_not_fit():
    with pytest.raises(DataError, match="takes 4 channels"):
        DatasetSpec(
            "t",
            2,
            5,
            (1, 1),
            (0.0,) * 5,
            (1.0,) * 5,
            modality="table",
            columns=(Column("a"), Column("b", "categorical", ("x", "y", "z"))),
        )
    with pytest.raises(FileFormatError, match="unknown modality"):
        DatasetSpec.from_dict(
            {**DatasetSpec("d", 2, 1, (1, 1), (0.0,), (1.0,)).to_dict(), "modality": "smell"}
        )


def test_dsa_refuses_a_table_in_one_line():
    from ddkit.methods import create_method

    train = table_splits().train
    with pytest.raises(ConfigError, match=r"^DSA augmentation 'color_crop' needs images; .*'fab'"):
        create_method("dm", augment="color_crop", model="mlp", iterations=1).fit(train, 2)
    with pytest.raises(ConfigError, match=r"^method 'dsa' needs images"):
        create_method("dsa", model="mlp", iterations=1).fit(train, 2)


def test_image_model_and_image_codec_refused_on_a_table():
    from ddkit.methods import create_method

    with pytest.raises(ConfigError, match=r"^codec 'fred:0.5' needs images; .*use codec=pixels"):
        create_method("dm", modality="table", codec="fred:0.5", iterations=1).fit(
            table_splits().train, 2
        )

    with pytest.raises(ConfigError, match="model 'convnet3' does not take table rows"):
        create_method("dm", model="convnet3", iterations=1).fit(table_splits().train, 2)


@pytest.mark.parametrize("method", ["dm", "dc", "kip", "random", "herding", "kcenter"])
def test_same_seed_same_set_on_a_table(method):
    from ddkit.methods import create_method
    from ddkit.testing import method_test_overrides

    train = table_splits().train
    opts = {**method_test_overrides(method)}
    a = create_method(method, modality="table", **opts).fit(train, 2, seed=3)
    b = create_method(method, modality="table", **opts).fit(train, 2, seed=3)
    assert a.images.shape == (4, 5, 1, 1) and a.spec.modality == "table"
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert torch.isfinite(a.images).all()


# ---------------------------------------------------------------- files and shipped tables
CSV = "age,colour,height,label\n" + "".join(
    f"{20 + i},{'red' if i % 2 else 'blue'},{150 + 3 * (i % 7)},{'yes' if i % 2 else 'no'}\n"
    for i in range(30)
)


def _csv(tmp_path, text=CSV):
    path = tmp_path / "t.csv"
    path.write_text(text)
    return path


def test_csv_round_trip_keeps_column_types_and_categories(tmp_path):
    from ddkit.data import load_dataset
    from ddkit.data.table import decode_rows

    splits = load_dataset("csv-label", root=str(_csv(tmp_path)))
    spec = splits.spec
    assert spec.modality == "table" and spec.class_names == ("no", "yes")
    assert [(c.name, c.kind) for c in spec.columns] == [
        ("age", "numeric"),
        ("colour", "categorical"),
        ("height", "numeric"),
    ]
    syn = SyntheticSet.from_real(splits.train, torch.tensor([0, 1, 2]))
    back = SyntheticSet.load(syn.save(tmp_path / "s"))
    rows = decode_rows(back.images, back.spec)
    assert rows[0]["colour"] in ("red", "blue") and abs(rows[0]["age"] - 21.0) < 1e-4
    # a distilled row's categorical scores read back as a valid category
    free = back.images.clone()
    free[:, 1:3] = torch.tensor([[0.2, 0.7]] * 3)[..., None, None]
    assert {r["colour"] for r in decode_rows(free, back.spec)} == {"red"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,label\n1,x\nabc,y\n2,x\n", r"column 'a' mixes numbers and text \(data row 2: 'abc'\)"),
        ("a,label\n1,x\n,y\n2,x\n", r"column 'a' has 1 missing value\(s\) \(first in data row 2\)"),
        ("a,b\n1,x\n2,y\n", r"no target column 'label'; columns: a, b"),
        ("a,label\n1,x\n2\n", r"data row 2 has 1 cells"),
    ],
)
def test_bad_csv_is_one_clear_line(tmp_path, text, message):
    from ddkit.data import load_dataset

    with pytest.raises(DataError, match=message):
        load_dataset("csv-label", root=str(_csv(tmp_path, text)))


def test_cli_target_names_the_csv_dataset():
    from ddkit.data.table import dataset_with_target

    assert dataset_with_target("csv", "Label") == "csv-Label"
    with pytest.raises(ConfigError, match="needs its target column: --target COLUMN"):
        dataset_with_target("csv", None)
    with pytest.raises(ConfigError, match="--target names the label column"):
        dataset_with_target("wine", "x")


def test_parquet_without_pyarrow_is_refused_in_one_line(tmp_path):
    pytest.importorskip("pandas")
    from ddkit.data import load_dataset

    try:
        import pyarrow  # noqa: F401
    except ImportError:
        path = tmp_path / "t.parquet"
        path.write_bytes(b"PAR1")
        with pytest.raises(ConfigError, match=r"pip install 'ddkit\[tabular\]'"):
            load_dataset("parquet-label", root=str(path))
        return
    import pandas as pd

    path = tmp_path / "t.parquet"
    pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "label": list("xyxyxy")}).to_parquet(path)
    assert load_dataset("parquet-label", root=str(path)).spec.columns[0].kind == "numeric"


def test_sklearn_tables_ship_offline():
    from ddkit.data import load_dataset

    wine = load_dataset("wine")
    assert wine.spec.shape == (13, 1, 1) and wine.spec.num_classes == 3
    assert load_dataset("digits-tabular").spec.shape == (64, 1, 1)


def test_mlbench_table_installs_with_checksum_and_reads_without_r(tmp_path):
    rdata = pytest.importorskip("rdata")
    pd = pytest.importorskip("pandas")
    from ddkit.data import store
    from ddkit.data.mlbench import read_rda_table

    src = tmp_path / "deb" / "usr" / "lib" / "R" / "site-library" / "mlbench" / "data"
    src.mkdir(parents=True)
    frame = pd.DataFrame(
        {"x.1": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "classes": pd.Categorical(list("abcabc"))}
    )
    rdata.write_rda(str(src / "Satellite.rda"), {"Satellite": frame}, compression="xz")
    size, md5 = store.content_digest(src / "Satellite.rda")
    remote = store.Remote("satellite", (store.DataFile("Satellite.rda", size, md5),), ())
    folder = store.install("satellite", tmp_path / "deb", tmp_path / "root", remote=remote, log=str)
    raw = read_rda_table(folder / "Satellite.rda", "Satellite", "classes")
    assert raw.modality == "table" and raw.class_names == ["a", "b", "c"]
    assert raw.train_images.shape == (6, 1, 1, 1)
    bad = store.Remote("satellite", (store.DataFile("Satellite.rda", size, "0" * 32),), ())
    with pytest.raises(DataError, match="does not hold a correct Satellite.rda"):
        store.install("satellite", tmp_path / "deb", tmp_path / "other", remote=bad, log=str)
    with pytest.raises(DataError, match="has no download location; the Debian package"):
        store.download("letter", tmp_path / "none")


# ---------------------------------------------------------------- models and learners
def test_mlp_norm_variants_build_and_train_mode_differs():
    from ddkit.models import create_model

    for name, layer in (("mlp-bn", torch.nn.BatchNorm1d), ("mlp-w16-d1-ln", torch.nn.LayerNorm)):
        net = create_model(name, num_classes=2, in_channels=5, image_size=(1, 1))
        assert any(isinstance(m, layer) for m in net.modules())
        assert net(torch.randn(4, 5, 1, 1)).shape == (4, 2)


def test_learners_reach_sane_accuracy_on_a_separable_table():
    from ddkit.eval.learners import evaluate_learners

    splits = table_splits(200)
    syn = SyntheticSet.from_real(splits.train, torch.arange(len(splits.train)))
    report = evaluate_learners(syn, splits.test, "logreg,knn,rf,gb,mlp", runs=1, epochs=20)
    accs = {r.model: r for r in report.results}
    assert set(accs) == {"logreg", "knn", "rf", "gb", "mlp"}
    for name, r in accs.items():
        assert r.mean > 0.9, (name, r.accuracies)
    assert "logreg" in report.table()
    # random learners run once per seed, deterministic ones once; same seed => same report
    small = SyntheticSet.from_real(splits.train, torch.arange(6))
    a, b = (evaluate_learners(small, splits.test, "rf,knn", runs=3, seed=4) for _ in range(2))
    assert [len(r.accuracies) for r in a.results] == [3, 1]
    assert [r.accuracies for r in a.results] == [r.accuracies for r in b.results]


def test_learners_and_eval_augmentation_refusals():
    from ddkit.eval import evaluate
    from ddkit.eval.learners import evaluate_learners

    splits = table_splits()
    syn = SyntheticSet.from_real(splits.train, torch.arange(10))
    with pytest.raises(ConfigError, match="unknown learner 'svm'; valid:"):
        evaluate_learners(syn, splits.test, "svm")
    with pytest.raises(ConfigError, match="evaluation augmentation 'dsa' needs images"):
        evaluate(syn, splits.test, "dsa", models=["mlp"], runs=1, epochs=1)


# ---------------------------------------------------------------- CLI and the picture
def test_cli_distills_a_csv_table_evaluates_by_learners_and_draws_histograms(tmp_path, capsys):
    import json

    from PIL import Image

    from ddkit.cli import main

    path, out = _csv(tmp_path), tmp_path / "run"
    args = ["distill", "--dataset", "csv", "--root", str(path), "--target", "label"]
    assert main([*args, "--method", "dm", "--ipc", "2", "--iterations", "2", "--quiet",
                 "--out", str(out)]) == 0  # fmt: skip
    syn = SyntheticSet.load(out / "synthetic")
    assert syn.spec.modality == "table" and syn.meta["config"]["model"] == "mlp"
    assert Image.open(out / "grid.png").size[0] > 400  # histogram panels, not a 1x1-pixel grid
    assert main(["evaluate", str(out), "--learners", "logreg,knn", "--quiet"]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert [r["model"] for r in report["results"]] == ["logreg", "knn"]
    assert "logreg" in capsys.readouterr().out


def test_xgboost_learner_is_an_optional_extra():
    from ddkit.eval.learners import evaluate_learners

    splits = table_splits()
    syn = SyntheticSet.from_real(splits.train, torch.arange(20))
    try:
        import xgboost  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"pip install 'ddkit\[boosting\]'"):
            evaluate_learners(syn, splits.test, "xgboost", runs=1)
        return
    assert evaluate_learners(syn, splits.test, "xgboost", runs=1).results[0].model == "xgboost"


def test_table_set_exports_as_csv_that_reads_back_with_its_column_types(tmp_path):
    from ddkit.cli import main
    from ddkit.data import load_dataset

    splits = load_dataset("csv-label", root=str(_csv(tmp_path)))
    syn = SyntheticSet.from_real(splits.train, torch.arange(8))
    folder = syn.save(tmp_path / "set")
    assert main(["export", str(folder), "--to", str(tmp_path / "out.csv")]) == 0
    back = load_dataset("csv-label", root=str(tmp_path / "out.csv"))
    assert back.spec.columns == splits.spec.columns and back.spec.class_names == ("no", "yes")
    assert torch.allclose(
        back.train.images * torch.tensor(back.spec.std).view(1, -1, 1, 1)
        + torch.tensor(back.spec.mean).view(1, -1, 1, 1),
        syn.images[~(torch.arange(8) % 5 == 0)] * torch.tensor(syn.spec.std).view(1, -1, 1, 1)
        + torch.tensor(syn.spec.mean).view(1, -1, 1, 1),
        atol=1e-4,
    )
    with pytest.raises(DataError, match="table rows have no pixels; a table set exports as CSV"):
        syn.pixels()


@pytest.mark.parametrize(
    "columns",
    ["x", [{"name": "a"}], [{"name": "a", "kind": "categorical"}], [{"name": "a", "kind": "odd"}]],
)
def test_a_damaged_table_spec_is_a_file_format_error(columns):
    spec = table_splits().spec.to_dict()
    with pytest.raises(FileFormatError, match="invalid dataset spec in metadata"):
        DatasetSpec.from_dict({**spec, "columns": columns})


def test_a_method_declaring_unknown_needs_is_refused():
    with pytest.raises(ConfigError, match="declares unknown needs 'pictures'"):
        table_splits().spec.check_needs("pictures", "method 'x'")


def test_learners_keep_quiet_about_one_row_per_class():
    # at IPC 1 every row is its own class; scikit-learn warns that such a target "could
    # represent a regression problem" once per fit (a hundred times for a random forest)
    import warnings

    from ddkit.eval.learners import evaluate_learners

    g = np.random.default_rng(0)
    classes = 24  # scikit-learn warns above 20 rows
    x = g.normal(size=(classes * 4, 5)).astype(np.float32)
    y = np.arange(classes * 4) % classes
    columns = tuple(Column(f"x{i}") for i in range(5))
    table = ArrayExtras(modality="table", columns=columns)
    splits = from_arrays(x[:, :, None, None], y, name="many", num_classes=classes, extras=table)
    rows = torch.stack([torch.nonzero(splits.train.labels == c)[0, 0] for c in range(classes)])
    syn = SyntheticSet.from_real(splits.train, rows)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluate_learners(syn, splits.test, "logreg,knn,rf,gb", runs=1)
    assert not [w for w in caught if "unique classes" in str(w.message)]
