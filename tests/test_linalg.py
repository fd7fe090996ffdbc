"""Linear algebra on data matrices: the Gram-route spectrum and every ridge-solve route agree."""

from __future__ import annotations

import pytest
import torch

from archdiff.linalg import covariance_eigh, ridge_solve, ridge_solve_batched


@pytest.mark.parametrize("n, d", [(50, 8), (8, 50)])  # more and fewer points than dimensions
def test_covariance_eigh_matches_the_dense_eigendecomposition(n, d):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 + 1
    lam, vecs = covariance_eigh(x)
    c = x - x.mean(0)
    cov = c.T @ c / n
    dense = torch.linalg.eigvalsh(cov).flip(0)[: min(n, d)].clamp_min(0)
    torch.testing.assert_close(lam, dense, atol=1e-10, rtol=1e-10)
    r = int((lam > 1e-10 * lam[0]).sum())
    torch.testing.assert_close((vecs[:, :r] * lam[:r]) @ vecs[:, :r].T, cov, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(covariance_eigh(x, vectors=False), lam)


@pytest.mark.parametrize("m, f, d", [(40, 12, 5), (12, 40, 5), (12, 40, 90)])  # primal; dual, either side
@pytest.mark.parametrize("relative", [True, False])
def test_every_ridge_route_gives_the_same_minimizer(m, f, d, relative):
    """Cholesky on the primal or the dual system (solved for the narrower side) equals lstsq on the
    primal normal equations, batched or not."""
    g = torch.Generator().manual_seed(1)
    scales = torch.linspace(0.1, 3, f, dtype=torch.float64)  # features of unequal scale
    phi = torch.randn(3, m, f, generator=g, dtype=torch.float64) * scales
    target = torch.randn(3, m, d, generator=g, dtype=torch.float64)
    ridge = 1e-3
    reference = torch.stack([ridge_solve(p, t, ridge, method="lstsq", relative=relative)
                             for p, t in zip(phi, target)])
    torch.testing.assert_close(ridge_solve_batched(phi, target, ridge, relative), reference,
                               atol=1e-8, rtol=1e-7)


@pytest.mark.parametrize("m, f", [(40, 12), (12, 40)])  # primal; dual
@pytest.mark.parametrize("relative", [True, False])
def test_free_intercept_is_the_unpenalized_offset_of_the_augmented_system(m, f, relative):
    """With ``intercept`` the constant column's weight is not penalized: the solution of
    (Phi^T Phi + (M - 1) ridge P) W = Phi^T target, P = diag(penalties, 0), written out here on the
    uncentred augmented features (P's penalties: 1, or the features' centred variances when relative)."""
    g = torch.Generator().manual_seed(2)
    feats = torch.randn(m, f, generator=g, dtype=torch.float64) * torch.linspace(0.1, 3, f) + 0.7
    phi = torch.cat([feats, torch.ones(m, 1, dtype=torch.float64)], 1)  # [M, F + 1], constant last
    target = torch.randn(m, 4, generator=g, dtype=torch.float64) + 2.0
    ridge = 1e-2
    variance = (feats - feats.mean(0)).square().sum(0) / (m - 1)
    penalty = torch.cat([variance if relative else torch.ones(f, dtype=torch.float64), torch.zeros(1)])
    system = phi.T @ phi + (m - 1) * ridge * torch.diag(penalty)
    expected = torch.linalg.lstsq(system, phi.T @ target).solution
    got = ridge_solve_batched(phi, target, ridge, relative, intercept=True)
    torch.testing.assert_close(got, expected, atol=1e-8, rtol=1e-7)
