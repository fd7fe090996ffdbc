"""Trained network denoisers (per-level and time-conditioned) and how they are saved.

Notation (paper Sec. 2, App. B):
    a_l        the noise levels the per-level networks were trained at (alpha_bar, float64), l = 1..L
    f_l        the network of level a_l; a request at level a uses f_l with l = argmin_l |a - a_l|
    f(., a)    the time-conditioned network, which takes the level as an input

A trained network is saved in the one saved-model schema (``saved.py``, re-exported here: ``write_model``
is its one writer, ``load`` its reader for every kind) as kind "network":
    config.json        ``model_config``: "format", "archdiff", "kind": "network", "shape": [...],
                       "net": {"name", "kwargs", "module" (a user's registering module)}, "train": {...,
                       "conditioning", "levels" (per-level)}, "data": {"n", "sha256"} (when trained here)
    model.safetensors  the weights, every tensor stacked [L, ...] (L = 1 for time-conditioned); metadata
                       "format", "archdiff", "kind", "config" (config.json's content)
``load(folder)`` rebuilds the network through ``networks.factory`` (a user's network: its module is
imported first, so it must be importable in the loading process) and returns the Denoiser, which keeps the
whole config.json, so ``load(f).save(g)`` writes the same config (a format-1 folder's, with the format and
version it is now written in).
"""

from __future__ import annotations

import torch
from torch.func import functional_call, vmap

from archdiff.denoisers.base import Denoiser, shape_text
from archdiff.denoisers.networks import NetSpec
from archdiff.denoisers.saved import (
    CONFIG_FILE,
    FORMAT,
    MODEL_FILE,
    NETWORK,
    StateDict,
    load,
    read_model,
    read_safetensors,
    saved_config,
    write_config,
    write_model,
    write_safetensors,
)


def model_config(spec: NetSpec, shape, train: dict, data: dict | None = None) -> dict:
    """The config.json of a saved network (see ``saved.py``)."""
    return saved_config(NETWORK, shape, net=spec.to_dict(), train=dict(train),
                        **({"data": dict(data)} if data is not None else {}))


def build_network(spec: NetSpec, level_input: bool, device: torch.device | str = "cpu",
                  seed: int | None = None) -> torch.nn.Module:
    """Build the architecture without touching the caller's global RNG; its initial weights come from
    ``seed`` when given (a trainer's), else from a private stream (they are about to be overwritten)."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return spec.build(level_input=level_input).to(device)


class PerLevelDenoiser(Denoiser):
    """One network per trained noise level; a request uses the network of the nearest level."""

    def __init__(self, spec: NetSpec, levels: torch.Tensor, state: StateDict, shape, device="cpu",
                 batched: bool = True, config: dict | None = None):
        self.spec, self.shape, self.batched = spec, tuple(shape), batched
        self.device = torch.device(device)
        self.levels = torch.as_tensor(levels, dtype=torch.float64, device=self.device)  # [L]
        _check_stacked(state, self.levels)
        self.config = config or model_config(spec, shape, {
            "conditioning": "per-level", "levels": self.levels.tolist(),
            "engine": "batched" if batched else "loop"})
        self.state = {k: v.to(self.device) for k, v in state.items()}  # every tensor [L, ...]
        self.net = build_network(spec, False, self.device).eval()

    def nearest(self, alpha_bar: torch.Tensor) -> torch.Tensor:
        """Index of the trained level nearest to each requested level: [B] long."""
        return (alpha_bar.to(self.device)[:, None] - self.levels[None]).abs().argmin(1)

    def network_state(self, index: int) -> StateDict:
        """The weights of level ``index``'s network (views into the stacked state)."""
        return {k: v[index] for k, v in self.state.items()}

    def network(self, index: int) -> torch.nn.Module:
        """Level ``index``'s network as a module of its own (eval mode, a copy of its weights)."""
        net = build_network(self.spec, False, self.device)
        net.load_state_dict({k: v.clone() for k, v in self.network_state(index).items()})
        return net.eval()

    def _one(self, x: torch.Tensor, index: int) -> torch.Tensor:
        return functional_call(self.net, self.network_state(index), (x,))

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        xin = x.to(self.device, torch.float32)
        idx = self.nearest(alpha_bar)
        uniq, group = torch.unique(idx, return_inverse=True)
        if uniq.numel() == 1:
            out = self._one(xin, int(uniq))
        elif self.batched:
            out = self._mixed_batched(xin, uniq, group)
        else:
            out = torch.empty_like(xin)
            for g, level_index in enumerate(uniq.tolist()):
                rows = group == g
                out[rows] = self._one(xin[rows], level_index)
        return out.to(x.device, x.dtype)

    def _mixed_batched(self, x: torch.Tensor, uniq: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        """Rows at several levels: pad each level's rows to one size and run the networks under vmap."""
        counts = torch.bincount(group, minlength=uniq.numel())
        order = torch.argsort(group, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.empty_like(group)
        rank[order] = torch.arange(group.numel(), device=group.device) - starts[group[order]]
        padded = x.new_zeros(uniq.numel(), int(counts.max()), *x.shape[1:])  # [G, m, *shape]
        padded[group, rank] = x
        state = {k: v[uniq] for k, v in self.state.items()}
        y = vmap(lambda s, xb: functional_call(self.net, s, (xb,)))(state, padded)
        return y[group, rank]

    def to_saved(self) -> tuple[dict, StateDict]:
        """config.json's content and the stacked weights."""
        return self.config, self.state


def _check_stacked(state: StateDict, levels: torch.Tensor) -> None:
    """Refuse per-level weights that are not one stack [L, ...] per tensor for the L levels given."""
    if levels.ndim != 1 or levels.numel() < 1:
        raise ValueError(f"levels must be [L] with L >= 1, got shape {shape_text(levels.shape)}")
    wrong = [k for k, v in state.items() if v.ndim < 1 or v.shape[0] != levels.numel()]
    if wrong:
        raise ValueError(f"every weight must be stacked [L = {levels.numel()}, ...] (one per level), but "
                         f"{wrong[0]!r} has shape {shape_text(state[wrong[0]].shape)}")


class TimeConditionedDenoiser(Denoiser):
    """One network that takes the noise level as an input: x0_hat = f(x_t, a)."""

    def __init__(self, spec: NetSpec, state: StateDict, shape, device="cpu", config: dict | None = None):
        self.spec, self.shape = spec, tuple(shape)
        self.device = torch.device(device)
        self.config = config or model_config(spec, shape, {"conditioning": "time"})
        self.net = build_network(spec, True, self.device)
        self.net.load_state_dict(state)
        self.net.eval()

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        out = self.net(x.to(self.device, torch.float32), alpha_bar.to(self.device))
        return out.to(x.device, x.dtype)

    def to_saved(self) -> tuple[dict, StateDict]:
        """config.json's content and the weights, stacked like per-level ones (L = 1)."""
        return self.config, {k: v[None] for k, v in self.net.state_dict().items()}


def from_saved(config: dict, state: StateDict, device: str | torch.device = "cpu"
               ) -> PerLevelDenoiser | TimeConditionedDenoiser:
    """The trained denoiser of a saved "network" (``load`` dispatches here)."""
    spec, train = NetSpec.from_dict(config["net"]), config["train"]
    if train["conditioning"] == "time":
        return TimeConditionedDenoiser(spec, {k: v[0] for k, v in state.items()}, config["shape"], device,
                                       config=config)
    return PerLevelDenoiser(spec, torch.tensor(train["levels"], dtype=torch.float64), state, config["shape"],
                            device, batched=train.get("engine", "batched") == "batched", config=config)


__all__ = [  # this module's own names and the schema's, re-exported
    "CONFIG_FILE", "FORMAT", "MODEL_FILE", "NETWORK", "PerLevelDenoiser", "StateDict",
    "TimeConditionedDenoiser", "build_network", "from_saved", "load", "model_config", "read_model",
    "read_safetensors", "saved_config", "write_config", "write_model", "write_safetensors",
]
