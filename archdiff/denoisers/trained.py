"""Trained network denoisers (per-level and time-conditioned), their files, and ``load``.

Notation (paper Sec. 2, App. B):
    a_l        the noise levels the per-level networks were trained at (alpha_bar, float64), l = 1..L
    f_l        the network of level a_l; a request at level a uses f_l with l = argmin_l |a - a_l|
    f(., a)    the time-conditioned network, which takes the level as an input

A saved model is a folder with one schema, written by ``write_model`` alone (``Denoiser.save`` and the
trainer's outputs both use it):
    config.json        ``model_config``: {"net": {"name", "kwargs"}, "shape": [...], "train": {...,
                       "conditioning", "levels" (per-level)}, "data": {"n", "sha256"} (when trained here)}
    model.safetensors  the weights, every tensor stacked [L, ...] (L = 1 for time-conditioned)
``load(folder)`` rebuilds the network from the registry (``networks.build``) and returns the Denoiser,
which keeps the whole config.json, so ``load(f).save(g)`` writes the same config.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.func import functional_call, vmap

from archdiff.denoisers.base import Denoiser
from archdiff.denoisers.networks import NetSpec

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
StateDict = dict[str, torch.Tensor]


def write_safetensors(path: Path, tensors: StateDict, metadata: dict[str, str] | None = None) -> None:
    """Write tensors atomically: a temporary file in the same folder, then rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def read_safetensors(path: Path) -> tuple[StateDict, dict[str, str]]:
    """Tensors (on CPU) and metadata of a safetensors file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return load_file(str(path)), meta


def write_config(folder: Path, config: dict) -> None:
    """Write ``config.json`` into folder atomically."""
    tmp = Path(folder) / f".{CONFIG_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(config, indent=1))
    os.replace(tmp, Path(folder) / CONFIG_FILE)


def model_config(spec: NetSpec, shape, train: dict, data: dict | None = None) -> dict:
    """The config.json of a saved model (see the module docstring)."""
    cfg = {"net": spec.to_dict(), "shape": list(shape), "train": dict(train)}
    if data is not None:
        cfg["data"] = dict(data)
    return cfg


def write_model(folder: Path | str, config: dict, state: StateDict) -> Path:
    """Write a saved model: weights (stacked [L, ...]) then config.json, each atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / MODEL_FILE, state)
    write_config(folder, config)
    return folder


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

    def save(self, folder: Path | str) -> Path:
        """Write the saved-model files (config.json, model.safetensors) into ``folder``."""
        return write_model(folder, self.config, self.state)


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

    def save(self, folder: Path | str) -> Path:
        """Write the saved-model files (config.json, model.safetensors) into ``folder``."""
        state = {k: v[None] for k, v in self.net.state_dict().items()}  # stacked like per-level, L = 1
        return write_model(folder, self.config, state)


def load(path: Path | str, device: str | torch.device = "cpu") -> PerLevelDenoiser | TimeConditionedDenoiser:
    """Rebuild a trained denoiser from its folder (config.json + model.safetensors)."""
    folder = Path(path)
    if not (folder / CONFIG_FILE).exists() or not (folder / MODEL_FILE).exists():
        raise FileNotFoundError(f"{folder} holds no trained model ({CONFIG_FILE} and {MODEL_FILE})")
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    spec = NetSpec(cfg["net"]["name"], cfg["net"]["kwargs"])
    state, _ = read_safetensors(folder / MODEL_FILE)
    train = cfg["train"]
    if train["conditioning"] == "time":
        return TimeConditionedDenoiser(spec, {k: v[0] for k, v in state.items()}, cfg["shape"], device,
                                       config=cfg)
    return PerLevelDenoiser(spec, torch.tensor(train["levels"], dtype=torch.float64), state, cfg["shape"],
                            device, batched=train.get("engine", "batched") == "batched", config=cfg)
