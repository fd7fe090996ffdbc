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
    """Train one network denoiser as the config says, then DDIM-sample it from x_T; (samples, TrainResult).

    The network trains with checkpoints into ``models/NAME`` of the run folder when the config saves models,
    else into the run's work folder (removed when the run finishes); either way a stopped run resumes it.
    """
    c = ctx.config
    cfg = TrainConfig(epochs=c["epochs"], batch_size=c["batch_size"], lr=c["lr"],
                      lr_schedule=c["lr_schedule"], conditioning=c["conditioning"], schedule=c["schedule"],
                      steps=c["steps"], seed=ctx.seed, checkpoint_every=max(c["epochs"] // 10, 1),
                      **{k: c[k] for k in SPEED_SWITCHES})
    out = (ctx.out / "models" if c["save_models"] else ctx.work) / key(name)
    label = f"{spec.name} ({name})"
    ctx.stage(f"training {label}: {c['epochs']} epochs")
    result = train(spec, data, cfg, out=out, resume=True, device=ctx.device, progress=ctx.progress,
                   desc=f"training {label}")
    ctx.stage(f"sampling {label}: {x_T.shape[0]} samples, {c['steps']} steps")
    samples = ddim(result.denoiser, x_T, sampling_levels(c["schedule"], c["steps"]),
                   batch_size=c["sample_batch"], progress=ctx.progress)
    return samples.clamp(-1, 1), result
