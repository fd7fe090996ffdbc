"""2-D data sets built so that chosen moments match exactly (paper Fig. 2, 3; Theorems 3 and 5).

- ``gmm3`` / ``gmm2``: a 3- and a 2-component Gaussian mixture with the same mean and covariance by
  construction (population), and, after ``match_moments``, the same *empirical* mean and covariance
  to float precision, so a linear denoiser cannot tell them apart (Theorem 3).
- ``polygon_pair``: point sets on concentric regular n-gons and the same sets rotated by pi/n.
  Rotation by any angle leaves every moment of order < n of a regular n-gon unchanged, and the
  rotation by pi/n flips the sign of the order-n harmonic, so the pair's moments agree up to order
  n - 1 and differ at order n: a test of Theorem 5 beyond order 2.
"""

from __future__ import annotations

import math

import torch

from archdiff import seeding

# Population parameters. 3GMM: equal weights, means on a circle of radius R3 (equilateral
# triangle), isotropic components of SD S3. Its covariance is (S3^2 + R3^2 / 2) I.
R3, S3 = 2.0, 0.35
# 2GMM: equal weights, means at +-(D2, 0); the component covariance is what remains of the
# 3GMM's covariance after the between-means part diag(D2^2, 0): diag(S3^2 + R3^2/2 - D2^2, same + D2^2).
D2 = 1.35
TOTAL_VAR = S3**2 + R3**2 / 2


def _mixture(means: torch.Tensor, cov: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    comp = torch.randint(len(means), (n,), generator=g)
    chol = torch.linalg.cholesky(cov)
    noise = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return means[comp] + noise @ chol.T


def gmm3_params() -> tuple[torch.Tensor, torch.Tensor]:
    """Means [3, 2] and shared component covariance [2, 2] of the 3GMM."""
    angles = torch.tensor([90.0, 210.0, 330.0], dtype=torch.float64) * math.pi / 180
    means = R3 * torch.stack([angles.cos(), angles.sin()], 1)
    return means, S3**2 * torch.eye(2, dtype=torch.float64)


def gmm2_params() -> tuple[torch.Tensor, torch.Tensor]:
    """Means [2, 2] and shared component covariance [2, 2] of the 2GMM (same moments 1, 2)."""
    means = torch.tensor([[D2, 0.0], [-D2, 0.0]], dtype=torch.float64)
    return means, torch.diag(torch.tensor([TOTAL_VAR - D2**2, TOTAL_VAR], dtype=torch.float64))


def population_moments() -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and covariance both mixtures share: (0, (S3^2 + R3^2/2) I)."""
    return torch.zeros(2, dtype=torch.float64), TOTAL_VAR * torch.eye(2, dtype=torch.float64)


def match_moments(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """Affine map of x [N, D] whose empirical (1/N) mean and covariance become exactly mean, cov."""
    centred = x - x.mean(0)
    emp = centred.T @ centred / x.shape[0]
    whiten = torch.linalg.inv(torch.linalg.cholesky(emp))
    return mean + centred @ whiten.T @ torch.linalg.cholesky(cov).T


def gmm3(n: int, seed: int = 0, exact: bool = True) -> torch.Tensor:
    """n points [n, 2] of the 3GMM; ``exact``: empirical mean/cov set to the population's."""
    x = _mixture(*gmm3_params(), n, seeding.generator(seed, "gmm3"))
    return match_moments(x, *population_moments()) if exact else x


def gmm2(n: int, seed: int = 0, exact: bool = True) -> torch.Tensor:
    """n points [n, 2] of the 2GMM; ``exact``: empirical mean/cov set to the population's."""
    x = _mixture(*gmm2_params(), n, seeding.generator(seed, "gmm2"))
    return match_moments(x, *population_moments()) if exact else x


def polygon(n_vertices: int, radii=(1.0, 2.0), angle: float = 0.0) -> torch.Tensor:
    """Vertices of concentric regular n-gons, rotated by ``angle``: [len(radii) * n, 2]."""
    k = torch.arange(n_vertices, dtype=torch.float64)
    theta = 2 * math.pi * k / n_vertices + angle
    ring = torch.stack([theta.cos(), theta.sin()], 1)
    return torch.cat([r * ring for r in radii])


def polygon_pair(n_vertices: int, radii=(1.0, 2.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """Two point sets whose moments agree up to order n - 1 and differ at order n."""
    return polygon(n_vertices, radii), polygon(n_vertices, radii, math.pi / n_vertices)


def matched_order(n_vertices: int) -> int:
    """The highest moment order a ``polygon_pair(n_vertices)`` shares."""
    return n_vertices - 1
