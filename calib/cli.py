"""`calib` command line: one sub-command per step of the paper's data flow.

Each step's module owns its sub-command (``add_parser(sub)`` sets ``func``);
heavy imports (torch, transformers) happen inside the handlers so that
``calib --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from calib.errors import CalibError

# (module, registrar) pairs, in data-flow order.
REGISTRARS = [
    ("calib.world.cli", "add_parser"),
    ("calib.data_cli", "add_parser"),  # sample, generate, filter, similarity
    ("calib.prune.cli", "add_parser"),
    ("calib.evaluate_cli", "add_parser"),  # evaluate
    ("calib.experiments", "add_parser"),  # run, results
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calib",
        description="Calibration data for pruning LLMs (Ji et al., ICLR 2025), reproduced.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module, fn in REGISTRARS:
        getattr(importlib.import_module(module), fn)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except CalibError as e:
        print(f"calib {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"calib {args.command}: interrupted; finished work is kept", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
