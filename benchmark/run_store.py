"""The run store: :class:`RunDir` is the one owner of a run folder.

Layout of a run (``<root>`` is ``results/runs`` by default; see results/README.md)::

    <root>/<run_id>/manifest.json          provenance and status (benchmark.provenance.RunManifest)
    <root>/<run_id>/manifest-rank<k>.json  provenance of rank / shard k > 0 of a sharded run
    <root>/<run_id>/rows.jsonl             rows of a single-process run (benchmark.results)
    <root>/<run_id>/rows-rank<k>.jsonl     rows of rank k of a sharded run (all are read and merged)
    <root>/<run_id>/run.lock               owner of a running run (pid, host, start); run-shard<k>.lock per shard
    <root>/<run_id>/leaderboard/           the run's leaderboard (Markdown, CSV, HTML, plots)
    <root>/<run_id>/videos/<dataset>/<clip>/<name>.mp4   optional saved videos; ``name`` is a
                                           method label or ``left``, ``warped[-<warp>]``,
                                           ``mask[-<warp>]``, ``gt``

Everything that reads or writes these paths goes through :class:`RunDir` (the runner, the
results table, provenance, the leaderboard and the study builder), so the layout lives here only.

Saved-video paths can never leave the run folder: dataset and clip names (which may be a user's
absolute path, ``..`` or contain separators) are turned into single safe path components by
:func:`safe_component`.

One owner per run: :meth:`RunDir.lock` takes an exclusive ``flock`` on ``run.lock`` and writes the
owner's pid, host and start time into it. The kernel drops the lock when its owner dies (even by
SIGKILL), so a lock file left by a dead process is stale and simply taken over; a live owner makes
a second process refuse with one line naming it (or wait, ``wait=True``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import socket
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: pid-file locking only
    fcntl = None

from benchmark.errors import StereobenchError, did_you_mean
from benchmark.fileio import atomic_write_bytes, pid_alive, sweep_orphaned_temp_files
from benchmark.results import (ROWS_FILE, ReadReport, ResultRow, ResultsWriter, completed_pairs, manifest_json, read_rows,
                               read_run, report_read, rows_files, rows_to_frame,
                               strip_dataset_prefix)

DEFAULT_ROOT = Path("results/runs")
MANIFEST_FILE = "manifest.json"
LOCK_FILE = "run.lock"
VIDEOS_DIR = "videos"
LEADERBOARD_DIR = "leaderboard"
VIDEO_SUFFIX = ".mp4"


class RunStatus(str, Enum):
    """``status`` of a run's manifest.

    - ``running``: started and not finished; a run killed by anything (even SIGKILL) keeps it, so
      the same command resumes it.
    - ``finished``: every pair's latest result is complete and not an error.
    - ``finished-with-errors``: ended with pairs whose latest result is an error; the same command
      (overwrite ``only-missing``) resumes it and retries exactly those pairs.
    - ``failed``: stopped by a problem of the environment (full disk, permissions); resumable.
    """

    RUNNING = "running"
    FINISHED = "finished"
    FINISHED_WITH_ERRORS = "finished-with-errors"
    FAILED = "failed"


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]")


def safe_component(name: str) -> str:
    """``name`` as ONE relative path component that stays inside its parent folder.

    Plain names (``synthetic``, ``scene-000``, ``middlebury-motorcycle``) are kept as they are.
    Anything else (separators, an absolute path, ``..``, leading dots, spaces, non-ASCII) is
    replaced character-wise by ``_`` and suffixed with 8 hex digits of its SHA-256, so two
    different names never share a folder: ``"/data/my videos"`` -> ``"_data_my_videos-1f0c..."``.
    """
    text = str(name)
    cleaned = _UNSAFE.sub("_", text).lstrip(".") or "_"
    if cleaned == text and text not in (".", ".."):
        return text
    return f"{cleaned[:80]}-{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def check_run_id(run_id: str) -> str:
    """A run id must be a plain folder name; raises StereobenchError otherwise."""
    if (not isinstance(run_id, str) or not run_id or "/" in run_id or "\\" in run_id or run_id.startswith(".")
            or any(c.isspace() for c in run_id) or len(run_id) > 200 or "\x00" in run_id):
        raise StereobenchError(f"run id {run_id!r} must be a plain folder name (no '/', no spaces, not starting "
                               "with '.'); drop --run-id to get a fresh one")
    return run_id


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id: UTC timestamp + 6 random hex digits, e.g. ``20250101-120000-3fa9c1``."""
    import secrets

    now = now or datetime.now(timezone.utc)
    return f"{now.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def run_start_time(data: dict[str, Any] | None) -> float | None:
    """UNIX time a run started, from its manifest: ``extra.started_unix`` (sub-second, written by
    the runner) else ``started_at`` (ISO UTC, whole seconds); None when neither is there."""
    data = data or {}
    precise = (data.get("extra") or {}).get("started_unix")
    if isinstance(precise, (int, float)):
        return float(precise)
    started = data.get("started_at")
    if isinstance(started, str) and started:
        try:
            stamp = datetime.fromisoformat(started.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()
    return None


# --------------------------------------------------------------------------------------------
# The lock
# --------------------------------------------------------------------------------------------
_NO_FLOCK_ERRNOS = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP}
_warned_no_flock: set[str] = set()


def _warn_no_flock(path: Path) -> None:
    folder = str(path.parent)
    if folder not in _warned_no_flock:
        _warned_no_flock.add(folder)
        warnings.warn(f"the filesystem of {folder} has no file locks; run ownership falls back to the pid "
                      f"recorded in {path.name} (safe on one machine, not across machines)", stacklevel=3)


class RunLock:
    """Exclusive ownership of a run folder (see the module docstring); a context manager.

    The lock file holds JSON ``{"pid", "host", "started_at", "command"}`` of the owner and exists
    only while the run is owned (release removes it; a file left by a killed owner is stale: its
    flock died with the owner, and the next process takes it over).
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def owner(self) -> dict[str, Any] | None:
        """The recorded owner, or None (no file, empty, unreadable)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "null")
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def acquire(self, wait: bool = False, poll_s: float = 0.5, timeout_s: float | None = None) -> "RunLock":
        """Take the lock; with ``wait`` poll until the owner is done (or ``timeout_s``), else
        raise StereobenchError naming the owner."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if self._try_acquire():
                return self
            owner = self.owner() or {}
            if not wait or (deadline is not None and time.monotonic() > deadline):
                who = f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}"
                since = f" since {owner['started_at']}" if owner.get("started_at") else ""
                raise StereobenchError(
                    f"run {self.path.parent.name} is in use by {who}{since}; wait for it to finish "
                    f"(or pass --wait), or use --new / another --run-id")
            time.sleep(poll_s)

    def _try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                locked = fcntl is not None
                if locked:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        os.close(fd)
                        return False
                    except OSError as exc:
                        # Cluster filesystems without locks (Lustre without -o flock: ENOSYS; some
                        # NFS mounts: ENOLCK) must not stop every run: fall back to the pid record.
                        if exc.errno not in _NO_FLOCK_ERRNOS:
                            raise
                        _warn_no_flock(self.path)
                        locked = False
                if locked:
                    # The owner before us removes the file on release: if it did so between our
                    # open and our flock, we locked a file nobody else will see; start over.
                    try:
                        same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                    except FileNotFoundError:
                        same = False
                    if not same:
                        os.close(fd)
                        continue
                else:  # no flock here: trust the recorded pid
                    owner = self.owner()
                    pid = int((owner or {}).get("pid", 0) or 0)
                    if owner and owner.get("host") == socket.gethostname() and pid != os.getpid() and pid_alive(pid):
                        os.close(fd)
                        return False
                # Ours now; a record left by a dead owner (stale) is simply overwritten.
                record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                     "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                     "command": " ".join(sys.argv)[:500]}).encode()
                os.ftruncate(fd, 0)
                os.pwrite(fd, record, 0)
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            return True

    def release(self) -> None:
        """Remove the lock file, then drop the lock (in this order, so that nobody can lock the
        file we are about to remove; see :meth:`_try_acquire`)."""
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        if not self.held:
            self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


# --------------------------------------------------------------------------------------------
# The run folder
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SavedVideo:
    """One saved video of a run: ``dataset`` / ``clip`` / ``name`` (a method label, ``left``,
    ``warped``...) as the rows name them when the rows know them, else the file and folder names."""

    dataset: str
    clip: str
    name: str
    path: Path


class RunDir:
    """One run folder ``<root>/<run_id>``: its paths, manifest, status, rows files, saved videos
    and lock. Cheap to construct; nothing is created until something is written."""

    def __init__(self, root: str | os.PathLike, run_id: str):
        self.root = Path(root)
        self.run_id = check_run_id(run_id)
        self.path = self.root / run_id

    @classmethod
    def at(cls, path: str | os.PathLike) -> "RunDir":
        """The RunDir of an existing folder path (its parent is the root)."""
        path = Path(path)
        return cls(path.parent, path.name)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r}, {self.run_id!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # -- paths ---------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.path.is_dir()

    def manifest_path(self, rank: int = 0) -> Path:
        return self.path / (MANIFEST_FILE if rank == 0 else f"manifest-rank{int(rank)}.json")

    def rows_path(self, rank: int | None = None) -> Path:
        return self.path / (ROWS_FILE if rank is None else f"rows-rank{int(rank)}.jsonl")

    def lock_path(self, shard: int | None = None) -> Path:
        return self.path / (LOCK_FILE if shard is None else f"run-shard{int(shard)}.lock")

    @property
    def leaderboard_dir(self) -> Path:
        return self.path / LEADERBOARD_DIR

    @property
    def videos_dir(self) -> Path:
        return self.path / VIDEOS_DIR

    def rows_files(self) -> list[Path]:
        """Every rows file: ``rows.jsonl`` and ``rows-rank<k>.jsonl``, in a stable order."""
        return rows_files(self.path)

    def is_run(self) -> bool:
        """A folder with a rows file or a manifest (what :func:`list_runs` lists)."""
        return self.exists() and (bool(self.rows_files()) or self.manifest_path().is_file())

    # -- manifest ------------------------------------------------------------------------------
    def read_manifest(self, rank: int = 0, warn: bool = False) -> dict[str, Any] | None:
        """The manifest as a dict; None when absent or unreadable (``warn``: say so once)."""
        path = self.manifest_path(rank)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, UnicodeDecodeError):
            if warn:
                warnings.warn(f"unreadable manifest {path}; its run is loaded without provenance", stacklevel=2)
            return None
        return data if isinstance(data, dict) else None

    def write_manifest(self, data: dict[str, Any], rank: int = 0) -> Path:
        """Write the manifest atomically (readers see the old or the new one, never half)."""
        return atomic_write_bytes(self.manifest_path(rank), manifest_json(data).encode("utf-8"))

    @property
    def manifest(self) -> dict[str, Any] | None:
        return self.read_manifest()

    def status(self) -> RunStatus | None:
        """The manifest's status (unknown strings read as None)."""
        value = (self.read_manifest() or {}).get("status")
        try:
            return RunStatus(value)
        except ValueError:
            return None

    def config_hash(self) -> str | None:
        return ((self.read_manifest() or {}).get("extra") or {}).get("config_hash")

    def started(self) -> float:
        """Sort key "when did this run start" (:func:`run_start_time`, else the folder's mtime)."""
        started = run_start_time(self.read_manifest())
        if started is None:
            try:
                started = self.path.stat().st_mtime
            except OSError:
                started = float("-inf")
        return started

    # -- rows ----------------------------------------------------------------------------------
    def writer(self, rank: int | None = None):
        """A :class:`benchmark.results.ResultsWriter` appending to this run's rows file."""
        return ResultsWriter(self.path, rank=rank)

    def read_rows(self, dedupe: bool = True, report: bool = True):
        """The run's rows (every rows file, merged; see :func:`benchmark.results.read_rows`)."""
        return read_rows(self.path, dedupe=dedupe, report=report) if self.rows_files() else []

    def completed_pairs(self, include_errors: bool = True) -> set[tuple[str, str, str]]:
        """(method, dataset, clip) pairs with a complete batch (see ResultsWriter.completed_pairs)."""
        return completed_pairs(self.path, include_errors=include_errors)

    # -- saved videos --------------------------------------------------------------------------
    def video_path(self, dataset: str, clip: str, name: str) -> Path:
        """``<run>/videos/<dataset>/<clip>/<name>.mp4``, every part a :func:`safe_component`:
        never outside the run folder, whatever the names."""
        clip = strip_dataset_prefix(dataset, clip)
        return self.videos_dir / safe_component(dataset) / safe_component(clip) / (safe_component(name) + VIDEO_SUFFIX)

    def saved_videos(self, dataset: str | None = None, clip: str | None = None) -> list[SavedVideo]:
        """Every saved video (optionally of one dataset / clip), sorted by dataset, clip, name.
        Dataset and clip names are those of the rows when the rows name them (folder names are
        sanitised), else the folder names."""
        if not self.videos_dir.is_dir():
            return []
        names, methods = self._row_names()
        out = []
        for path in sorted(self.videos_dir.glob(f"*/*/*{VIDEO_SUFFIX}")):
            if path.name.startswith("."):
                continue  # a temporary file of a write in progress
            ds_dir, clip_dir = path.parent.parent.name, path.parent.name
            ds_name, clip_name = names.get((ds_dir, clip_dir), (ds_dir, clip_dir))
            if dataset is not None and ds_name != dataset:
                continue
            if clip is not None and clip_name != clip:
                continue
            stem = path.name[: -len(VIDEO_SUFFIX)]
            out.append(SavedVideo(ds_name, clip_name, methods.get(stem, stem), path))
        return out

    def saved_clips(self) -> list[tuple[str, str]]:
        """(dataset, clip) pairs that have at least one saved video."""
        return sorted({(v.dataset, v.clip) for v in self.saved_videos()})

    def saved_methods(self, dataset: str, clip: str) -> list[str]:
        """Method labels with a saved output for this clip (inputs and ground truth excluded)."""
        inputs = re.compile(r"^(left|gt|warped(-.+)?|mask(-.+)?)$")
        return sorted(v.name for v in self.saved_videos(dataset, clip) if not inputs.match(v.name))

    def _row_names(self) -> tuple[dict[tuple[str, str], tuple[str, str]], dict[str, str]]:
        """From the rows (quietly): ``{(safe dataset, safe clip): (dataset, clip)}`` and
        ``{safe method label: label}``, to name saved videos as the rows do."""
        try:
            rows = self.read_rows(report=False)
        except StereobenchError:
            return {}, {}
        pairs = {(safe_component(r.dataset), safe_component(r.clip)): (r.dataset, r.clip) for r in rows}
        return pairs, {safe_component(r.method): r.method for r in rows}

    # -- ownership and debris ------------------------------------------------------------------
    def lock(self, wait: bool = False, shard: int | None = None, timeout_s: float | None = None) -> RunLock:
        """Take this run's lock (``shard``: the lock of one ``--shard`` job, so array jobs of one
        run work side by side); raises StereobenchError naming a live owner unless ``wait``."""
        return RunLock(self.lock_path(shard)).acquire(wait=wait, timeout_s=timeout_s)

    def sweep_debris(self) -> list[Path]:
        """Remove temporary files of writers that died (killed mid-write) anywhere in the run."""
        return sweep_orphaned_temp_files(self.path, recursive=True)


# --------------------------------------------------------------------------------------------
# A folder of runs
# --------------------------------------------------------------------------------------------
def list_runs(root: str | os.PathLike = DEFAULT_ROOT) -> list[str]:
    """Run ids under ``root`` (folders with a rows file or a manifest), sorted by id."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for path in root.iterdir():
        try:
            if path.is_dir() and RunDir.at(path).is_run():
                out.append(path.name)
        except StereobenchError:  # a folder whose name cannot be a run id
            continue
    return sorted(out)


def resolve_runs(root: str | os.PathLike = DEFAULT_ROOT, runs: Sequence[str] | None = None) -> list[str]:
    """The run ids to load: all under ``root``, or ``runs`` checked to exist (a unique prefix of a
    run id is accepted; otherwise a did-you-mean error)."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise StereobenchError(f"results folder {root} is a file, not a folder of runs; pass the folder that "
                               "holds <run_id>/ folders (default results/runs)")
    available = list_runs(root)
    if not available:
        raise StereobenchError(f"no runs found under {root}; run `stereobench run` (or `make benchmark`) first, "
                               "or point --results at a folder of runs")
    if not runs:
        return available
    resolved = []
    for run_id in runs:
        if run_id not in available:
            # A unique prefix is enough (like git hashes): `--run 20250101-1200`.
            matches = [r for r in available if run_id and r.startswith(run_id)]
            if len(matches) != 1:
                if len(matches) > 1:
                    raise StereobenchError(f"run id prefix {run_id!r} is ambiguous under {root}: it matches "
                                           f"{', '.join(matches[:5])}; give more of the id")
                raise did_you_mean(run_id, available, "run id")
            run_id = matches[0]
        resolved.append(run_id)
    return list(dict.fromkeys(resolved))


def load_manifests(root: str | os.PathLike = DEFAULT_ROOT, runs: Sequence[str] | None = None) -> dict[str, dict]:
    """``{run_id: manifest dict}`` for the runs that have a readable manifest.json."""
    out: dict[str, dict] = {}
    for run_id in resolve_runs(root, runs):
        data = RunDir(root, run_id).read_manifest(warn=True)
        if data is not None:
            out[run_id] = data
    return out


def load_results(root: str | os.PathLike = "results/runs", runs: Sequence[str] | None = None,
                 include_markers: bool = False):
    """Every run under ``root`` (or only ``runs``) as ONE long pandas DataFrame.

    Granularity: one row per (run_id, method, dataset, clip, clip_protocol, warp_mode, kind,
    region, protocol, metric) -- :data:`KEY_FIELDS`. Columns are the fields of
    :class:`ResultRow`: ``run_id, method, dataset, clip, kind, metric, value, region, protocol,
    clip_protocol, warp_mode, device, error, dataset_revision, written_at, batch, schema_version``. ``value`` is float64
    (NaN for error/skip rows); quality rows have a region (``full``/``inside``/``outside``) and
    a scoring protocol (``paper``/``strict``), timing rows ``"n/a"`` for both. Completion markers
    are dropped unless ``include_markers``. Leaderboards are pivots of this table; never pack
    several numbers into one cell.

    The leaderboard needs ``root`` for manifests and saved videos: pass it explicitly
    (``build_leaderboard(..., results_root=root)``). Partial last lines are skipped and reported once; rows of pairs cut before their completion
    marker are dropped and reported; duplicate keys keep the last written row (reported).
    Raises StereobenchError when no runs exist or a requested run id is unknown.
    """
    root = Path(root)
    all_rows: list[ResultRow] = []
    rep = ReadReport()
    for run_id in resolve_runs(root, runs):
        rows, run_rep = read_run(root / run_id, dedupe=True, report=False)
        rep.merge(run_rep)
        all_rows.extend(r for r in rows if include_markers or r.kind != "marker")
    report_read(rep)
    return rows_to_frame(all_rows)


def find_resumable_run(root: str | os.PathLike, config_hash: str, overwrite: Any = "only-missing") -> str | None:
    """Newest run (by start time) under ``root`` with this config hash that is still ``running``
    (or was killed) or ``failed`` (the environment stopped it) or, under overwrite
    ``only-missing``, ``finished-with-errors``; None if there is none."""
    resumable = {RunStatus.RUNNING, RunStatus.FAILED}
    if str(getattr(overwrite, "value", overwrite)) == "only-missing":
        resumable.add(RunStatus.FINISHED_WITH_ERRORS)
    candidates = []
    for run_id in list_runs(root):
        run = RunDir(root, run_id)
        data = run.read_manifest()
        if not data or (data.get("extra") or {}).get("config_hash") != config_hash:
            continue
        status = data.get("status")
        # Manifests of old runs may hold other words ("interrupted"): treated as unfinished.
        if status in {s.value for s in RunStatus} and RunStatus(status) not in resumable:
            continue
        candidates.append((run.started(), run_id))
    return max(candidates)[1] if candidates else None


def newest_run(root: str | os.PathLike) -> str | None:
    """The run under ``root`` that started last (manifest ``started_at``; the run id breaks
    exact ties only, since ids need not be timestamps), or None."""
    runs = list_runs(root)
    if not runs:
        return None
    return max((RunDir(root, r).started(), r) for r in runs)[1]


__all__ = [
    "DEFAULT_ROOT", "LOCK_FILE", "MANIFEST_FILE", "ROWS_FILE", "RunDir", "RunLock", "RunStatus", "SavedVideo",
    "check_run_id", "find_resumable_run", "list_runs", "load_manifests", "load_results", "newest_run", "new_run_id",
    "resolve_runs", "run_start_time", "safe_component",
]
