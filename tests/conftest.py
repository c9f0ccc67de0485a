import os
import tempfile
from collections.abc import Iterator

import pytest
import torch

# Two cores are shared by everything on the test machine: keep torch to one thread per process.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")
# exact mode (ddkit.levers): the speed levers that default to "auto" stay off, so tests compute
# the float32, eager results of the reference sets on every machine and compile nothing; the
# tests of the fast defaults switch it off locally. Set whatever the shell says (a user's
# DDKIT_EXACT=0 must not change what the suite checks: issue 73)
os.environ["DDKIT_EXACT"] = "1"
# autoencoders trained by tests are cached outside the checkout, shared by the test session
os.environ.setdefault(
    "DDKIT_AUTOENCODER_CACHE", os.path.join(tempfile.gettempdir(), "ddkit-test-autoencoders")
)


@pytest.fixture(scope="session")
def digits():
    from ddkit.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def saved_tiny_teacher(tmp_path_factory):
    """A BatchNorm ConvNet trained one epoch on tiny digits and saved: ``(network, folder)``, for
    the tests of soft labels that relabel with it or find it from a set's ``teacher_dir``."""
    from ddkit.eval.teacher import TeacherRecipe, train_teacher
    from ddkit.testing import tiny_digits

    folder = tmp_path_factory.mktemp("teacher") / "t"
    recipe = TeacherRecipe("convnet3-bn-w8", epochs=1, seed=0)
    return train_teacher(tiny_digits().train, recipe, out_dir=folder), folder


@pytest.fixture
def global_rng_untouched() -> Iterator[None]:
    """Fail the test if it draws from (or reseeds) torch's global RNG.

    Opt in per module with ``pytestmark = pytest.mark.usefixtures("global_rng_untouched")``.
    """
    state = torch.random.get_rng_state()
    yield
    assert torch.equal(torch.random.get_rng_state(), state), "global RNG was used"


@pytest.fixture(autouse=True)
def _pinned_paths(request: pytest.FixtureRequest) -> Iterator[None]:
    """Apply a test's ``paths_agree`` marker (tests/paths.py): exact mode always; float64 as the
    default dtype for ``"float64"``; float32 matrix products at full precision for ``"fp32"``."""
    marker = request.node.get_closest_marker("paths_agree")
    if marker is None:
        yield
        return
    from paths import check_marker, float64_default

    from ddkit import levers

    precision = marker.args[0] if marker.args else marker.kwargs.get("precision")
    check_marker(precision, marker.kwargs.get("steps"))
    matmul = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    previous = float64_default() if precision == "float64" else torch.get_default_dtype()
    try:
        with levers.exact():
            yield
    finally:
        torch.set_default_dtype(previous)
        torch.set_float32_matmul_precision(matmul)
