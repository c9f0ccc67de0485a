"""Where a method computes: the device of its training data (or its ``device`` option), moved
with ``.to()``; a checkpoint resumes on another device. The CUDA tests run where a GPU is (CI
has none; ``benchmarks/gpu/check.py`` runs the same check on a lent GPU machine)."""

from __future__ import annotations

import pytest
import torch

from ddkit.cli import main
from ddkit.errors import ConfigError
from ddkit.methods import METHODS, create_method, load_all
from ddkit.methods.config import check_device, resolve_device
from ddkit.runs import DistillRequest, distill_run
from ddkit.testing import method_test_overrides, tiny_digits

load_all()
#: every method that takes image rows (the graph family condenses graphs, not images)
IMAGE_METHODS = [n for n in METHODS.names() if ".graph." not in METHODS.get(n).__module__]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


def _dm(**options):
    return create_method("dm", **{**method_test_overrides("dm"), **options})


def test_auto_device_is_the_data_device_and_bad_devices_are_refused():
    x = torch.zeros(2)
    assert resolve_device("auto", x) == torch.device("cpu")
    assert resolve_device("cpu", x) == torch.device("cpu")
    assert check_device("auto") and check_device("cpu")
    with pytest.raises(ConfigError, match="not a torch device"):
        check_device("gpu-please")
    with pytest.raises(ConfigError, match="device"):
        _dm(device="tpu:0")


def test_dataset_and_set_move_with_their_tensors():
    train = tiny_digits().train
    moved = train.to("cpu")
    assert moved is not train and torch.equal(moved.images, train.images)
    assert torch.equal(moved.labels, train.labels) and moved.spec == train.spec
    syn = create_method("random").fit(train, 1, seed=0)
    back = syn.to("cpu")
    assert torch.equal(back.images, syn.images) and torch.equal(back.labels, syn.labels)


def test_a_checkpoint_resumes_under_another_device_setting(tmp_path):
    """The device is where a run computes, not a setting of the run: a checkpoint written with
    ``device="cpu"`` continues with ``device="auto"`` to the uninterrupted run's set."""
    train = tiny_digits().train
    whole = _dm(device="auto").fit(train, 1, iterations=4, seed=0)
    ck = tmp_path / "ck"
    _dm(device="cpu").fit(train, 1, iterations=2, seed=0, checkpoint_dir=ck, checkpoint_every=1)
    resumed = _dm(device="auto").fit(
        train, 1, iterations=4, seed=0, checkpoint_dir=ck, checkpoint_every=1, resume=True
    )
    assert torch.equal(resumed.images, whole.images)


def test_a_run_folder_resumes_under_another_device_setting(tmp_path):
    splits, out = tiny_digits(), tmp_path / "run"
    options = method_test_overrides("dm")
    first = DistillRequest("digits", "dm", 1, iterations=2, options={**options, "device": "cpu"})
    distill_run(first, out, splits=splits)
    again = DistillRequest("digits", "dm", 1, iterations=3, options=options, device="cpu")
    syn = distill_run(again, out, splits=splits, resume=True)
    assert syn.images.device.type == "cpu" and len(syn) == 10


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cli_refuses_a_device_this_machine_lacks_in_one_line(tmp_path, capsys):
    rc = main(["distill", "--dataset", "digits", "--method", "random", "--ipc", "1",
               "--device", "cuda", "--out", str(tmp_path / "r")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "device 'cuda' is not available" in err and "\n" not in err
    assert not (tmp_path / "r").exists()


#: option variants whose tensors (weights, clusters) are made inside a step
OPTION_VARIANTS = [
    *((name, {"reweight": "kde"}) for name in ("dm", "idm", "dc", "dsa", "idc", "dim")),
    ("dc", {"real_batch": "dream", "init": "dream"}),
    ("dm", {"real_batch": "dream", "init": "dream"}),
]


@cuda
@pytest.mark.parametrize(("name", "variant"), [*((n, {}) for n in IMAGE_METHODS), *OPTION_VARIANTS])
def test_every_image_method_runs_where_its_data_lives(name, variant, tmp_path):
    """Fitted on data on the GPU, a method (and each option variant that makes tensors inside a
    step: kde re-weighting, DREAM's batches) computes there (no tensor left on the CPU breaks a
    step), returns a finite set (on the CPU), and its checkpoint resumes on the CPU."""
    splits = tiny_digits()
    options = {**method_test_overrides(name), **variant}
    iterations = min(options.pop("iterations", 2), 2)
    ck = tmp_path / "ck"
    syn = create_method(name, **options).fit(
        splits.train.to("cuda"), 1, iterations=iterations, seed=0,
        checkpoint_dir=ck, checkpoint_every=1,
    )  # fmt: skip
    assert syn.images.device.type == "cpu" and torch.isfinite(syn.images).all()
    assert syn.labels.device.type == "cpu"
    assert len(syn) >= splits.spec.num_classes
    again = create_method(name, **options).fit(
        splits.train, 1, iterations=iterations + 1, seed=0,
        checkpoint_dir=ck, checkpoint_every=1, resume=True,
    )  # fmt: skip
    assert again.images.device.type == "cpu" and torch.isfinite(again.images).all()


@cuda
def test_evaluation_and_the_cli_run_on_the_gpu(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["distill", "--dataset", "digits", "--method", "dm", "--ipc", "1",
               "--iterations", "3", "--device", "cuda", "--quiet", "--out", str(out)])  # fmt: skip
    assert rc == 0 and (out / "synthetic").is_dir()
    rc = main(["evaluate", str(out), "--protocol", "fast", "--runs", "2", "--epochs", "5",
               "--device", "cuda", "--quiet"])  # fmt: skip
    assert rc == 0 and (out / "eval.json").is_file()


@cuda
def test_experts_train_together_on_the_gpu(tmp_path):
    from ddkit.methods.trajectory.experts import load_experts

    argv = ["experts", "--dataset", "digits", "--model", "convnet2-w8", "--num-experts", "3",
            "--epochs", "2", "--batch-size", "64", "--device", "cuda", "--quiet"]  # fmt: skip
    assert main(argv + ["--together", "1", "--out", str(tmp_path / "one")]) == 0
    assert main(argv + ["--out", str(tmp_path / "auto")]) == 0  # all three at once on a GPU
    one, auto = load_experts(tmp_path / "one"), load_experts(tmp_path / "auto")
    for e in range(3):
        assert torch.allclose(one.params(e, 2), auto.params(e, 2), rtol=1e-3, atol=1e-4)


#: each audit's CLI at tiny budgets on digits (distillation, training and attacks)
AUDIT_ARGV = {
    "privacy": ["--methods", "dm", "--ipc", "2", "--iterations", "2", "--shadows", "4",
                "--epochs", "3", "--full-epochs", "1", "--models", "convnet1-w32",
                "--dp-epsilons", "8", "--dp-batch", "64", "--dp-accountant", "rdp",
                "--bootstrap", "5", "--pool", "300", "--set", "model=convnet1-w32"],
    "backdoor": ["--methods", "dm", "--ipc", "2", "--iterations", "2", "--set", "batch_real=8",
                 "--set", "model=convnet1-w32", "--runs", "1", "--epochs", "3"],
    "adversarial": ["--methods", "dm", "--ipc", "2", "--iterations", "2", "--set",
                    "batch_real=8", "--set", "model=convnet1-w32", "--runs", "1", "--epochs",
                    "3", "--epsilons", "0,8/255", "--steps", "2", "--max-test", "30",
                    "--no-full"],
}  # fmt: skip


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("audit", sorted(AUDIT_ARGV))
def test_audits_refuse_a_device_this_machine_lacks_before_any_work(audit, tmp_path, capsys):
    out = tmp_path / "audit"
    argv = ["audit", audit, *AUDIT_ARGV[audit], "--device", "cuda", "--quiet", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "device 'cuda' is not available" in err and "\n" not in err
    assert not out.exists()


@cuda
@pytest.mark.parametrize("audit", sorted(AUDIT_ARGV))
def test_every_audit_runs_on_the_gpu(audit, tmp_path):
    """Distillation, training, DP-SGD and the attacks on the GPU: the command ends with its
    results file, every figure in it finite."""
    if audit == "privacy":
        pytest.importorskip("opacus")
    out = tmp_path / "audit"
    argv = ["audit", audit, *AUDIT_ARGV[audit], "--device", "cuda", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    result = (out / f"{audit}.json").read_text()
    assert "NaN" not in result and "Infinity" not in result
