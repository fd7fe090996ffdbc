"""The saved-model schema: one folder format for every denoiser, its one writer, and ``load``.

A saved model is a folder of two files written by ``write_model`` alone (``Denoiser.save`` of every kind
and the trainer both call it); ``load(folder)`` rebuilds the denoiser in any process:

    config.json          what to rebuild, as JSON (``saved_config``):
        "format"         FORMAT; a folder without it is format 1 (a trained network of archdiff's own)
        "archdiff"       the version of archdiff that wrote it
        "kind"           "network" (a trained network, ``trained.py``; also every format-1 folder) or a
                         closed-form kind: "linear", "empirical-optimal", "polynomial", "moment-polynomial",
                         "patch-polynomial", "local-score" (each class's ``kind``)
        "shape"          one sample's shape
        network          "net" {"name", "kwargs", "module" (the user's module that registers the name)},
                         "train" {..., "conditioning", "levels" (per-level)}, "data" {"n", "sha256"} (when
                         trained here)
        closed-form      "settings" (what rebuilds the model beside its tensors), "fitted_levels" (kinds
                         fitted per level: the levels whose fits are saved, tensors "fit.<i>.*" in that order)
    model.safetensors    the tensors: a network's weights, every tensor stacked [L, ...] (L = 1 for a
                         time-conditioned network); a closed-form model's fitted state (its ``to_saved``)
        metadata         "format", "archdiff", "kind", and "config" (config.json's content as JSON, so the
                         file alone describes the model)

A saved model reloads exactly: a closed-form model's outputs are bitwise those of the model saved, at every
saved level. Where it keeps its training data (empirical-optimal, polynomial, patch-polynomial; a moment
model keeps its moments) a level fitted after loading is fitted on demand, as the original would have.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from archdiff import __version__

if TYPE_CHECKING:
    from archdiff.denoisers.base import Denoiser

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
FORMAT = 2  # 1: folders written before "format" was recorded (trained networks of archdiff's own)
NETWORK = "network"  # the kind of a trained network, and of every format-1 folder
StateDict = dict[str, torch.Tensor]


def _own(t: torch.Tensor) -> torch.Tensor:
    """t on the CPU, contiguous, in storage of its own (safetensors refuses tensors sharing memory)."""
    t = t.detach().cpu().contiguous()
    return t if t.untyped_storage().nbytes() == t.nbytes else t.clone()


def write_safetensors(path: Path, tensors: StateDict, metadata: dict[str, str] | None = None) -> None:
    """Write tensors atomically: a temporary file in the same folder, then rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file({k: _own(v) for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def read_safetensors(path: Path) -> tuple[StateDict, dict[str, str]]:
    """Tensors (on CPU) and metadata of a safetensors file; a damaged (truncated, overwritten) file is a
    ValueError naming it."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return load_file(str(path)), meta
    except SafetensorError as err:
        raise ValueError(f"{path} is damaged (truncated or not a safetensors file: {err}); re-train or "
                         f"re-save the model, or resume from an intact checkpoint") from err


def _read_json(path: Path) -> dict:
    """A config.json's content; a damaged file is a ValueError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is damaged (not valid JSON: {err}); re-train or re-save the model") from err


def write_config(folder: Path, config: dict) -> None:
    """Write ``config.json`` into folder atomically."""
    tmp = Path(folder) / f".{CONFIG_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(config, indent=1))
    os.replace(tmp, Path(folder) / CONFIG_FILE)


def saved_config(kind: str, shape, **fields: Any) -> dict:
    """A config.json of the current format: the kind, one sample's shape and the kind's own fields."""
    return {"format": FORMAT, "archdiff": __version__, "kind": kind, "shape": list(shape), **fields}


def current(config: dict) -> dict:
    """The config as this archdiff writes it: the current format and version (a format-1 config gains
    them and its kind, "network")."""
    return {**config, "format": FORMAT, "archdiff": __version__, "kind": config.get("kind", NETWORK)}


def write_model(folder: Path | str, config: dict, state: StateDict) -> Path:
    """Write a saved model: the tensors (with the metadata) then config.json, each atomically."""
    folder, config = Path(folder), current(config)
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {"format": str(FORMAT), "archdiff": __version__, "kind": config["kind"],
                "config": json.dumps(config)}
    write_safetensors(folder / MODEL_FILE, state, metadata)
    write_config(folder, config)
    return folder


def read_model(path: Path | str) -> tuple[dict, StateDict]:
    """config.json's content and the tensors of a saved model: its folder, or its model.safetensors alone
    (the config then comes from the file's metadata)."""
    path = Path(path)
    file = path if path.is_file() else path / MODEL_FILE
    if not file.exists():
        raise FileNotFoundError(f"{path} holds no saved model ({CONFIG_FILE} and {MODEL_FILE})")
    tensors, meta = read_safetensors(file)
    if (file.parent / CONFIG_FILE).exists():
        config = _read_json(file.parent / CONFIG_FILE)
    elif "config" in meta:
        config = json.loads(meta["config"])
    else:
        raise FileNotFoundError(f"{path} holds no saved model ({CONFIG_FILE} and {MODEL_FILE})")
    if int(config.get("format", 1)) > FORMAT:
        raise ValueError(f"{path} was saved by archdiff {config.get('archdiff')} in format "
                         f"{config['format']}; archdiff {__version__} reads formats up to {FORMAT}: upgrade "
                         f"archdiff")
    return config, tensors


Loader = Callable[[dict, StateDict, Any], "Denoiser"]


def kinds() -> dict[str, Loader]:
    """Each saved kind's loader, ``(config, tensors, device) -> Denoiser``: ``load`` dispatches on "kind"."""
    from archdiff.denoisers import trained
    from archdiff.denoisers.closed_form import EmpiricalOptimal, LinearDenoiser
    from archdiff.denoisers.local_score import LocalScore
    from archdiff.denoisers.patch import PatchPolynomialDenoiser
    from archdiff.denoisers.polynomial import MomentPolynomialDenoiser, PolynomialDenoiser

    closed = (LinearDenoiser, EmpiricalOptimal, PolynomialDenoiser, MomentPolynomialDenoiser,
              PatchPolynomialDenoiser, LocalScore)
    return {NETWORK: trained.from_saved, **{c.kind: c.from_saved for c in closed}}


def load(path: Path | str, device: str | torch.device = "cpu") -> Denoiser:
    """Rebuild the denoiser saved in ``path`` (a folder, or its model.safetensors), whatever its kind."""
    config, tensors = read_model(path)
    kind, loaders = config.get("kind", NETWORK), kinds()
    if kind not in loaders:
        raise ValueError(f"{path} holds a model of unknown kind {kind!r} (known: {', '.join(loaders)}); "
                         f"it was saved by archdiff {config.get('archdiff')}")
    return loaders[kind](config, tensors, device)
