"""The UNet denoiser of the paper's Figure 1, with its analytic receptive field.

Architecture (as in the authors' released models file: bias-free 3x3 convolutions, a configurable padding
mode, average pooling after each encoder block, transposed-conv upsampling with skip concatenation,
BatchNorm or a bias-free batch norm; Ronneberger et al. 2015):
    encoder    ``num_blocks`` blocks of two 3x3 convs (conv -> norm -> ReLU), each followed by 2x2 average
               pooling; block i has ``base_channels * 2**i`` channels
    middle     two 3x3 convs at ``base_channels * 2**num_blocks`` channels
    decoder    per level: 2x2 stride-2 transposed conv, concatenate the skip, two 3x3 convs
    output     one 3x3 conv to ``out_channels``
Normalization ``norm``: "batch" (BatchNorm2d), "biasfree" (divide by the batch standard deviation, times
a learned gain; Mohan et al. 2020) or "none". With ``bias=False`` and ``norm`` in {"biasfree", "none"}
the network is positively homogeneous of degree 1: f(c x) = c f(x) for c > 0 (in eval mode).

Receptive field, exactly: walk back from one output pixel, tracking the interval of pixels (per axis)
it depends on at each level: a 3x3 conv widens it by one pixel per side, 2x2 pooling maps pixels
[a, b] to [2a, 2b + 1] one level finer, a 2x2 stride-2 transposed conv maps [a, b] to [a // 2, b // 2]
one level coarser, and a concatenation takes the union of its two paths. The field depends on the
pixel's position modulo 2**num_blocks; ``receptive_field`` reports the largest.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from archdiff.denoisers.networks import append_level, register

NORMS = ("batch", "biasfree", "none")
PADDING_MODES = ("zeros", "circular", "reflect")
KERNEL = 3
CONVS_PER_BLOCK = 2


class BiasFreeBatchNorm(nn.Module):
    """x / sd_batch(x) * gain per channel: no mean subtraction, no additive term; running SD for eval."""

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.register_buffer("running_sd", torch.ones(1, channels, 1, 1))
        self.momentum, self.eps = momentum, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            sd = (x.var(dim=(0, 2, 3), keepdim=True, unbiased=False) + self.eps).sqrt()  # [1, C, 1, 1]
            with torch.no_grad():
                self.running_sd.mul_(1 - self.momentum).add_(self.momentum * sd)  # in place: vmap-safe
        else:
            sd = self.running_sd
        return x / sd * self.gain


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "biasfree":
        return BiasFreeBatchNorm(channels)
    return nn.Identity()


class ConvBlock(nn.Sequential):
    """``CONVS_PER_BLOCK`` times (3x3 conv -> norm -> ReLU)."""

    def __init__(self, c_in: int, c_out: int, norm: str, padding_mode: str, bias: bool):
        layers: list[nn.Module] = []
        for i in range(CONVS_PER_BLOCK):
            layers += [
                nn.Conv2d(c_in if i == 0 else c_out, c_out, KERNEL, padding=KERNEL // 2,
                          padding_mode=padding_mode, bias=bias),
                _norm(norm, c_out),
                nn.ReLU(),
            ]
        super().__init__(*layers)


@register("unet")
class UNet(nn.Module):
    """UNet mapping [B, in_channels, H, W] to [B, out_channels, H, W]; H, W divisible by 2**num_blocks.

    ``level_input=True``: time-conditioned, the noise level enters as one more constant input channel.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int | None = None,
        base_channels: int = 32,
        num_blocks: int = 3,
        padding_mode: str = "zeros",
        norm: str = "batch",
        bias: bool = False,
        level_input: bool = False,
    ):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        out_channels = in_channels if out_channels is None else out_channels
        self.num_blocks, self.level_input = num_blocks, level_input
        in_channels += int(level_input)
        widths = [base_channels * 2**i for i in range(num_blocks + 1)]  # per level; last = middle
        block = dict(norm=norm, padding_mode=padding_mode, bias=bias)
        self.encoder = nn.ModuleList(
            ConvBlock(in_channels if i == 0 else widths[i - 1], widths[i], **block) for i in range(num_blocks)
        )
        self.middle = ConvBlock(widths[num_blocks - 1] if num_blocks else in_channels, widths[-1], **block)
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2, bias=bias) for i in range(num_blocks)
        )
        self.decoder = nn.ModuleList(ConvBlock(2 * widths[i], widths[i], **block) for i in range(num_blocks))
        self.out = nn.Conv2d(widths[0], out_channels, KERNEL, padding=KERNEL // 2,
                             padding_mode=padding_mode, bias=bias)

    @property
    def receptive_field(self) -> int:
        """Side of the square of input pixels one output pixel depends on (analytic)."""
        return receptive_field(self.num_blocks)

    def forward(self, x: torch.Tensor, level: torch.Tensor | None = None) -> torch.Tensor:
        if self.level_input:
            x = append_level(x, level)
        factor = 2**self.num_blocks
        if x.shape[-2] % factor or x.shape[-1] % factor:
            raise ValueError(f"image size {tuple(x.shape[-2:])} is not divisible by 2**num_blocks = {factor}")
        skips = []
        for enc in self.encoder:
            x = enc(x)
            skips.append(x)
            x = F.avg_pool2d(x, 2)
        x = self.middle(x)
        for i in reversed(range(self.num_blocks)):
            x = self.decoder[i](torch.cat([self.up[i](x), skips[i]], dim=1))
        return self.out(x)


def receptive_interval(num_blocks: int, p: int) -> tuple[int, int]:
    """First and last input pixel (along one axis) that output pixel p depends on, exactly."""
    return _decoder_in(0, num_blocks, p - KERNEL // 2, p + KERNEL // 2)


def receptive_field(num_blocks: int) -> int:
    """Receptive field (pixels per side) of a UNet output pixel: the largest over pixel positions."""
    return max(hi - lo + 1 for lo, hi in (receptive_interval(num_blocks, p) for p in range(2**num_blocks)))


_BLOCK_REACH = CONVS_PER_BLOCK * (KERNEL // 2)  # pixels a block's convs add on each side, at its level


def _encoder_in(level: int, lo: int, hi: int) -> tuple[int, int]:
    """Input pixels feeding output pixels lo..hi of encoder block ``level`` (level num_blocks = middle)."""
    lo, hi = lo - _BLOCK_REACH, hi + _BLOCK_REACH
    return (lo, hi) if level == 0 else _encoder_in(level - 1, 2 * lo, 2 * hi + 1)  # through 2x2 pooling


def _decoder_in(level: int, num_blocks: int, lo: int, hi: int) -> tuple[int, int]:
    """Input pixels feeding output pixels lo..hi of decoder block ``level`` (level num_blocks = middle)."""
    if level == num_blocks:
        return _encoder_in(level, lo, hi)
    lo, hi = lo - _BLOCK_REACH, hi + _BLOCK_REACH
    skip = _encoder_in(level, lo, hi)
    deep = _decoder_in(level + 1, num_blocks, lo // 2, hi // 2)  # transposed conv: one parent per pixel
    return min(skip[0], deep[0]), max(skip[1], deep[1])
