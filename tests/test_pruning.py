"""Score-based pruning (ddkit.methods.coreset: scores, records, ccs, pruning, cli) on digits with
planted label noise and on fabricated tensors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ddkit.cli import main
from ddkit.data import load_dataset
from ddkit.data.dataset import ImageDataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, FileFormatError
from ddkit.methods import METHODS, create_method, load_all
from ddkit.methods.coreset import records as records_module
from ddkit.methods.coreset.ccs import bin_of, ccs_select, keep_extreme
from ddkit.methods.coreset.pruning import prune, pruning_scores, score_config
from ddkit.methods.coreset.records import ProxyRecipe, proxy_records, records_folder
from ddkit.methods.coreset.scores import SCORES, dynamic_uncertainty, grand, hardness

load_all()


@pytest.fixture(scope="module")
def noisy():
    """digits (1437 train rows) with the labels of 5 % of the rows flipped to another class."""
    train = load_dataset("digits").train
    n = len(train)
    flipped = torch.randperm(n, generator=torch.Generator().manual_seed(0))[: n // 20]
    shift = torch.randint(1, 10, (len(flipped),), generator=torch.Generator().manual_seed(1))
    labels = train.labels.clone()
    labels[flipped] = (labels[flipped] + shift) % 10
    return ImageDataset(train.images, labels, train.spec), flipped


def _precision_at_planted(values: torch.Tensor, hard: str, planted: torch.Tensor) -> float:
    top = torch.argsort(hardness(values, hard), descending=True)[: len(planted)]
    return float(torch.isin(top, planted).double().mean())


# An early, short proxy run (EL2N / GraNd are read early) and a long one at a large lr, in which
# the network memorises the flipped rows late, so their margin, forgetting and uncertainty show.
EARLY = ProxyRecipe("mlp", epochs=10, lr=0.01, batch_size=64)
MEMORISING = ProxyRecipe("mlp", epochs=60, lr=0.1, batch_size=64)


@pytest.mark.parametrize(
    ("score", "recipe", "least"),
    [
        ("el2n", EARLY, 0.8),
        ("grand", EARLY, 0.8),
        ("margin", MEMORISING, 0.8),
        ("forgetting", MEMORISING, 0.5),
        ("dyn-unc", MEMORISING, 0.5),
    ],
)
def test_each_score_ranks_planted_mislabeled_rows_hardest(noisy, score, recipe, least):
    train, flipped = noisy
    rec = _records(train, recipe)
    values = SCORES[score].compute(rec, 5)
    precision = _precision_at_planted(values, SCORES[score].hard, flipped)
    assert precision >= least, f"{score}: only {precision:.2f} of the top rows are mislabeled"
    # and a random ranking would give about 5 %: the flipped rows are not hard by accident
    shuffled = values[torch.randperm(len(values), generator=torch.Generator().manual_seed(2))]
    assert _precision_at_planted(shuffled, SCORES[score].hard, flipped) < 0.25


_RECORDS: dict[ProxyRecipe, object] = {}


def _records(train, recipe):
    if recipe not in _RECORDS:
        _RECORDS[recipe] = proxy_records(train, recipe, [3], cache=None)
    return _RECORDS[recipe]


def test_dyn_unc_is_the_windowed_std_of_the_true_class_probability():
    p = torch.tensor([[0.1, 0.9], [0.5, 0.9], [0.9, 0.9], [0.5, 0.9]], dtype=torch.float64)
    got = dynamic_uncertainty(p, 2)
    windows = [p[i : i + 2].std(0) for i in range(3)]  # plain reference, one window at a time
    torch.testing.assert_close(got, torch.stack(windows).mean(0))
    assert got[1] == 0 and got[0] > 0
    with pytest.raises(ConfigError, match="window"):
        dynamic_uncertainty(p, 5)


def test_grand_closed_form_equals_autograd_per_example_last_layer_gradient():
    g = torch.Generator().manual_seed(0)
    n, f, k = 7, 5, 4
    h = torch.randn(n, f, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (n,), generator=g)
    head = nn.Linear(f, k).double()
    reference = []
    for i in range(n):  # autograd, one example at a time: the plain reference
        head.zero_grad()
        nn.functional.cross_entropy(head(h[i : i + 1]), y[i : i + 1]).backward()
        sq = head.weight.grad.pow(2).sum() + head.bias.grad.pow(2).sum()
        reference.append(sq.sqrt())
    with torch.no_grad():
        got = grand(head(h), h, y)
    torch.testing.assert_close(got, torch.stack(reference))
    no_bias = grand(head(h).detach(), h, y, bias=False)
    assert torch.all(no_bias < got)


def test_ccs_keeps_the_budget_every_bin_and_none_of_the_pruned_hardest():
    g = torch.Generator().manual_seed(0)
    hard = torch.cat([torch.rand(900, generator=g).pow(3), torch.tensor([float("inf")] * 5)])
    n, beta, bins = 120, 0.1, 20
    kept = ccs_select(hard, n, torch.Generator().manual_seed(1), beta=beta, bins=bins)
    assert len(kept) == n and len(kept.unique()) == n
    pruned = torch.argsort(hard, descending=True)[: int(beta * len(hard))]
    assert not torch.isin(kept, pruned).any()
    pool = torch.argsort(hard, descending=True)[int(beta * len(hard)) :]
    which = bin_of(hard[pool], bins)
    present = set(which.tolist())
    kept_bins = set(bin_of(hard[pool], bins)[torch.isin(pool, kept)].tolist())
    assert kept_bins == present  # every non-empty bin is represented
    # leftover budget of small bins goes to larger ones: the exact count holds for any sizes
    for m in (len(present), 300, len(pool)):
        assert len(ccs_select(hard, m, torch.Generator().manual_seed(2), beta=beta, bins=bins)) == m
    with pytest.raises(ConfigError, match="leaves"):
        ccs_select(hard, len(pool) + 1, g, beta=beta, bins=bins)


def test_keep_extreme_hardest_or_easiest():
    h = torch.tensor([0.3, 5.0, -1.0, 2.0])
    assert keep_extreme(h, 2, torch.Generator()).tolist() == [1, 3]
    assert keep_extreme(h, 2, torch.Generator(), "easy").tolist() == [2, 0]


def test_same_seed_same_scores_other_seed_other_scores(tmp_path):
    train = load_dataset("digits").train
    cfg = score_config("el2n", model="mlp", epochs_net=2, seeds=2, score_cache="")
    a = pruning_scores(train, "el2n", cfg, torch.Generator().manual_seed(5))
    b = pruning_scores(train, "el2n", cfg, torch.Generator().manual_seed(5))
    c = pruning_scores(train, "el2n", cfg, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_cache_is_reused_and_a_tampered_file_refused(tmp_path, monkeypatch):
    train = load_dataset("digits").train
    recipe = ProxyRecipe("mlp", epochs=2)
    first = proxy_records(train, recipe, [1, 2], cache=tmp_path)
    folder = records_folder(tmp_path, train, recipe)
    assert sorted(p.name for p in folder.iterdir()) == ["seed_1.safetensors", "seed_2.safetensors"]
    options = {"model": "mlp", "epochs_net": 2, "score_cache": str(tmp_path)}
    kept = prune(train, "margin", keep=0.1, **options)  # trains the run of seed 0's proxy

    def refuse(*args, **kwargs):
        raise AssertionError("trained again although the records were cached")

    monkeypatch.setattr(records_module, "train_feature_net", refuse)
    again = proxy_records(train, recipe, [1, 2], cache=tmp_path)
    assert torch.equal(first.el2n, again.el2n) and torch.equal(first.correct, again.correct)
    # other fractions, IPCs and scores reuse the same run
    assert torch.equal(prune(train, "margin", keep=0.1, **options), kept)
    assert len(prune(train, "margin", keep=0.5, **options)) == round(0.5 * len(train))
    assert len(prune(train, "dyn-unc", ipc=3, window=2, **options)) == 30
    assert len(list(folder.iterdir())) == 3

    files = [folder / "seed_1.safetensors"]
    data = bytearray(files[0].read_bytes())
    data[-3] ^= 0xFF  # flip bits in the tensor data, leaving the header intact
    files[0].write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="checksum") as info:
        proxy_records(train, recipe, [1, 2], cache=tmp_path)
    assert "\n" not in str(info.value)


def test_selectors_are_registered_and_class_balanced(tmp_path):
    train = load_dataset("digits").train
    for name in ("el2n", "grand", "margin", "dyn-unc"):
        assert name in METHODS
    method = create_method("margin", model="mlp", epochs_net=2, window=2, score_cache=str(tmp_path))
    syn = method.fit(train, 4, seed=0)
    assert syn.labels.bincount(minlength=10).tolist() == [4] * 10
    easy = create_method(
        "margin", model="mlp", epochs_net=2, prefer="easy", score_cache=str(tmp_path)
    )
    assert not torch.equal(easy.fit(train, 4, seed=0).images, syn.images)
    with pytest.raises(ConfigError, match="window"):
        create_method("dyn-unc", epochs_net=2, window=3)


def test_prune_refuses_bad_input_in_one_line():
    train = load_dataset("digits").train
    for kwargs, text in [
        ({"keep": 0.0}, "kept fraction"),
        ({"keep": 1.5}, "kept fraction"),
        ({"ipc": 10_000}, "larger than class"),
        ({"keep": 0.5, "ipc": 3}, "either"),
        ({"keep": 0.5, "ccs": True, "ccs_beta": 1.0}, "ccs_beta"),
        ({"keep": 0.5, "ccs": True, "ccs_bins": 0}, "ccs_bins"),
        ({"keep": 0.95, "ccs": True, "ccs_beta": 0.2}, "prunes too many"),
    ]:
        with pytest.raises(ConfigError, match=text) as info:
            prune(train, "el2n", score_cache="", **kwargs)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="unknown score"):
        prune(train, "nope", keep=0.5)


def test_cli_prune_writes_a_loadable_set(tmp_path, capsys):
    out = tmp_path / "kept"
    args = ["prune", "--dataset", "digits", "--score", "margin", "--keep", "0.2", "--out", str(out)]
    args += ["--model", "mlp", "--epochs", "2", "--cache", str(tmp_path / "cache")]
    assert main(args) == 0
    syn = SyntheticSet.load(out)
    assert len(syn) == round(0.2 * 1437) and syn.meta["score"] == "margin"
    assert "kept 287 of 1437" in capsys.readouterr().out
    ccs = [*args, "--ccs-beta", "0.1"]
    ccs[ccs.index(str(out))] = str(tmp_path / "ccs")
    assert main(ccs) == 0 and len(SyntheticSet.load(tmp_path / "ccs")) == 287


@pytest.mark.parametrize(
    "bad",
    [
        ["--keep", "1.5"],
        ["--keep", "0"],
        ["--keep", "0.3", "--ccs-beta", "1"],
        ["--keep", "0.3", "--ccs-bins", "0"],
        ["--ipc", "500"],
        ["--keep", "0.3", "--score", "nope"],
        # issue 42: 10**12 bins were allocated after the proxy networks had been trained;
        # 10**9 proxy seeds were derived one by one towards 80 GB before any training
        ["--keep", "0.3", "--ccs-bins", str(10**12)],
        ["--keep", "0.3", "--seeds", str(10**9)],
    ],
)
def test_cli_prune_refuses_bad_input_without_creating_out(tmp_path, capsys, bad):
    out = tmp_path / "never"
    args = ["prune", "--dataset", "digits", "--score", "el2n", "--out", str(out), *bad]
    assert main([*args, "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ddkit: error:") and "\n" not in err
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_cli_prune_failure_leaves_an_existing_out_untouched(tmp_path):
    out = tmp_path / "kept"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    args = ["prune", "--dataset", "digits", "--score", "el2n", "--ipc", "500", "--out", str(out)]
    assert main(args) == 2
    assert (out / "mine.txt").read_text() == "keep me" and len(list(out.iterdir())) == 1


def test_prune_named_random_ccs_and_unknown_names(tmp_path):
    from ddkit.methods.coreset.pruning import prune_named, pruning_methods

    train = load_dataset("digits").train
    assert {"random", "el2n", "margin-ccs", "forgetting-ccs"} <= set(pruning_methods())
    a = prune_named(train, "random", 0.3, seed=4)
    assert len(a) == round(0.3 * len(train)) and len(set(a.tolist())) == len(a)
    assert torch.equal(a, prune_named(train, "random", 0.3, seed=4))
    assert not torch.equal(a, prune_named(train, "random", 0.3, seed=5))
    options = {"model": "convnet2-w8", "epochs_net": 1, "score_cache": str(tmp_path)}
    ccs = prune_named(train, "margin-ccs", 0.3, seed=0, **options)
    assert torch.equal(ccs, prune(train, "margin", keep=0.3, seed=0, ccs=True, **options))
    with pytest.raises(ConfigError, match="unknown pruning method 'el2n-xyz'; valid: random"):
        prune_named(train, "el2n-xyz", 0.3)
    with pytest.raises(ConfigError, match="random pruning takes no options, got seeds"):
        prune_named(train, "random", 0.3, seeds=2)


def test_bench_pruning_sweep_shares_proxy_runs_and_tabulates_by_kept_fraction(tmp_path):
    """A suite with ``keeps``: a cell per (method, kept %), the kept rows saved as a set with
    their indices, every cell of a score reading one cached proxy run, the kept-fraction table
    and plot; ``keeps`` runs only the percentages asked for and refuses one the suite lacks; a
    pruning method the suite does not know is refused before anything runs."""
    from ddkit.bench import CellSelection, run_suite
    from ddkit.bench.cells import Cell, kept_rows, run_unit
    from ddkit.bench.runner import markdown_table
    from ddkit.bench.suites import Suite
    from ddkit.io import atomic_write_json, read_json
    from ddkit.methods.coreset.pruning import prune_named
    from ddkit.plots import plot_accuracy_vs_ipc

    proxy = {"model": "convnet2-w8", "epochs_net": 1}
    suite = Suite(
        name="pytest-prune",
        datasets=("digits",),
        ipcs=(),
        keeps=(20, 50),  # 50: left out by keeps=[20] below
        protocol="smoke",
        runs=1,
        methods=("el2n", "margin-ccs"),  # random: test_prune_named_random_ccs_and_unknown_names
        options={"el2n": {**proxy, "seeds": 1}, "margin-ccs": proxy},
        full_data=False,
        full_data_epochs=1,
        models={"digits": "convnet2-w8"},
    )
    with pytest.raises(ConfigError, match=r"kept percentage.*\b30\b"):
        run_suite(suite, results_dir=tmp_path, markdown=None, select=CellSelection(keeps=[30]),
                  log=lambda _: None)  # fmt: skip
    rows = run_suite(suite, results_dir=tmp_path, markdown=None, select=CellSelection(keeps=[20]),
                     log=lambda _: None)  # fmt: skip
    assert all("error" not in r for r in rows), rows
    kept = {(r["method"], r["keep"]): r for r in rows if r.get("keep")}
    assert sorted(kept) == [("el2n", 20), ("margin-ccs", 20)]
    n = len(load_dataset("digits").train)
    for (_, keep), row in kept.items():
        assert row["ipc"] is None and row["kind"] == "pruning"
        assert row["num_images"] == round(keep / 100 * n) and row["epochs"] == 100 // keep
    cells = tmp_path / "pytest-prune-cells"
    # el2n and margin-ccs here train the same proxy recipe: one run serves both cells
    assert len(list((cells / "scores").glob("*/seed_*.safetensors"))) == 1
    syn = SyntheticSet.load(cells / "digits-el2n-keep20" / "distill" / "synthetic")
    train = load_dataset("digits").train
    cache = str(cells / "scores")
    expected = prune_named(train, "el2n", 0.2, seed=0, score_cache=cache, **suite.options["el2n"])
    assert syn.meta["indices"] == expected.tolist()
    # the kept rows' tensors may be left out of the results: evaluation takes the rows again
    folder = cells / "digits-el2n-keep20"
    before = read_json(folder / "eval0.json")
    (folder / "distill" / "synthetic" / "data.safetensors").unlink()
    run_unit(Cell("digits", "el2n", 0, 20), "eval0", suite, 0, folder)
    assert read_json(folder / "eval0.json")["accuracy"] == before["accuracy"]
    meta_path = folder / "distill" / "synthetic" / "meta.json"
    meta = read_json(meta_path)
    meta["provenance"]["indices"][0] = meta["provenance"]["indices"][1]
    atomic_write_json(meta_path, meta)
    with pytest.raises(FileFormatError, match="do not give the set it recorded"):
        kept_rows(folder / "distill" / "synthetic", train)
    table = markdown_table(suite, {"rows": rows})
    assert "| dataset | method | 20 % | 50 % | full data |" in table
    assert "| digits | 20 % | el2n | 0 |" in table
    assert plot_accuracy_vs_ipc(rows, tmp_path / "keep.png", x="keep").stat().st_size > 0

    bad = Suite(name="pytest-prune-bad", datasets=("digits",), ipcs=(), keeps=(20,),
                protocol="smoke", methods=("el2n", "nosuch"))  # fmt: skip
    with pytest.raises(ConfigError, match="unknown pruning method 'nosuch'"):
        run_suite(bad, results_dir=tmp_path, markdown=None, log=lambda _: None)
    assert not (tmp_path / "pytest-prune-bad.json").exists()


def test_the_records_cache_stays_inside_its_folder_whatever_the_dataset_name(tmp_path):
    import dataclasses

    train = load_dataset("digits").train
    odd = ImageDataset(train.images, train.labels, dataclasses.replace(train.spec, name="../../x"))
    folder = records_folder(tmp_path, odd, ProxyRecipe())
    assert folder.parent == tmp_path and folder.name.startswith("_.._x-convnet-")
