import statistics
import warnings

import pytest
import torch

from ddkit.data.dataset import ImageDataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, DataError, UnknownNameError
from ddkit.eval import EvalProtocol, evaluate, get_protocol, train_networks
from ddkit.eval.train import lr_factor

TINY = EvalProtocol(name="tiny", epochs=4, runs=2, models=("convnet-w16",))


@pytest.fixture
def small_set(digits):
    idx = digits.train.sample_per_class(5, torch.Generator().manual_seed(0)).flatten()
    return SyntheticSet.from_real(digits.train, idx)


def test_presets_follow_the_published_protocol():
    dc, dsa = get_protocol("dc"), get_protocol("dsa")
    assert (dc.epochs, dc.lr, dc.momentum, dc.weight_decay, dc.batch_size) == (
        300,
        0.01,
        0.9,
        5e-4,
        256,
    )
    assert dc.augment is None and dsa.augment == "dsa" and dsa.epochs == 1000
    assert lr_factor(dc, 149) == 1.0 and lr_factor(dc, 150) == pytest.approx(0.1)


def test_protocol_validation():
    with pytest.raises(UnknownNameError, match="valid"):
        get_protocol("nope")
    with pytest.raises(ConfigError, match="epochs"):
        EvalProtocol(name="bad", epochs=0)
    with pytest.raises(ConfigError, match="optimizer"):
        EvalProtocol(name="bad", epochs=1, optimizer="lbfgs")


def test_evaluate_is_deterministic_and_records_runs(small_set, digits):
    state = torch.random.get_rng_state()
    a = evaluate(small_set, digits.test, TINY, seed=3)
    b = evaluate(small_set, digits.test, TINY, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    ra, rb = a.results[0], b.results[0]
    assert ra.accuracies == rb.accuracies and len(ra.accuracies) == 2 and ra.seeds == rb.seeds
    assert len(set(ra.seeds)) == 2
    d = a.to_dict()
    assert d["results"][0]["mean"] == pytest.approx(sum(ra.accuracies) / 2)


@pytest.mark.paths_agree("float64")
def test_vectorised_training_matches_one_by_one(small_set, digits):
    """The vmap path trains the same networks as the plain loop (same init, order, augmentation;
    float64 images and networks)."""
    images = small_set.images.double()
    p = TINY.with_(epochs=3, augment="dsa")
    seeds = [11, 22, 33]
    kw = dict(lr=0.01)
    v = train_networks(
        "convnet-w16",
        digits.spec,
        images,
        small_set.labels,
        p,
        seeds,
        vectorize=True,
        **kw,
    )
    s = train_networks(
        "convnet-w16",
        digits.spec,
        images,
        small_set.labels,
        p,
        seeds,
        vectorize=False,
        **kw,
    )
    assert v.vectorized and not s.vectorized
    for a, b in zip(v.models, s.models):
        for (na, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
            torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=na)


def test_batchnorm_models_fall_back_to_sequential(small_set, digits):
    rep = evaluate(small_set, digits.test, TINY.with_(models=("convnet-w16-bn",)), seed=0)
    assert not rep.results[0].vectorized


def test_learned_lr_and_soft_labels_are_used(small_set, digits):
    soft = torch.nn.functional.one_hot(small_set.labels, 10).float() * 0.9 + 0.01
    syn = SyntheticSet(small_set.images, soft, small_set.spec, lr=0.05)
    rep = evaluate(syn, digits.test, TINY, seed=0)
    assert rep.lr == pytest.approx(0.05)
    rep2 = evaluate(syn, digits.test, TINY.with_(use_learned_lr=False), seed=0)
    assert rep2.lr == pytest.approx(0.01)


def test_mismatched_test_set_is_refused(small_set):
    from ddkit.data import load_dataset

    with pytest.raises(DataError, match="does not match"):
        evaluate(small_set, load_dataset("mnist5k").test, TINY)


def test_protocol_changes_and_run_plans_are_checked_before_any_training(small_set, digits):
    """Keywords an evaluation does not take itself change its protocol: a field the protocol
    does not have, a budget beside a share of the runs, or a share outside the runs, is
    refused in one line before any network is trained."""
    from ddkit.eval import RunPlan

    with pytest.raises(ConfigError, match="unknown protocol field 'group'"):
        evaluate(small_set, digits.test, TINY, group=True)
    with pytest.raises(ConfigError, match="pass budget= or run_indices=, not both"):
        RunPlan(run_indices=[0], budget="1m")
    with pytest.raises(ConfigError, match="is not a duration"):
        RunPlan(budget="soon")
    with pytest.raises(ConfigError, match=r"runs in 0\.\.1, got \[2\]"):
        evaluate(small_set, digits.test, TINY, plan=RunPlan(run_indices=[2]))
    assert evaluate(small_set, digits.test, TINY, epochs=1, runs=1).protocol.runs == 1


def test_training_learns_something(digits):
    """Sanity: 60 epochs on 100 real digits beats chance by far (not a tuned figure)."""
    idx = digits.train.sample_per_class(10, torch.Generator().manual_seed(0)).flatten()
    syn = SyntheticSet.from_real(digits.train, idx)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a network that learns is not reported as under-trained
        rep = evaluate(syn, digits.test, TINY.with_(epochs=60, runs=2, models=("convnet",)))
    assert rep.results[0].mean > 0.5
    assert min(rep.results[0].train_accuracies) > 0.9
    assert rep.to_dict()["results"][0]["train_accuracies"] == rep.results[0].train_accuracies


def test_an_under_trained_model_is_reported(small_set, digits):
    """LeNet without normalisation barely moves in a few epochs on 50 digits: say so."""
    with pytest.warns(UserWarning, match=r"lenet fits only \d+ % .* 3 epochs of protocol 'tiny'"):
        rep = evaluate(small_set, digits.test, TINY.with_(epochs=3, models=("lenet",)))
    assert statistics.fmean(rep.results[0].train_accuracies) < 0.5


def test_model_refuses_wrong_input_shape():
    from ddkit.models import create_model

    m = create_model("convnet", num_classes=10, in_channels=1, image_size=8)
    with pytest.raises(DataError, match=r"expects images of shape \(1, 8, 8\)"):
        m(torch.zeros(2, 1, 28, 28))
    with pytest.raises(DataError, match="N, C, H, W"):
        m(torch.zeros(1, 8, 8))


# ------------------------------------------------------------------ the set's space
def _whitened_set(digits):
    import dataclasses

    from ddkit.data.zca import ZCA

    zca = ZCA(eps=0.1).fit(digits.train.images)
    idx = digits.train.sample_per_class(5, torch.Generator().manual_seed(0)).flatten()
    spec = dataclasses.replace(digits.train.spec, transform="zca")
    extras = {f"zca.{k}": v for k, v in zca.to_tensors().items()}
    images = zca.transform(digits.train.images[idx])
    return SyntheticSet(images, digits.train.labels[idx], spec, extras=extras), zca


def test_a_whitened_set_is_tested_on_whitened_test_images(digits):
    from ddkit.eval.evaluate import test_in_set_space

    syn, zca = _whitened_set(digits)
    seen = test_in_set_space(syn, digits.test)
    torch.testing.assert_close(seen.images, zca.transform(digits.test.images))
    assert torch.equal(seen.labels, digits.test.labels)
    # and evaluation uses it: the same accuracy as a plain set on pre-whitened test images
    report = evaluate(syn, digits.test, "smoke", runs=1, seed=0)
    plain = SyntheticSet(syn.images, syn.labels, digits.train.spec)
    whitened_test = ImageDataset(
        zca.transform(digits.test.images), digits.test.labels, digits.test.spec
    )
    expect = evaluate(plain, whitened_test, "smoke", runs=1, seed=0)
    assert report.results[0].accuracies == expect.results[0].accuracies


def test_a_set_without_its_transform_matrices_is_refused(digits):
    from ddkit.errors import FileFormatError

    syn, _ = _whitened_set(digits)
    syn.extras.clear()
    with pytest.raises(FileFormatError, match="ZCA state is missing"):
        evaluate(syn, digits.test, "smoke", runs=1)


def test_test_images_are_renormalised_to_the_set_statistics_and_another_dataset_warns(digits):
    import dataclasses

    from ddkit.data.dataset import denormalise
    from ddkit.eval.evaluate import test_in_set_space

    spec = dataclasses.replace(digits.train.spec, name="other", mean=(0.2,), std=(0.5,))
    syn = SyntheticSet(torch.zeros(10, *spec.shape), torch.arange(10), spec)
    with pytest.warns(UserWarning, match="distilled from 'other'"):
        seen = test_in_set_space(syn, digits.test)
    torch.testing.assert_close(
        denormalise(seen.images, spec), denormalise(digits.test.images, digits.test.spec)
    )


def test_regression_labels_train_by_mse_or_by_their_argmax(small_set, digits):
    from ddkit.eval.evaluate import training_data

    k = digits.train.spec.num_classes
    vectors = torch.nn.functional.one_hot(small_set.labels, k).float() * 1.5 - 0.2
    with pytest.raises(DataError, match="regression=True"):
        SyntheticSet(small_set.images, vectors, small_set.spec)
    syn = SyntheticSet(small_set.images, vectors, small_set.spec, regression=True)
    ce = training_data(syn, TINY)
    assert torch.equal(ce.targets, small_set.labels) and "argmax" in ce.meta["targets"]
    mse = training_data(syn, get_protocol("mse"))
    assert torch.equal(mse.targets, vectors)
    rep = evaluate(syn, digits.test, get_protocol("mse").with_(epochs=2, runs=1))
    assert rep.protocol.loss == "mse" and 0 <= rep.results[0].mean <= 1


# ------------------------------------------------------------------ one entry for every set
@pytest.mark.filterwarnings("ignore:.*under-trained")
def test_evaluate_set_chooses_the_evaluator_the_rows_call_for(small_set, digits):
    from ddkit.data import load_dataset
    from ddkit.eval.dispatch import EvalSettings, evaluate_set
    from ddkit.eval.learners import evaluate_learners

    by_nets = evaluate_set(small_set, digits.test, EvalSettings(protocol=TINY, seed=3))
    direct = evaluate(small_set, digits.test, TINY, seed=3)
    assert [r.accuracies for r in by_nets.report.results] == [r.accuracies for r in direct.results]
    assert by_nets.heading.startswith("? on digits, 50 images (")
    assert by_nets.text() == f"{by_nets.heading}\n{by_nets.report.table()}"
    by_knn = evaluate_set(small_set, digits.test, EvalSettings(learners="knn"), test_name="DIGITS")
    assert by_knn.report.to_dict()["results"][0]["accuracies"] == (
        evaluate_learners(small_set, digits.test, "knn").results[0].accuracies
    )
    assert by_knn.heading.startswith("? on DIGITS, 50 rows, learners trained on them")
    wine = load_dataset("wine")
    idx = wine.train.sample_per_class(4, torch.Generator().manual_seed(0)).flatten()
    rows = SyntheticSet.from_real(wine.train, idx)
    table = evaluate_set(rows, wine.test, EvalSettings(learners=["logreg"], runs=1))
    assert [r.model for r in table.report.results] == ["logreg"]


@pytest.mark.filterwarnings("ignore:.*under-trained")
def test_evaluate_set_says_the_recipe_and_refuses_network_settings_for_learners(small_set, digits):
    from ddkit.eval.dispatch import EvalSettings, evaluate_set

    said = []
    settings = EvalSettings(runs=1, epochs=1, models="convnet-w16")
    evaluate_set(small_set, digits.test, settings, say=said.append)
    assert len(said) == 1 and "chosen from the set's labels" in said[0]
    for given, flag in [({"models": "mlp"}, "--models"), ({"groups": True}, "--groups")]:
        with pytest.raises(ConfigError, match=f"^{flag} is for evaluation by networks"):
            evaluate_set(small_set, digits.test, EvalSettings(learners="knn", **given))
