"""Trainable denoiser networks: the conventions every architecture follows, and the registry.

Conventions (every network module in this package follows them):

1. Call signature. A network is an ``nn.Module`` that maps the noisy input to the estimate of the
   clean signal, same shape::

       forward(x: [B, *shape], level: [B] float | None = None) -> x0_hat [B, *shape]

   ``x`` is y = sqrt(a) x_0 + sqrt(1 - a) n as the sampler holds it (no input scaling); the output is
   the x_0 estimate (the trainer's loss is the MSE to x_0).

2. Conditioning. A constructor that has a ``level_input: bool = False`` parameter (every architecture of
   this package has one) receives it; one without it is built without it, as a per-level network:
   - per-level (``level_input=False``, the authors' setting): the network takes no noise level; the
     trainer builds one network per noise level and calls ``net(x)`` (``level`` is ignored).
   - time-conditioned (``level_input=True``): ONE network for all levels. It gets the noise level as
     one extra input channel / feature holding ``level_feature(a) = sqrt(1 - a)`` (the noise SD, in
     [0, 1]): build the first layer with one more input channel and start ``forward`` with
     ``x = append_level(x, level)``. The trainer calls ``net(x, level)`` with level = alpha_bar [B].
     Asking for it from a constructor without ``level_input`` is an error.

3. Names. ``factory(name)`` is the one place a network's name resolves, to one of:
   - a registered name: decorate the class (or a factory function) with ``@register("name")``.
     Modules of this package are discovered on first use of the registry (adding a file that
     registers is enough); a name registered by a user's module is saved with that module
     (``NetSpec.module``), which ``load`` imports before looking the name up.
   - ``"module:Class"``: a user's ``nn.Module`` class (or factory), imported from its module.
   Either way the module must be importable where the model is loaded (installed, or on PYTHONPATH).
   Constructor kwargs must be JSON values (int, float, str, bool, lists) because a saved model
   rebuilds its network from ``NetSpec(name, kwargs, module)``: the trainer receives a ``NetSpec``,
   not a module.

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
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable:
    """Class/factory decorator: make an architecture buildable by name (``build(name, **kwargs)``)."""

    if ":" in name:
        raise ValueError(f"network name {name!r}: a registered name has no ':' (that marks module:Class)")

    def wrap(make: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not make:
            raise ValueError(f"network name {name!r} is registered twice")
        _REGISTRY[name] = make
        return make

    return wrap


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def available() -> list[str]:
    """Names of all registered architectures."""
    _discover()
    return sorted(_REGISTRY)


def factory(name: str, module: str | None = None) -> Callable[..., nn.Module]:
    """What builds the network ``name``: a registered name (``module``, when given, is imported first if
    the name is not yet registered) or a user's class as ``"module:Class"``."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
        found = getattr(_imported(module_name, name), attr, None)
        if not callable(found):
            raise ValueError(f"network {name!r}: module {module_name!r} defines no class {attr!r}")
        return found
    if name not in _REGISTRY:
        _discover()
    if name not in _REGISTRY and module is not None:
        _imported(module, name)
        if name not in _REGISTRY:
            hint = (" (it was registered in the script that saved it: move the network into an importable "
                    "module)" if module == "__main__" else "")
            raise ValueError(f"network {name!r}: module {module!r} does not register it{hint}")
    if name not in _REGISTRY:
        raise ValueError(f"unknown network {name!r}: choose one of {', '.join(available())}, "
                         f"or give a class as module:Class")
    return _REGISTRY[name]


def _imported(module: str, name: str):
    """Import the module that defines network ``name``; a ValueError naming both when it cannot be."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ValueError(f"network {name!r}: cannot import module {module!r} ({e}); install it or put "
                         f"its folder on PYTHONPATH") from None


def registering_module(name: str) -> str | None:
    """The module that registered ``name`` when it is not archdiff's own (None for archdiff's networks,
    ``module:Class`` names and names not registered)."""
    made_by = _REGISTRY.get(name)
    module = getattr(made_by, "__module__", None)
    return None if module is None or module.split(".")[0] == "archdiff" else module


def construct(make: Callable[..., nn.Module], kwargs: dict[str, Any], level_input: bool) -> nn.Module:
    """Call a network's constructor; ``level_input`` is passed only to one that takes it (convention 2)."""
    if _takes_level_input(make):
        kwargs = {**kwargs, "level_input": level_input}
    elif level_input:
        raise ValueError(f"{getattr(make, '__qualname__', make)} has no level_input parameter, so it cannot "
                         f"be time-conditioned: add level_input: bool = False to its constructor")
    net = make(**kwargs)
    if not isinstance(net, nn.Module):
        raise ValueError(f"{getattr(make, '__qualname__', make)} built a {type(net).__name__}, not an "
                         f"nn.Module")
    return net


def _takes_level_input(make: Callable) -> bool:
    try:
        params = inspect.signature(make).parameters.values()
    except (TypeError, ValueError):  # no signature to read: assume the convention
        return True
    return any(p.name == "level_input" or p.kind is p.VAR_KEYWORD for p in params)


def build(name: str, **kwargs: Any) -> nn.Module:
    """Build a network by name (registered, or ``module:Class``); ``level_input`` goes to it as convention
    2 says."""
    level_input = bool(kwargs.pop("level_input", False))
    return construct(factory(name), kwargs, level_input)


@dataclass(frozen=True)
class NetSpec:
    """A network as the trainer and saved models know it: its name (registered, or ``module:Class``),
    JSON-able constructor kwargs, and the module that registers the name when it is a user's (imported
    before the name is looked up; ``to_dict`` records it)."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    module: str | None = None

    def build(self, level_input: bool = False) -> nn.Module:
        """Instantiate; ``level_input=True`` for the time-conditioned mode."""
        return construct(factory(self.name, self.module), dict(self.kwargs), level_input)

    def to_dict(self) -> dict[str, Any]:
        """The spec as saved: {"name", "kwargs"} and "module" for a name a user's module registers."""
        module = self.module or registering_module(self.name)
        return {"name": self.name, "kwargs": dict(self.kwargs), **({"module": module} if module else {})}

    @classmethod
    def of(cls, network: type[nn.Module], **kwargs: Any) -> NetSpec:
        """The spec of a user's nn.Module class, named ``module:Class``: ``NetSpec.of(MyNet, width=64)``."""
        return cls(f"{network.__module__}:{network.__qualname__}", kwargs)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetSpec:
        """The spec ``to_dict`` wrote (older saves have no "module")."""
        return cls(d["name"], dict(d.get("kwargs", {})), d.get("module"))


def level_feature(alpha_bar: torch.Tensor) -> torch.Tensor:
    """The noise-level input of a time-conditioned network: sqrt(1 - alpha_bar), the noise SD."""
    return (1 - alpha_bar.to(torch.float64)).clamp_min(0).sqrt()


def append_level(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Append level_feature as one extra feature ([B, D] -> [B, D+1]) or channel ([B, C, ...] -> C+1)."""
    if level is None:
        raise ValueError("this network was built with level_input=True: call it as net(x, alpha_bar)")
    f = level_feature(level).to(x.dtype).view(-1, *([1] * (x.ndim - 1)))  # [B, 1, ...]
    return torch.cat([x, f.expand(x.shape[0], 1, *x.shape[2:])], dim=1)


__all__ = ["NetSpec", "append_level", "available", "build", "construct", "factory", "level_feature",
           "register", "registering_module"]
