"""Command line: ``archdiff list | run ID | reproduce`` (the paper's experiments) and ``archdiff train |
fit | sample | measure`` (a user's own models and data: ``archdiff.cli.models``)."""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

from archdiff import __version__
from archdiff.cli import models
from archdiff.errors import RunFailed
from archdiff.experiments import UserError, get, registry
from archdiff.experiments.base import SCALES
from archdiff.threads import DEFAULT_THREADS, ENV


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one clear line, exit 2
        self.exit(2, f"archdiff: error: {message} (see 'archdiff --help')\n")


def _basic(p: argparse.ArgumentParser) -> None:
    """The options every command that computes has: device, seed, progress, threads."""
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for data, noise and training: an integer from 0 to 2**63 - 1")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, default=None, metavar="N",
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
                        "folder:PATH | npz:PATH")
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
    jobs.add_argument("--jobs", type=int, default=1, metavar="N", help="local executor: runs at a time")
    jobs.add_argument("--slurm-partition", default=None, metavar="NAME")
    jobs.add_argument("--slurm-time", type=int, default=None, metavar="MIN", help="time limit per job")
    jobs.add_argument("--slurm-gpus", type=int, default=None, metavar="N", help="GPUs per job")
    jobs.add_argument("--slurm-cpus", type=int, default=None, metavar="N", help="CPUs per job")
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


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = _Parser(prog="archdiff", description=__doc__)
    parser.add_argument("--version", action="version", version=f"archdiff {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="list the experiments, one per line")
    run = sub.add_parser("run", help="run one experiment")
    run.add_argument("id", help="experiment id (see 'archdiff list')")
    _common(run)
    rep = sub.add_parser("reproduce", help="run every experiment and write the report")
    _common(rep)
    rep.add_argument("--force", action="store_true", help="rerun experiments already finished")
    rep.add_argument("--only", nargs="+", default=None, metavar="ID",
                     help="run only these ids (separated by spaces or commas)")
    models.add_commands(sub, _basic)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``archdiff`` console script."""
    args = build_parser().parse_args(argv)
    from archdiff.runner import run_experiment
    from archdiff.sweep import parse_seeds, reproduce

    try:
        if args.command in models.COMMANDS:
            models.COMMANDS[args.command](args)
            return 0
        if args.command == "list":
            for exp in registry().values():
                print(f"{exp.id}\t{exp.title}")
            return 0
        seeds = parse_seeds(args.seeds) if args.seeds else None
        overrides = settings(args.settings, args.config)
        sweep = dict(seed=args.seed, seeds=seeds, device=args.device, out=args.out, data=args.data,
                     progress=not args.quiet, threads=args.threads, executor=args.executor, jobs=args.jobs,
                     cluster=cluster_options(args), overrides=overrides)
        if args.command == "run" and seeds is None and args.executor == "inline":
            record = run_experiment(get(args.id), args.scale, seed=args.seed, device=args.device,
                                    out=args.out, data=args.data, progress=not args.quiet,
                                    threads=args.threads, overrides=overrides)
            _print_claims(record["claims"])
            print(f"wrote {args.out}/{args.id}/ in {record['seconds']:.1f} s")
        elif args.command == "run":
            summary = reproduce(args.scale, only=[get(args.id).id], force=True, **sweep)
            _print_claims(summary["experiments"][0]["claims"])
            print(f"wrote {args.out}/; report: {args.out}/report.html")
        else:
            only = [i for arg in args.only for i in arg.split(",") if i] if args.only else None
            summary = reproduce(args.scale, force=args.force, only=only, **sweep)
            if "seeds" in summary:
                print(f"claims reproduced in every seed: {summary['claims_reproduced']} of "
                      f"{summary['claims_total']}; report: {args.out}/report.html")
            else:
                print(f"claims holding: {summary['claims_holding']} of {summary['claims_total']}; "
                      f"report: {args.out}/report.html")
    except UserError as e:
        print(f"archdiff: error: {e}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"archdiff: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("archdiff: interrupted; unfinished runs were left as .ID.partial-* folders", file=sys.stderr)
        return 130
    return 0


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
