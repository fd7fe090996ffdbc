"""Training engine for network denoisers: MSE on the clean-signal prediction, Adam, checkpoints.

Notation (paper Sec. 2, App. B):
    x_0        a training point; x_t = sqrt(a) x_0 + sqrt(1 - a) n, n ~ N(0, I), at noise level a
    f_theta    the network; loss = mean |f_theta(x_t) - x_0|^2 (the x_0-prediction MSE)
    L          number of noise levels trained (per-level mode: the sampling grid without its last, clean,
               level: ``sampling_levels(schedule, steps)[:-1]``)

    result = train(NetSpec("mlp2d", {"hidden": 256, "bottleneck": 2}), data, TrainConfig(epochs=500),
                   out=Path("runs/model"), resume=True)
    result.denoiser(x_t, alpha_bar)    # a Denoiser; result.losses: [epochs, L]

Modes (``TrainConfig.conditioning``):
    "per-level"  one network per noise level (the authors' setting); networks take no level input.
    "time"       one network for every level, built with ``level_input=True`` and called net(x, a);
                 each training sample gets its own level a = schedule(t), t ~ U(0, T_MAX).

Per-level engines (``TrainConfig.engine``):
    "batched"  the L networks' parameters and buffers are stacked ([L, ...]) and run as ONE computation
               with ``torch.func.vmap(functional_call)``; BatchNorm buffers are stacked too and updated in
               place under vmap, so BN networks take the fast path. One optimizer steps the stacked
               tensors: Adam and SGD are element-wise, so this is exactly L independent optimizers.
    "loop"     L ordinary modules, one forward/backward each per step: the fallback for networks that
               vmap cannot run (data-dependent control flow, buffers re-assigned instead of updated).
    "auto"     "batched" when a side-effect-free probe step under vmap succeeds, else "loop".
Speed switches (each leaves the result's meaning unchanged; measured per switch by bench/gpu_paper.py):
    precision       bf16 / fp16 autocast of the forward ("auto": bf16 on CUDA, fp32 on CPU); the loss and the
                    optimizer stay fp32.
    channels_last   image batches [B, C, H, W] and the weights of ordinary modules (the loop engine, the
                    time-conditioned network) in channels-last order, the layout CUDA's bf16 convolutions
                    prefer; no effect on the batched engine, whose stacked weights are 5-D.
    compile         ``torch.compile`` of the networks' forward (the batched engine's vmap included);
                    "reduce-overhead" also replays the step as a CUDA graph. The first epoch pays the compile.
The step loop keeps everything on the device (data, index permutations, noise, levels, the running loss)
and reads nothing back to the host until the epoch ends, so the GPU is never waited on mid-epoch.
The loss is the SUM over levels of each level's mean MSE, so each network gets exactly the gradient it
would get alone. Each level draws its initial weights, batches and noise from its own streams, derived from
(seed, level value) by ``archdiff.seeding``: a level's network does not depend on which other levels are
trained beside it.

Checks: ``train`` refuses bad input before anything is built or written (a ValueError or TypeError): the
config (``_validate``), the data (``denoisers.base.check_data``: [N, *shape], N >= 1, no NaN or inf), and a
network that cannot take the data (one eager forward on one sample, before the vmap probe, must return the
sample's shape). A loss that turns NaN or inf (an exploding run) stops training with a ValueError naming the
epoch, read where the epoch's loss already comes to the host; that epoch is not saved, and a folder whose
run raised holds no model.safetensors of that run.

Outputs (when ``out`` is given): the saved-model files of ``denoisers.trained`` (``config.json``: network
spec, resolved training config with its levels, data shape and fingerprint; ``model.safetensors``: the
final weights), written by the same writer as ``Denoiser.save``; ``checkpoint.safetensors`` (weights,
optimizer state, generator states, loss history, written atomically every ``checkpoint_every`` epochs);
``losses.csv`` / ``losses.png``. ``resume=True`` continues from the checkpoint; on CPU the result is
bit-identical to an uninterrupted run with the same seed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from archdiff import schedule as sched
from archdiff import seeding
from archdiff.denoisers.base import check_data, shape_text
from archdiff.denoisers.networks import NetSpec
from archdiff.denoisers.trained import (
    CONFIG_FILE,
    MODEL_FILE,
    PerLevelDenoiser,
    TimeConditionedDenoiser,
    build_network,
    model_config,
    read_safetensors,
    write_config,
    write_model,
    write_safetensors,
)
from archdiff.errors import resolve_device

CHECKPOINT_FILE = "checkpoint.safetensors"
LOSSES_CSV, LOSSES_PNG = "losses.csv", "losses.png"
RUN_FILES = (CHECKPOINT_FILE, LOSSES_CSV, LOSSES_PNG)  # what a training run writes beside the saved model
StateDict = dict[str, torch.Tensor]


@dataclass
class TrainConfig:
    """Everything that decides a trained model (saved beside its checkpoints)."""

    epochs: int = 500
    batch_size: int = 64
    lr: float = 1e-4
    optimizer: str = "adam"  # "adam" | "sgd"
    lr_schedule: str = "constant"  # "constant" | "cosine" (decays to 0 over the run)
    conditioning: str = "per-level"  # "per-level" | "time"
    schedule: str = "cosine"
    steps: int = 50  # per-level: train the levels sampling_levels(schedule, steps)[:-1]
    levels: list[float] | None = None  # per-level: explicit levels instead of the grid
    antithetic: bool = False  # each batch point is used twice, with noise +n and -n
    engine: str = "auto"  # per-level: "batched" | "loop" | "auto"
    precision: str = "auto"  # "fp32" | "bf16" | "fp16" | "auto" (bf16 on CUDA, fp32 on CPU)
    channels_last: bool = False  # image batches and loop-engine weights in channels-last memory order
    compile: str = "off"  # "off" | "default" | "reduce-overhead" (CUDA graphs): torch.compile the forward
    checkpoint_every: int = 10  # epochs between checkpoints when ``out`` is given
    seed: int = 0


@dataclass
class TrainResult:
    """A trained denoiser, its loss curve [epochs, L] (L = 1 for time-conditioned) and its folder."""

    denoiser: PerLevelDenoiser | TimeConditionedDenoiser
    losses: torch.Tensor
    out: Path | None


# ----------------------------------------------------------------------------------------- seeds


def network_seeds(seed: int, levels: list[float] | None) -> list[tuple[int, int]]:
    """(initial-weights seed, batches-and-noise seed) of each network: one per level, from (seed, level)
    alone; ``levels=None``: the one time-conditioned network."""
    labels = ["time-conditioned"] if levels is None else [seeding.level_label(a) for a in levels]
    return [(seeding.derive(seed, "network", lab, "init"), seeding.derive(seed, "network", lab, "batches"))
            for lab in labels]


# --------------------------------------------------------------------------------------- engines


class StackedNets:
    """L copies of one architecture with parameters and buffers stacked [L, ...], run under vmap."""

    def __init__(self, modules: list[nn.Module]):
        params, buffers = stack_module_state(modules)
        self.params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        self.buffers = buffers
        self.base = copy.deepcopy(modules[0])

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def __call__(self, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """x [L, B, *shape] -> [L, B, *shape]; ``level`` is unused (per-level networks)."""

        def one(p, b, xb):
            return functional_call(self.base, (p, b), (xb,))

        return vmap(one)(self.params, self.buffers, x)

    def state(self) -> StateDict:
        return {**{k: v.detach() for k, v in self.params.items()}, **self.buffers}

    def load(self, state: StateDict) -> None:
        with torch.no_grad():
            for k, v in {**self.params, **self.buffers}.items():
                v.copy_(state[k])

    def to(self, device: torch.device) -> StackedNets:
        self.params = {k: v.detach().to(device).requires_grad_(True) for k, v in self.params.items()}
        self.buffers = {k: v.to(device) for k, v in self.buffers.items()}
        self.base.to(device)
        return self

    def train(self, mode: bool = True) -> None:
        self.base.train(mode)


class LoopNets:
    """L ordinary modules called one after another (also the time-conditioned engine, with L = 1)."""

    def __init__(self, modules: list[nn.Module], level_input: bool = False, channels_last: bool = False):
        self.modules = modules
        self.level_input = level_input
        self.layout = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            for m in modules:
                m.to(memory_format=torch.channels_last)

    def parameters(self) -> list[torch.Tensor]:
        return [p for m in self.modules for p in m.parameters()]

    def __call__(self, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """x [L, B, *shape], level [L, B] -> [L, B, *shape]."""
        xs = [xl.contiguous(memory_format=self.layout) for xl in x]
        if self.level_input:
            return torch.stack([m(xl, al) for m, xl, al in zip(self.modules, xs, level)])
        return torch.stack([m(xl) for m, xl in zip(self.modules, xs)])

    def state(self) -> StateDict:
        keys = self.modules[0].state_dict().keys()
        return {k: torch.stack([m.state_dict()[k] for m in self.modules]) for k in keys}

    def load(self, state: StateDict) -> None:
        for i, m in enumerate(self.modules):
            m.load_state_dict({k: v[i] for k, v in state.items()})

    def to(self, device: torch.device) -> LoopNets:
        for m in self.modules:
            m.to(device)
        return self

    def train(self, mode: bool = True) -> None:
        for m in self.modules:
            m.train(mode)


def _vmap_works(nets: StackedNets, x: torch.Tensor) -> bool:
    """Probe one forward/backward under vmap on clones of the state (no side effects)."""
    probe = copy.copy(nets)
    probe.params = {k: v.detach().clone().requires_grad_(True) for k, v in nets.params.items()}
    probe.buffers = {k: v.clone() for k, v in nets.buffers.items()}
    try:
        probe(x, None).float().square().mean().backward()
    except Exception as err:  # noqa: BLE001 - any failure under vmap means: use the loop engine
        warnings.warn(f"this network cannot run under vmap ({type(err).__name__}: {err}); "
                      f"training its levels one after another (engine 'loop')", stacklevel=3)
        return False
    return True


# -------------------------------------------------------------------------------------- training


def _precision(config: TrainConfig, device: torch.device) -> str:
    if config.precision != "auto":
        return config.precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def training_levels(config: TrainConfig) -> torch.Tensor:
    """The per-level mode's noise levels [L] (float64); time mode: an empty tensor."""
    if config.conditioning == "time":
        return torch.zeros(0, dtype=torch.float64)
    if config.levels is not None:
        return torch.as_tensor(config.levels, dtype=torch.float64)
    return sched.sampling_levels(config.schedule, config.steps)[:-1]


def fingerprint(data: torch.Tensor) -> str:
    """SHA-256 of the training data (shape and float32 bytes), stored beside the checkpoints."""
    h = hashlib.sha256(str(tuple(data.shape)).encode())
    h.update(data.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _validate(config: TrainConfig) -> None:
    """Refuse a config that cannot train: unknown choices, counts below 1, a bad rate, seed or levels."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    checks = {
        "conditioning": ("per-level", "time"), "optimizer": ("adam", "sgd"),
        "lr_schedule": ("constant", "cosine"), "engine": ("auto", "batched", "loop"),
        "precision": ("auto", "fp32", "bf16", "fp16"), "compile": ("off", "default", "reduce-overhead"),
    }
    for key, allowed in checks.items():
        if getattr(config, key) not in allowed:
            raise ValueError(f"TrainConfig.{key} = {getattr(config, key)!r}: use one of {allowed}")
    if min(config.epochs, config.batch_size, config.checkpoint_every, config.steps) < 1:
        raise ValueError(f"epochs, batch_size, checkpoint_every and steps must be >= 1, got {config.epochs}, "
                         f"{config.batch_size}, {config.checkpoint_every}, {config.steps}")
    if not (isinstance(config.lr, float | int) and math.isfinite(config.lr) and config.lr > 0):
        raise ValueError(f"TrainConfig.lr must be a finite number > 0, got {config.lr!r}")
    sched.get_schedule(config.schedule)
    if config.levels is not None and config.conditioning == "per-level":
        _validate_levels(config.levels)
    seeding.check_seed(config.seed)


def _validate_levels(levels: list[float]) -> None:
    """Explicit per-level levels: a non-empty list of distinct alpha_bar values in (0, 1]."""
    grid = torch.as_tensor(levels, dtype=torch.float64)
    if grid.ndim != 1 or grid.numel() < 1:
        raise ValueError(f"TrainConfig.levels must be a non-empty list of floats, got {levels!r}")
    if not bool(((grid > 0) & (grid <= 1)).all()):
        raise ValueError(f"TrainConfig.levels must lie in (0, 1] (alpha_bar), got {grid.tolist()}")
    if grid.unique().numel() != grid.numel():
        raise ValueError(f"TrainConfig.levels repeat a level ({grid.tolist()}): one network per level")


def _probe(spec: NetSpec, net: nn.Module, data: torch.Tensor, time: bool) -> None:
    """One eager forward of (a copy of) a network on one sample: a network that cannot take the data, or
    returns another shape, is refused here, naming both, before any engine is chosen."""
    x = data[:1].detach().to("cpu", torch.float32)
    level = torch.full((1,), 0.5, dtype=torch.float64)
    shape = shape_text(x.shape[1:])
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        probe = copy.deepcopy(net).cpu().eval()
        try:
            out = probe(x, level) if time else probe(x)
        except Exception as err:  # noqa: BLE001 - any failure here: the network does not fit the data
            raise ValueError(f"network {spec.name!r} cannot take samples of shape {shape} (data [N, "
                             f"{shape[1:]}): one sample raised {type(err).__name__}: {err}") from err
    got = shape_text(out.shape[1:]) if isinstance(out, torch.Tensor) else type(out).__name__
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        raise ValueError(f"network {spec.name!r} returned {got} for a sample of shape {shape}: it must "
                         f"return x0_hat of its input's shape")


def _check_loss(loss: torch.Tensor, epoch: int, run: _Run) -> None:
    """Stop a run whose epoch loss [L] is NaN or inf (exploded), before that epoch is saved."""
    bad = ~torch.isfinite(loss)
    if not bool(bad.any()):
        return
    where = ("the time-conditioned network" if run.time else
             "level(s) " + ", ".join(f"{a:.6g}" for a in run.levels[bad.to(run.levels.device)].tolist()))
    raise ValueError(f"training diverged: the loss of epoch {epoch + 1} is NaN or inf at {where} "
                     f"(network {run.spec.name!r}, lr {run.config.lr}); lower the learning rate or check the "
                     f"network. The epoch was not saved")


class _Run:
    """The mutable state of one training run: networks, optimizer, generators, loss history."""

    def __init__(self, spec: NetSpec, data: torch.Tensor, config: TrainConfig, device: torch.device):
        self.spec, self.config, self.device = spec, config, device
        self.data = data.to(device, torch.float32)
        if config.channels_last and self.data.ndim != 4:
            raise ValueError(f"channels_last needs images [N, C, H, W], not shape {tuple(data.shape)}")
        self.time = config.conditioning == "time"
        self.levels = training_levels(config).to(device)
        seeds = network_seeds(config.seed, None if self.time else self.levels.tolist())
        modules = [build_network(spec, self.time, seed=init) for init, _ in seeds]
        _probe(spec, modules[0], self.data, self.time)
        self.generators = [torch.Generator(device=device).manual_seed(batches) for _, batches in seeds]
        self.engine = self._engine(modules, config.engine)
        self.nets = (
            StackedNets(modules).to(device) if self.engine == "batched"
            else LoopNets(modules, level_input=self.time, channels_last=config.channels_last).to(device)
        )
        self.forward = (self.nets if config.compile == "off"
                        else torch.compile(self.nets.__call__, mode=config.compile))
        if config.optimizer == "adam":
            self.opt = torch.optim.Adam(self.nets.parameters(), lr=config.lr)
        else:
            self.opt = torch.optim.SGD(self.nets.parameters(), lr=config.lr)
        self.precision = _precision(config, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.losses: list[torch.Tensor] = []  # one [L] float64 row per finished epoch

    def _engine(self, modules: list[nn.Module], wanted: str) -> str:
        if self.time:
            return "loop"
        if wanted != "auto":
            return wanted
        probe = StackedNets(modules)
        x = self.data[:2].cpu().expand(len(modules), *self.data[:2].shape)
        return "batched" if _vmap_works(probe, x) else "loop"

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.data.shape[0] / self.config.batch_size)

    def resolved(self) -> dict:
        """The config as it ran (engine, precision resolved), for config.json."""
        c = replace(self.config, engine=self.engine, precision=self.precision)
        if not self.time and c.levels is None:
            c = replace(c, levels=self.levels.tolist())
        return asdict(c)

    def _batch(self, step: int, perms: list[torch.Tensor]):
        """x_t, x_0 [L, b, *shape] and levels [L, b] (float64) of one step."""
        b = self.config.batch_size
        idx = torch.stack([p[step * b : (step + 1) * b] for p in perms])  # [L, b]
        x0 = self.data[idx]  # [L, b, *shape]
        noise = torch.stack([
            torch.randn(x0.shape[1:], generator=g, device=self.device) for g in self.generators
        ])
        if self.time:
            t = torch.rand(idx.shape, generator=self.generators[0], device=self.device, dtype=torch.float64)
            level = sched.get_schedule(self.config.schedule)(t * sched.T_MAX)  # [1, b]
        else:
            level = self.levels[:, None].expand(idx.shape)  # [L, b]
        if self.config.antithetic:
            x0, noise, level = (torch.cat([x0, x0], 1), torch.cat([noise, -noise], 1),
                                torch.cat([level, level], 1))
        return sched.noisy(x0, level, noise), x0, level

    def _lr(self, step: int) -> float:
        if self.config.lr_schedule == "constant":
            return self.config.lr
        total = self.config.epochs * self.steps_per_epoch
        return self.config.lr * 0.5 * (1 + math.cos(math.pi * step / total))

    def epoch(self, epoch: int) -> torch.Tensor:
        """Train one epoch; returns the mean loss per level [L] (float64, on the device: nothing in the
        step loop reads back to the host)."""
        n = self.data.shape[0]
        perms = [torch.randperm(n, generator=g, device=self.device) for g in self.generators]
        total = torch.zeros(len(self.generators), dtype=torch.float64, device=self.device)
        self.nets.train(True)
        for step in range(self.steps_per_epoch):
            for group in self.opt.param_groups:
                group["lr"] = self._lr(epoch * self.steps_per_epoch + step)
            x_t, x0, level = self._batch(step, perms)
            amp = self.precision != "fp32"
            with torch.autocast(self.device.type, dtype=_AMP[self.precision], enabled=amp):
                out = self.forward(x_t, level)
            per_level = (out.float() - x0).square().flatten(1).mean(1)  # [L]
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(per_level.sum()).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            total += per_level.detach().double() * x0.shape[1]
        return total / (n * (2 if self.config.antithetic else 1))

    def config_record(self) -> dict:
        """The saved model's config.json: network, training config as it ran, data shape and fingerprint."""
        data = {"n": int(self.data.shape[0]), "sha256": fingerprint(self.data)}
        return model_config(self.spec, tuple(self.data.shape[1:]), self.resolved(), data)

    def denoiser(self, config: dict) -> PerLevelDenoiser | TimeConditionedDenoiser:
        """The trained networks as a Denoiser (eval mode, a copy of the current weights)."""
        state = {k: v.detach().clone() for k, v in self.nets.state().items()}
        shape = tuple(self.data.shape[1:])
        if self.time:
            return TimeConditionedDenoiser(self.spec, {k: v[0] for k, v in state.items()}, shape, self.device,
                                           config=config)
        return PerLevelDenoiser(self.spec, self.levels, state, shape, self.device,
                                batched=self.engine == "batched", config=config)

    # -- checkpoints ------------------------------------------------------------------------------

    def checkpoint_tensors(self) -> StateDict:
        """Weights, optimizer state, generator states and loss history as named tensors."""
        out = {f"model.{k}": v for k, v in self.nets.state().items()}
        for i, st in self.opt.state_dict()["state"].items():
            out.update({f"optim.{i}.{k}": v for k, v in st.items() if isinstance(v, torch.Tensor)})
        out.update({f"rng.{i}": g.get_state() for i, g in enumerate(self.generators)})
        out.update({f"scaler.{k}": torch.as_tensor(v) for k, v in self.scaler.state_dict().items()
                    if isinstance(v, float | int)})
        if self.losses:
            out["losses"] = torch.stack(self.losses)
        return out

    def restore(self, tensors: StateDict) -> int:
        """Load a checkpoint's tensors; returns the number of finished epochs."""
        self.nets.load({k[6:]: v.to(self.device) for k, v in tensors.items() if k.startswith("model.")})
        opt_state = self.opt.state_dict()
        state: dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, i, name = k.split(".", 2)
                state.setdefault(int(i), {})[name] = v if name == "step" else v.to(self.device)
        self.opt.load_state_dict({"state": state, "param_groups": opt_state["param_groups"]})
        for i, g in enumerate(self.generators):
            g.set_state(tensors[f"rng.{i}"])
        scaler = {k[7:]: v.item() for k, v in tensors.items() if k.startswith("scaler.")}
        if scaler:
            self.scaler.load_state_dict(scaler)
        self.losses = list(tensors["losses"]) if "losses" in tensors else []
        return len(self.losses)


_AMP = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _comparable(cfg: dict) -> dict:
    """The part of config.json a resumed run must match (checkpoint frequency may change)."""
    c = {k: v for k, v in json.loads(json.dumps(cfg)).items() if k not in ("format", "archdiff", "kind")}
    c["train"] = {**asdict(TrainConfig()), **c["train"]}  # a field added since the save takes its default
    c["train"].pop("checkpoint_every", None)
    if c["train"]["lr_schedule"] == "constant":  # a constant rate does not depend on the run's length:
        c["train"].pop("epochs")  # a finished run may be extended to more epochs
    return c


def _try_resume(run: _Run, out: Path, cfg: dict) -> int:
    ckpt, cfg_file = out / CHECKPOINT_FILE, out / CONFIG_FILE
    if not (ckpt.exists() and cfg_file.exists()):
        return 0
    saved = json.loads(cfg_file.read_text())
    old, new = _comparable(saved), _comparable(cfg)
    if old != new:
        diff = [k for k in ("net", "train", "shape", "data") if old.get(k) != new[k]]
        keys = sorted(k for k in new["train"] if old.get("train", {}).get(k) != new["train"][k])
        hint = f" ({', '.join(keys)})" if "train" in diff else ""
        why = " (a cosine learning rate fixes the number of epochs)" if "epochs" in keys else ""
        raise ValueError(f"cannot resume from {out}: its saved config differs in {', '.join(diff)}{hint}; "
                         f"train into a new folder{why}")
    tensors, _ = read_safetensors(ckpt)
    done = run.restore(tensors)
    if done > run.config.epochs:
        raise ValueError(f"cannot resume from {out}: it holds {done} epochs, more than the "
                         f"{run.config.epochs} asked for; ask for {done} or more, or train into a new folder")
    return done


def _write_outputs(run: _Run, out: Path, cfg: dict, final: bool) -> None:
    write_safetensors(out / CHECKPOINT_FILE, run.checkpoint_tensors())
    _write_losses(out, torch.stack(run.losses), run.levels, plot=final)
    if final:
        write_model(out, cfg, run.nets.state())


def _write_losses(out: Path, losses: torch.Tensor, levels: torch.Tensor, plot: bool) -> None:
    """losses.csv (epoch, mean, one column per level) and, if ``plot``, losses.png (mean over levels)."""
    from archdiff import plots

    names = [f"loss_a{a:.6g}" for a in levels.tolist()] if levels.numel() else ["loss"]
    rows = ["epoch,mean," + ",".join(names)]
    for e, row in enumerate(losses.tolist()):
        rows.append(f"{e + 1},{sum(row) / len(row):.8g}," + ",".join(f"{v:.8g}" for v in row))
    (out / LOSSES_CSV).write_text("\n".join(rows) + "\n")
    if not plot:
        return
    epochs = list(range(1, losses.shape[0] + 1))
    plots.line_plot(out / LOSSES_PNG, epochs, {"mean over levels": losses.mean(1).tolist()},
                    "epoch", "MSE (x_0 prediction)", logy=True)


def train(
    net: NetSpec | type[nn.Module],
    data: torch.Tensor,
    config: TrainConfig,
    *,
    out: Path | str | None = None,
    resume: bool = False,
    device: str | torch.device = "auto",
    progress: bool = True,
    callback: Callable[[int, torch.Tensor], None] | None = None,
    desc: str | None = None,
) -> TrainResult:
    """Train ``net`` (a NetSpec, or an nn.Module class built with its defaults) on data [N, *shape] to
    predict x_0 from x_t (MSE); see the module docstring.

    ``callback(epoch, losses_of_epoch [L])`` runs after each epoch (after its checkpoint is written).
    """
    _validate(config)
    net = NetSpec.of(net) if isinstance(net, type) else net
    if not isinstance(net, NetSpec):
        raise TypeError(f"net must be a NetSpec or an nn.Module class, got {type(net).__name__}")
    check_data(data)
    run = _Run(net, data, config, resolve_device(device))
    cfg = run.config_record()
    start = 0
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        if resume:
            start = _try_resume(run, out, cfg)
        write_config(out, cfg)
    bar = tqdm(range(start, config.epochs), desc=desc or f"training {net.name}", initial=start,
               total=config.epochs, delay=2, disable=None if progress else True, leave=False)
    for epoch in bar:
        loss = run.epoch(epoch).cpu()
        _check_loss(loss, epoch, run)
        run.losses.append(loss)
        bar.set_postfix(loss=f"{float(run.losses[-1].mean()):.4g}", refresh=False)
        last = epoch + 1 == config.epochs
        if out is not None and (last or (epoch + 1) % config.checkpoint_every == 0):
            _write_outputs(run, out, cfg, final=last)
        if callback is not None:
            callback(epoch, run.losses[-1])
    if out is not None and start >= config.epochs and not (out / MODEL_FILE).exists():
        _write_outputs(run, out, cfg, final=True)
    losses = torch.stack(run.losses) if run.losses else torch.zeros(0, max(len(run.generators), 1))
    return TrainResult(run.denoiser(cfg), losses, out)
