"""The image MLP of the paper's Figure 9: a global bottleneck network whose width sets the rank.

Architecture (the authors' released file, see REFERENCE_NOTES): flatten the image (D = C H W pixels);
encoder = ``depth`` = 9 linear layers of width w, each followed by LeakyReLU(0.2) except the last, which
is followed by ReLU; decoder = one linear layer w -> D followed by Tanh (images live in [-1, 1]).
Every output is tanh(W h + b) with h in R^w, so before the Tanh the outputs of one network span an
affine set of dimension at most w: the width is the bottleneck dimension of Sec. 5 (paper, Fig. 9).
"""

from __future__ import annotations

import math

import torch
from torch import nn

DEPTH = 9


class ImageMLP(nn.Module):
    """[B, *shape] -> [B, *shape] in (-1, 1) through ``depth`` hidden layers of ``width`` units."""

    def __init__(self, shape: tuple[int, ...], width: int = 200, depth: int = DEPTH):
        super().__init__()
        self.shape = tuple(shape)
        dim = math.prod(self.shape)
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(dim if i == 0 else width, width),
                       nn.LeakyReLU(0.2) if i < depth - 1 else nn.ReLU()]
        self.encoder = nn.Sequential(*layers)
        self.decoder = nn.Sequential(nn.Linear(width, dim), nn.Tanh())
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x.flatten(1))).view(x.shape[0], *self.shape)
