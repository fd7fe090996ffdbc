"""What each denoiser class predicts about the generated distribution p_hat (paper Sec. 2).

Notation: mu, Sigma = data mean and (1/N) covariance; Sigma_K = its rank-K truncation
(K largest eigenpairs); k = polynomial degree; h = bottleneck width.

- Theorem 3 (linear):       p_hat = N(mu, Sigma)                     -> ``linear_prediction``
- Theorem 4 (rank-K linear): p_hat = N(mu, Sigma_K)                  -> ``rank_k_prediction``
- Theorem 5 (polynomial):   log p_hat is a polynomial of degree k + 1 that depends on the data only
                            through its moments up to order 2k       -> ``polynomial_prediction``
- Theorem 6 (bottleneck):   samples lie on an h-dimensional manifold -> ``bottleneck_prediction``
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from archdiff.denoisers.closed_form import LinearDenoiser


@dataclass(frozen=True)
class GaussianPrediction:
    """A predicted Gaussian p_hat = N(mean, cov) in the data's shape; cov = V diag(eigvals) V^T."""

    mean: torch.Tensor  # [D] float64
    eigvecs: torch.Tensor  # [D, K]
    eigvals: torch.Tensor  # [K]
    shape: tuple[int, ...]

    @property
    def cov(self) -> torch.Tensor:
        """The predicted covariance [D, D]."""
        return (self.eigvecs * self.eigvals) @ self.eigvecs.T

    @property
    def rank(self) -> int:
        return self.eigvals.numel()

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n draws [n, *shape] (float32), from a CPU generator."""
        z = torch.randn(n, self.rank, generator=generator, dtype=torch.float64)
        z = z.to(self.mean.device)
        x = self.mean + (z * self.eigvals.sqrt()) @ self.eigvecs.T
        return x.to(torch.float32).reshape(n, *self.shape)


def linear_prediction(data: torch.Tensor) -> GaussianPrediction:
    """Theorem 3: a linear denoiser samples N(mu, Sigma) of the training data."""
    return rank_k_prediction(data, None)


def rank_k_prediction(data: torch.Tensor, k: int | None) -> GaussianPrediction:
    """Theorem 4: a rank-K linear bottleneck samples N(mu, Sigma_K)."""
    fit = LinearDenoiser.fit(data, rank=k)
    return GaussianPrediction(fit.mean, fit.eigvecs, fit.eigvals, fit.shape)


@dataclass(frozen=True)
class PolynomialPrediction:
    """Theorem 5 for degree k: the log-density degree and the data moments the fit may use."""

    degree: int

    @property
    def log_density_degree(self) -> int:
        return self.degree + 1

    @property
    def moment_order(self) -> int:
        """Highest data moment the degree-k least-squares fit depends on: 2k."""
        return 2 * self.degree

    def same_prediction(self, matched_order: int) -> bool:
        """Two data sets sharing moments up to ``matched_order`` give the same p_hat iff 2k <= it."""
        return self.moment_order <= matched_order


def polynomial_prediction(degree: int) -> PolynomialPrediction:
    """Theorem 5's prediction for a degree-k polynomial denoiser."""
    return PolynomialPrediction(degree)


def bottleneck_prediction(h: int) -> int:
    """Theorem 6: the intrinsic dimension of the generated samples is at most h."""
    return h
