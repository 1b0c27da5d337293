"""User-facing errors.

Anything a user can cause (bad input, a missing file, an unknown name) raises
:class:`StereobenchError` with a one-line message that names the problem and the fix. The CLI
prints it as ``error: <message>`` without a traceback and exits with status 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class StereobenchError(Exception):
    """A problem the user can fix; the message is one line naming the problem and the fix."""


def did_you_mean(name: str, choices: Iterable[str], what: str) -> StereobenchError:
    """Build the error for an unknown ``name`` among ``choices`` (e.g. ``what="method"``)."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return StereobenchError(f"unknown {what} {name!r}.{hint} Choose one of: {', '.join(choices)}")
