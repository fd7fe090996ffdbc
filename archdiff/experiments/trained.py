"""The step every trained-network experiment shares: train a network as the config says, then sample it."""

from __future__ import annotations

import torch

from archdiff.denoisers.networks import NetSpec
from archdiff.experiments.base import Context, key
from archdiff.samplers import ddim
from archdiff.schedule import sampling_levels
from archdiff.training import TrainConfig, train

# the training speed switches every trained experiment exposes as settings, with TrainConfig's defaults
SPEED_SWITCHES = {k: getattr(TrainConfig(), k) for k in ("precision", "channels_last", "compile")}


def train_and_sample(ctx: Context, spec: NetSpec, data: torch.Tensor, x_T: torch.Tensor, name: str):
    """Train one network denoiser as the config says, then DDIM-sample it from x_T; (samples, losses)."""
    c = ctx.config
    cfg = TrainConfig(epochs=c["epochs"], batch_size=c["batch_size"], lr=c["lr"],
                      lr_schedule=c["lr_schedule"], conditioning=c["conditioning"], schedule=c["schedule"],
                      steps=c["steps"], seed=ctx.seed, checkpoint_every=max(c["epochs"] // 10, 1),
                      **{k: c[k] for k in SPEED_SWITCHES})
    out = ctx.out / "models" / key(name) if c["save_models"] else None
    result = train(spec, data, cfg, out=out, resume=out is not None, device=ctx.device, progress=ctx.progress)
    samples = ddim(result.denoiser, x_T, sampling_levels(c["schedule"], c["steps"]),
                   batch_size=c["sample_batch"], progress=ctx.progress)
    return samples.clamp(-1, 1), result.losses
