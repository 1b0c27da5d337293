"""One assertion for every bad-input test: the CLI promise.

A user's mistake ends with exactly one line on stderr that starts with ``error:``, exit status 2,
no traceback, and nothing already computed lost. :func:`assert_clean_error` runs the real
``stereobench`` entry point in-process (``benchmark.cli.main``), so hundreds of cases stay cheap;
:func:`assert_clean_error_subprocess` runs the installed console script for the few cases that
must be a real process (signals, locks held by another pid).

Usage::

    from tests.badinput import assert_clean_error

    def test_unknown_metric(capsys, tmp_path):
        line = assert_clean_error(["run", "--metrics", "psnrr", "--out", str(tmp_path)], capsys,
                                  contains="psnr")
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_ERROR = re.compile(r"^(error: |stereobench[\w\- ]*: error: )")


def _check(code: int | None, stderr: str, argv: Sequence[str], contains: str | Sequence[str] | None) -> str:
    shown = " ".join(map(str, argv))
    assert "Traceback" not in stderr, f"`stereobench {shown}` printed a traceback:\n{stderr}"
    lines = [line for line in stderr.splitlines() if line.strip()]
    # Warnings from libraries may precede; the error itself must be the last, single line. A
    # parse error keeps argparse's form: the typed command's usage, then `stereobench X: error: ...`.
    error_lines = [line for line in lines if _ERROR.match(line)]
    assert len(error_lines) == 1, f"`stereobench {shown}` must print one `error:` line, got:\n{stderr}"
    assert _ERROR.match(lines[-1]), f"`stereobench {shown}`: the error must be the last line:\n{stderr}"
    assert code == 2, f"`stereobench {shown}` exited {code}, expected 2; stderr:\n{stderr}"
    line = error_lines[0]
    if contains is not None:
        for needle in [contains] if isinstance(contains, str) else contains:
            assert needle.lower() in line.lower(), f"`stereobench {shown}`: {needle!r} not in {line!r}"
    return line


def assert_clean_error(argv: Sequence[str], capsys, contains: str | Sequence[str] | None = None) -> str:
    """Run ``stereobench argv`` in-process; assert the one-line error promise; return the line.

    ``contains``: text (or texts) the error line must mention, case-insensitive, e.g. the bad
    value or the suggested fix.
    """
    from benchmark.cli import main

    capsys.readouterr()  # drop what earlier steps printed
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse errors
        code = exc.code if isinstance(exc.code, int) else 2
    err = capsys.readouterr().err
    return _check(code, err, argv, contains)


def assert_clean_error_subprocess(argv: Sequence[str], contains: str | Sequence[str] | None = None,
                                  env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None,
                                  timeout: float = 300) -> str:
    """Run ``python -m benchmark.cli argv`` as a real process; same assertions."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("STEREOBENCH_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "benchmark.cli", *map(str, argv)], capture_output=True,
                          text=True, env=full_env, cwd=cwd or REPO, timeout=timeout)
    return _check(proc.returncode, proc.stderr, argv, contains)
