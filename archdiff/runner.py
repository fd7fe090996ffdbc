"""Runs experiments: owns the output folder, config.toml, metrics.json and the 'finished' marker.

A run writes into its own ``OUT/.ID.partial-HOST-PID`` and only when it has finished is that folder swapped
in as ``OUT/ID`` (the old result moved aside first, then the new one renamed in, then the old one deleted;
a process stopped between two renames leaves both finished folders, and the next run of that experiment
puts the newest back in place: ``recover``). So a crashed or interrupted run never looks finished.

A stopped run resumes: a later run of the same identity (and archdiff version) adopts the unfinished folder
of a process of this host that no longer runs, and its networks continue from the checkpoints in it
(``Context.out`` / ``Context.work``; training resumes bit for bit on the CPU). The console says so, and
from which epochs. Unfinished folders of other identities are removed.

Everything a run is given is checked before its folder is created: scale, seed, settings, the data spec
(readable, and only for experiments that take images), threads, and that ``OUT`` is writable and ``OUT/ID``
is not in the way. A file that cannot be written (a full disk) is a UserError naming it.

``config.toml`` is the run's identity and the one file that says what ran: experiment, scale, seed, data
and the full ``config`` (the scale's settings with any overrides), plus device, version and
``resolved`` (settings the experiment derived while running, e.g. a schedule scaled to the image size).
``sweep.reproduce`` skips a finished run only when its identity matches the one asked for.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

import tomli_w
import torch

from archdiff import __version__, seeding
from archdiff.data.images import MAX_BAD_FILES, check_spec
from archdiff.errors import resolve_device
from archdiff.experiments import Experiment, UserError
from archdiff.experiments.base import SCALES, WORK_DIR, Context, Result, check_keys
from archdiff.threads import policy as threads_policy
from archdiff.threads import resolve as resolve_threads

MARKER = "FINISHED"
# an experiment's write failing for one of these is the disk's fault, not the experiment's
STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def prepare_out(out: Path | str) -> Path:
    """Create the output root, or raise a UserError naming why it cannot be written."""
    if not str(out).strip():
        raise UserError("the output folder (--out) is empty: name a folder, e.g. --out runs")
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


def check_inputs(exp: Experiment, identity: dict, data: str | None, threads: int | None = None,
                 max_bad_files: int = MAX_BAD_FILES) -> None:
    """Refuse what would fail (or be ignored) only once the run is under way: --data for an experiment
    that makes its own data, a data spec that cannot load, a bad thread count or bad-file allowance."""
    refuse_data(exp, data)
    if exp.uses_images:
        check_spec(data if data is not None else identity["config"].get("data"))
    resolve_threads(threads)
    if max_bad_files < 0:
        raise UserError(f"--max-bad-files must be >= 0, got {max_bad_files}")


def refuse_data(exp: Experiment, data: str | None) -> None:
    """A UserError for a data spec given to an experiment that makes its own data (it would be ignored)."""
    if data is not None and not exp.uses_images:
        raise UserError(f"{exp.id} takes no image data (it makes its own), so --data {data!r} would be "
                        f"ignored: leave --data out")


def check_target(final: Path) -> None:
    """Refuse a run whose result could not take its place: OUT/ID a file, or a folder that holds no run."""
    if final.exists() and not final.is_dir():
        raise UserError(f"{final} is a file, not a run folder, so the result could not be put there: move it "
                        f"away or choose another --out")
    if final.is_dir() and not (final / "config.toml").exists() and any(final.iterdir()):
        raise UserError(f"{final} is a folder that holds no run (no config.toml), so it would be replaced: "
                        f"move it away or choose another --out")


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
    max_bad_files: int = MAX_BAD_FILES,
    log: Callable[[str], None] = print,
) -> dict:
    """Run one experiment into ``out/ID`` and return its metrics.json content (metrics plus claims).

    Resumes a stopped run of the same identity (saying so through ``log``); see the module docstring.
    ``threads``: the CPU thread count for the run (see ``archdiff.threads``; None: the policy's default).
    ``max_bad_files``: unreadable files of an image folder skipped (and named) before it is an error.
    """
    identity = run_identity(exp, scale, seed, data, overrides)
    check_inputs(exp, identity, data, threads, max_bad_files)
    dev = resolve_device(device)
    root = prepare_out(out)
    recover(root, exp.id)
    check_target(root / exp.id)
    about = {**identity, "overrides": dict(overrides or {}), "device": str(dev),
             "archdiff_version": __version__}
    partial, adopted = _partial_dir(root, exp.id, {**identity, "archdiff_version": __version__})
    resumed = _resume_note(partial, adopted) if adopted else None
    if resumed:
        log(f"resuming {exp.id}: {resumed}")
    ctx = Context(config=identity["config"], scale=scale, seed=seed, device=dev, out=partial,
                  data=identity["data"], progress=progress, max_bad_files=max_bad_files)
    _write(partial / "config.toml", _toml(about))
    result, seconds, n_threads = _execute(exp, ctx, threads)
    check_keys(result.metrics)
    record = {
        "experiment": exp.id, "title": exp.title, "paper": exp.paper, "scale": scale,
        "seed": seed, "device": str(dev), "threads": n_threads, "seconds": round(seconds, 3),
        "overrides": _jsonable(dict(overrides or {})),
        "data": {k: ctx.resolved[k] for k in ("data_source", "n_train", "data_shape") if k in ctx.resolved},
        "metrics": _jsonable(result.metrics), "claims": [c.to_dict() for c in result.claims],
        "figures": list(result.figures), "tables": _jsonable([t.to_dict() for t in result.tables]),
        **({"resumed": resumed} if resumed else {}),
    }
    _finish(partial, root / exp.id, {**about, "threads": n_threads, "resolved": ctx.resolved}, record)
    return record


def _execute(exp: Experiment, ctx: Context, threads: int | None) -> tuple[Result, float, int]:
    """exp.run(ctx) under the thread policy: (result, seconds, threads). Bad input found while running
    removes the run's folder when nothing but its config was written; a full disk is a UserError."""
    try:
        with threads_policy(threads) as n_threads:
            start = time.perf_counter()
            result = exp.run(ctx)
            return result, time.perf_counter() - start, n_threads
    except UserError:
        if all(f.name == "config.toml" for f in ctx.out.rglob("*") if not f.is_dir()):
            shutil.rmtree(ctx.out, ignore_errors=True)
        raise
    except OSError as e:
        if e.errno not in STORAGE_ERRORS:
            raise
        raise _unwritable(Path(e.filename or ctx.out), e, ctx.out) from None


def _finish(partial: Path, final: Path, about: dict, record: dict) -> None:
    """Write the finished run's files, drop its work folder and swap it in as ``final``."""
    _write(partial / "config.toml", _toml(about))
    _write(partial / "metrics.json", json.dumps(record, indent=2))
    _write(partial / MARKER, f"finished in {record['seconds']:.1f} s\n")
    shutil.rmtree(partial / WORK_DIR, ignore_errors=True)
    try:
        _replace_dir(partial, final)
    except OSError as e:
        raise _unwritable(final, e, partial) from None


def _unwritable(path: Path, err: OSError, partial: Path) -> UserError:
    """The one-line error of a file that could not be written, saying where the unfinished run stays."""
    return UserError(f"cannot write {path}: {err.strerror or err}; the unfinished run stays in {partial}: "
                     f"make room (or fix the folder) and run the same command again to resume it")


def _write(path: Path, text: str) -> None:
    """Write one file of a run folder; a failure (a full disk) is a UserError naming the file and why."""
    try:
        path.write_text(text)
    except OSError as e:
        raise _unwritable(path, e, path.parent) from None


def _stopped(root: Path, prefix: str) -> list[Path]:
    """Folders ``root/PREFIX-HOST-PID`` of this host whose process no longer runs (this process's own
    included: nothing of it runs there now), newest first."""
    found = []
    for p in root.glob(f"{prefix}-{socket.gethostname()}-*"):
        pid = p.name.rsplit("-", 1)[1]
        if pid.isdigit() and p.is_dir() and (int(pid) == os.getpid() or not _alive(int(pid))):
            found.append(p)
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def _partial_dir(root: Path, exp_id: str, identity: dict) -> tuple[Path, Path | None]:
    """This process's folder for the unfinished run (``.ID.partial-HOST-PID``, so processes running the same
    experiment into one output root never share one) and the stopped run it adopted, if any: the newest
    unfinished folder of a stopped process with this identity is renamed to it; the others are removed."""
    mine = root / f".{exp_id}.partial-{_process_tag()}"
    if mine.exists() and not mine.is_dir():
        raise UserError(f"{mine} is a file, not a run folder: remove it")
    if mine.is_dir() and not same_run(mine, identity):
        shutil.rmtree(mine, ignore_errors=True)
    adopted = None
    for old in sorted(_stopped(root, f".{exp_id}.partial"), key=lambda p: p != mine):  # its own first
        if adopted is None and same_run(old, identity) and _adopt(old, mine):
            adopted = old
        elif old != mine:
            shutil.rmtree(old, ignore_errors=True)
    try:
        mine.mkdir(exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the run folder {mine}: {e.strerror or e}") from None
    return mine, adopted


def _adopt(old: Path, mine: Path) -> bool:
    """Rename a stopped run's folder to this process's (False when another process took it first)."""
    if old == mine:
        return True
    try:
        os.rename(old, mine)
    except OSError:
        return False
    return True


def _resume_note(partial: Path, adopted: Path) -> str:
    """What a resumed run continues from: the adopted folder and each network's checkpoint epoch."""
    where = ", ".join(f"{name} at epoch {done} of {total}" for name, done, total in checkpoints(partial))
    return f"continuing the stopped run in {adopted}" + (f" from its checkpoints: {where}" if where else
                                                        " (no checkpoint yet: its work starts over)")


def checkpoints(run_dir: Path) -> list[tuple[str, int, int]]:
    """(folder, epochs done, epochs asked for) of each training checkpoint inside a run folder."""
    from safetensors import safe_open

    from archdiff.training import CHECKPOINT_FILE

    found = []
    for ckpt in sorted(run_dir.rglob(CHECKPOINT_FILE)):
        try:
            with safe_open(str(ckpt), framework="pt") as f:
                done = f.get_slice("losses").get_shape()[0] if "losses" in f.keys() else 0
            total = json.loads((ckpt.parent / "config.json").read_text())["train"]["epochs"]
        except Exception:  # noqa: BLE001 - a damaged checkpoint is reported by training when it resumes
            continue
        found.append((str(ckpt.parent.relative_to(run_dir)), int(done), int(total)))
    return found


def recover(root: Path, exp_id: str) -> None:
    """Finish a swap a stopped process left half done: its finished folder goes into ``root/ID`` (the
    newest result), else an old result it had moved aside goes back; moved-aside leftovers are removed."""
    final = root / exp_id
    for old in _stopped(root, f".{exp_id}.partial"):
        if is_finished(old) and same_run(old, {"experiment": exp_id}):
            try:
                _replace_dir(old, final)
            except (OSError, UserError):  # another process recovers it at the same time
                pass
            break
    for aside in _stopped(root, f".{exp_id}.old"):
        if not final.exists() and is_finished(aside):
            os.replace(aside, final)
        else:
            shutil.rmtree(aside, ignore_errors=True)


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
    """Move a finished run folder into place: a folder already there is moved aside first, the new one
    renamed in, then the old one deleted, so a stop at any point leaves a finished result (``recover``)."""
    aside = final.with_name(f".{final.name}.old-{_process_tag()}")
    error: OSError | None = None
    for _ in range(10):  # another process may put its own result in place between two renames
        if final.exists():
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(final, aside)
        try:
            os.replace(new, final)
        except OSError as e:
            error = e
            if not new.exists():
                break
            continue
        shutil.rmtree(aside, ignore_errors=True)
        return
    if aside.exists() and not final.exists():
        os.replace(aside, final)
    raise UserError(f"cannot move the finished run {new} into place as {final}: {error.strerror or error}")


def same_run(run_dir: Path, identity: dict) -> bool:
    """True when the run in run_dir has this identity (see ``run_identity``)."""
    import tomllib

    try:
        saved = tomllib.loads((run_dir / "config.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return False
    return _toml_safe({k: saved.get(k) for k in identity}) == _toml_safe(identity)


def _toml(content: dict) -> str:
    return tomli_w.dumps(_toml_safe(content))


def write_atomic(path: Path, text: str) -> None:
    """Write a file through a temporary name of this process's own, then rename it into place; a failure
    (a full disk) is a UserError naming the file and why."""
    tmp = path.with_name(f".{path.name}.tmp-{_process_tag()}")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
