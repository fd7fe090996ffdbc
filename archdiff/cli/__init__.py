"""Command line: ``archdiff list | run ID | reproduce`` (the paper's experiments) and ``archdiff train |
fit | sample | measure`` (a user's own models and data: ``archdiff.cli.models``)."""

from __future__ import annotations

import argparse
import os
import sys
import sysconfig
import tomllib
import warnings
from collections.abc import Callable
from pathlib import Path

from archdiff import __version__
from archdiff.cli import models
from archdiff.data.images import MAX_BAD_FILES
from archdiff.errors import RunFailed
from archdiff.experiments import UserError, get, registry
from archdiff.experiments.base import SCALES
from archdiff.threads import DEFAULT_THREADS, ENV

DESCRIPTION = """Measure how a diffusion denoiser's architecture decides what it generates.

The paper's experiments: 'archdiff list' shows them, 'archdiff run ID' runs one into OUT/ID/, and
'archdiff reproduce' runs them all and writes OUT/summary.json and OUT/report.html. Your own models and
data: 'archdiff train', 'fit', 'sample' and 'measure'. 'archdiff COMMAND --help' shows a command's options."""

EXAMPLES = """examples:
  archdiff list
  archdiff run fig2-linear-gmm
  archdiff run fig7-poly-images --data folder:faces --seed 3 --out myruns
  archdiff run fig6-linear-retrain --set steps=10 --quiet
  archdiff reproduce --scale quick
  archdiff reproduce --only fig2-linear-gmm fig5-linear-rank-images --seeds 0-4
  archdiff train unet --data lfw --out models/unet --set epochs=200"""

RUN_NOTES = """Seed 0 writes OUT/ID/, any other seed OUT/seed-N/ID/ (as 'reproduce --seeds' does). A run
stopped before it finished (killed, out of memory, a full disk) resumes from its checkpoints when the same
command runs again."""
REPRODUCE_NOTES = """Prints each experiment's time and the claims that do not hold as it finishes, then a
table. Finished runs of the same identity are skipped (--force reruns them); stopped ones resume."""
MAX_THREADS = 4096


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one clear line, exit 2
        self.exit(2, f"archdiff: error: {message} (see 'archdiff --help')\n")

    def format_help(self) -> str:  # an epilog given as a function is built only when help is shown
        if callable(self.epilog):
            self.epilog = self.epilog()
        return super().format_help()


def _count(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from low (to high)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            span = f"{low} to {high}" if high is not None else f"{low} or more"
            raise argparse.ArgumentTypeError(f"{text} is out of range: use {span}")
        return value

    return parse


def _basic(p: argparse.ArgumentParser) -> None:
    """The options every command that computes has: device, seed, progress, threads."""
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where to compute: auto (a CUDA GPU when there is one, else the CPU), cpu or cuda")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of everything random the command does (data subset, noise, training): an "
                        "integer from 0 to 2**63 - 1")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars (and no stage lines when the output is not a terminal)")
    p.add_argument("--threads", type=_count(0, MAX_THREADS), default=None, metavar="N",
                   help=f"CPU threads for torch (default: ${ENV}, else {DEFAULT_THREADS}; "
                        f"0: torch's own default)")


def _common(p: argparse.ArgumentParser) -> None:
    """The options of the experiment commands (run, reproduce)."""
    _basic(p)
    p.add_argument("--scale", choices=SCALES, default="quick", help="quick (CPU, minutes) or paper")
    p.add_argument("--seeds", default=None, metavar="SEEDS",
                   help="run once per seed (e.g. 0-4 or 0,2,7), one folder per seed, and report each claim "
                        "over the seeds; overrides --seed")
    p.add_argument("--out", default="runs", help="output root (default: runs)")
    p.add_argument("--data", default=None,
                   help="image data for the image experiments: lfw | digits | celeba:PATH | "
                        "folder:PATH | npz:PATH (an experiment that makes its own data refuses it)")
    p.add_argument("--max-bad-files", type=_count(0), default=MAX_BAD_FILES, metavar="N",
                   help=f"unreadable files of an image folder to skip, each named in a warning, before "
                        f"loading it is an error (default {MAX_BAD_FILES})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                   help="change one of the experiment's settings, the value written as TOML (steps=10, "
                        "widths=[64, 8], recipe=column; repeatable; applied after --config)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="settings from a TOML file: KEY = VALUE lines, or a run's own config.toml (its "
                        "[config] table) to replay that run")
    jobs = p.add_argument_group("running as jobs (needs submitit)")
    jobs.add_argument("--executor", choices=("inline", "local", "slurm"), default="inline",
                      help="inline: in this process; local: one subprocess job per run; slurm: one SLURM "
                           "job per run")
    jobs.add_argument("--jobs", type=_count(1), default=1, metavar="N",
                      help="local executor: runs at a time")
    jobs.add_argument("--slurm-partition", default=None, metavar="NAME")
    jobs.add_argument("--slurm-time", type=_count(1), default=None, metavar="MIN",
                      help="time limit per job")
    jobs.add_argument("--slurm-gpus", type=_count(0), default=None, metavar="N", help="GPUs per job")
    jobs.add_argument("--slurm-cpus", type=_count(1), default=None, metavar="N", help="CPUs per job")
    jobs.add_argument("--slurm-option", action="append", default=[], metavar="KEY=VALUE",
                      help="any other submitit SLURM option, e.g. mem_gb=32 or account=myproj (repeatable)")


def cluster_options(args: argparse.Namespace) -> dict:
    """submitit's parameters from the --slurm-* options."""
    opts = {"slurm_partition": args.slurm_partition, "timeout_min": args.slurm_time,
            "gpus_per_node": args.slurm_gpus, "cpus_per_task": args.slurm_cpus}
    for item in args.slurm_option:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--slurm-option {item!r}: write it as KEY=VALUE, e.g. mem_gb=32")
        opts[f"slurm_{name.strip()}" if not name.strip().startswith("slurm_") else name.strip()] = \
            int(value) if value.strip().isdigit() else value.strip()
    return {k: v for k, v in opts.items() if v is not None}


def settings(items: list[str], config_file: str | None, flag: str = "--set") -> dict:
    """The overrides from --config FILE, then each ``flag`` KEY=VALUE (values parsed as TOML, else text)."""
    out = {}
    if config_file:
        try:
            table = tomllib.loads(Path(config_file).read_text())
        except OSError as e:
            raise UserError(f"--config {config_file}: cannot read it ({e.strerror})") from None
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"--config {config_file}: not valid TOML ({e})") from None
        out.update(table["config"] if isinstance(table.get("config"), dict) else table)
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{flag} {item!r}: write it as KEY=VALUE, e.g. {flag} steps=10")
        try:
            out[key.strip()] = tomllib.loads(f"value = {raw.strip()}")["value"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = raw.strip()  # a bare word: text
    return out


def experiment_table() -> str:
    """The experiments, one per line: id padded to one width, then its title."""
    exps = registry().values()
    width = max(len(e.id) for e in exps)
    return "\n".join(f"  {e.id:<{width}}  {e.title}" for e in exps)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="archdiff", description=DESCRIPTION, formatter_class=fmt,
                     epilog=lambda: f"experiments (the IDs of run and reproduce --only):\n"
                                    f"{experiment_table()}\n\n{EXAMPLES}")
    parser.add_argument("--version", action="version", version=f"archdiff {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    sub.add_parser("list", help="list the experiments, one per line: id, then what it measures")
    run = sub.add_parser("run", help="run one experiment into OUT/ID/", formatter_class=fmt,
                         epilog=lambda: f"{RUN_NOTES}\n\nexperiments:\n{experiment_table()}")
    run.add_argument("id", help="experiment id (see 'archdiff list')")
    _common(run)
    rep = sub.add_parser("reproduce", help="run every experiment and write the report", formatter_class=fmt,
                         epilog=REPRODUCE_NOTES)
    _common(rep)
    rep.add_argument("--force", action="store_true", help="rerun experiments already finished")
    rep.add_argument("--only", nargs="+", default=None, metavar="ID",
                     help="run only these ids (separated by spaces or commas)")
    models.add_commands(sub, _basic)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``archdiff`` console script."""
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        try:
            _command(args)
        except UserError as e:
            print(f"archdiff: error: {e}", file=sys.stderr)
            return 2
        except RunFailed as e:
            print(f"archdiff: {e}", file=sys.stderr)
            return 1
        except BrokenPipeError:  # the reader of our output went away (e.g. '| head'): stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        except KeyboardInterrupt:
            print("archdiff: interrupted; unfinished runs were left as .ID.partial-* folders (the same "
                  "command resumes them)", file=sys.stderr)
            return 130
    return 0


def _command(args: argparse.Namespace) -> None:
    if args.command in models.COMMANDS:
        try:
            models.COMMANDS[args.command](args)
        except OSError as e:
            if e.filename is None:
                raise
            raise UserError(f"cannot use {e.filename}: {e.strerror or e}") from None
    elif args.command == "list":
        print(_list_lines())
    elif args.command == "run":
        _run(args)
    else:
        _reproduce(args)


def _list_lines() -> str:
    """ID<TAB>title per experiment, the titles padded to start in one column (8-wide tab stops)."""
    exps = registry().values()
    column = max((len(e.id) // 8 + 1) * 8 for e in exps)
    return "\n".join(f"{e.id}\t{' ' * (column - (len(e.id) // 8 + 1) * 8)}{e.title}" for e in exps)


def _sweep_options(args: argparse.Namespace) -> dict:
    """reproduce()'s keyword arguments from the options run and reproduce share (checked)."""
    from archdiff.sweep import parse_seeds

    if not args.out.strip():
        raise UserError("--out is empty: name the output folder, e.g. --out runs")
    return dict(seed=args.seed, seeds=parse_seeds(args.seeds) if args.seeds is not None else None,
                device=args.device, out=args.out, data=args.data, progress=not args.quiet,
                threads=args.threads, executor=args.executor, jobs=args.jobs, cluster=cluster_options(args),
                overrides=settings(args.settings, args.config), max_bad_files=args.max_bad_files)


def _run(args: argparse.Namespace) -> None:
    """archdiff run ID: one experiment (inline), or as a one-experiment sweep (--seeds, jobs)."""
    from archdiff.runner import refuse_data, run_experiment
    from archdiff.sweep import reproduce, seed_root

    opts = _sweep_options(args)
    exp = get(args.id)
    refuse_data(exp, args.data)
    if opts["seeds"] is not None or args.executor != "inline":
        summary = reproduce(args.scale, only=[exp.id], force=True, **opts)
        _print_claims(summary["experiments"][0]["claims"])
        print(f"wrote {args.out}/; report: {args.out}/report.html")
        return
    root = seed_root(Path(args.out), args.seed, several=False)
    _note_replaced(exp, args, root, opts["overrides"])
    record = run_experiment(exp, args.scale, seed=args.seed, device=args.device, out=root, data=args.data,
                            progress=not args.quiet, threads=args.threads, overrides=opts["overrides"],
                            max_bad_files=args.max_bad_files)
    _print_claims(record["claims"])
    print(f"wrote {root / exp.id}/ in {record['seconds']:.1f} s")


def _note_replaced(exp, args: argparse.Namespace, root: Path, overrides: dict) -> None:
    """Say when a finished run of other settings is about to be replaced while a summary describes it."""
    from archdiff.runner import is_finished, run_identity, same_run

    final = root / exp.id
    if not (root / "summary.json").exists() or not is_finished(final):
        return
    if not same_run(final, run_identity(exp, args.scale, args.seed, args.data, overrides)):
        print(f"note: {final} holds a finished run of other settings; it is replaced, and "
              f"{root / 'summary.json'} and report.html describe the old one until 'archdiff reproduce' "
              f"rewrites them")


def _reproduce(args: argparse.Namespace) -> None:
    """archdiff reproduce: every experiment (or --only these), then a table of times and claims."""
    from archdiff.sweep import reproduce, seed_root

    opts = _sweep_options(args)
    only = [i for arg in args.only for i in arg.split(",") if i] if args.only is not None else None
    summary = reproduce(args.scale, force=args.force, only=only, on_done=_print_done, **opts)
    print("\n".join(summary_table(summary)))
    root = Path(args.out) if "seeds" in summary else seed_root(Path(args.out), args.seed, several=False)
    if "seeds" in summary:
        print(f"claims reproduced in every seed: {summary['claims_reproduced']} of "
              f"{summary['claims_total']}; report: {root / 'report.html'}")
    else:
        print(f"claims holding: {summary['claims_holding']} of {summary['claims_total']}; "
              f"report: {root / 'report.html'}")


def _print_done(record: dict) -> None:
    """One finished run of a sweep: its time, how many claims hold, and each that does not."""
    claims = record["claims"]
    holding = sum(c["holds"] for c in claims)
    print(f"[done] {record['experiment']} (seed {record['seed']}): {record['seconds']:.1f} s, "
          f"{holding} of {len(claims)} claims hold")
    _print_claims([c for c in claims if not c["holds"]])


def summary_table(summary: dict) -> list[str]:
    """The final table of a sweep: experiment, seconds (summed over seeds), claims holding (or reproduced)
    of total."""
    several = "seeds" in summary
    rows = []
    for e in summary["experiments"]:
        seconds = sum(e["seconds"]) if several else e["seconds"]
        good = sum(c["reproduced"] if several else c["holds"] for c in e["claims"])
        rows.append((e["experiment"], f"{seconds:.1f}", f"{good} of {len(e['claims'])}"))
    good = summary["claims_reproduced"] if several else summary["claims_holding"]
    rows.append(("total", f"{sum(float(r[1]) for r in rows):.1f}", f"{good} of {summary['claims_total']}"))
    head = ("experiment", "seconds", "claims reproduced" if several else "claims holding")
    width = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    return [f"{a:<{width[0]}}  {b:>{width[1]}}  {c:>{width[2]}}" for a, b, c in [head, *rows]]


LIBRARY_NOISE = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)  # about a library's own API


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line on stderr, without the source line; an installed library's notice about its
    own API (deprecations, future changes) is not the user's concern and is dropped (archdiff's own and
    those of the user's code are shown)."""
    if issubclass(category, LIBRARY_NOISE) and _installed_library(filename):
        return
    print(f"archdiff: warning: {message}", file=sys.stderr if file is None else file)


def _installed_library(filename: str) -> bool:
    """Whether a file belongs to an installed package other than archdiff: it lies in site-packages or in
    Python's standard library (whose deprecations a library's call triggers)."""
    path = Path(filename).resolve()
    if path.is_relative_to(Path(__file__).resolve().parents[1]):
        return False
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    return path.is_relative_to(stdlib) or any(p in ("site-packages", "dist-packages") for p in path.parts)


def _print_claims(claims: list[dict]) -> None:
    for c in claims:
        if "holds_in" in c:
            mark = "reproduced" if c["reproduced"] else "NOT REPRODUCED"
            values = ", ".join(f"{v:.4g}" if v is not None else "-" for v in c["measured"])
            print(f"  {c['id']}: holds in {c['holds_in']} of {c['of']} seeds ({values}): {mark}")
        else:
            mark = "holds" if c["holds"] else "DOES NOT HOLD"
            print(f"  {c['id']}: measured {c['measured']:.4g} {c['comparison']} threshold "
                  f"{c['threshold']:.4g}: {mark}")


if __name__ == "__main__":
    sys.exit(main())
