"""2-D data constructions and metrics against quantities known in closed form."""

import math

import pytest
import torch

from archdiff import metrics
from archdiff.data import toy2d
from archdiff.denoisers.polynomial import data_moments
from archdiff.theory import linear_prediction


def test_gmm_pair_has_exactly_the_population_mean_and_covariance():
    mean, cov = toy2d.population_moments()
    for x in (toy2d.gmm3(1000, 3), toy2d.gmm2(1000, 3)):
        assert torch.allclose(x.mean(0), mean, atol=1e-12)
        assert torch.allclose(torch.cov(x.T, correction=0), cov, atol=1e-12)


def test_gmm_population_covariances_agree():
    # 3GMM: S3^2 I + Cov(means); 2GMM: component cov + diag(D2^2, 0)
    m3, c3 = toy2d.gmm3_params()
    m2, c2 = toy2d.gmm2_params()
    cov3 = c3 + torch.cov(m3.T, correction=0)
    cov2 = c2 + torch.cov(m2.T, correction=0)
    assert torch.allclose(cov3, cov2, atol=1e-12)


@pytest.mark.parametrize("n", [3, 5, 7])
def test_polygon_pair_moments_match_below_n_and_differ_at_n(n):
    a, b = toy2d.polygon_pair(n)
    ma, mb = data_moments(a, n), data_moments(b, n)
    for gamma in ma:
        close = math.isclose(ma[gamma], mb[gamma], abs_tol=1e-9)
        if sum(gamma) < n:
            assert close, gamma
    assert any(not math.isclose(ma[g], mb[g], abs_tol=1e-9) for g in ma if sum(g) == n)


def test_copy_fraction_and_nn():
    g = torch.Generator().manual_seed(0)
    train = torch.randn(50, 10, generator=g)
    copies = train[:20] + 1e-3 * torch.randn(20, 10, generator=g)
    fresh = torch.randn(20, 10, generator=g)
    assert metrics.copy_fraction(copies, train) == 1.0
    assert metrics.copy_fraction(fresh, train) == 0.0
    assert metrics.copy_fraction(torch.cat([copies, fresh]), train) == 0.5


def test_sliced_wasserstein_of_a_shift_is_its_projection():
    """SW2 between x and x + c is sqrt(mean over directions of (u.c)^2) = |c| / sqrt(D)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2000, 3, generator=g, dtype=torch.float64)
    c = torch.tensor([0.3, -0.4, 1.2], dtype=torch.float64)
    sw = metrics.sliced_wasserstein(x, x + c, n_proj=2000)
    assert sw == pytest.approx(float(c.norm()) / math.sqrt(3), rel=0.05)
    assert metrics.mmd(x, x) == pytest.approx(0.0, abs=1e-12)


def test_intrinsic_dimension_of_known_sets():
    g = torch.Generator().manual_seed(2)
    t = torch.rand(2000, generator=g, dtype=torch.float64) * 6
    curve = torch.stack([t.cos(), t.sin(), 0.3 * t], 1)  # 1-D helix in 3-D
    plane = torch.cat([torch.rand(2000, 2, generator=g, dtype=torch.float64), torch.zeros(2000, 1)], 1)
    assert metrics.intrinsic_dimension(curve) == pytest.approx(1.0, abs=0.2)
    assert metrics.intrinsic_dimension(plane) == pytest.approx(2.0, abs=0.3)


def test_ranks():
    g = torch.Generator().manual_seed(3)
    basis = torch.randn(3, 20, generator=g, dtype=torch.float64)
    x = torch.randn(500, 3, generator=g, dtype=torch.float64) @ basis
    assert metrics.numerical_rank(x) == 3
    iso = torch.randn(20000, 4, generator=g, dtype=torch.float64)
    assert metrics.effective_rank(iso) == pytest.approx(4.0, abs=0.05)


def test_high_frequency_energy_of_pure_tones():
    i = torch.arange(32, dtype=torch.float64)
    low = torch.cos(2 * math.pi * 2 / 32 * i)[None, None, None, :].expand(1, 1, 32, 32)
    high = torch.cos(2 * math.pi * 12 / 32 * i)[None, None, None, :].expand(1, 1, 32, 32)
    assert metrics.high_frequency_energy(low) == pytest.approx(0.0, abs=1e-12)
    assert metrics.high_frequency_energy(high) == pytest.approx(1.0, abs=1e-12)


def test_local_patches_are_the_image_tiles():
    """Every non-overlapping tile of every image, channels first within a row; the remainder left out."""
    x = torch.arange(2 * 3 * 7 * 9, dtype=torch.float64).reshape(2, 3, 7, 9)
    rows = metrics.local_patches(x, 3)
    tiles = [x[n, :, i:i + 3, j:j + 3].reshape(-1) for n in range(2) for i in (0, 3) for j in (0, 3, 6)]
    assert torch.equal(rows, torch.stack(tiles))
    centred = metrics.local_patches(x, 3, centred=True)
    torch.testing.assert_close(centred, rows - rows.mean(1, keepdim=True))
    torch.testing.assert_close(centred.sum(1), torch.zeros(len(rows), dtype=torch.float64))
    with pytest.raises(ValueError):
        metrics.local_patches(x, 8)


def test_measure_of_the_training_set_and_of_its_gaussian():
    """The training set measured against itself: every sample a copy at distance 0, and exactly the
    Gaussian's mean and covariance (Thm 3's prediction is built from them). Draws of that Gaussian are
    within 4 sampling RMS of both moments, and their sliced Wasserstein to the Gaussian is below the
    training set's own."""
    g = torch.Generator().manual_seed(0)
    train = torch.randn(40, 1, 3, 3, generator=g) * torch.linspace(0.2, 1.5, 9).reshape(1, 1, 3, 3) + 0.3
    same = metrics.measure(train, train)
    assert same["copy_fraction"] == 1.0 and same["nn_distance"] == 0.0
    # the covariance error is the root of a difference of O(1) terms: float64 leaves ~sqrt(eps) = 1.5e-8
    assert same["gaussian_mean_error"] < 1e-12 and same["gaussian_cov_error"] < 1e-6
    assert same["effective_rank"] == pytest.approx(same["effective_rank.train"])
    draws = linear_prediction(train).sample(4000, torch.Generator().manual_seed(1))
    m = metrics.measure(draws, train)
    assert m["gaussian_mean_error"] < 4 * m["gaussian_mean_error.floor"]
    assert m["gaussian_cov_error"] < 4 * m["gaussian_cov_error.floor"]
    assert m["sliced_wasserstein.gaussian"] < m["sliced_wasserstein.train"]
    assert set(m) == set(same) and "hf_energy" in m
