"""The ``stereobench`` command line.

Subcommands live in their own modules and are imported only when used, so ``stereobench
--help`` is instant. A subcommand module defines ``add_arguments(parser)`` and
``run(args) -> int`` and its module docstring is the subcommand's long help (shown with
``stereobench <command> --help``).

Errors a user can fix (:class:`benchmark.errors.StereobenchError`) print as one line,
``error: ...``, with exit status 2 and no traceback. Set ``STEREOBENCH_DEBUG=1`` for tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

from benchmark.errors import StereobenchError

# name -> (module, one-line summary). The summary is here so that `--help` imports nothing.
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("benchmark.commands.prepare", "build and cache the shared stereo inputs of a dataset, with a preview"),
    "run": ("benchmark.commands.run", "run methods on datasets, score them, write results and the leaderboard"),
    "score": ("benchmark.commands.score", "score any predicted right video against a ground-truth video"),
    "leaderboard": ("benchmark.commands.leaderboard", "build leaderboards (Markdown, CSV, HTML, plots) from results"),
    "weights": ("benchmark.commands.weights", "show which weights are present, convert official checkpoints"),
    "train": ("benchmark.commands.train", "train a method (M2SVid) on any dataset the suite loads"),
    "analyze": ("study_app.analysis.cli", "analyse user-study responses into report tables with tests and intervals"),
}

EPILOG = """\
Typical use:
  stereobench prepare --dataset synthetic --protocol quick   # shared warp + hole mask, cached
  stereobench run --config configs/embedded.yaml             # what `make benchmark` runs
  stereobench score pred.mp4 gt.mp4 --mask holes.mp4         # score an outside method's output
  stereobench leaderboard                                    # re-pivot every run's results
Run `stereobench <command> --help` for a command's options.
"""


def _available() -> dict[str, tuple[str, str]]:
    return {name: spec for name, spec in COMMANDS.items() if importlib.util.find_spec(spec[0]) is not None}


def _remember_parsers(parser: argparse.ArgumentParser) -> None:
    """Let every (nested) sub-parser record itself, so errors print the usage of the command
    the user typed (argparse reports leftover arguments with the top-level usage otherwise)."""
    parser.set_defaults(_parser=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _remember_parsers(child)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; the subparser of ``command`` (only) gets its full arguments."""
    parser = argparse.ArgumentParser(
        prog="stereobench",
        description="Benchmark and user-study suite for monocular-to-stereo video conversion.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (module_name, summary) in _available().items():
        if name == command:
            module = importlib.import_module(module_name)
            p = sub.add_parser(
                name, help=summary, description=module.__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
            _remember_parsers(p)
        else:
            sub.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        parser = build_parser(command)
        args, extras = parser.parse_known_args(argv)
        if extras:
            (getattr(args, "_parser", None) or parser).error(f"unrecognized arguments: {' '.join(extras)}")
        if getattr(args, "_run", None) is None:
            parser.print_help()
            return 0 if not argv or argv[0] in ("-h", "--help") else 2
        return int(args._run(args) or 0)
    except StereobenchError as exc:
        if os.environ.get("STEREOBENCH_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # Disk full, permission denied, a vanished file: the environment's problem, not a bug.
        # Every writer in the suite is atomic, so what completed is kept.
        if os.environ.get("STEREOBENCH_DEBUG"):
            raise
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"error: {exc.strerror or exc}{where}; free space or fix permissions and rerun the same command "
              f"(completed results are kept)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; completed results are kept, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
