"""Small file utilities shared across the code base: atomic writes and file checksums.

Atomic writes follow the project rule "nothing already computed is lost": the data go to a
temporary file in the destination's own folder (same filesystem, so the rename is atomic),
are flushed and fsync'ed, and only then replace the destination with :func:`os.replace`.
Readers therefore see either the old file or the complete new one, never half of one; a
failure at any point removes the temporary file and leaves the old destination untouched.

Temporary files are named ``.<name>.<pid>.<random>.tmp``: a writer killed between creating and
renaming one (SIGKILL, power loss) leaves it behind, and the pid in the name lets
:func:`sweep_orphaned_temp_files` remove it later once that process is gone.

Errors keep the user's path: an ``OSError`` raised while writing names the destination (not the
temporary file), so the CLI's message points at what the user asked for.

Example::

    from benchmark.fileio import atomic_write_json, file_sha256
    atomic_write_json("results/run/manifest.json", {"ok": True}, indent=2)
    file_sha256("weights/alex.pt")  # -> 64 lowercase hex digits
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "file_sha256", "pid_alive",
           "sweep_orphaned_temp_files", "ENVIRONMENT_ERRNOS", "environment_error"]

ENVIRONMENT_ERRNOS = frozenset(
    code for code in (errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS, getattr(errno, "EDQUOT", None))
    if code is not None)
"""errno values that are the environment's fault (full disk or quota, permissions, read-only
filesystem): a run stops on them instead of recording one error row per pair."""


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates files with mode 0600; published files get the mode a plain open() would give.
_FILE_MODE = 0o666 & ~_current_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return ``path`` as a :class:`~pathlib.Path`.

    Parent folders are created. The temporary file ``.<name>.<random>.tmp`` lives next to the
    destination, is fsync'ed before ``os.replace`` and is removed if anything fails (including
    ``KeyboardInterrupt``), in which case an existing destination keeps its old content.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The pid in the name lets a later process sweep it when this one dies mid-write.
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), _FILE_MODE)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename in (tmp, None):
            # Name the user's file, not our temporary one (same errno, so the same subclass).
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` (encoded with ``encoding``, no newline translation) atomically to ``path``."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, obj: Any, **json_kwargs: Any) -> Path:
    """Write ``json.dumps(obj, **json_kwargs)`` atomically to ``path`` (exactly that text, no
    trailing newline added). ``obj`` is serialised before anything touches the disk, so an
    object that cannot be serialised raises without creating or changing any file."""
    return atomic_write_text(path, json.dumps(obj, **json_kwargs))


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of the file at ``path`` as 64 lowercase hex digits, read in ``chunk_size``-byte
    blocks so large files (model weights, videos) never sit in memory whole."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (signal 0 probes without signalling)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


# The suite's temporary names carry the writer's pid: atomic_write_bytes writes
# ``.<name>.<pid>.<random>.tmp``; the video writer ``.<name>.tmp-<pid>-<hex>[.<suffix>]`` (a file,
# or a folder of PNG frames).
_TEMP_NAMES = (re.compile(r"^\..+\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$"),
               re.compile(r"^\..+\.tmp-(?P<pid>\d+)-[0-9a-f]+(\.[A-Za-z0-9]+)?$"))


def _temp_owner(name: str) -> int | None:
    for pattern in _TEMP_NAMES:
        match = pattern.match(name)
        if match is not None:
            return int(match["pid"])
    return None


def sweep_orphaned_temp_files(folder: str | os.PathLike, recursive: bool = False, min_age_s: float = 60.0) -> list[Path]:
    """Remove the temporary files (and PNG-frame temp folders) of the suite's atomic writers whose
    writer process is dead.

    Only the suite's temporary names are considered (``.<name>.<pid>.<random>.tmp`` of
    :func:`atomic_write_bytes`, ``.<name>.tmp-<pid>-<hex>[.<suffix>]`` of the video writer); one
    is removed when no process ``pid`` exists here AND it is older than ``min_age_s`` seconds
    (the grace period protects a writer on another machine sharing the folder, whose pid means
    nothing here). Returns the removed paths; errors (a file vanishing meanwhile) are ignored.
    """
    import shutil

    folder = Path(folder)
    if not folder.is_dir():
        return []
    candidates = folder.rglob(".*") if recursive else folder.glob(".*")
    removed = []
    now = time.time()
    for path in list(candidates):
        pid = _temp_owner(path.name)
        if pid is None or pid_alive(pid):
            continue
        try:
            if now - path.stat().st_mtime < min_age_s:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.is_file():
                path.unlink()
            else:
                continue
            removed.append(path)
        except OSError:
            continue
    return removed


def environment_error(exc: BaseException | None) -> OSError | None:
    """The OSError of the environment (:data:`ENVIRONMENT_ERRNOS`) behind ``exc``, or None.

    Walks ``__cause__`` / ``__context__``, since libraries wrap the OS error (a cache writer's
    error, a video encoder's); a message saying "No space left on device" counts too, for
    libraries that keep only the text.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS:
            return exc
        if "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc):
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), getattr(exc, "filename", None))
        exc = exc.__cause__ or exc.__context__
    return None
