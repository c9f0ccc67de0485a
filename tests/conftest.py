import os

import pytest
import torch

# Two cores are shared by everything on the test machine: keep torch to one thread per process.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def digits():
    from ddkit.data import load_dataset

    return load_dataset("digits")
