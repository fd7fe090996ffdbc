"""Closed-form denoisers fitted from a training set: empirical Bayes-optimal, linear, rank-K linear.

Notation (paper Sec. 2.1, App. A.1):
    x_i        training points, i = 1..N, flattened to D = prod(shape)
    mu, Sigma  empirical mean and covariance (1/N) of the x_i; Sigma = V diag(lam) V^T
    a          noise level alpha_bar; y = sqrt(a) x + sqrt(1 - a) n is the noisy input
    K          bottleneck rank (Theorem 4): Sigma_K keeps the K largest eigenpairs

Linear MMSE (Wiener) denoiser, Theorem 3:
    x0_hat(y) = mu + sqrt(a) Sigma (a Sigma + (1 - a) I)^{-1} (y - sqrt(a) mu)
computed in the eigenbasis V, so a singular Sigma (N < D) is handled exactly: directions outside
the data's span get gain 0. The rank-K denoiser of Theorem 4 is the same formula with Sigma_K.

Empirical Bayes-optimal denoiser (the memorizing baseline, Karras et al. 2022):
    x0_hat(y) = sum_i softmax_i(-|y - sqrt(a) x_i|^2 / (2 (1 - a))) x_i

Saved (``saved.py``): a linear model as its mean and eigenpairs (kind "linear", full or rank-K alike), the
empirical-optimal one as its training points (kind "empirical-optimal").
"""

from __future__ import annotations

import torch

from archdiff.denoisers.base import Denoiser, check_data
from archdiff.denoisers.saved import StateDict, saved_config
from archdiff.linalg import covariance_eigh, flatten

MIN_VARIANCE = 1e-12  # floor on 1 - alpha_bar; at alpha_bar -> 1 the posterior becomes the argmin


class EmpiricalOptimal(Denoiser):
    """Posterior mean over the training points: the Bayes-optimal denoiser of the empirical law."""

    kind = "empirical-optimal"

    def __init__(self, data: torch.Tensor, chunk: int = 4096):
        check_data(data)
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.shape = tuple(data.shape[1:])
        self.points = flatten(data).to(torch.float64)  # [N, D]
        self.sq_norms = (self.points**2).sum(1)  # [N]
        self.chunk = chunk

    def denoise(self, x: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        y = flatten(x).to(torch.float64)  # [B, D]
        s = alpha_bar.sqrt()[:, None]  # [B, 1]
        var = (1 - alpha_bar).clamp_min(MIN_VARIANCE)[:, None]
        out = []
        for yb, sb, vb in zip(y.split(self.chunk), s.split(self.chunk), var.split(self.chunk)):
            # |y - s x_i|^2 up to the term |y|^2, which the softmax ignores: [b, N]
            logits = (2 * sb * (yb @ self.points.T) - sb**2 * self.sq_norms) / (2 * vb)
            out.append(torch.softmax(logits, dim=1) @ self.points)
        return torch.cat(out).to(x.dtype).reshape(x.shape)

    def to_saved(self) -> tuple[dict, StateDict]:
        """config.json's content and the training points [N, D] (float64)."""
        return saved_config(self.kind, self.shape, settings={"chunk": self.chunk}), {"points": self.points}

    @classmethod
    def from_saved(cls, config: dict, tensors: StateDict, device="cpu") -> EmpiricalOptimal:
        """The model ``to_saved`` described."""
        points = tensors["points"].to(device).reshape(-1, *config["shape"])
        return cls(points, chunk=config["settings"]["chunk"])


class LinearDenoiser(Denoiser):
    """Gaussian MMSE (Wiener) denoiser of the data's mean and covariance, optionally rank-K (Thm 3, 4)."""

    kind = "linear"

    def __init__(self, mean: torch.Tensor, eigvecs: torch.Tensor, eigvals: torch.Tensor, shape):
        self.shape = tuple(shape)
        self.mean = mean  # [D] float64
        self.eigvecs = eigvecs  # [D, K] float64, orthonormal columns
        self.eigvals = eigvals  # [K] float64, descending

    @classmethod
    def fit(cls, data: torch.Tensor, rank: int | None = None, rtol: float = 1e-10) -> LinearDenoiser:
        """Fit from data [N, *shape]; ``rank`` K keeps the top-K eigenpairs (None: the data's rank)."""
        check_data(data)
        eigvals, eigvecs = covariance_eigh(data)
        keep = int((eigvals > rtol * eigvals[0].clamp_min(1e-300)).sum())
        full = cls(flatten(data).to(torch.float64).mean(0), eigvecs[:, :keep].contiguous(),
                   eigvals[:keep].contiguous(), data.shape[1:])
        return full if rank is None else full.truncated(rank)

    def truncated(self, rank: int) -> LinearDenoiser:
        """The rank-K bottleneck of this model: its K leading eigenpairs (Theorem 4); K >= this rank
        returns the model unchanged."""
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        if rank >= self.rank:
            return self
        vecs, vals = self.eigvecs[:, :rank].contiguous(), self.eigvals[:rank].contiguous()
        return LinearDenoiser(self.mean, vecs, vals, self.shape)

    @property
    def rank(self) -> int:
        return self.eigvals.numel()

    @property
    def covariance(self) -> torch.Tensor:
        """Sigma (or Sigma_K): [D, D]."""
        return (self.eigvecs * self.eigvals) @ self.eigvecs.T

    def gains(self, alpha_bar: torch.Tensor) -> torch.Tensor:
        """Per-eigendirection gain sqrt(a) lam / (a lam + 1 - a): [B, K]."""
        a = alpha_bar[:, None]
        return a.sqrt() * self.eigvals / (a * self.eigvals + (1 - a))

    def denoise(self, x: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        y = flatten(x).to(torch.float64)  # [B, D]
        centred = y - alpha_bar.sqrt()[:, None] * self.mean
        coeff = (centred @ self.eigvecs) * self.gains(alpha_bar)  # [B, K]
        return (self.mean + coeff @ self.eigvecs.T).to(x.dtype).reshape(x.shape)

    def to_saved(self) -> tuple[dict, StateDict]:
        """config.json's content (its rank, for the reader) and the mean [D] and eigenpairs [D, K], [K]."""
        tensors = {"mean": self.mean, "eigvecs": self.eigvecs, "eigvals": self.eigvals}
        return saved_config(self.kind, self.shape, settings={"rank": self.rank}), tensors

    @classmethod
    def from_saved(cls, config: dict, tensors: StateDict, device="cpu") -> LinearDenoiser:
        """The model ``to_saved`` described."""
        t = {k: v.to(device) for k, v in tensors.items()}
        return cls(t["mean"], t["eigvecs"], t["eigvals"], config["shape"])

    def operator(self, alpha_bar: float) -> torch.Tensor:
        """The linear map W(a) = V diag(gain) V^T applied to (y - sqrt(a) mu): [D, D]."""
        g = self.gains(torch.tensor([alpha_bar], dtype=torch.float64, device=self.mean.device))[0]
        return (self.eigvecs * g) @ self.eigvecs.T
