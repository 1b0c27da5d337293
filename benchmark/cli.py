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
import errno
import importlib
import importlib.util
import os
import re
import sys

from benchmark.errors import StereobenchError

# name -> (module, one-line summary). The summary is here so that `--help` imports nothing.
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("benchmark.commands.prepare", "build and cache the shared stereo inputs of a dataset, with a preview"),
    "prepare-data": ("benchmark.commands.prepare_data", "prepare Stereo4D / Ego4D / M2SVid-layout data you downloaded "
                                                        "into clips the suite loads"),
    "run": ("benchmark.commands.run", "run methods on datasets, score them, write results and the leaderboard"),
    "score": ("benchmark.commands.score", "score any predicted right video against a ground-truth video"),
    "leaderboard": ("benchmark.commands.leaderboard", "build leaderboards (Markdown, CSV, HTML, plots) from results"),
    "weights": ("benchmark.commands.weights", "show which weights are present, convert official checkpoints"),
    "train": ("benchmark.commands.train", "train a method (M2SVid) on any dataset the suite loads"),
    "convert": ("benchmark.commands.convert", "convert a 2-D video into stereo for VR headsets, 3-D TVs or anaglyph"),
    "analyze": ("study_app.analysis.cli", "analyse user-study responses into report tables with tests and intervals"),
    "study": ("study_app.cli", "build, serve, export and close user studies (desktop ranking, VR pairwise)"),
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
        code = int(args._run(args) or 0)
        sys.stdout.flush()  # inside the try: a closed pipe (`| head`) is handled below
        return code
    except BrokenPipeError:
        # The reader went away (`stereobench study status ... | head`): not an error. Point stdout
        # at /dev/null so the interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a process killed by SIGPIPE
    except StereobenchError as exc:
        if os.environ.get("STEREOBENCH_DEBUG"):
            raise
        # One line, whatever the message holds (a path with a newline, a library's text).
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except OSError as exc:
        # Disk full, permission denied, a vanished file: the environment's problem, not a bug.
        # Every writer in the suite is atomic, so what completed is kept.
        if os.environ.get("STEREOBENCH_DEBUG"):
            raise
        print(f"error: {os_error_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; completed results are kept, rerun the same command to resume", file=sys.stderr)
        return 130


_FIXES: dict[int, str] = {
    errno.ENOSPC: "the disk is full: free space there",
    errno.EACCES: "permission denied: fix the permissions or choose another folder",
    errno.EPERM: "operation not permitted: fix the permissions or choose another folder",
    errno.EROFS: "the filesystem is read-only: choose a writable folder",
    errno.EISDIR: "a folder is where a file must be written: remove or rename that folder, or choose another path",
    errno.ENOTDIR: "a file is where a folder is needed: remove or rename that file, or choose another path",
    errno.ENOENT: "it does not exist: check the path",
    errno.ENAMETOOLONG: "the path is too long: choose a shorter one",
    errno.EEXIST: "it already exists: remove it or choose another path",
}
if hasattr(errno, "EDQUOT"):
    _FIXES[errno.EDQUOT] = "the disk quota is exceeded: free space there"

_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.\d+\.[A-Za-z0-9_]+\.tmp$")


def _user_path(name: object) -> str | None:
    """The path the user knows: a writer's temporary file ``.x.<pid>.<rand>.tmp`` names ``x``."""
    if name is None:
        return None
    path = os.fsdecode(name) if isinstance(name, (bytes, os.PathLike)) else str(name)
    head, tail = os.path.split(path)
    match = _TEMP_NAME.match(tail)
    return os.path.join(head, match["name"]) if match else path


def os_error_message(exc: OSError) -> str:
    """One line for an OSError of the environment: the real cause, the user's path and the fix,
    e.g. ``Is a directory: results/runs/x/rows.jsonl; a folder is where a file must be written:
    ...; then rerun the same command (completed results are kept)``."""
    cause = exc.strerror or str(exc) or type(exc).__name__
    paths = [p for p in (_user_path(getattr(exc, "filename", None)), _user_path(getattr(exc, "filename2", None))) if p]
    where = f": {' -> '.join(dict.fromkeys(paths))}" if paths else ""
    fix = _FIXES.get(exc.errno, "fix the cause")
    return f"{cause}{where}; {fix}, then rerun the same command (completed results are kept)"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
