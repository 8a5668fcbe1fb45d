"""`calib` command line: dispatch only. One module per step of the data flow owns its
sub-commands (``add_parser(sub)`` sets ``func``) and calls library functions, which own
the defaults and the checks. Heavy imports (torch, transformers) happen inside the
handlers, so ``calib --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from calib.errors import CalibError

# sub-command modules, in data-flow order
MODULES = ("calib.cli.world", "calib.cli.data", "calib.cli.prune", "calib.cli.evaluate", "calib.cli.experiments")


class Parser(argparse.ArgumentParser):
    """argparse's parser with its errors (a bad type, a missing argument, an unknown choice) on
    one line, as calib's own: ``calib prune: error: ...``, exit code 2, no usage block.
    Sub-command parsers are made of the same class (argparse uses the parent's)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.set_defaults(_parser=self)  # the deepest sub-command's parser wins: it names the command

    def error(self, message):
        print(f"{self.prog}: error: {message}; see {self.prog} --help", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="calib",
        description="Calibration data for pruning LLMs (Ji et al., ICLR 2025), reproduced.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in MODULES:
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the sub-command that was given them, not by `calib`
        args._parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        rc = args.func(args)
    except CalibError as e:  # one line, whatever the message carries
        msg = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
        print(f"calib {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"calib {args.command}: interrupted; finished work is kept", file=sys.stderr)
        return 130
    return int(rc or 0)
