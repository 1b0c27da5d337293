"""Leaderboard plots (matplotlib, Agg backend, PNG): quality vs latency with the Pareto front,
per-clip distributions, and a strip of frames of one clip (left, warped, each method, GT).

Every function takes plain data (no results-table knowledge) and writes one PNG; the leaderboard
(:mod:`benchmark.leaderboard`) decides what to plot and embeds the PNGs in its HTML page.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

import matplotlib

matplotlib.use("Agg")  # files only, never a display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402

from benchmark.fileio import atomic_write_bytes  # noqa: E402
from benchmark.run_store import RunDir  # noqa: E402

FrameLoader = Callable[[str, str, str], "np.ndarray | None"]
"""``loader(dataset, clip, name) -> (H, W, 3) float image in [0, 1] or None`` where ``name`` is a
method name or ``left`` / ``warped`` / ``mask`` / ``gt``."""

STRIP_INPUTS = ("left", "warped", "mask")


def pareto_front(cost: Sequence[float], quality: Sequence[float], higher_is_better: bool) -> list[int]:
    """Indices of the points no other point dominates (lower or equal cost and better or equal
    quality, one of them strictly), sorted by cost. NaN points are never on the front."""
    cost = np.asarray(cost, dtype=float)
    quality = np.asarray(quality, dtype=float)
    q = quality if higher_is_better else -quality
    valid = np.isfinite(cost) & ~np.isnan(q)
    front = []
    for i in np.flatnonzero(valid):
        others = valid.copy()
        others[i] = False
        dominated = others & (cost <= cost[i]) & (q >= q[i]) & ((cost < cost[i]) | (q > q[i]))
        if not dominated.any():
            front.append(int(i))
    return sorted(front, key=lambda i: (cost[i], -q[i]))


def _save(fig, path: str | os.PathLike) -> Path:
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def quality_latency_scatter(
    panels: Sequence[Mapping], out_path: str | os.PathLike, title: str = "", latency_label: str = "seconds per clip",
) -> Path:
    """Quality vs latency, one panel per quality metric, log-scaled latency axis.

    ``panels``: dicts with ``metric_label`` (axis label with arrow), ``higher_is_better``,
    ``points`` = list of ``(method, latency_s, quality)`` measured here, and optionally
    ``reported`` = list of ``(label, latency_s, quality)`` reported in the paper (drawn hollow,
    in grey, never part of the Pareto front: other hardware, other data).
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        points = list(panel["points"])
        names = [p[0] for p in points]
        cost = np.array([p[1] for p in points], dtype=float)
        quality = np.array([p[2] for p in points], dtype=float)
        ax.scatter(cost, quality, s=36, zorder=3)
        for name, x, y in zip(names, cost, quality):
            if np.isfinite(x) and np.isfinite(y):
                ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        front = pareto_front(cost, quality, panel["higher_is_better"])
        if len(front) >= 1:
            ax.plot(cost[front], quality[front], "-", drawstyle="steps-post", color="tab:red", lw=1.2, zorder=2,
                    label="Pareto front")
        reported = list(panel.get("reported") or [])
        if reported:
            rx = np.array([r[1] for r in reported], dtype=float)
            ry = np.array([r[2] for r in reported], dtype=float)
            ax.scatter(rx, ry, s=36, facecolors="none", edgecolors="grey", zorder=3,
                       label="reported in paper (A100)")
            for label, x, y in zip([r[0] for r in reported], rx, ry):
                ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, -9), fontsize=6, color="grey")
        finite = np.concatenate([cost[np.isfinite(cost) & (cost > 0)],
                                 *([rx[np.isfinite(rx) & (rx > 0)]] if reported else [])])
        if finite.size:
            ax.set_xscale("log")
        ax.set_xlabel(latency_label)
        ax.set_ylabel(panel["metric_label"])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out_path)


def per_clip_distribution(
    panels: Sequence[Mapping], out_path: str | os.PathLike, title: str = "",
) -> Path:
    """Per-clip values per method: a box plot with every clip drawn as a jittered dot.

    ``panels``: dicts with ``metric_label`` and ``values`` = ``{method: 1-D array of per-clip values}``.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(max(4.0, 1.1 * _max_methods(panels)) * len(panels), 3.8),
                             squeeze=False)
    jitter = np.random.default_rng(0)  # fixed: plots are reproducible
    for ax, panel in zip(axes[0], panels):
        methods = list(panel["values"])
        data = [np.asarray(panel["values"][m], dtype=float) for m in methods]
        data = [d[np.isfinite(d)] for d in data]
        ax.boxplot(data, showfliers=False, widths=0.5)
        for k, values in enumerate(data, start=1):
            ax.scatter(k + jitter.uniform(-0.12, 0.12, size=values.size), values, s=10, alpha=0.6, zorder=3)
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(panel["metric_label"])
        ax.grid(True, axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out_path)


def _max_methods(panels: Sequence[Mapping]) -> int:
    return max((len(p["values"]) for p in panels), default=1)


def frame_strip(rows: Sequence[tuple[str, Sequence[tuple[str, np.ndarray]]]], out_path: str | os.PathLike,
                title: str = "") -> Path:
    """A grid of frames: one row per clip (``(row title, [(label, (H, W, 3) image in [0, 1])...])``)."""
    n_cols = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(2.1 * n_cols, 2.3 * len(rows)), squeeze=False)
    for r, (row_title, images) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(images):
                label, image = images[c]
                ax.imshow(np.clip(image, 0.0, 1.0), interpolation="nearest")
                ax.set_title(label, fontsize=7)
        axes[r][0].text(-0.08, 0.5, row_title, transform=axes[r][0].transAxes, rotation=90, va="center",
                        ha="right", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out_path)


def video_frame_loader(run_dirs: Mapping[str, RunDir | str | os.PathLike],
                       fallback_dirs: Sequence[RunDir | str | os.PathLike] = (),
                       frame: str | int = "middle") -> FrameLoader:
    """A :data:`FrameLoader` reading a run's saved videos through
    :meth:`benchmark.run_store.RunDir.video_path` (``<run>/videos/<dataset>/<clip>/<name>.mp4``).

    ``run_dirs`` maps a method to the run (a RunDir or its folder) its numbers come from; inputs (left, warped,
    mask, gt) and methods without an entry are looked up in ``fallback_dirs`` in order. Returns
    the middle frame (or frame index ``frame``) as (H, W, 3) float in [0, 1]; None when absent or
    unreadable (the strip is then skipped or drawn without that panel).
    """
    def load(dataset: str, clip: str, name: str) -> np.ndarray | None:
        candidates = ([run_dirs[name]] if name in run_dirs else []) + list(fallback_dirs)
        for run_dir in candidates:
            run = run_dir if isinstance(run_dir, RunDir) else RunDir.at(run_dir)
            path = run.video_path(dataset, clip, name)
            if path.is_file():
                try:
                    from benchmark.video_io import read_video

                    frames = read_video(path).frames
                except Exception:  # noqa: BLE001 - a broken preview must not break the leaderboard
                    continue
                index = frames.shape[0] // 2 if frame == "middle" else min(int(frame), frames.shape[0] - 1)
                return frames[index].permute(1, 2, 0).float().numpy()
        return None

    return load


def strip_images(loader: FrameLoader, dataset: str, clip: str, methods: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    """The frames of one clip for a strip, in order left, warped, mask, each method, GT; absent
    ones are left out. Empty when no method's frame exists (nothing worth drawing)."""
    images: list[tuple[str, np.ndarray]] = []
    found_method = False
    for name in (*STRIP_INPUTS, *methods, "gt"):
        image = loader(dataset, clip, name)
        if image is None:
            continue
        image = np.asarray(image, dtype=np.float32)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        if image.max() > 1.5:  # uint8-style loaders
            image = image / 255.0
        found_method |= name in methods
        images.append(("GT right" if name == "gt" else name, image))
    return images if found_method else []
