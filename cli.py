"""The `jvideo` command.

Each subcommand lives in the package that owns its work and registers itself through a
`register(subparsers)` function. Command modules import nothing heavy at module level, so
`jvideo --help` and the montage commands start fast and never load Jittor.

Errors a user can fix (bad input, missing files) are reported as one line on stderr with a
non-zero exit, never as a traceback; `--verbose` shows the traceback and Jittor's logs.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import os
import sys

# Modules that define subcommands, in the order `--help` lists them.
COMMAND_MODULES = (
    "jvideo.doctor",
    "montage.library_cli",
    "montage.montage_cli",
    "jvideo.toyworld_cli",
    "jvideo.convert",
    "jvideo.generation_cli",
    "film.film_cli",
    "studio.studio_cli",
)

# `jvideo bench TARGET [ARGS...]`: each target is a module with `main(argv) -> int` that owns
# its own argument parser. A target is listed only once its module exists.
BENCH_TARGETS = {
    "kernels": "kernels.bench",
    "model": "jvideo.bench",
    "shot": "jvideo.generation.bench_shot",
    "montage": "montage.bench",
    "distributed": "jvideo.distributed_bench",
    "film-threshold": "film.calibrate",
    "studio": "studio.bench",
}

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exception types whose message is meant for the user, gathered from the packages."""
    # Any OSError (no space left, name too long, a file where a folder should be, ...) is
    # about the user's files or machine: its message, not a traceback.
    types: list[type[BaseException]] = [UsageError, OSError]
    for module_name, attr in (("jvideo.errors", "JVideoError"), ("montage.errors", "MontageError"),
                              ("kernels.resources", "ResourceError"), ("film.errors", "FilmError")):
        try:
            types.append(getattr(importlib.import_module(module_name), attr))
        except (ImportError, AttributeError):
            pass
    return tuple(types)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    def _get_values(self, action: argparse.Action, arg_strings: list[str]):
        # Python 3.11's argparse drops a '--' value (`--fps=--`) and hands the action an
        # empty list instead of a string: refuse it like any other missing value.
        if action.option_strings and action.nargs is None and arg_strings == ["--"]:
            self.error(f"argument {'/'.join(action.option_strings)}: expected one argument")
        return super()._get_values(action, arg_strings)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jvideo", description="Text to film on Jittor: generate shots with a "
                     "latent video diffusion model, cut montages from a footage library, "
                     "benchmark fused kernels.")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show Jittor's logs and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    _register_bench(sub)
    return parser


def _available_bench_targets() -> dict[str, str]:
    return {name: mod for name, mod in BENCH_TARGETS.items() if importlib.util.find_spec(mod) is not None}


def _register_bench(sub: argparse._SubParsersAction) -> None:
    targets = _available_bench_targets()
    if not targets:
        return
    p = sub.add_parser("bench", help="benchmarks measured side by side: " + ", ".join(targets))
    p.add_argument("target", choices=sorted(targets))
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="options of that benchmark (see TARGET --help)")
    p.set_defaults(func=lambda args: importlib.import_module(targets[args.target]).main(args.bench_args))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _reject_non_finite(parser, args)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USER_ERROR
    if args.verbose:
        os.environ["JVIDEO_VERBOSE"] = "1"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("jvideo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`jvideo search ... | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except user_error_types() as err:
        if args.verbose:
            raise
        print(f"jvideo {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except RecursionError:
        # Only input nests this deep (a '[[[[...' JSON project, preset or sidecar): no reader
        # of ours recurses on its own.
        if args.verbose:
            raise
        print(f"jvideo {args.command}: error: an input file is nested too deeply to read", file=sys.stderr)
        return EXIT_USER_ERROR


def _reject_non_finite(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """`float()` accepts 'nan' and 'inf', and every range check (`x <= 0 or x > 60`) lets NaN
    through: refuse them here, once, for every command's float options."""
    for dest, value in vars(args).items():
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            parser.error(f"argument --{dest.replace('_', '-')}: must be a finite number")


def _one_line(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    if isinstance(err, OSError) and err.filename and err.strerror:
        text = f"{err.strerror}: {err.filename}"
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
