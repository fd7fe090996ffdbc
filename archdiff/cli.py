"""Command line: ``archdiff list | run ID | reproduce``."""

from __future__ import annotations

import argparse
import sys

from archdiff.experiments import UserError, get, registry
from archdiff.experiments.base import SCALES
from archdiff.threads import DEFAULT_THREADS, ENV


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one clear line, exit 2
        self.exit(2, f"archdiff: error: {message} (see 'archdiff --help')\n")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", choices=SCALES, default="quick", help="quick (CPU, minutes) or paper")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for data, noise and training: an integer from 0 to 2**63 - 1")
    p.add_argument("--out", default="runs", help="output root (default: runs)")
    p.add_argument("--data", default=None,
                   help="image data for the image experiments: lfw | digits | celeba:PATH | "
                        "folder:PATH | npz:PATH")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help=f"CPU threads for torch (default: ${ENV}, else {DEFAULT_THREADS}; "
                        f"0: torch's own default)")


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = _Parser(prog="archdiff", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="list the experiments, one per line")
    run = sub.add_parser("run", help="run one experiment")
    run.add_argument("id", help="experiment id (see 'archdiff list')")
    _common(run)
    rep = sub.add_parser("reproduce", help="run every experiment and write the report")
    _common(rep)
    rep.add_argument("--force", action="store_true", help="rerun experiments already finished")
    rep.add_argument("--only", nargs="+", default=None, metavar="ID", help="run only these ids")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``archdiff`` console script."""
    args = build_parser().parse_args(argv)
    from archdiff.runner import reproduce, run_experiment

    try:
        if args.command == "list":
            for exp in registry().values():
                print(f"{exp.id}\t{exp.title}")
        elif args.command == "run":
            record = run_experiment(get(args.id), args.scale, seed=args.seed, device=args.device,
                                    out=args.out, data=args.data, progress=not args.quiet,
                                    threads=args.threads)
            _print_claims(record)
            print(f"wrote {args.out}/{args.id}/ in {record['seconds']:.1f} s")
        else:
            summary = reproduce(args.scale, seed=args.seed, device=args.device, out=args.out,
                                data=args.data, force=args.force, only=args.only,
                                progress=not args.quiet, threads=args.threads)
            print(f"claims holding: {summary['claims_holding']} of {summary['claims_total']}; "
                  f"report: {args.out}/report.html")
    except UserError as e:
        print(f"archdiff: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("archdiff: interrupted; unfinished runs were left as .ID.partial-* folders", file=sys.stderr)
        return 130
    return 0


def _print_claims(record: dict) -> None:
    for c in record["claims"]:
        mark = "holds" if c["holds"] else "DOES NOT HOLD"
        print(f"  {c['id']}: measured {c['measured']:.4g} vs threshold {c['threshold']:.4g}: {mark}")


if __name__ == "__main__":
    sys.exit(main())
