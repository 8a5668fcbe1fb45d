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
from calib.errors import HelpFormatter as Formatter  # every command's help, the book's too

# sub-command modules, in data-flow order
MODULES = ("calib.cli.world", "calib.cli.data", "calib.cli.prune", "calib.cli.evaluate", "calib.cli.experiments")


class Parser(argparse.ArgumentParser):
    """argparse's parser with its errors (a bad type, a missing argument, an unknown choice) on
    one line, as calib's own: ``calib prune: error: ...``, exit code 2, no usage block.
    Sub-command parsers are made of the same class (argparse uses the parent's), and share
    one help formatter."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)
        self.set_defaults(_parser=self)  # the deepest sub-command's parser wins: it names the command

    def error(self, message):
        print(f"{self.prog}: error: {message}; see {self.prog} --help", file=sys.stderr)
        sys.exit(2)


MODEL_HELP = ("a model folder (save_pretrained layout), a hub id org/name (downloaded, or read from the local "
              "hub cache with HF_HUB_OFFLINE=1), or alias world | world-qwen (the packaged world models) | smollm2 (SmolLM2-135M, packaged)")
DTYPE_HELP = ("auto | float32 | bfloat16 | float16: the weights' dtype; auto: bfloat16 on a GPU that has it, float32 on a CPU; unset: the model's own "
              "(world models: float32, any other: auto)")


def model_options(p, required: bool = False, default_help: str = "", dtype: bool = True) -> None:
    """--model, --revision, --trust-remote-code and --dtype: the same on every command that loads a model."""
    p.add_argument("--model", required=required, default=None, help=MODEL_HELP + default_help)
    p.add_argument("--revision", default=None,
                   help="hub ids: the branch, tag or commit to use (unset: main); recorded as a commit hash")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="run the model's own code from its folder (transformers' trust_remote_code)")
    if dtype:
        p.add_argument("--dtype", default=None, help=DTYPE_HELP)


def chosen(args, command: str, source: str | None = None, suite: bool = False, dtype: bool = True) -> dict:
    """Resolve ``args.model`` (a hub id becomes its snapshot folder), fill the unset model-dependent
    defaults from ``calib.models.defaults`` (``source``: the name of the args field holding the
    calibration source; ``suite``: args.suite; ``dtype``: args.dtype), and say on stderr, in one
    line, what was chosen. Returns the model's defaults."""
    from calib.models import defaults, take_model
    given = args.model
    args.model = take_model(given, getattr(args, "revision", None))
    d = defaults(given if given is not None else args.model)
    said = [f"model {given or 'world'}"]
    if source is not None:
        if getattr(args, source) is None:
            setattr(args, source, d["source"])
        said.append(f"calibration {getattr(args, source)}")
    if suite:
        if args.suite is None:
            args.suite = d["suite"]
        said.append(f"suite {args.suite}")
    if dtype:
        from calib.errors import check_choice
        from calib.models import AUTO, DTYPES, resolve_dtype
        if getattr(args, "dtype", None) is None:
            args.dtype = d["dtype"]
        check_choice("dtype", args.dtype, [AUTO, *DTYPES])
        here = f" ({resolve_dtype(AUTO, getattr(args, 'device', None))} here)" if args.dtype == AUTO else ""
        said.append(f"dtype {args.dtype}{here}")
    print(f"calib {command}: " + ", ".join(said), file=sys.stderr)
    return d


def version() -> str:
    """calib's version from the installed package's metadata (light: no heavy import)."""
    import calib
    return calib.__version__


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="calib",
        description="Calibration data for pruning LLMs (Ji et al., ICLR 2025), reproduced.",
    )
    parser.add_argument("--version", action="version", version=f"calib {version()}")
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
