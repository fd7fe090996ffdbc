"""What each denoiser class predicts about the generated distribution p_hat (paper Sec. 2).

Notation: mu, Sigma = data mean and (1/N) covariance; Sigma_K = its rank-K truncation
(K largest eigenpairs); k = polynomial degree; h = bottleneck width.

- Theorem 3 (linear):       p_hat = N(mu, Sigma)                     -> ``linear_prediction``
- Theorem 4 (rank-K linear): p_hat = N(mu, Sigma_K)                  -> ``rank_k_prediction``
- Theorem 5 (polynomial):   log p_hat is a polynomial of degree k + 1 that depends on the data only
                            through its moments up to order 2k       -> ``polynomial_prediction``
- Theorem 6 (bottleneck):   samples lie on an h-dimensional manifold -> ``bottleneck_prediction``

DDIM with finitely many steps on a linear denoiser (``ddim_gains``, ``linear_ddim``, ``ddim_prediction``):
for x0_hat = mu + V diag(w(a)) V^T (x_t - sqrt(a) mu), one DDIM step from a to a' maps the centred state
z = x_t - sqrt(a) mu to z' = x_a' - sqrt(a') mu by a linear map acting on each eigendirection v_i alone,
z'_i = [(sqrt(a') - c sqrt(a)) w_i(a) + c] z_i, c = sqrt((1 - a') / (1 - a)), and by the product of the
c's (0, since the last level is 1) outside span(V). So DDIM's output is affine in x_T,
    x_0 = mu + V diag(g) V^T (x_T - sqrt(a_T) mu),  g_i = the product of the step factors,
and its samples follow N(mu - sqrt(a_T) V diag(g) V^T mu, V diag(g^2) V^T): Theorem 3/4's N(mu, Sigma)
only as the step count grows (g_i^2 -> lam_i); with few steps g_i^2 < lam_i, most for large lam_i.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from archdiff.denoisers.closed_form import LinearDenoiser
from archdiff.samplers import ddim


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

    @classmethod
    def of(cls, model: LinearDenoiser) -> GaussianPrediction:
        """N(mu, Sigma) (or Sigma_K) of a fitted linear denoiser."""
        return cls(model.mean, model.eigvecs, model.eigvals, model.shape)

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
    return GaussianPrediction.of(LinearDenoiser.fit(data, rank=k))


def ddim_gains(eigvals: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """g [K]: the factor by which DDIM on ``levels`` scales x_T's coordinate along an eigenvector of
    eigenvalue lam_i (it depends on lam_i alone, so a rank-K model's gains are the first K of the full's).

    Computed by running the sampler itself on a diagonal linear model (mean 0, V = I) from ones.
    """
    k, ev = eigvals.numel(), eigvals.to(torch.float64)
    diagonal = LinearDenoiser(torch.zeros_like(ev), torch.eye(k, dtype=ev.dtype, device=ev.device), ev, (k,))
    return ddim(diagonal, torch.ones(1, k, dtype=ev.dtype, device=ev.device), levels)[0]


def linear_ddim(model: LinearDenoiser, x_T: torch.Tensor, levels: torch.Tensor,
                gains: torch.Tensor | None = None) -> torch.Tensor:
    """Exactly ``ddim(model, x_T, levels)`` for a linear model, as one projection (any step count).

    ``gains``: ``ddim_gains(model.eigvals, levels)`` if already at hand.
    """
    g = ddim_gains(model.eigvals, levels) if gains is None else gains
    z = x_T.reshape(x_T.shape[0], -1).to(model.mean) - float(levels[0]) ** 0.5 * model.mean  # [N, D]
    out = model.mean + ((z @ model.eigvecs) * g) @ model.eigvecs.T
    return out.to(x_T.dtype).reshape(x_T.shape)


def ddim_prediction(model: LinearDenoiser, levels: torch.Tensor,
                    gains: torch.Tensor | None = None) -> GaussianPrediction:
    """The law of a linear model's DDIM samples on ``levels`` (see the module docstring)."""
    g = ddim_gains(model.eigvals, levels) if gains is None else gains
    mean = model.mean - float(levels[0]) ** 0.5 * (model.eigvecs @ (g * (model.eigvecs.T @ model.mean)))
    return GaussianPrediction(mean, model.eigvecs, g**2, model.shape)


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
