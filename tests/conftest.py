"""Shared test settings: CPU, float64 where derived thresholds need it, GPU tests skipped without CUDA."""

import pytest
import torch

from archdiff import threads


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def thread_policy():
    """The tests run under archdiff's thread policy, as the runner runs experiments (one thread unless
    $ARCHDIFF_THREADS says otherwise): on shared cores torch's default threads make tiny operations crawl."""
    with threads.policy():
        yield


@pytest.fixture
def gaussian_data():
    """A 4-D Gaussian data set [2000, 4] with a known, anisotropic covariance."""
    g = torch.Generator().manual_seed(0)
    mix = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.5, 1.0, 0.0, 0.0],
                        [0.0, 0.3, 0.7, 0.0], [0.1, 0.0, 0.2, 0.4]])
    return torch.randn(2000, 4, generator=g, dtype=torch.float64) @ mix.T.double() + 1.0
