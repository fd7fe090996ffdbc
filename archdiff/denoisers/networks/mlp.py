"""Small networks for vector data: the 2-D bottleneck MLP (Sec. 2.3, Fig. 4) and the linear bottleneck.

Notation (paper Sec. 2.1-2.3, Theorems 4 and 6):
    H          hidden width of the encoder / decoder ("high-dimensional expansion")
    h          bottleneck width: every output of the MLP is a function of h numbers, so it lies on an
               (at most) h-dimensional manifold (Theorem 6)
    W1, W2     linear bottleneck factors, W1 [K, D] and W2 [D, K]: x0_hat = W2 W1 y + b (Theorem 4);
               with the free bias b the MSE optimum is the rank-K Wiener operator W_K(a) applied to
               y - sqrt(a) mu, i.e. ``LinearDenoiser.fit(data, rank=K)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from archdiff.denoisers.networks import append_level, register

SLOPE = 0.2  # LeakyReLU negative slope of the authors' MLPs
PRESETS_2D = {"h2": {"hidden": 256, "bottleneck": 2}, "h1": {"hidden": 64, "bottleneck": 1}}


@register("mlp2d")
class BottleneckMLP(nn.Module):
    """Linear(d,H) LReLU, Linear(H,h) LReLU, Linear(h,H) LReLU, Linear(H,d): outputs lie on an h-manifold."""

    def __init__(self, dim: int = 2, hidden: int = 256, bottleneck: int = 2, level_input: bool = False):
        super().__init__()
        self.level_input = level_input
        act = nn.LeakyReLU(SLOPE)
        self.encoder = nn.Sequential(
            nn.Linear(dim + level_input, hidden), act, nn.Linear(hidden, bottleneck), act
        )
        self.decoder = nn.Sequential(nn.Linear(bottleneck, hidden), act, nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, level: torch.Tensor | None = None) -> torch.Tensor:
        if self.level_input:
            x = append_level(x, level)
        return self.decoder(self.encoder(x))


@register("linear-bottleneck")
class LinearBottleneck(nn.Module):
    """x0_hat = W2 W1 y + b with W1 [K, D], W2 [D, K]: a trainable rank-K linear denoiser (Theorem 4)."""

    def __init__(self, dim: int, rank: int, level_input: bool = False, init_scale: float = 1e-2):
        super().__init__()
        self.level_input = level_input
        self.w1 = nn.Linear(dim + level_input, rank, bias=False)
        self.w2 = nn.Linear(rank, dim, bias=True)
        with torch.no_grad():  # small init: start near the saddle at 0, as a linear autoencoder does
            self.w1.weight.normal_(0.0, init_scale / math.sqrt(dim))
            self.w2.weight.normal_(0.0, init_scale / math.sqrt(rank))
            self.w2.bias.zero_()

    def forward(self, x: torch.Tensor, level: torch.Tensor | None = None) -> torch.Tensor:
        y = x.reshape(x.shape[0], -1)  # [B, D]
        if self.level_input:
            y = append_level(y, level)
        return self.w2(self.w1(y)).reshape(x.shape)

    def operator(self) -> torch.Tensor:
        """W2 W1 restricted to the signal input: [D, D]."""
        w = self.w2.weight @ self.w1.weight
        return w[:, : w.shape[0]]
