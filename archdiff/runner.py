"""Runs experiments: owns the output folder, config.toml, metrics.json and the 'finished' marker.

A run writes into ``OUT/.ID.partial`` and only when it has finished moves it to ``OUT/ID``, so a
crashed or interrupted run never leaves a folder that looks finished.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import tomli_w
import torch

from archdiff import __version__
from archdiff.errors import resolve_device
from archdiff.experiments import Experiment, UserError
from archdiff.experiments.base import SCALES, Context

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
) -> dict:
    """Run one experiment and return its metrics.json content (metrics plus claims)."""
    if scale not in SCALES:
        raise UserError(f"unknown scale {scale!r}: use {' or '.join(SCALES)}")
    if data is not None and not exp.uses_images:
        data = None  # the 2-D experiments build their own data
    config = {**exp.config(scale), **(overrides or {})}
    root = prepare_out(Path(out))
    final, partial = root / exp.id, root / f".{exp.id}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    dev = resolve_device(device)
    resolved = {
        "experiment": exp.id, "scale": scale, "seed": seed, "device": str(dev),
        "data": data, "archdiff_version": __version__, "config": config,
    }
    (partial / "config.toml").write_text(tomli_w.dumps(_toml_safe(resolved)))
    ctx = Context(config=config, scale=scale, seed=seed, device=dev, out=partial, data=data,
                  progress=progress)
    start = time.perf_counter()
    result = exp.run(ctx)
    seconds = time.perf_counter() - start
    record = {
        "experiment": exp.id, "title": exp.title, "paper": exp.paper, "scale": scale,
        "seed": seed, "device": str(dev), "seconds": round(seconds, 3),
        "metrics": _jsonable(result.metrics), "claims": [c.to_dict() for c in result.claims],
        "figures": list(result.figures),
    }
    (partial / "metrics.json").write_text(json.dumps(record, indent=2))
    (partial / MARKER).write_text(f"finished in {seconds:.1f} s\n")
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    return record


def reproduce(
    scale: str = "quick",
    *,
    seed: int = 0,
    device: str = "auto",
    out: Path | str = "runs",
    data: str | None = None,
    force: bool = False,
    only: list[str] | None = None,
    log=print,
    progress: bool = True,
) -> dict:
    """Run every registered experiment (skipping finished ones unless ``force``), then write
    ``summary.json`` and ``report.html`` in ``out``. Returns the summary."""
    from archdiff.experiments import registry
    from archdiff.report import write_report

    root = prepare_out(Path(out))
    resolve_device(device)
    exps = registry()
    if only:
        unknown = [i for i in only if i not in exps]
        if unknown:
            raise UserError(f"unknown experiment(s) {', '.join(unknown)}; see 'archdiff list'")
        exps = {i: exps[i] for i in only}
    records = []
    for exp in exps.values():
        run_dir = root / exp.id
        if is_finished(run_dir) and not force and _same_run(run_dir, scale, seed, data, exp):
            log(f"[skip] {exp.id}: finished result already in {run_dir} (use --force to rerun)")
        else:
            log(f"[run]  {exp.id}: {exp.title}")
            run_experiment(exp, scale, seed=seed, device=device, out=root, data=data, progress=progress)
        records.append(json.loads((run_dir / "metrics.json").read_text()))
    summary = {
        "scale": scale, "seed": seed, "archdiff_version": __version__,
        "experiments": [{k: r[k] for k in ("experiment", "title", "seconds", "claims")}
                        for r in records],
        "claims_total": sum(len(r["claims"]) for r in records),
        "claims_holding": sum(c["holds"] for r in records for c in r["claims"]),
    }
    _write_atomic(root / "summary.json", json.dumps(summary, indent=2))
    _write_atomic(root / "report.html", write_report(records, root, summary))
    return summary


def _same_run(run_dir: Path, scale: str, seed: int, data: str | None, exp: Experiment) -> bool:
    rec = json.loads((run_dir / "metrics.json").read_text())
    if rec.get("scale") != scale or rec.get("seed") != seed:
        return False
    if exp.uses_images:
        import tomllib

        cfg = tomllib.loads((run_dir / "config.toml").read_text())
        return cfg.get("data") == data
    return True


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
