"""Closed-form denoisers: the shared contract and the analytic truths of Theorems 3-5."""

import math

import pytest
import torch

from archdiff import metrics
from archdiff.data import toy2d
from archdiff.denoisers import EmpiricalOptimal, LinearDenoiser, MomentPolynomialDenoiser, PolynomialDenoiser
from archdiff.denoisers.polynomial import RECIPES
from archdiff.samplers import ddim, initial_noise
from archdiff.schedule import sampling_levels
from archdiff.theory import linear_prediction, polynomial_prediction, rank_k_prediction


def _closed_form(data):
    return [
        EmpiricalOptimal(data),
        LinearDenoiser.fit(data),
        LinearDenoiser.fit(data, rank=2),
        PolynomialDenoiser(data, 3, width=64),
        MomentPolynomialDenoiser.from_data(data.reshape(len(data), -1)[:, :2], 3),
    ]


@pytest.mark.parametrize("index", range(5))
def test_denoiser_contract(index):
    """Every denoiser: same shape and dtype out; float or [B] level; mixed levels = per-level calls."""
    g = torch.Generator().manual_seed(0)
    data = torch.randn(40, 2, generator=g)
    den = _closed_form(data)[index]
    x = torch.randn(6, 2, generator=g)
    out = den(x, 0.4)
    assert out.shape == x.shape and out.dtype == x.dtype and bool(torch.isfinite(out).all())
    assert torch.equal(out, den(x, torch.full((6,), 0.4, dtype=torch.float64)))
    levels = torch.tensor([0.1, 0.4, 0.1, 0.9, 0.4, 0.9], dtype=torch.float64)
    mixed = den(x, levels)
    for a in (0.1, 0.4, 0.9):
        rows = levels == a
        assert torch.allclose(mixed[rows], den(x[rows], a), atol=1e-6)
    with pytest.raises(ValueError):
        den(x, 0.0)


def test_linear_denoiser_is_the_wiener_filter_even_when_singular():
    """x0_hat = mu + sqrt(a) S (a S + (1-a) I)^+ (y - sqrt(a) mu), checked with a dense solve; N < D."""
    g = torch.Generator().manual_seed(1)
    data = torch.randn(5, 8, generator=g, dtype=torch.float64)  # rank-4 covariance in 8-D
    fit = LinearDenoiser.fit(data)
    assert fit.rank == 4
    mu, S = data.mean(0), torch.cov(data.T, correction=0)
    a = 0.3
    y = torch.randn(3, 8, generator=g, dtype=torch.float64)
    # on the data span the (a S + (1-a) I) inverse is regular; off the span S = 0 kills it
    dense = mu + (math.sqrt(a) * S @ torch.linalg.inv(a * S + (1 - a) * torch.eye(8, dtype=torch.float64))
                  @ (y - math.sqrt(a) * mu).T).T
    assert torch.allclose(fit(y, a), dense, atol=1e-10)


def test_empirical_optimal_copies_training_points():
    g = torch.Generator().manual_seed(2)
    data = torch.randn(30, 16, generator=g)
    samples = ddim(EmpiricalOptimal(data), initial_noise(200, (16,), 3), sampling_levels("cosine", 100))
    assert metrics.copy_fraction(samples, data) > 0.95


def test_rank_k_samples_have_rank_k_and_covariance_sigma_k(gaussian_data):
    """Theorem 4: a rank-K linear denoiser samples N(mu, Sigma_K)."""
    k, n = 2, 8000
    x = ddim(LinearDenoiser.fit(gaussian_data, rank=k), initial_noise(n, (4,), 4).double(),
             sampling_levels("cosine", 500))
    pred = rank_k_prediction(gaussian_data, k)
    assert metrics.numerical_rank(x, rtol=1e-8) == k
    bound = 4 * metrics.covariance_error_scale(pred.eigvals, n) + 0.01  # + the 500-step DDIM bias (~0.5 %)
    assert metrics.covariance_error(x, pred.eigvecs, pred.eigvals) < bound


def test_predictions_sample_their_gaussian(gaussian_data):
    pred = linear_prediction(gaussian_data)
    x = pred.sample(20000, torch.Generator().manual_seed(0))
    err = metrics.covariance_error(x, pred.eigvecs, pred.eigvals)
    assert err < 4 * metrics.covariance_error_scale(pred.eigvals, 20000)
    assert torch.allclose(pred.cov, torch.cov(gaussian_data.T, correction=0), atol=1e-10)


def test_polynomial_degree_1_equals_linear():
    """Exact fit: identical to the Wiener filter. Random features of a true polynomial (the "column"
    recipe, affine inside the training range): converge to it with many draws. (The "authors" recipe's
    per-sample normalization makes its features scale-invariant, so its degree 1 is not linear.)"""
    data = toy2d.gmm3(500, seed=3)
    lin = LinearDenoiser.fit(data)
    y = initial_noise(50, (2,), 1).double()
    for a in (0.05, 0.5, 0.95):
        assert torch.allclose(MomentPolynomialDenoiser.from_data(data, 1)(y, a), lin(y, a), atol=1e-9)
    rf = PolynomialDenoiser(data, 1, width=16, draws=200, recipe="column")
    inside = y[y.norm(dim=1) < 2.0]  # keep inputs inside the training range (features are clipped outside)
    err = (rf(inside, 0.5) - lin(inside, 0.5)).norm(dim=1).max()
    assert err < 0.05 * float(data.std())


def test_polynomial_degree_27_is_finite_on_images_like_data():
    g = torch.Generator().manual_seed(5)
    data = torch.rand(60, 1, 6, 6, generator=g) * 2 - 1
    for recipe in RECIPES:
        x = ddim(PolynomialDenoiser(data, 27, width=256, recipe=recipe), initial_noise(16, (1, 6, 6), 0),
                 sampling_levels("cosine", 20))
        assert bool(torch.isfinite(x).all())


def test_moment_mode_depends_only_on_moments_up_to_2k():
    """Theorem 5: sets matched up to order 2k give identical samples; a generic mismatch at order <= 2k
    (square vs rotated square, order 4, for k = 3) gives different ones."""
    k = 3
    pred = polynomial_prediction(k)
    x_T = initial_noise(300, (2,), 11)
    levels = sampling_levels("cosine", 30)

    def samples(points):
        return ddim(MomentPolynomialDenoiser.from_data(points, k), x_T, levels)

    a, b = toy2d.polygon_pair(2 * k + 1)
    assert pred.same_prediction(toy2d.matched_order(2 * k + 1))
    assert (samples(a) - samples(b)).abs().max() < 1e-4
    a, b = toy2d.polygon_pair(k + 1)
    assert not pred.same_prediction(toy2d.matched_order(k + 1))
    assert (samples(a) - samples(b)).norm(dim=1).max() > 0.1


def test_gmm_pair_degree1_same_degree3_different():
    """The 3GMM and 2GMM share moments up to order 2 only: degree 1 cannot tell them apart, degree 3 can."""
    g3, g2 = toy2d.gmm3(2000), toy2d.gmm2(2000)
    x_T = initial_noise(200, (2,), 12)
    levels = sampling_levels("cosine", 20)
    for k, same in ((1, True), (3, False)):
        s3 = ddim(MomentPolynomialDenoiser.from_data(g3, k), x_T, levels)
        s2 = ddim(MomentPolynomialDenoiser.from_data(g2, k), x_T, levels)
        assert (float((s3 - s2).abs().max()) < 1e-4) == same
