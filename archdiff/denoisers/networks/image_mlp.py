"""The image MLP of the paper's Figure 9: a global bottleneck network whose width sets the rank.

Architecture (as in the authors' released models file, one network per noise level there): flatten the
image (D = C H W pixels); encoder = ``depth`` = 9 linear layers of width w, each followed by
LeakyReLU(0.2) except the last, which is followed by ReLU; decoder = one linear layer w -> D followed
by Tanh (images live in [-1, 1]).
Every output is tanh(W h + b) with h in R^w, so before the Tanh the outputs of one network span an
affine set of dimension at most w: the width is the bottleneck dimension of Sec. 5 (paper, Fig. 9).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from archdiff.denoisers.networks import append_level, register

DEPTH = 9


@register("image_mlp")
class ImageMLP(nn.Module):
    """[B, *shape] -> [B, *shape] in (-1, 1) through ``depth`` hidden layers of ``width`` units.

    ``level_input=True``: time-conditioned, the noise level enters as one more input feature.
    """

    def __init__(self, shape: tuple[int, ...] | list[int], width: int = 200, depth: int = DEPTH,
                 level_input: bool = False):
        super().__init__()
        self.shape, self.level_input = tuple(shape), level_input
        dim = math.prod(self.shape)
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(dim + int(level_input) if i == 0 else width, width),
                       nn.LeakyReLU(0.2) if i < depth - 1 else nn.ReLU()]
        self.encoder = nn.Sequential(*layers)
        self.decoder = nn.Sequential(nn.Linear(width, dim), nn.Tanh())
        self.width = width

    def forward(self, x: torch.Tensor, level: torch.Tensor | None = None) -> torch.Tensor:
        h = x.flatten(1)  # [B, D]
        if self.level_input:
            h = append_level(h, level)  # [B, D + 1]
        return self.decoder(self.encoder(h)).view(x.shape[0], *self.shape)
