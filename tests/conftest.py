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
# tests of the fast defaults switch it off locally
os.environ.setdefault("DDKIT_EXACT", "1")
# autoencoders trained by tests are cached outside the checkout, shared by the test session
os.environ.setdefault(
    "DDKIT_AUTOENCODER_CACHE", os.path.join(tempfile.gettempdir(), "ddkit-test-autoencoders")
)


@pytest.fixture(scope="session")
def digits():
    from ddkit.data import load_dataset

    return load_dataset("digits")


@pytest.fixture
def global_rng_untouched() -> Iterator[None]:
    """Fail the test if it draws from (or reseeds) torch's global RNG.

    Opt in per module with ``pytestmark = pytest.mark.usefixtures("global_rng_untouched")``.
    """
    state = torch.random.get_rng_state()
    yield
    assert torch.equal(torch.random.get_rng_state(), state), "global RNG was used"
