"""The results table: one long table of typed rows, written as JSON lines per run.

The run folder's layout (manifest, rows files, lock, saved videos) and everything about a run as a
whole (listing, resume lookup, manifests) belong to :mod:`benchmark.run_store`; this module is the
long table itself: rows, the crash-safe rows writer and the reader.

Granularity: one :class:`ResultRow` per (run_id, method, dataset, clip, clip_protocol, warp_mode,
kind, region, protocol, metric). ``kind`` says what the row is:

- ``"quality"``: a metric of :data:`benchmark.metrics.spec.METRIC_SPECS` for one clip, one
  region (``full`` / ``inside`` / ``outside``) and one scoring protocol (``paper`` / ``strict``).
- ``"timing"``: a named phase timing or memory figure of one (method, clip):
  ``time_<phase>_s`` (seconds for the clip), ``time_<phase>_s_per_frame`` (seconds per frame),
  ``peak_mem_growth_bytes`` (what the method's refine call added over the memory in use when it
  started) and ``peak_mem_bytes`` (the absolute peak during refine); region and protocol are
  ``"n/a"``. Directions are declared in
  :data:`TIMING_SPECS` / :func:`timing_spec` (lower is better), never guessed.
- ``"error"``: the method failed on this clip; ``error`` holds the message, ``metric`` names the
  phase that failed (``"error_refine"``...), ``value`` is None.
- ``"skip"``: the method did not run (e.g. weights missing); ``error`` says why and how to fix it.
- ``"marker"``: the completion marker of one (method, dataset, clip) pair, always the last row of
  the single :meth:`ResultsWriter.append` call that wrote that pair; ``value`` is the number of
  other rows in that batch. A pair counts as complete only when its marker was read back, so a
  writer killed mid-pair (even by SIGKILL) never leaves a pair that looks complete.

Writes are crash-safe: a batch of rows is one ``write()`` of complete lines on a file opened with
``O_APPEND``, then flushed and fsync'ed; a partially written last line (a killed writer, a full
disk) is ignored when reading and reported once; identical keys are de-duplicated (the last one
written wins) and reported.

Schema versions: 1 had only ``peak_mem_bytes`` (the absolute peak, same meaning as now); 2 adds
``peak_mem_growth_bytes``. Version-1 rows read unchanged (they simply have no growth row).

Non-finite values are stored as the JSON strings ``"nan"``, ``"inf"``, ``"-inf"`` (strict JSON
has no such numbers) and read back as floats.
"""

from __future__ import annotations

import dataclasses
import json

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: O_APPEND single writes only
    fcntl = None
import logging
import math
import os
import re
import secrets
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from benchmark.errors import StereobenchError
from benchmark.fileio import atomic_write_bytes
from benchmark.metrics.spec import MetricSpec

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
"""Version of :class:`ResultRow`; bump when a field changes meaning. Rows carry it. 2: timing rows
gained ``peak_mem_growth_bytes`` next to the absolute ``peak_mem_bytes``."""

ROWS_FILE = "rows.jsonl"
NA = "n/a"
MARKER_METRIC = "pair_complete"

Kind = Literal["quality", "timing", "error", "skip", "marker"]
KINDS: tuple[str, ...] = ("quality", "timing", "error", "skip", "marker")

KEY_FIELDS: tuple[str, ...] = (
    "run_id", "method", "dataset", "clip", "clip_protocol", "warp_mode", "kind", "region", "protocol", "metric",
)
"""The fields that identify a row (its granularity); two rows with the same key are duplicates."""


# --------------------------------------------------------------------------------------------
# Timing metrics: declared directions and units (the leaderboard never guesses).
# --------------------------------------------------------------------------------------------
_TIME_RE = re.compile(r"^time_(?P<phase>[a-z0-9]+)_s(?P<per_frame>_per_frame)?$")

TIMING_SPECS: dict[str, MetricSpec] = {
    "peak_mem_growth_bytes": MetricSpec(
        "peak_mem_growth_bytes", "Peak memory growth", False, (0.0, None), "bytes",
        "what the method's refine call needed above the memory in use when it started: CUDA peak "
        "allocation minus the allocation at the start on GPU, peak RSS minus the RSS at the start on CPU"),
    "peak_mem_bytes": MetricSpec(
        "peak_mem_bytes", "Peak memory (absolute)", False, (0.0, None), "bytes",
        "CUDA peak allocation on GPU, process peak RSS on CPU (everything the process holds: models, "
        "caches, the clip), during the method's refine call"),
}


def timing_spec(name: str) -> MetricSpec:
    """The declared spec of a timing metric: ``time_<phase>_s``, ``time_<phase>_s_per_frame``
    (seconds, lower is better) or one of :data:`TIMING_SPECS`. Raises StereobenchError otherwise."""
    if name in TIMING_SPECS:
        return TIMING_SPECS[name]
    match = _TIME_RE.match(name)
    if match is None:
        raise StereobenchError(
            f"unknown timing metric {name!r}: use time_<phase>_s, time_<phase>_s_per_frame or one of "
            f"{', '.join(sorted(TIMING_SPECS))}")
    phase = match["phase"]
    if match["per_frame"]:
        return MetricSpec(name, f"{phase} time per frame", False, (0.0, None), "s",
                          f"wall time of the {phase} phase per frame (after warm-up, device synchronised)")
    return MetricSpec(name, f"{phase} time per clip", False, (0.0, None), "s",
                      f"wall time of the {phase} phase for one clip (after warm-up, device synchronised)")


# --------------------------------------------------------------------------------------------
# The row
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResultRow:
    """One row of the long results table (see the module docstring for the granularity).

    Attributes:
        run_id: the run that produced the row (``new_run_id()``).
        method: method registry name, e.g. ``"m2svid"``.
        dataset: dataset registry name, e.g. ``"synthetic"``.
        clip: clip name inside the dataset (without the ``"<dataset>/"`` prefix), or ``"n/a"`` for
            a skip row that concerns the whole dataset.
        kind: ``"quality"``, ``"timing"``, ``"error"``, ``"skip"`` or ``"marker"``.
        metric: metric name (``METRIC_SPECS`` key, a timing name, ``error_<phase>``, ``skip``,
            ``pair_complete``).
        value: the number (float; None for error/skip rows). Units: the metric's spec.
        region: ``full`` / ``inside`` / ``outside`` for quality rows, ``"n/a"`` otherwise.
        protocol: scoring protocol ``paper`` / ``strict`` for quality rows, ``"n/a"`` otherwise.
        clip_protocol: name of the clip protocol (frames, fps, size), e.g. ``"paper"``, ``"quick"``.
        warp_mode: ``"shared"`` or ``"native"``.
        dataset_revision: the dataset's ``spec.revision`` when the row was computed (it encodes
            the data and the dataset options, e.g. size and seed of ``synthetic``); ``"n/a"`` in
            rows written before this field existed (the leaderboard then takes it from the run's
            manifest). Leaderboards never compare rows of different revisions.
        device: where the method ran, e.g. ``"cuda:0 (NVIDIA H100 80GB HBM3)"`` or ``"cpu (...)"``.
        error: message of an error or skip row, else None.
        written_at: UNIX time the row was written (orders duplicates across files).
        batch: id shared by the rows of one marker-terminated batch (:func:`pair_rows`); rows of a
            batch whose marker is missing (a killed writer) are dropped on read, rows of an older
            batch of the same pair are superseded by the newest complete batch. Empty for rows
            written outside a batch (e.g. skip rows), which are always kept.
        schema_version: :data:`SCHEMA_VERSION` of the writer.
    """

    run_id: str
    method: str
    dataset: str
    clip: str
    kind: str
    metric: str
    value: float | None = None
    region: str = NA
    protocol: str = NA
    clip_protocol: str = NA
    warp_mode: str = NA
    device: str = NA
    error: str | None = None
    dataset_revision: str = NA
    written_at: float = 0.0
    batch: str = ""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise StereobenchError(f"result row kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.value is not None and not isinstance(self.value, float):
            object.__setattr__(self, "value", float(self.value))

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(getattr(self, name) for name in KEY_FIELDS)

    @property
    def pair(self) -> tuple[str, str, str]:
        """(method, dataset, clip): the unit of work of the runner."""
        return (self.method, self.dataset, self.clip)

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["value"] = _encode_float(self.value)
        return json.dumps(data, sort_keys=True, allow_nan=False, ensure_ascii=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ResultRow":
        kwargs = {k: v for k, v in data.items() if k in _FIELD_NAMES}
        kwargs["value"] = _decode_float(kwargs.get("value"))
        # Version-1 rows mean what version-2 rows mean (2 only added a timing metric), so they are
        # read as written; the version they carry is kept.
        kwargs.setdefault("schema_version", 1)
        return cls(**kwargs)


ROW_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ResultRow))
_FIELD_NAMES = frozenset(ROW_COLUMNS)


def _encode_float(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _decode_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        return float(value)  # "nan", "inf", "-inf"
    return float(value)


# --------------------------------------------------------------------------------------------
# Building rows
# --------------------------------------------------------------------------------------------
def _now() -> float:
    return time.time()


def strip_dataset_prefix(dataset: str, clip: str) -> str:
    """``"synthetic/clip-000"`` -> ``"clip-000"`` (Clip.clip_id is dataset-qualified)."""
    prefix = dataset + "/"
    return clip[len(prefix):] if clip.startswith(prefix) else clip


def pair_rows(
    *, run_id: str, method: str, dataset: str, clip: str,
    clip_protocol: str = NA, warp_mode: str = NA, device: str = NA, dataset_revision: str = NA,
    quality: Iterable[Mapping[str, Any]] = (), timings: Mapping[str, float] | None = None,
    error: str | BaseException | None = None, error_phase: str = "refine",
) -> list[ResultRow]:
    """All rows of one (method, dataset, clip) pair, ending with its completion marker.

    Args:
        quality: metric rows as the metrics code returns them:
            ``{"metric", "region", "protocol", "value"}`` mappings.
        timings: ``{"time_refine_s": 1.2, "time_refine_s_per_frame": 0.075, "peak_mem_bytes": ...}``;
            every name must be a declared timing metric (:func:`timing_spec`).
        error: when the method failed on this clip: the exception or its message (an error row is
            written; quality rows may be empty).
        error_phase: which phase failed (``metric`` of the error row is ``error_<phase>``).
        dataset_revision: the dataset's ``spec.revision`` (see :class:`ResultRow`).

    Returns the rows, the last one being the ``marker`` row, ready for ``ResultsWriter.append``.
    """
    clip = strip_dataset_prefix(dataset, clip)
    common = dict(run_id=run_id, method=method, dataset=dataset, clip=clip, clip_protocol=clip_protocol,
                  warp_mode=warp_mode, device=device, dataset_revision=dataset_revision or NA, written_at=_now(),
                  batch=secrets.token_hex(8))
    rows: list[ResultRow] = []
    for item in quality:
        rows.append(ResultRow(kind="quality", metric=str(item["metric"]), value=item.get("value"),
                              region=str(item.get("region", "full")), protocol=str(item.get("protocol", NA)),
                              **common))
    for name, value in (timings or {}).items():
        timing_spec(name)  # raises for undeclared names
        rows.append(ResultRow(kind="timing", metric=name, value=value, **common))
    if error is not None:
        message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        rows.append(ResultRow(kind="error", metric=f"error_{error_phase}", error=" ".join(message.split())[:2000],
                              **common))
    rows.append(ResultRow(kind="marker", metric=MARKER_METRIC, value=float(len(rows)), **common))
    return rows


def skip_row(*, run_id: str, method: str, dataset: str, reason: str, clip: str = NA,
             clip_protocol: str = NA, warp_mode: str = NA, device: str = NA,
             dataset_revision: str = NA) -> ResultRow:
    """A row saying a method did not run on a dataset (or clip), with why and how to fix it."""
    return ResultRow(run_id=run_id, method=method, dataset=dataset, clip=strip_dataset_prefix(dataset, clip),
                     kind="skip", metric="skip", error=" ".join(reason.split()), clip_protocol=clip_protocol,
                     warp_mode=warp_mode, device=device, dataset_revision=dataset_revision or NA,
                     written_at=_now())


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------
def manifest_json(obj: Any) -> str:
    """``obj`` as the indented, key-sorted, strict JSON text manifests are written in (non-finite
    floats as strings, numpy/torch values as numbers and lists)."""
    return json.dumps(_json_safe(obj), indent=2, sort_keys=True, default=_json_default, allow_nan=False) + "\n"


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (temp file in the same folder, fsync,
    ``os.replace``); readers see the old or the new file, never half of one."""
    return write_text_atomic(path, manifest_json(obj))


def _json_default(obj: Any) -> Any:
    """numpy / torch scalars and arrays become numbers and lists, paths and the rest text."""
    if hasattr(obj, "tolist"):
        return _json_safe(obj.tolist())
    return str(obj)


def _json_safe(obj: Any) -> Any:
    """Non-finite floats -> "nan"/"inf"/"-inf" strings (strict JSON), recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return _encode_float(obj)
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def write_text_atomic(path: str | os.PathLike, text: str | bytes) -> Path:
    """Write text (or bytes) to ``path`` atomically (same guarantees as :func:`write_json_atomic`);
    a thin wrapper over :func:`benchmark.fileio.atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8") if isinstance(text, str) else text)


def rows_files(run_dir: str | os.PathLike) -> list[Path]:
    """Every rows file of a run: ``rows.jsonl`` and ``rows-rank<k>.jsonl``, in a stable order."""
    run_dir = Path(run_dir)
    files = [run_dir / ROWS_FILE] if (run_dir / ROWS_FILE).is_file() else []
    ranked = sorted(run_dir.glob("rows-rank*.jsonl"), key=lambda p: (len(p.name), p.name))
    return files + ranked


def _fix_for(exc: OSError) -> str:
    """What the user should do about a failed rows write, by its cause."""
    import errno

    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return "free space"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "fix the folder's permissions"
    if exc.errno == errno.EROFS:
        return "use a writable --out (this filesystem is read-only)"
    if exc.errno == errno.EISDIR:
        return "remove the folder that stands where the rows file belongs"
    return "check permissions and free space"


class ResultsWriter:
    """Appends rows of one run (one process / rank) to ``<run_dir>/rows[-rank<k>].jsonl``.

    Each :meth:`append` is one ``write()`` of complete lines on an ``O_APPEND`` descriptor under
    an exclusive ``flock``, followed by fsync: concurrent writers never interleave within a batch (on a local
    filesystem) and a killed writer leaves at most one partial last line, which readers skip.
    Write each (method, clip) pair with one call (:meth:`write_pair`, or :meth:`append` of
    :func:`pair_rows`), so its completion marker lands with its rows or not at all.
    """

    def __init__(self, run_dir: str | os.PathLike, rank: int | None = None):
        self.run_dir = Path(run_dir)
        self.rank = rank
        self.path = self.run_dir / (ROWS_FILE if rank is None else f"rows-rank{int(rank)}.jsonl")
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StereobenchError(f"cannot create the results folder {self.run_dir}: {exc.strerror}; "
                                   "choose a writable --results folder") from exc

    def append(self, rows: Iterable[ResultRow | Mapping[str, Any]]) -> int:
        """Append rows (ResultRow or dicts with its fields) in one atomic write; returns how many."""
        rows = [r if isinstance(r, ResultRow) else ResultRow.from_dict(r) for r in rows]
        if not rows:
            return 0
        payload = "".join(row.to_json() + "\n" for row in rows).encode("utf-8")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StereobenchError(f"cannot write results to {self.path}: {exc.strerror}; "
                                   f"{_fix_for(exc)}, then rerun to resume") from exc
        try:
            # An advisory lock makes the tail check and the write one step for every writer of
            # this file (without it a writer could see another's batch half-way and add a blank line).
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            self._repair_tail(fd)
            written = 0
            while written < len(payload):  # a regular file write is complete unless the disk fills
                written += os.write(fd, payload[written:])
            os.fsync(fd)
        except OSError as exc:
            raise StereobenchError(f"writing results to {self.path} failed: {exc.strerror}; completed "
                                   f"rows are kept, {_fix_for(exc)} and rerun the same command to resume") from exc
        finally:
            os.close(fd)
        return len(rows)

    def _repair_tail(self, fd: int) -> None:
        """If the file ends in a partial line (an earlier writer was killed), start on a fresh line
        so the partial line stays a single unreadable line instead of corrupting our first row."""
        size = os.fstat(fd).st_size
        if size == 0:
            return
        with open(self.path, "rb") as handle:
            handle.seek(size - 1)
            if handle.read(1) != b"\n":
                os.write(fd, b"\n")

    def write_pair(self, **kwargs: Any) -> list[ResultRow]:
        """``append(pair_rows(**kwargs))``: every row of one (method, clip) pair plus its marker."""
        rows = pair_rows(**kwargs)
        self.append(rows)
        return rows

    def completed_pairs(self, include_errors: bool = True) -> set[tuple[str, str, str]]:
        """(method, dataset, clip) pairs of this run (all ranks) whose marker was written.

        With ``include_errors=False`` a pair whose latest batch recorded an error is not counted
        as complete (so a resumed run retries it).
        """
        return completed_pairs(self.run_dir, include_errors=include_errors)


def completed_pairs(run_dir: str | os.PathLike, include_errors: bool = True) -> set[tuple[str, str, str]]:
    """See :meth:`ResultsWriter.completed_pairs`."""
    rows, _ = read_run(Path(run_dir), dedupe=True, report=False)
    markers = {row.pair: row for row in rows if row.kind == "marker"}
    counts: dict[tuple[str, str, str], int] = {}
    errored: set[tuple[str, str, str]] = set()
    for row in rows:
        if row.kind in _BATCH_KINDS and row.pair in markers and row.batch == markers[row.pair].batch:
            counts[row.pair] = counts.get(row.pair, 0) + 1
            if row.kind == "error":
                errored.add(row.pair)
    # The count check guards against a marker that survived without its rows (it cannot with one
    # write per batch, but a hand-edited or half-copied file could do it).
    done = {pair for pair, marker in markers.items() if counts.get(pair, 0) >= int(marker.value or 0)}
    if not include_errors:
        done -= errored
    return done


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
_BATCH_KINDS = ("quality", "timing", "error")


@dataclass
class ReadReport:
    """What reading skipped: partial / unreadable lines, rows of batches without a marker
    (a writer killed mid-pair), superseded batches and duplicate keys."""

    broken_lines: list[tuple[str, int]] = field(default_factory=list)
    incomplete_rows: int = 0
    superseded_rows: int = 0
    duplicates: int = 0

    def merge(self, other: "ReadReport") -> None:
        self.broken_lines += other.broken_lines
        self.incomplete_rows += other.incomplete_rows
        self.superseded_rows += other.superseded_rows
        self.duplicates += other.duplicates


def read_rows(path: str | os.PathLike, dedupe: bool = True, report: bool = True) -> list[ResultRow]:
    """Rows of one rows file or of a run folder (all its rows files, merged).

    - A line that is not complete JSON (a writer killed mid-line) is skipped and reported once
      (:func:`warnings.warn` and the log); every complete line is kept.
    - With ``dedupe`` (the default): rows of a batch whose completion marker is missing are
      dropped (their pair was cut; a resumed run rewrites it), an older batch of a pair is
      superseded by its newest complete batch, and remaining rows with the same key
      (:data:`KEY_FIELDS`) are merged, the last written winning; counts are reported.
      With ``dedupe=False`` every complete line is returned as written (for inspection).
    """
    path = Path(path)
    if path.is_dir():
        rows, _ = read_run(path, dedupe=dedupe, report=report)
        return rows
    if not path.is_file():
        raise StereobenchError(f"no results file at {path}; run `stereobench run` first or pass the right path")
    rep = ReadReport()
    rows = _read_file(path, rep)
    if dedupe:
        rows = _clean(rows, rep)
    if report:
        _report(rep)
    return rows


def _read_file(path: Path, rep: ReadReport) -> list[ResultRow]:
    rows: list[ResultRow] = []
    with open(path, "rb") as handle:
        data = handle.read()
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            if not isinstance(record, dict):
                raise ValueError("not an object")
            rows.append(ResultRow.from_dict(record))
        except (ValueError, TypeError, StereobenchError):
            rep.broken_lines.append((str(path), lineno))
    return rows


def _clean(rows: list[ResultRow], rep: ReadReport) -> list[ResultRow]:
    """Batch filtering, then key de-duplication (last written wins). Keeps file order."""
    # Stable order by write time, so "last" also holds across the rank files of a run.
    order = sorted(range(len(rows)), key=lambda i: rows[i].written_at)
    marker_batches = {rows[i].batch for i in order if rows[i].kind == "marker"}
    latest_batch: dict[tuple[str, str, str, str], str] = {}
    for i in order:
        row = rows[i]
        if row.kind == "marker":
            latest_batch[(row.run_id, *row.pair)] = row.batch
    keep: list[int] = []
    for i in order:
        row = rows[i]
        if row.batch and (row.kind in _BATCH_KINDS or row.kind == "marker"):
            if row.batch not in marker_batches:
                rep.incomplete_rows += 1
                continue
            if latest_batch.get((row.run_id, *row.pair)) != row.batch:
                rep.superseded_rows += 1
                continue
        keep.append(i)
    latest: dict[tuple, int] = {}
    for i in keep:
        if rows[i].key in latest:
            rep.duplicates += 1
        latest[rows[i].key] = i
    return [rows[i] for i in sorted(latest.values())]


def report_read(rep: ReadReport) -> None:
    """Warn once about what reading skipped (broken lines, cut pairs, duplicates)."""
    _report(rep)


def _report(rep: ReadReport) -> None:
    # One channel only (warnings): logging's last-resort handler AND warnings both printed every
    # message to stderr, so each appeared twice.
    broken = rep.broken_lines
    if broken:
        where = ", ".join(f"{p}:{n}" for p, n in broken[:5])
        more = f" (+{len(broken) - 5} more)" if len(broken) > 5 else ""
        message = (f"skipped {len(broken)} partially written or unreadable result line(s) at "
                   f"{where}{more}; complete rows are kept")
        log.debug(message)
        warnings.warn(message, stacklevel=3)
    if rep.incomplete_rows:
        message = (f"skipped {rep.incomplete_rows} result row(s) of (method, clip) pairs whose writer stopped "
                   "before their completion marker; rerun the same command to resume them")
        log.debug(message)
        warnings.warn(message, stacklevel=3)
    if rep.duplicates:
        message = f"merged {rep.duplicates} duplicate result row(s) (same key); the last written wins"
        log.debug(message)
        warnings.warn(message, stacklevel=3)
    if rep.superseded_rows:
        log.info("%d result row(s) superseded by a newer complete batch of the same pair", rep.superseded_rows)


def read_run(run_dir: str | os.PathLike, dedupe: bool = True, report: bool = True) -> tuple[list[ResultRow], ReadReport]:
    """Every rows file of a run folder, merged, and what reading skipped (:class:`ReadReport`);
    with ``report`` the skips are reported (once, as a warning)."""
    run_dir = Path(run_dir)
    rep = ReadReport()
    rows: list[ResultRow] = []
    for path in rows_files(run_dir):
        rows.extend(_read_file(path, rep))
    if dedupe:
        rows = _clean(rows, rep)
    if report:
        _report(rep)
    return rows, rep


def rows_to_frame(rows: Iterable[ResultRow]):
    """A pandas DataFrame with one column per :class:`ResultRow` field (see
    :func:`benchmark.run_store.load_results`)."""
    import pandas as pd

    rows = list(rows)
    # Column-wise construction: ~20x faster than dataclasses.asdict per row on 100k rows.
    columns = {name: [getattr(r, name) for r in rows] for name in ROW_COLUMNS}
    columns["value"] = [math.nan if r.value is None else r.value for r in rows]
    frame = pd.DataFrame(columns, columns=list(ROW_COLUMNS))
    frame["value"] = frame["value"].astype("float64")
    return frame
