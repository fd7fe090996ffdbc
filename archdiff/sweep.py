"""Sweeps: a reproduction as a set of runs (experiment x seed), dispatched in this process or as cluster
jobs, then gathered into summary.json and report.html.

Layout. Seed 0 alone: ``OUT/ID/`` (as ``archdiff run``), ``OUT/summary.json``, ``OUT/report.html``; any
other single seed N: the same under ``OUT/seed-N/``, so runs of different seeds never replace each other.
Several seeds: ``OUT/seed-N/ID/`` per seed N, each seed folder with its own summary.json and report.html,
and ``OUT/summary.json`` + ``OUT/report.html`` over the seeds: per claim its value in every seed, mean and
SD, and "holds in k of n". A claim is *reproduced* when it holds in every seed; a failing seed is never
averaged away.

Before anything runs, every input is checked (seeds, settings, the data spec when an experiment takes
images; ``--data`` is named as ignored by the experiments that make their own data). A run stopped before
it finished resumes from its checkpoints when the same sweep runs again (``runner``).

Executors. ``inline``: one run after another in this process. ``local``: submitit's local executor, each
run a job of its own (a subprocess; ``jobs`` at a time). ``slurm``: submitit on a SLURM cluster, each run
a job, all submitted at once; ``cluster`` holds submitit's options (``timeout_min``, ``gpus_per_node``,
``cpus_per_task``, ``slurm_partition``, any other ``slurm_*``). A job writes only its own run folder
(atomically, see ``runner``); this process waits for the jobs, then writes the summaries and reports.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from archdiff import __version__, seeding
from archdiff.data.images import MAX_BAD_FILES, check_spec
from archdiff.errors import RunFailed, UserError, resolve_device
from archdiff.runner import (
    check_target,
    is_finished,
    prepare_out,
    recover,
    run_experiment,
    run_identity,
    same_run,
    write_atomic,
)
from archdiff.threads import resolve as resolve_threads

EXECUTORS = ("inline", "local", "slurm")
MAX_SEEDS = 10_000  # seeds one sweep may ask for


@dataclass(frozen=True)
class Run:
    """One run of a sweep: an experiment at a seed, whose folder is ``root / exp_id``."""

    exp_id: str
    seed: int
    root: Path
    overrides: dict = field(default_factory=dict)  # the settings changed for this experiment
    data: str | None = None  # the data spec, for an experiment that takes images


def parse_seeds(text: str) -> list[int]:
    """Seeds from "3", "0-4" (inclusive) or "0,2,7" (and mixtures "0-2,9"), in order, each once."""
    seeds: dict[int, None] = {}  # ordered, each once
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            first, last = int(lo), int(hi) if hi else int(lo)
            if last < first:
                raise ValueError
            seeding.check_seed(first)
            seeding.check_seed(last)
            if last - first + len(seeds) >= MAX_SEEDS:
                raise UserError(f"--seeds {text!r} asks for more than {MAX_SEEDS} seeds")
            seeds.update(dict.fromkeys(range(first, last + 1)))
    except ValueError:
        raise UserError(f"--seeds {text!r}: give seeds as 3, 0-4 or 0,2,7") from None
    return list(seeds)


def seed_root(out: Path, seed: int, several: bool) -> Path:
    """Where one seed's run folders live: ``out`` for seed 0 alone, else ``out/seed-N``."""
    return out / f"seed-{seed}" if several or seed != 0 else out


def run_job(exp_id: str, scale: str, seed: int, device: str, root: str, data: str | None,
            threads: int | None, progress: bool = False, overrides: dict | None = None,
            max_bad_files: int = MAX_BAD_FILES, log: Callable[[str], None] = print) -> str:
    """One run, in this process or as a cluster job (a picklable top-level function); returns its folder."""
    from archdiff.experiments import get

    run_experiment(get(exp_id), scale, seed=seed, device=device, out=root, data=data, progress=progress,
                   threads=threads, overrides=overrides, max_bad_files=max_bad_files, log=log)
    return str(Path(root) / exp_id)


def dispatch(runs: list[Run], executor: str, *, scale: str, device: str, threads: int | None, progress: bool,
             out: Path, jobs: int = 1, cluster: dict | None = None, log: Callable[[str], None] = print,
             max_bad_files: int = MAX_BAD_FILES, on_done: Callable[[Run], None] | None = None) -> None:
    """Run every run: inline, or as submitit jobs (raising RunFailed naming the runs whose job failed);
    ``on_done(run)`` after each run that finished."""
    from archdiff.experiments import get

    if executor not in EXECUTORS:
        raise UserError(f"unknown executor {executor!r}: use {', '.join(EXECUTORS)}")
    done = on_done or (lambda r: None)
    if executor == "inline":
        for r in runs:
            log(f"[run]  {r.exp_id} (seed {r.seed}): {get(r.exp_id).title}")
            run_job(r.exp_id, scale, r.seed, device, str(r.root), r.data, threads, progress, r.overrides,
                    max_bad_files, log)
            done(r)
        return
    try:
        import submitit
    except ImportError:
        raise UserError(f"--executor {executor} needs submitit: pip install submitit") from None
    ex = submitit.AutoExecutor(folder=out / ".jobs" / "%j", cluster=executor)
    ex.update_parameters(name="archdiff", **{"timeout_min": 24 * 60, **(cluster or {})})
    width = len(runs) if executor == "slurm" else max(1, jobs)
    failed = []
    for start in range(0, len(runs), width):
        batch = runs[start:start + width]
        submitted = [ex.submit(run_job, r.exp_id, scale, r.seed, device, str(r.root), r.data, threads, False,
                               r.overrides, max_bad_files) for r in batch]
        for r, job in zip(batch, submitted):
            log(f"[job]  {r.exp_id} (seed {r.seed}): job {job.job_id}")
        for r, job in zip(batch, submitted):
            try:
                job.result()
            except Exception as err:  # noqa: BLE001 - a failed job is reported with its log, not raised
                failed.append(f"{r.exp_id} seed {r.seed} (job {job.job_id}: {str(err).splitlines()[0]})")
            else:
                done(r)
    if failed:
        raise RunFailed(f"{len(failed)} run(s) failed: {'; '.join(failed)}; job logs in {out / '.jobs'}")


def reproduce(
    scale: str = "quick",
    *,
    seed: int = 0,
    seeds: list[int] | None = None,
    device: str = "auto",
    out: Path | str = "runs",
    data: str | None = None,
    force: bool = False,
    only: list[str] | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    threads: int | None = None,
    executor: str = "inline",
    jobs: int = 1,
    cluster: dict | None = None,
    overrides: dict | None = None,
    max_bad_files: int = MAX_BAD_FILES,
    on_done: Callable[[dict], None] | None = None,
) -> dict:
    """Run every registered experiment (or ``only`` these) at every seed, skipping finished runs of the
    same identity unless ``force``; then write summary.json and report.html (see the module docstring).
    ``overrides`` change settings in the experiments that have them (a setting none of them has is a
    UserError). ``on_done(record)`` gets each run's metrics.json content when it finishes. Returns the
    summary (over seeds when there are several)."""
    seeds = [seeding.check_seed(s) for s in (seeds or [seed])]
    several = len(seeds) > 1
    exps = _selected(scale, only, log)
    changed = _changed(exps, scale, overrides)
    _check_data(exps, scale, data, log)
    resolve_device(device)
    resolve_threads(threads)
    root = prepare_out(out)
    runs = [Run(e.id, s, prepare_out(seed_root(root, s, several)), changed[e.id],
                data if e.uses_images else None) for s in seeds for e in exps.values()]
    todo = [r for r in runs if force or not _finished_before(r, exps[r.exp_id], scale, log)]
    for r in todo:
        check_target(r.root / r.exp_id)
    dispatch(todo, executor, scale=scale, device=device, threads=threads, progress=progress, out=root,
             jobs=jobs, cluster=cluster, log=log, max_bad_files=max_bad_files,
             on_done=(lambda r: on_done(_record(r))) if on_done else None)
    per_seed = {s: [_record(r) for r in runs if r.seed == s] for s in seeds}
    for s, records in per_seed.items():
        one = summarize(records, scale, s)
        write_summary(seed_root(root, s, several), one, records)
    if not several:
        return one
    summary = aggregate(per_seed, scale)
    write_summary(root, summary, per_seed)
    return summary


def _selected(scale: str, only: list[str] | None, log: Callable[[str], None]) -> dict:
    """The experiments to run: ``only`` these (each must exist), else every one that has the scale."""
    from archdiff.experiments import registry

    exps = registry()
    if only is not None:
        unknown = [i for i in only if i not in exps]
        if unknown or not only:
            raise UserError(f"unknown experiment(s) {', '.join(unknown) or '(none named)'}; see "
                            f"'archdiff list'")
        exps = {i: exps[i] for i in only}
        for e in exps.values():
            e.config(scale)  # a UserError naming the scales it has
        return exps
    for e in [e for e in exps.values() if scale not in e.scales]:
        log(f"[skip] {e.id}: it has no {scale} scale (only {', '.join(e.scales)})")
        del exps[e.id]
    return exps


def _changed(exps: dict, scale: str, overrides: dict | None) -> dict[str, dict]:
    """Per experiment, the overrides it has (each checked); a setting no experiment has is a UserError."""
    changed = {e.id: {k: v for k, v in (overrides or {}).items() if k in e.config(scale)}
               for e in exps.values()}
    unused = [k for k in overrides or {} if not any(k in c for c in changed.values())]
    if unused:
        raise UserError(f"no experiment run here has the setting(s) {', '.join(unused)}; see the 'config' "
                        f"table of a run's config.toml for an experiment's settings")
    for e in exps.values():
        e.configured(scale, changed[e.id])
    return changed


def _check_data(exps: dict, scale: str, data: str | None, log: Callable[[str], None]) -> None:
    """Check the data spec of the experiments that take images, and say once which ones ignore --data."""
    takers = [e for e in exps.values() if e.uses_images]
    for spec in {data if data is not None else e.config(scale).get("data") for e in takers}:
        check_spec(spec)
    ignoring = [e.id for e in exps.values() if not e.uses_images]
    if data is not None and ignoring:
        log(f"[note] --data {data} is for the experiments that take images; these make their own data and "
            f"ignore it: {', '.join(ignoring)}")


def _finished_before(r: Run, exp, scale: str, log: Callable[[str], None]) -> bool:
    """True (and said) when the run's folder already holds a finished run of the same identity."""
    recover(r.root, r.exp_id)
    identity = run_identity(exp, scale, r.seed, r.data, r.overrides)
    if is_finished(r.root / r.exp_id) and same_run(r.root / r.exp_id, identity):
        log(f"[skip] {r.exp_id} (seed {r.seed}): finished result already in {r.root / r.exp_id} "
            f"(use --force to rerun)")
        return True
    return False


def _record(r: Run) -> dict:
    return json.loads((r.root / r.exp_id / "metrics.json").read_text())


def summarize(records: list[dict], scale: str, seed: int) -> dict:
    """One seed's summary.json: every experiment's claims, and how many hold."""
    return {
        "scale": scale, "seed": seed, "archdiff_version": __version__,
        "experiments": [{k: r[k] for k in ("experiment", "title", "seconds", "claims")} for r in records],
        "claims_total": sum(len(r["claims"]) for r in records),
        "claims_holding": sum(c["holds"] for r in records for c in r["claims"]),
    }


def aggregate(per_seed: dict[int, list[dict]], scale: str) -> dict:
    """The summary over seeds: per experiment and claim (made in any seed), the value, threshold and verdict
    in every seed, mean and SD of the value, ``holds_in`` k of ``of`` n, and ``reproduced`` (holds in every
    seed; a seed that did not make the claim counts as not holding)."""
    seeds = list(per_seed)
    experiments = []
    for i, first in enumerate(per_seed[seeds[0]]):
        records = [per_seed[s][i] for s in seeds]
        ids = dict.fromkeys(c["id"] for r in records for c in r["claims"])  # every seed's, first seen first
        claims = [_claim_over_seeds(claim_id, records) for claim_id in ids]
        experiments.append({"experiment": first["experiment"], "title": first["title"],
                            "seconds": [r["seconds"] for r in records], "claims": claims})
    every = [c for e in experiments for c in e["claims"]]
    return {"scale": scale, "seeds": seeds, "archdiff_version": __version__, "experiments": experiments,
            "claims_total": len(every), "claims_reproduced": sum(c["reproduced"] for c in every)}


def _claim_over_seeds(claim_id: str, records: list[dict]) -> dict:
    """One claim across the seeds' records (a seed whose run lacks the claim counts as not holding)."""
    found = [next((c for c in r["claims"] if c["id"] == claim_id), None) for r in records]
    present = [c for c in found if c is not None]
    values = [c["measured"] for c in present]
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    holds = [bool(c and c["holds"]) for c in found]
    return {"id": claim_id, "statement": present[0]["statement"], "comparison": present[0]["comparison"],
            "measured": [c and c["measured"] for c in found],
            "threshold": [c and c["threshold"] for c in found], "holds": holds, "mean": mean, "sd": sd,
            "holds_in": sum(holds), "of": len(holds),
            "reproduced": all(holds)}


def write_summary(root: Path, summary: dict, records) -> None:
    """summary.json and report.html in root, each written atomically (one seed's records: a list; several
    seeds: a dict seed -> list)."""
    from archdiff.report import write_report, write_seeds_report

    html = write_seeds_report(records, root, summary) if "seeds" in summary else \
        write_report(records, root, summary)
    write_atomic(root / "summary.json", json.dumps(summary, indent=2))
    write_atomic(root / "report.html", html)
