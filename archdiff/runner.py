"""Runs experiments: owns the output folder, config.toml, metrics.json and the 'finished' marker.

A run writes into ``OUT/.ID.partial`` and only when it has finished moves it to ``OUT/ID``, so a
crashed or interrupted run never leaves a folder that looks finished.

``config.toml`` is the run's identity and the one file that says what ran: experiment, scale, seed, data
and the full ``config`` (the scale's settings with any overrides), plus device, version and
``resolved`` (settings the experiment derived while running, e.g. a schedule scaled to the image size).
``sweep.reproduce`` skips a finished run only when its identity matches the one asked for.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import tomli_w
import torch

from archdiff import __version__, seeding
from archdiff.errors import resolve_device
from archdiff.experiments import Experiment, UserError
from archdiff.experiments.base import SCALES, Context, check_keys
from archdiff.threads import policy as threads_policy

MARKER = "FINISHED"


def prepare_out(out: Path) -> Path:
    """Create the output root, or raise a UserError naming why it cannot be written."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to output folder {out}: {e.strerror or e}") from None
    return out


def is_finished(run_dir: Path) -> bool:
    """True when a run folder holds a finished result."""
    return (run_dir / MARKER).exists() and (run_dir / "metrics.json").exists()


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if isinstance(value, float) and value != value:
        return None
    return value


def _toml_safe(value):
    if isinstance(value, dict):
        return {str(k): _toml_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_toml_safe(v) for v in value]
    return value


def run_identity(exp: Experiment, scale: str, seed: int, data: str | None,
                 overrides: dict | None = None) -> dict:
    """What makes two runs the same run: experiment, scale, seed, data and the full config."""
    if scale not in SCALES:
        raise UserError(f"unknown scale {scale!r}: use {' or '.join(SCALES)}")
    return {"experiment": exp.id, "scale": scale, "seed": seeding.check_seed(seed),
            "data": data if exp.uses_images else None,  # the 2-D experiments build their own data
            "config": exp.configured(scale, overrides)}


def run_experiment(
    exp: Experiment,
    scale: str = "quick",
    *,
    seed: int = 0,
    device: str = "auto",
    out: Path | str = "runs",
    data: str | None = None,
    overrides: dict | None = None,
    progress: bool = True,
    threads: int | None = None,
) -> dict:
    """Run one experiment and return its metrics.json content (metrics plus claims).

    ``threads``: the CPU thread count for the run (see ``archdiff.threads``; None: the policy's default).
    """
    identity = run_identity(exp, scale, seed, data, overrides)
    root = prepare_out(Path(out))
    dev = resolve_device(device)
    partial = _partial_dir(root, exp.id)
    ctx = Context(config=identity["config"], scale=scale, seed=seed, device=dev, out=partial,
                  data=identity["data"], progress=progress)
    about = {**identity, "overrides": dict(overrides or {}), "device": str(dev),
             "archdiff_version": __version__}
    _write_toml(partial / "config.toml", about)
    with threads_policy(threads) as n_threads:
        start = time.perf_counter()
        result = exp.run(ctx)
        seconds = time.perf_counter() - start
    check_keys(result.metrics)
    _write_toml(partial / "config.toml", {**about, "threads": n_threads, "resolved": ctx.resolved})
    record = {
        "experiment": exp.id, "title": exp.title, "paper": exp.paper, "scale": scale,
        "seed": seed, "device": str(dev), "threads": n_threads, "seconds": round(seconds, 3),
        "overrides": _jsonable(dict(overrides or {})),
        "data": {k: ctx.resolved[k] for k in ("data_source", "n_train", "data_shape") if k in ctx.resolved},
        "metrics": _jsonable(result.metrics), "claims": [c.to_dict() for c in result.claims],
        "figures": list(result.figures),
    }
    (partial / "metrics.json").write_text(json.dumps(record, indent=2))
    (partial / MARKER).write_text(f"finished in {seconds:.1f} s\n")
    _replace_dir(partial, root / exp.id)
    return record


def _partial_dir(root: Path, exp_id: str) -> Path:
    """A fresh folder for one process's unfinished run (``.ID.partial-HOST-PID``), so that processes
    running the same experiment into one output root never share one; leftovers of dead processes of
    this host are removed first."""
    for old in root.glob(f".{exp_id}.partial-{socket.gethostname()}-*"):
        pid = old.name.rsplit("-", 1)[1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    partial = root / f".{exp_id}.partial-{_process_tag()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    return partial


def _process_tag() -> str:
    """HOST-PID: names this process's own temporary files and folders in a shared output root."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _replace_dir(new: Path, final: Path) -> None:
    """Move a finished run folder into place; a folder already there is moved aside first and deleted
    after, so ``final`` is always either the old finished run or the new one, never half of either."""
    aside = final.with_name(f".{final.name}.old-{_process_tag()}")
    for _ in range(10):  # another process may put its own result in place between two renames
        if final.exists():
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(final, aside)
        try:
            os.replace(new, final)
            break
        except OSError:
            continue
    shutil.rmtree(aside, ignore_errors=True)


def same_run(run_dir: Path, identity: dict) -> bool:
    """True when the finished run in run_dir has this identity (see ``run_identity``)."""
    import tomllib

    try:
        saved = tomllib.loads((run_dir / "config.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return False
    return _toml_safe({k: saved.get(k) for k in identity}) == _toml_safe(identity)


def _write_toml(path: Path, content: dict) -> None:
    path.write_text(tomli_w.dumps(_toml_safe(content)))


def write_atomic(path: Path, text: str) -> None:
    """Write a file through a temporary name of this process's own, then rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp-{_process_tag()}")
    tmp.write_text(text)
    tmp.replace(path)
