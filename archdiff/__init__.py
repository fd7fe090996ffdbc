"""archdiff: how a diffusion model's denoiser architecture decides what it generates."""

__version__ = "0.1.0"
