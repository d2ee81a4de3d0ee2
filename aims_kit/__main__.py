"""Command line: ``python -m aims_kit run | data check | eval``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .profiles import DEFAULT_PROFILE, PROFILES, parse_override


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m aims_kit", description="AIMS Kit: intent-aware safety classifiers")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run every notebook in order through papermill and write a report")
    run.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES))
    run.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="override a parameter")
    run.add_argument("--out", type=Path, default=None, help="parent folder of the new run folder (default outputs/)")
    run.add_argument("--only", action="append", default=None, metavar="NAME", help="run only notebooks whose name contains NAME")
    run.add_argument("--resume", type=Path, default=None, metavar="RUN_FOLDER", help="finish an interrupted run folder")

    data = sub.add_parser("data", help="data utilities")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    check = data_sub.add_parser("check", help="validate an AIMS-format file and print a summary")
    check.add_argument("path", nargs="?", default=None, help="CSV / parquet / JSONL file (default: the shipped sample)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        from .runner import main_run

        try:
            overrides = dict(parse_override(item) for item in args.param)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return main_run(args.profile, overrides, args.out, args.only, args.resume)
    if args.command == "data":
        from .data import AimsDataError, load_aims, split_aims, summary

        try:
            frame = load_aims(args.path)
        except AimsDataError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        report = summary(frame)
        report["splits"] = split_aims(frame).sizes()
        print(json.dumps(report, indent=2))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
