"""Trainable denoiser networks: the conventions every architecture follows, and the registry.

Conventions (every network module in this package follows them):

1. Call signature. A network is an ``nn.Module`` that maps the noisy input to the estimate of the
   clean signal, same shape::

       forward(x: [B, *shape], level: [B] float | None = None) -> x0_hat [B, *shape]

   ``x`` is y = sqrt(a) x_0 + sqrt(1 - a) n as the sampler holds it (no input scaling); the output is
   the x_0 estimate (the trainer's loss is the MSE to x_0).

2. Conditioning. Every architecture's constructor takes ``level_input: bool = False``:
   - per-level (``level_input=False``, the authors' setting): the network takes no noise level; the
     trainer builds one network per noise level and calls ``net(x)`` (``level`` is ignored).
   - time-conditioned (``level_input=True``): ONE network for all levels. It gets the noise level as
     one extra input channel / feature holding ``level_feature(a) = sqrt(1 - a)`` (the noise SD, in
     [0, 1]): build the first layer with one more input channel and start ``forward`` with
     ``x = append_level(x, level)``. The trainer calls ``net(x, level)`` with level = alpha_bar [B].

3. Registry. Decorate the class (or a factory function) with ``@register("name")``. Constructor
   kwargs must be JSON values (int, float, str, bool, lists) because a checkpoint rebuilds its network
   from ``NetSpec(name, kwargs)``: the trainer receives a ``NetSpec``, not a module. Modules of this
   package are discovered on first use of the registry (adding a file that registers is enough).

4. Batched per-level training runs the L per-level copies as one computation with
   ``torch.func.vmap`` over stacked parameters and buffers (``functional_call``). For that a network
   must avoid data-dependent Python control flow (``if tensor``, ``.item()``), update buffers in place
   (``buf.mul_(m).add_(...)``, ``buf.copy_(...)``; never ``self.buf = ...``) and use no randomness
   (no dropout). ``nn.BatchNorm*`` is fine. A network that breaks these rules still trains: the
   trainer detects it and falls back to the loop engine (slower, same result).

5. Initialisation draws from the global torch RNG; the trainer seeds it (``torch.random.fork_rng``)
   so the same seed gives the same initial weights.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable:
    """Class/factory decorator: make an architecture buildable by name (``build(name, **kwargs)``)."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"network name {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return wrap


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def available() -> list[str]:
    """Names of all registered architectures."""
    _discover()
    return sorted(_REGISTRY)


def build(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered architecture by name."""
    if name not in _REGISTRY:
        _discover()
    if name not in _REGISTRY:
        raise ValueError(f"unknown network {name!r}: choose one of {', '.join(available())}")
    return _REGISTRY[name](**kwargs)


@dataclass(frozen=True)
class NetSpec:
    """A network as the trainer and checkpoints know it: registry name + JSON-able constructor kwargs."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self, level_input: bool = False) -> nn.Module:
        """Instantiate; ``level_input=True`` for the time-conditioned mode."""
        return build(self.name, **self.kwargs, level_input=level_input)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kwargs": dict(self.kwargs)}


def level_feature(alpha_bar: torch.Tensor) -> torch.Tensor:
    """The noise-level input of a time-conditioned network: sqrt(1 - alpha_bar), the noise SD."""
    return (1 - alpha_bar.to(torch.float64)).clamp_min(0).sqrt()


def append_level(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Append level_feature as one extra feature ([B, D] -> [B, D+1]) or channel ([B, C, ...] -> C+1)."""
    if level is None:
        raise ValueError("this network was built with level_input=True: call it as net(x, alpha_bar)")
    f = level_feature(level).to(x.dtype).view(-1, *([1] * (x.ndim - 1)))  # [B, 1, ...]
    return torch.cat([x, f.expand(x.shape[0], 1, *x.shape[2:])], dim=1)


__all__ = ["NetSpec", "append_level", "available", "build", "level_feature", "register"]
