"""Small file utilities shared across the code base: atomic writes and file checksums.

Atomic writes follow the project rule "nothing already computed is lost": the data go to a
temporary file in the destination's own folder (same filesystem, so the rename is atomic),
are flushed and fsync'ed, and only then replace the destination with :func:`os.replace`.
Readers therefore see either the old file or the complete new one, never half of one; a
failure at any point removes the temporary file and leaves the old destination untouched.

Example::

    from benchmark.fileio import atomic_write_json, file_sha256
    atomic_write_json("results/run/manifest.json", {"ok": True}, indent=2)
    file_sha256("weights/alex.pt")  # -> 64 lowercase hex digits
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "file_sha256"]


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), _FILE_MODE)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
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
