"""Leaderboards: pivots of the long results table into Markdown, CSV and one self-contained HTML page.

One *board* per (dataset, dataset revision, clip protocol with its settings, warp mode): only
numbers computed on the same data (the revision encodes the dataset's options, e.g. size and seed
of ``synthetic``), cut to the same clips in the same way, are ever compared. The dataset revision
comes from each row (``dataset_revision``) or, for rows written before that field existed, from
the run manifest's ``datasets``; the clip protocol's settings (frames, fps, size...) from the
manifest's ``protocol``. Boards of one dataset that differ only there get titles that say how
(the revision, or the protocol's settings). On each board:

- an overall table, methods x metrics on the full frame, with timing columns (seconds per clip
  and per frame of the refinement step, peak memory, device) and error / skip counts;
- per scoring protocol (``paper``, ``strict``) a table for each region (``full``, ``inside``,
  ``outside``);
- a timing table with every named phase;
- for datasets the M2SVid paper evaluated on (Stereo4D, Ego4D), the paper's reported numbers as a
  separate table whose rows say "reported in paper (...)"; they are never mixed with measured
  rows, never bold, never on a measured Pareto front;
- plots: quality vs latency with the Pareto front, per-clip distributions, and a strip of frames
  of the best and the worst clip (when the run saved videos).

Cells show the mean over clips with a 95% percentile-bootstrap interval over clips
(:func:`bootstrap_ci`, seeded, vectorised). Directions come from
:data:`benchmark.metrics.spec.METRIC_SPECS` and :func:`benchmark.results.timing_spec`; a metric
without a declared direction gets no arrow and no bold (never guessed). The best measured mean of
each column is bold (ties: all of them).

When several runs hold the same board and method, the method's numbers come from its newest
run in the selection (latest manifest ``started_at``; without a manifest, the run's first row's
write time; never the run id's spelling); clips are never mixed across runs.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.errors import StereobenchError
from benchmark.metrics.spec import METRIC_SPECS, REGIONS, SCORING_PROTOCOLS, MetricSpec
from benchmark.paper_numbers import paper_numbers, paper_setting
from benchmark.results import NA, timing_spec, write_text_atomic

N_RESAMPLES = 2000
CONFIDENCE = 0.95
HEADLINE_TIMING = ("time_refine_s", "time_refine_s_per_frame", "peak_mem_growth_bytes")
"""Timing columns of the overall table. Memory is the refine call's GROWTH over the memory in
use when it started (:mod:`benchmark.timing`): the absolute peak includes everything the process
holds (on CPU ~3 GB of metric networks and caches for every method alike), so it cannot tell
methods apart. Runs written before the growth existed (results schema 1) show the absolute
peak instead, and the column header says which one it is."""
MEMORY_FALLBACK = {"peak_mem_growth_bytes": "peak_mem_bytes"}
PLOT_METRICS = ("psnr", "msssim", "lpips_vgg")


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------
def bootstrap_ci(values: Sequence[float] | np.ndarray, n_resamples: int = N_RESAMPLES,
                 confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap interval of the mean: ``(mean, low, high)``.

    Resamples the clips with replacement ``n_resamples`` times (one vectorised draw, chunked to
    bound memory) with ``numpy.random.default_rng(seed)``; NaNs are dropped first. One value
    gives ``(v, v, v)``; no value gives NaNs.
    """
    data = np.asarray(values, dtype=np.float64).ravel()
    data = data[~np.isnan(data)]
    n = data.size
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = float(data.mean())
    if n == 1 or np.all(data == data[0]):
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    chunk = max(1, (1 << 22) // n)  # at most ~4M indices (32 MB) at a time
    means = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        means[start:stop] = data[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return mean, float(low), float(high)


@dataclass(frozen=True)
class Stat:
    """Mean over clips with its bootstrap interval and the number of clips."""

    mean: float
    low: float
    high: float
    n: int


def _stat(values: np.ndarray, n_resamples: int, seed: int) -> Stat:
    mean, low, high = bootstrap_ci(values, n_resamples=n_resamples, seed=seed)
    return Stat(mean, low, high, int(np.sum(~np.isnan(np.asarray(values, dtype=float)))))


def metric_spec(metric: str, kind: str) -> MetricSpec | None:
    """The declared spec of a metric, or None when nothing declares it (no direction shown)."""
    if kind == "quality":
        return METRIC_SPECS.get(metric)
    try:
        return timing_spec(metric)
    except StereobenchError:
        return None


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------
@dataclass
class Cell:
    text: str
    bold: bool = False


@dataclass
class Table:
    """A rendered table: headers, rows of cells, a title and a note under it."""

    title: str
    headers: list[str]
    rows: list[list[Cell]]
    note: str = ""
    css_class: str = ""

    def markdown(self, level: int = 3) -> str:
        out = [f"{'#' * level} {self.title}", ""]
        out.append("| " + " | ".join(_md_escape(h) for h in self.headers) + " |")
        out.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.headers))) + "|")
        for row in self.rows:
            out.append("| " + " | ".join(f"**{_md_escape(c.text)}**" if c.bold and c.text else _md_escape(c.text)
                                         for c in row) + " |")
        if self.note:
            out += ["", self.note]
        return "\n".join(out) + "\n"

    def html(self, level: int = 3) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.headers)
        body = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in self.rows)
        note = f"<p class=\"note\">{html.escape(self.note)}</p>" if self.note else ""
        cls = f" class=\"{self.css_class}\"" if self.css_class else ""
        return (f"<h{level}>{html.escape(self.title)}</h{level}>\n<table{cls}><thead><tr>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table>\n{note}\n")


def _html_cell(cell: Cell) -> str:
    text = html.escape(cell.text)
    return f'<td class="best"><b>{text}</b></td>' if cell.bold and cell.text else f"<td>{text}</td>"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def format_number(value: float) -> str:
    """Compact fixed-point text: 4 significant-ish digits, ``inf``/``nan`` spelled out."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:.0f}"
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 10:
        return f"{value:.2f}"
    if magnitude >= 1:
        return f"{value:.3f}"
    return f"{value:.4f}"


def _scale(metric: str) -> tuple[float, str]:
    """Display scaling: bytes are shown in MiB."""
    return (1.0 / 2**20, "MiB") if metric.endswith("_bytes") else (1.0, "")


def format_stat(stat: Stat | None, metric: str = "") -> str:
    """``"25.61 [25.20, 26.02]"`` (mean [95% CI]); the mean alone for one clip."""
    if stat is None or math.isnan(stat.mean):
        return ""
    factor, _ = _scale(metric)
    if stat.n <= 1 or (stat.low == stat.high == stat.mean):
        return format_number(stat.mean * factor)
    return (f"{format_number(stat.mean * factor)} [{format_number(stat.low * factor)}, "
            f"{format_number(stat.high * factor)}]")


def column_header(metric: str, kind: str) -> str:
    """``"PSNR ↑ (dB)"``: display name, declared direction arrow, unit."""
    spec = metric_spec(metric, kind)
    if spec is None:
        return f"{metric} (direction not declared)"
    _, display_unit = _scale(metric)
    unit = display_unit or spec.unit
    arrow = "↑" if spec.higher_is_better else "↓"
    return f"{spec.display_name} {arrow}" + (f" ({unit})" if unit else "")


def _best_methods(stats: Mapping[str, Stat | None], spec: MetricSpec | None) -> set[str]:
    if spec is None:
        return set()
    means = {m: s.mean for m, s in stats.items() if s is not None and not math.isnan(s.mean)}
    if not means:
        return set()
    best = max(means.values()) if spec.higher_is_better else min(means.values())
    return {m for m, v in means.items() if v == best}


# --------------------------------------------------------------------------------------------
# Boards
# --------------------------------------------------------------------------------------------
@dataclass
class Board:
    """Everything about one (dataset, dataset revision, clip protocol + settings, warp mode)."""

    dataset: str
    clip_protocol: str
    warp_mode: str
    title: str
    methods: list[str]
    dataset_revision: str = NA
    protocol_settings: str = NA  # short hash of the manifest's clip-protocol settings (n/a: unknown)
    variant: str = ""  # set when several boards share dataset, clip protocol and warp mode (slug, title)
    quality: dict[tuple[str, str, str, str], Stat] = field(default_factory=dict)  # (method, metric, region, protocol)
    timing: dict[tuple[str, str], Stat] = field(default_factory=dict)  # (method, metric)
    per_clip: Any = None  # DataFrame of quality rows used (method, clip, metric, region, protocol, value)
    n_clips: dict[str, int] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    skips: dict[str, list[str]] = field(default_factory=dict)
    devices: dict[str, str] = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)  # method -> run_id its numbers come from

    @property
    def slug(self) -> str:
        parts = [self.dataset] + [p for p in (self.clip_protocol, self.warp_mode, self.variant) if p and p != NA]
        return "-".join("".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in p) for p in parts)

    def quality_metrics(self, region: str | None = None, protocol: str | None = None) -> list[str]:
        present = {k[1] for k in self.quality if (region is None or k[2] == region)
                   and (protocol is None or k[3] == protocol)}
        declared = [m for m in METRIC_SPECS if m in present]
        return declared + sorted(present - set(declared))

    def headline_protocol(self, region: str = "full") -> str | None:
        """Scoring protocol used for the overall table: ``paper`` when present (the full frame is
        the same under both protocols), else the first one with rows."""
        present = {k[3] for k in self.quality if k[2] == region}
        for protocol in (*SCORING_PROTOCOLS, *sorted(present)):
            if protocol in present:
                return protocol
        return None


def _protocol_text(protocol: Any) -> str:
    """``"8 frames, 256x256"`` from a manifest's protocol entry (dict or name)."""
    if not isinstance(protocol, Mapping):
        return ""
    parts = []
    frames = next((protocol[k] for k in ("num_frames", "frames", "n_frames") if protocol.get(k)), None)
    if frames:
        parts.append(f"{frames} frames")
    if protocol.get("fps"):
        parts.append(f"{protocol['fps']:g} fps" if isinstance(protocol["fps"], (int, float)) else f"{protocol['fps']} fps")
    size = next((protocol[k] for k in ("size", "crop", "crop_size", "resolution") if protocol.get(k)), None)
    if size is None and protocol.get("height") and protocol.get("width"):
        size = (protocol["height"], protocol["width"])
    if isinstance(size, (int, float)):
        parts.append(f"{int(size)}x{int(size)}")
    elif isinstance(size, (list, tuple)) and len(size) == 2:
        parts.append(f"{int(size[0])}x{int(size[1])}")
    return ", ".join(parts)


def board_title(dataset: str, clip_protocol: str, warp_mode: str, manifests: Mapping[str, dict] | None = None,
                run_ids: Sequence[str] = ()) -> str:
    """E.g. ``"synthetic - protocol quick (8 frames, 256x256) - warp shared"``."""
    detail = ""
    for run_id in reversed(list(run_ids)):
        manifest = (manifests or {}).get(run_id) or {}
        protocol = manifest.get("protocol")
        if isinstance(protocol, Mapping) and protocol.get("name") not in (None, clip_protocol):
            continue
        detail = _protocol_text(protocol)
        if detail:
            break
    title = dataset
    if clip_protocol and clip_protocol != NA:
        title += f" - protocol {clip_protocol}" + (f" ({detail})" if detail else "")
    if warp_mode and warp_mode != NA:
        title += f" - warp {warp_mode}"
    return title


BOARD_KEY = ("dataset", "dataset_revision", "clip_protocol", "protocol_settings", "warp_mode")
"""Rows compare only within one value of these columns (see the module docstring)."""


def protocol_settings_key(protocol: Any) -> str:
    """Short hash of a manifest's clip-protocol entry (all its settings), or ``"n/a"``."""
    if not isinstance(protocol, Mapping) or not protocol:
        return NA
    blob = json.dumps(protocol, sort_keys=True, default=str, separators=(",", ":"))
    import hashlib

    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def _with_board_columns(df, manifests: Mapping[str, dict] | None):
    """``df`` plus ``dataset_revision`` (rows', else the manifest's), ``protocol_settings`` and
    ``run_started`` (UNIX time: the manifest's start, else the run's first row's write time)."""
    from benchmark.run_store import run_start_time

    manifests = manifests or {}
    df = df.copy()
    if "dataset_revision" not in df.columns:
        df["dataset_revision"] = NA
    revision = df["dataset_revision"].fillna(NA).astype(str).replace("", NA)
    missing = revision == NA
    if missing.any():
        def from_manifest(run_id: str, dataset: str) -> str:
            entry = ((manifests.get(run_id) or {}).get("datasets") or {}).get(dataset)
            value = entry.get("revision") if isinstance(entry, Mapping) else None
            return str(value) if value else NA

        revision = revision.copy()
        revision[missing] = [from_manifest(r, d) for r, d in zip(df.loc[missing, "run_id"], df.loc[missing, "dataset"])]
    df["dataset_revision"] = revision
    settings = {r: protocol_settings_key((manifests.get(r) or {}).get("protocol")) for r in set(df["run_id"])}
    df["protocol_settings"] = df["run_id"].map(settings)
    first_row = df.groupby("run_id")["written_at"].min() if "written_at" in df.columns else {}
    started = {}
    for run_id in set(df["run_id"]):
        value = run_start_time(manifests.get(run_id))
        if value is None:
            value = float(first_row.get(run_id, math.nan)) if len(first_row) else math.nan
        started[run_id] = -math.inf if math.isnan(value) else value
    df["run_started"] = df["run_id"].map(started)
    return df


def _select_newest_runs(df):
    """Keep, per board and method, the rows of its newest run (latest ``run_started``, the run id
    only breaking exact ties)."""
    newest: dict[tuple, str] = {}
    runs = df[["method", "run_id", "run_started"]].drop_duplicates()
    for method, group in runs.groupby("method"):
        newest[method] = max(zip(group["run_started"], group["run_id"]))[1]
    return df[df["run_id"] == df["method"].map(newest)]


def _matches(column, value):
    """Rows whose ``column`` equals ``value`` or is unknown (``n/a``): for skip rows, which may
    not know the clip protocol, warp mode or revision and then belong to every such board."""
    return (column == value) | (column == NA)


def make_boards(df, manifests: Mapping[str, dict] | None = None, n_resamples: int = N_RESAMPLES,
                seed: int = 0) -> list[Board]:
    """Summarise the long results DataFrame (:func:`benchmark.run_store.load_results`) into boards,
    one per :data:`BOARD_KEY` value; ``manifests`` (``{run_id: manifest}``) give the protocol
    settings, start times and, for old rows, dataset revisions."""
    if df is None or len(df) == 0:
        raise StereobenchError("no result rows to build a leaderboard from; run `stereobench run` first")
    df = _with_board_columns(df[df["kind"] != "marker"], manifests)
    skips = df[df["kind"] == "skip"]
    measured = df[df["kind"] != "skip"]
    board_keys = sorted({tuple(k) for k in measured[list(BOARD_KEY)].itertuples(index=False)})
    for skip_key in sorted({tuple(k) for k in skips[list(BOARD_KEY)].itertuples(index=False)}):
        dataset, revision = skip_key[:2]
        if not any(k[0] == dataset and (revision == NA or k[1] in (revision, NA)) for k in board_keys):
            # a dataset where every method was skipped: a board of the skips' own protocol and warp
            # mode (with NA there the skip rows, which know them, would match no board)
            board_keys.append(skip_key)
    boards = []
    for key in board_keys:
        dataset, revision, clip_protocol, settings, warp_mode = key
        rows = measured[np.logical_and.reduce([measured[c] == v for c, v in zip(BOARD_KEY, key)])]
        board_skips = skips[(skips["dataset"] == dataset) & _matches(skips["dataset_revision"], revision)
                            & _matches(skips["clip_protocol"], clip_protocol)
                            & _matches(skips["protocol_settings"], settings)
                            & _matches(skips["warp_mode"], warp_mode)]
        rows = _select_newest_runs(rows) if len(rows) else rows
        board = _make_board(dataset, clip_protocol, warp_mode, rows, board_skips, manifests, n_resamples, seed)
        board.dataset_revision, board.protocol_settings = revision, settings
        boards.append(board)
    _disambiguate(boards)
    return boards


def _disambiguate(boards: list[Board]) -> None:
    """Boards that share a title (same dataset, clip protocol name and warp mode, but other data
    or other protocol settings) get the dataset revision, then the settings' hash, in their title
    and slug (plot file names)."""
    by_title: dict[str, list[Board]] = {}
    for board in boards:
        by_title.setdefault(board.title, []).append(board)
    for group in by_title.values():
        if len(group) < 2:
            continue
        revisions = {b.dataset_revision for b in group}
        for board in group:
            parts = []
            if len(revisions) > 1:
                parts.append(f"data {board.dataset_revision}")
            if len(revisions) == 1 or sum(b.dataset_revision == board.dataset_revision for b in group) > 1:
                parts.append(f"protocol settings {board.protocol_settings}")
            board.title += " - " + ", ".join(parts)
            board.variant = "-".join(p.split(" ")[-1] for p in parts)
    # Titles can differ only in the protocol's frames/size text, which the slug (plot file names)
    # does not carry: make slugs unique too.
    by_slug: dict[str, list[Board]] = {}
    for board in boards:
        by_slug.setdefault(board.slug, []).append(board)
    for group in by_slug.values():
        if len(group) < 2:
            continue
        distinct = len({b.protocol_settings for b in group}) == len(group)
        for index, board in enumerate(group, start=1):
            tag = board.protocol_settings if distinct else str(index)
            board.variant = f"{board.variant}-{tag}" if board.variant else tag


def _make_board(dataset, clip_protocol, warp_mode, rows, skips, manifests, n_resamples, seed) -> Board:
    runs = {m: r for m, r in rows.groupby("method")["run_id"].first().items()} if len(rows) else {}  # one run each
    quality_rows = rows[rows["kind"] == "quality"]
    timing_rows = rows[rows["kind"] == "timing"]
    error_rows = rows[rows["kind"] == "error"]
    board = Board(dataset, clip_protocol, warp_mode,
                  board_title(dataset, clip_protocol, warp_mode, manifests, sorted(set(runs.values()))),
                  methods=[], runs=runs)
    for (method, metric, region, protocol), group in quality_rows.groupby(["method", "metric", "region", "protocol"]):
        board.quality[(method, metric, region, protocol)] = _stat(group["value"].to_numpy(float), n_resamples, seed)
    for (method, metric), group in timing_rows.groupby(["method", "metric"]):
        board.timing[(method, metric)] = _stat(group["value"].to_numpy(float), n_resamples, seed)
    board.per_clip = quality_rows[["method", "clip", "metric", "region", "protocol", "value"]]
    for method, group in quality_rows.groupby("method"):
        board.n_clips[method] = int(group["clip"].nunique())
    if quality_rows.empty:  # no ground truth (footage without a right view): count the clips run
        for method, group in timing_rows.groupby("method"):
            board.n_clips[method] = int(group["clip"].nunique())
    for method, group in error_rows.groupby("method"):
        board.errors[method] = [f"{clip}: {msg}" for clip, msg in zip(group["clip"], group["error"])]
    for method, group in skips.groupby("method"):
        board.skips[method] = sorted(set(group["error"].fillna("")))
    device_rows = rows[(rows["device"] != NA) & rows["kind"].isin(["timing", "quality"])]
    for method, group in device_rows.groupby("method"):
        board.devices[method] = ", ".join(sorted(set(group["device"])))
    methods = sorted(set(rows["method"]) | set(skips["method"]))
    board.methods = _order_methods(board, methods)
    return board


def _order_methods(board: Board, methods: list[str]) -> list[str]:
    """Best first by the first declared full-frame metric (PSNR when present), then the rest."""
    protocol = board.headline_protocol()
    metrics = [m for m in board.quality_metrics("full", protocol) if m in METRIC_SPECS]
    if not metrics:
        return methods
    spec = METRIC_SPECS[metrics[0]]

    def key(method: str):
        stat = board.quality.get((method, metrics[0], "full", protocol))
        if stat is None or math.isnan(stat.mean):
            return (1, 0.0, method)
        return (0, -stat.mean if spec.higher_is_better else stat.mean, method)

    return sorted(methods, key=key)


def _timing_metrics(board: Board) -> list[str]:
    present = {k[1] for k in board.timing}

    def order(name: str):
        return (name.endswith("_per_frame"), name == "peak_mem_bytes", name)

    return sorted(present, key=order)


def overall_table(board: Board) -> Table:
    """Methods x full-frame quality metrics + headline timings + device + errors / skips."""
    protocol = board.headline_protocol()
    quality_metrics = board.quality_metrics("full", protocol) if protocol else []
    present = {k[1] for k in board.timing}
    timing_metrics = [m if m in present else MEMORY_FALLBACK.get(m, m) for m in HEADLINE_TIMING]
    timing_metrics = [m for m in timing_metrics if m in present]
    if not any(k[1] == "time_refine_s" for k in board.timing):  # fall back to any per-clip phase time
        timing_metrics = [m for m in _timing_metrics(board) if not m.endswith("_per_frame")][:1] + timing_metrics
    headers = (["Method", "clips"] + [column_header(m, "quality") for m in quality_metrics]
               + [column_header(m, "timing") for m in timing_metrics] + ["device", "errors", "skipped"])
    columns: list[tuple[str, str, dict[str, Stat | None]]] = []
    for metric in quality_metrics:
        columns.append((metric, "quality", {m: board.quality.get((m, metric, "full", protocol)) for m in board.methods}))
    for metric in timing_metrics:
        columns.append((metric, "timing", {m: board.timing.get((m, metric)) for m in board.methods}))
    best = [_best_methods(stats, metric_spec(metric, kind)) for metric, kind, stats in columns]
    rows = []
    for method in board.methods:
        row = [Cell(method), Cell(str(board.n_clips.get(method, 0)))]
        for (metric, _, stats), winners in zip(columns, best):
            row.append(Cell(format_stat(stats[method], metric), method in winners))
        row += [Cell(board.devices.get(method, "")), Cell(str(len(board.errors.get(method, [])))),
                Cell("yes" if method in board.skips and method not in board.n_clips else "")]
        rows.append(row)
    scope = (f"full frame, scoring protocol `{protocol}`" if protocol else
             "no scores: every method was skipped" if board.methods and set(board.methods) <= set(board.skips)
             and not board.n_clips and not board.timing else
             "no scores: these clips have no ground-truth right view, only timings")
    note = (f"Mean over clips [95% bootstrap interval]; {scope}. "
            "Bold = best measured value of the column (direction from the metric's declaration).")
    if "peak_mem_growth_bytes" in timing_metrics:
        note += (" Peak memory growth = what the refine call needed above the memory in use when it started "
                 "(CUDA allocation on GPU, resident set on CPU); the absolute peak is in the timing table.")
    elif "peak_mem_bytes" in timing_metrics:
        note += (" Peak memory here is the absolute peak during refine (older results without the growth "
                 "figure): on CPU it includes everything the process holds.")
    counts = {board.n_clips[m] for m in board.methods if board.n_clips.get(m)}
    if len(counts) > 1:
        note += (" Methods scored different numbers of clips (errors): their means are over different clip "
                 "sets, compare with care.")
    return Table(f"{board.title}: overall", headers, rows, note)


def region_table(board: Board, protocol: str, region: str) -> Table | None:
    metrics = board.quality_metrics(region, protocol)
    if not metrics:
        return None
    methods = [m for m in board.methods if any((m, x, region, protocol) in board.quality for x in metrics)]
    stats_by_metric = {x: {m: board.quality.get((m, x, region, protocol)) for m in methods} for x in metrics}
    best = {x: _best_methods(stats_by_metric[x], metric_spec(x, "quality")) for x in metrics}
    rows = [[Cell(m)] + [Cell(format_stat(stats_by_metric[x][m], x), m in best[x]) for x in metrics] for m in methods]
    headers = ["Method"] + [column_header(x, "quality") for x in metrics]
    return Table(f"{board.title}: region {region}, scoring protocol {protocol}", headers, rows)


def timing_table(board: Board) -> Table | None:
    metrics = _timing_metrics(board)
    if not metrics:
        return None
    methods = [m for m in board.methods if any((m, x) in board.timing for x in metrics)]
    stats = {x: {m: board.timing.get((m, x)) for m in methods} for x in metrics}
    best = {x: _best_methods(stats[x], metric_spec(x, "timing")) for x in metrics}
    rows = [[Cell(m)] + [Cell(format_stat(stats[x][m], x), m in best[x]) for x in metrics]
            + [Cell(board.devices.get(m, ""))] for m in methods]
    return Table(f"{board.title}: timings per phase", ["Method"] + [column_header(x, "timing") for x in metrics]
                 + ["device"], rows, "After warm-up, device synchronised. Peak memory growth: what the refine call "
                 "needed above the memory in use when it started; peak memory (absolute): CUDA peak allocation on "
                 "GPU, the process's peak resident set on CPU (models, caches and clips included).")


def paper_table(board: Board) -> Table | None:
    """The paper's reported numbers for this dataset, as their own clearly marked table."""
    numbers = paper_numbers(board.dataset)
    if not numbers:
        return None
    marker = paper_setting(board.dataset)
    metrics: list[str] = []
    for n in numbers:
        if n.metric not in metrics:
            metrics.append(n.metric)
    labels: dict[str, str] = {}
    values: dict[tuple[str, str], float] = {}
    sources: dict[str, set[str]] = {}
    for n in numbers:
        labels.setdefault(n.method, n.display_name)
        values[(n.method, n.metric)] = n.value
        sources.setdefault(n.method, set()).add(n.table)
    kinds = {m: ("quality" if m in METRIC_SPECS else "timing") for m in metrics}
    headers = ["Method (reported in paper)"] + [column_header(m, kinds[m]) for m in metrics] + ["source"]
    rows = []
    for method, label in labels.items():
        rows.append([Cell(f"{label} - {marker}")]
                    + [Cell(format_number(values[(method, m)]) if (method, m) in values else "") for m in metrics]
                    + [Cell(", ".join(sorted(sources[method])))])
    note = ("Numbers reported in the M2SVid paper (Shvetsova et al.), not measured by this suite: other data "
            "selection, other hardware (latency on an A100, 512x512, 16 frames, refinement step only). Not "
            "comparable to the measured rows above; never bold, never on the Pareto front.")
    return Table(f"{board.title}: {marker}", headers, rows, note, css_class="paper")


def issues_table(board: Board) -> Table | None:
    rows = []
    for method in board.methods:
        for reason in board.skips.get(method, []):
            rows.append([Cell(method), Cell("skipped"), Cell(reason)])
        errors = board.errors.get(method, [])
        for message in errors[:5]:
            rows.append([Cell(method), Cell("error"), Cell(message[:300])])
        if len(errors) > 5:
            rows.append([Cell(method), Cell("error"), Cell(f"... and {len(errors) - 5} more clips")])
    if not rows:
        return None
    return Table(f"{board.title}: skipped methods and errors", ["Method", "what", "details"], rows)


def summary_frame(boards: Sequence[Board]):
    """Tidy summary (one number per cell): board (its title), dataset, dataset_revision,
    clip_protocol, warp_mode, source, method, kind, metric, region, protocol,
    mean, ci_low, ci_high, n_clips, higher_is_better, unit, best, run_id."""
    import pandas as pd

    records = []
    for board in boards:
        base = {"board": board.title, "dataset": board.dataset, "dataset_revision": board.dataset_revision,
                "clip_protocol": board.clip_protocol, "warp_mode": board.warp_mode}
        groups: dict[tuple, dict[str, Stat]] = {}
        for (method, metric, region, protocol), stat in board.quality.items():
            groups.setdefault(("quality", metric, region, protocol), {})[method] = stat
        for (method, metric), stat in board.timing.items():
            groups.setdefault(("timing", metric, NA, NA), {})[method] = stat
        for (kind, metric, region, protocol), stats in groups.items():
            spec = metric_spec(metric, kind)
            winners = _best_methods(stats, spec)
            for method, stat in stats.items():
                records.append({**base, "source": "measured", "method": method, "kind": kind, "metric": metric,
                                "region": region, "protocol": protocol, "mean": stat.mean, "ci_low": stat.low,
                                "ci_high": stat.high, "n_clips": stat.n,
                                "higher_is_better": None if spec is None else spec.higher_is_better,
                                "unit": "" if spec is None else spec.unit, "best": method in winners,
                                "run_id": board.runs.get(method, "")})
        for n in paper_numbers(board.dataset):
            kind = "quality" if n.metric in METRIC_SPECS else "timing"
            spec = metric_spec(n.metric, kind)
            records.append({**base, "source": f"{paper_setting(board.dataset)}: {n.source}", "method": n.method,
                            "kind": kind, "metric": n.metric, "region": n.region, "protocol": n.protocol,
                            "mean": n.value, "ci_low": math.nan, "ci_high": math.nan, "n_clips": None,
                            "higher_is_better": None if spec is None else spec.higher_is_better,
                            "unit": "" if spec is None else spec.unit, "best": False, "run_id": ""})
    return pd.DataFrame.from_records(records)


# --------------------------------------------------------------------------------------------
# Plots of a board
# --------------------------------------------------------------------------------------------
def _board_plots(board: Board, plot_dir: Path, frame_loader) -> dict[str, Path]:
    from benchmark import plots

    written: dict[str, Path] = {}
    protocol = board.headline_protocol()
    metrics = [m for m in PLOT_METRICS if (m, "full", protocol) in {(k[1], k[2], k[3]) for k in board.quality}]
    if not metrics and protocol:
        metrics = [m for m in board.quality_metrics("full", protocol) if m in METRIC_SPECS][:3]
    latency_metric = "time_refine_s" if any(k[1] == "time_refine_s" for k in board.timing) else next(
        (m for m in _timing_metrics(board) if m.startswith("time_") and not m.endswith("_per_frame")), None)
    reported = {(n.method, n.metric): n for n in paper_numbers(board.dataset)}
    if metrics and latency_metric:
        panels = []
        for metric in metrics:
            spec = METRIC_SPECS[metric]
            points = []
            for method in board.methods:
                q = board.quality.get((method, metric, "full", protocol))
                t = board.timing.get((method, latency_metric))
                if q is not None and t is not None:
                    points.append((method, t.mean, q.mean))
            paper_points = [(n.display_name, reported[(m, "time_refine_s")].value, n.value)
                            for (m, x), n in reported.items() if x == metric and (m, "time_refine_s") in reported]
            if points:
                panels.append({"metric_label": column_header(metric, "quality"), "higher_is_better": spec.higher_is_better,
                               "points": points, "reported": paper_points})
        if panels:
            written["scatter"] = plots.quality_latency_scatter(
                panels, plot_dir / f"{board.slug}-quality-vs-latency.png", title=board.title,
                latency_label=f"{column_header(latency_metric, 'timing')} (log)")
    if metrics and board.per_clip is not None and len(board.per_clip):
        panels = []
        full = board.per_clip[(board.per_clip["region"] == "full") & (board.per_clip["protocol"] == protocol)]
        for metric in metrics:
            sub = full[full["metric"] == metric]
            values = {m: sub[sub["method"] == m]["value"].to_numpy(float) for m in board.methods if (sub["method"] == m).any()}
            if values:
                panels.append({"metric_label": column_header(metric, "quality"), "values": values})
        if panels:
            written["distribution"] = plots.per_clip_distribution(
                panels, plot_dir / f"{board.slug}-per-clip.png", title=f"{board.title}: per-clip values")
    if frame_loader is not None and metrics and board.per_clip is not None and len(board.per_clip):
        strip = _strip_for_board(board, metrics[0], protocol, frame_loader, plot_dir)
        if strip is not None:
            written["strip"] = strip
    return written


def _strip_for_board(board: Board, metric: str, protocol: str, frame_loader, plot_dir: Path) -> Path | None:
    from benchmark import plots

    sub = board.per_clip[(board.per_clip["metric"] == metric) & (board.per_clip["region"] == "full")
                         & (board.per_clip["protocol"] == protocol)]
    if sub.empty:
        return None
    clip_means = sub.groupby("clip")["value"].mean().dropna()
    if clip_means.empty:
        return None
    ascending = clip_means.sort_values(ascending=not METRIC_SPECS[metric].higher_is_better)
    picks = [("best", ascending.index[0])]
    if len(ascending) > 1:
        picks.append(("worst", ascending.index[-1]))
    methods = [m for m in board.methods if m in set(sub["method"])]
    rows = []
    for which, clip in picks:
        try:
            images = plots.strip_images(frame_loader, board.dataset, clip, methods)
        except Exception:  # noqa: BLE001 - a broken preview never breaks the leaderboard
            images = []
        if images:
            shapes = {img.shape[:2] for _, img in images}
            if len(shapes) == 1:
                rows.append((f"{which}: {clip} ({METRIC_SPECS[metric].display_name} {clip_means[clip]:.3g})", images))
    if not rows:
        return None
    return plots.frame_strip(rows, plot_dir / f"{board.slug}-frames.png",
                             title=f"{board.title}: best and worst clip by mean {METRIC_SPECS[metric].display_name}")


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1400px;
color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.3em;border-bottom:1px solid #ccc;margin-top:2em}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.86em}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
thead th{background:#f3f3f3}
td.best{background:#e8f5e9}
table.paper td{background:#fff8e1;color:#555;font-style:italic}
.note{color:#666;font-size:.82em;margin-top:-.5em}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.meta{color:#555;font-size:.85em}
"""


def _img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def build_leaderboard(df, out_dir: str | os.PathLike = "results/leaderboard", title: str | None = None, *,
                      manifests: Mapping[str, dict] | None = None, results_root: str | os.PathLike | None = None,
                      frame_loader=None, plots: bool = True, n_resamples: int = N_RESAMPLES,
                      seed: int = 0) -> dict[str, Path]:
    """Write the leaderboards of a results DataFrame (:func:`benchmark.run_store.load_results`).

    Args:
        df: the long results table.
        out_dir: folder for ``leaderboard.md`` (every table), ``summary.md`` (overall and paper
            tables only), ``leaderboard.csv`` (tidy: one number per cell, with CI columns),
            ``leaderboard.html`` (self-contained: inline CSS, plots embedded as base64) and
            ``plots/<board>-*.png``.
        title: page title; each board's own title names the dataset, clip protocol (with frames
            and size from the run manifests) and warp mode.
        manifests: ``{run_id: manifest}`` (:func:`benchmark.run_store.load_manifests`) for titles;
            default: read from ``results_root``.
        results_root: folder of runs, given explicitly (the frame is not asked where it came
            from); enables the manifests' titles and the frame strip from saved videos, read
            through :class:`benchmark.run_store.RunDir`. None: no manifests unless given, no strips.
        frame_loader: ``loader(dataset, clip, name) -> (H, W, 3) image or None``; overrides the
            video lookup (see :data:`benchmark.plots.FrameLoader`).
        plots: draw the plots (PNG + embedded in the HTML).
        n_resamples, seed: bootstrap settings.

    Returns ``{"markdown", "summary", "csv", "html", "plot:<board>:<kind>"...: path}``.
    """
    from benchmark.fileio import sweep_orphaned_temp_files
    from benchmark.run_store import RunDir

    out_dir = Path(out_dir)
    if manifests is None and results_root is not None and df is not None and len(df):
        manifests = {}
        for run_id in sorted(set(df["run_id"])):
            try:
                data = RunDir(results_root, run_id).read_manifest()
            except StereobenchError:  # not a valid run id: no manifest to read
                data = None
            if data is not None:
                manifests[run_id] = data
    blocker = next((p for p in [out_dir, *out_dir.parents] if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise StereobenchError(f"cannot write the leaderboard to {out_dir}: {blocker} is a file; pass another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StereobenchError(f"cannot create the leaderboard folder {out_dir}: {exc.strerror}; pass a writable --out")
    # Temporary files of plots / tables whose writer was killed earlier: remove them now.
    sweep_orphaned_temp_files(out_dir)
    sweep_orphaned_temp_files(out_dir / "plots")
    boards = make_boards(df, manifests, n_resamples=n_resamples, seed=seed)
    page_title = title or "stereobench leaderboard"
    written: dict[str, Path] = {}
    md_parts = [f"# {page_title}\n"]
    summary_parts = [f"# {page_title}\n"]
    html_parts = [f"<h1>{html.escape(page_title)}</h1>"]
    runs_used = sorted({r for b in boards for r in b.runs.values()})
    meta = f"Runs: {', '.join(runs_used) if runs_used else 'none'}."
    md_parts.append(meta + "\n")
    html_parts.append(f"<p class=\"meta\">{html.escape(meta)}</p>")
    for board in boards:
        md_parts.append(f"## {board.title}\n")
        summary_parts.append(f"## {board.title}\n")
        html_parts.append(f"<h2 id=\"{html.escape(board.slug)}\">{html.escape(board.title)}</h2>")
        main = overall_table(board)
        paper = paper_table(board)
        tables = [main] + ([paper] if paper else [])
        summary_parts += [t.markdown() for t in tables]
        for protocol in SCORING_PROTOCOLS + tuple(sorted({k[3] for k in board.quality} - set(SCORING_PROTOCOLS))):
            for region in REGIONS + tuple(sorted({k[2] for k in board.quality} - set(REGIONS))):
                table = region_table(board, protocol, region)
                if table is not None:
                    tables.append(table)
        for extra in (timing_table(board), issues_table(board)):
            if extra is not None:
                tables.append(extra)
        md_parts += [t.markdown() for t in tables]
        html_parts += [t.html() for t in tables]
        if plots:
            loader = frame_loader
            if loader is None and results_root is not None:
                from benchmark.plots import video_frame_loader

                root = Path(results_root)
                loader = video_frame_loader({m: RunDir(root, r) for m, r in board.runs.items()},
                                            [RunDir(root, r) for r in sorted(set(board.runs.values()), reverse=True)])
            board_plots = _board_plots(board, out_dir / "plots", loader)
            for kind, path in board_plots.items():
                written[f"plot:{board.slug}:{kind}"] = path
                md_parts.append(f"![{board.title} {kind}](plots/{path.name})\n")
                html_parts.append(_img_tag(path, f"{board.title} {kind}"))
    doc = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">" \
          f"<title>{html.escape(page_title)}</title><style>{_CSS}</style></head><body>\n" \
          + "\n".join(html_parts) + "\n</body></html>\n"
    written["markdown"] = write_text_atomic(out_dir / "leaderboard.md", "\n".join(md_parts))
    written["summary"] = write_text_atomic(out_dir / "summary.md", "\n".join(summary_parts))
    written["csv"] = write_text_atomic(out_dir / "leaderboard.csv", summary_frame(boards).to_csv(index=False))
    written["html"] = write_text_atomic(out_dir / "leaderboard.html", doc)
    return written


def leaderboard_from_runs(results_root: str | os.PathLike = "results/runs", runs: Sequence[str] | None = None,
                          out_dir: str | os.PathLike = "results/leaderboard", **kwargs: Any) -> dict[str, Path]:
    """Load runs (:func:`benchmark.run_store.load_results`) and :func:`build_leaderboard` them; what
    the runner calls at the end of a run and ``stereobench leaderboard`` runs."""
    from benchmark.run_store import load_manifests, load_results

    df = load_results(results_root, runs)
    manifests = load_manifests(results_root, runs)
    return build_leaderboard(df, out_dir, manifests=manifests, results_root=results_root, **kwargs)
