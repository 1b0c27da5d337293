"""Import Stereo4D clips already rectified, in M2SVid's layout or the Stereo4D toolkit's
``processed/`` layout, into the prepared store (no VR180 video needed).

Accepted layouts under ``--root`` (a clip id is whatever precedes ``-left_rectified``)::

    left_rectified/<id>-left_rectified.mp4      M2SVid's data root (configs/testing/stereo4d.yaml)
    right_rectified/<id>-right_rectified.mp4
    <id>/<id>-left_rectified.mp4                 the toolkit's processed/<vid>/ folders (rectify.py)
    <id>/<id>-right_rectified.mp4
    <id>/<id>-flows_stereo.pkl                   (optional) the toolkit's SEA-RAFT flows

Disparity of the left view, per clip, from the first that applies (``--disparity auto``):
``disparity/<id>.npy`` (float (T, H, W) pixels, x_R = x_L - d, NaN or inf = invalid), the flow
pickle (``<root>/<id>/`` or ``--flows DIR``; the toolkit's validity rules,
:func:`benchmark.dataprep.stereo4d.disparity_from_flows`), else OpenCV SGBM with a left-right
check. Frames and frame rate are kept as they are (the toolkit writes 30 fps).

Splits written: ``m2svid-test`` / ``m2svid-val64`` for ids on M2SVid's lists (exact id match:
this layout uses M2SVid's own ``<ytid>-clip<N>`` names) and ``all``.

Example::

    stereobench prepare-data m2svid --root datasets/stereo4d --out data/stereo4d-m2svid --workers 4
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.datasets.prepared import (
    clip_is_prepared,
    reconcile_manifest,
    valid_clip_id,
    write_prepared_clip,
    write_split,
)
from benchmark.errors import StereobenchError

__all__ = ["M2SVidLayoutJob", "add_arguments", "find_clips", "run"]

LEFT_SUFFIX = "-left_rectified.mp4"
RIGHT_SUFFIX = "-right_rectified.mp4"


def find_clips(root: str | Path) -> dict[str, tuple[Path, Path]]:
    """clip id -> (left video, right video) in either layout; a left view without its right view
    is an error naming the file that is missing."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise StereobenchError(f"folder {root} does not exist; give M2SVid's data root (left_rectified/, "
                               f"right_rectified/) or the toolkit's processed/ folder")
    found: dict[str, tuple[Path, Path]] = {}
    candidates = sorted((root / "left_rectified").glob(f"*{LEFT_SUFFIX}")) + sorted(root.glob(f"*/*{LEFT_SUFFIX}"))
    for left in candidates:
        clip = left.name[: -len(LEFT_SUFFIX)]
        if left.parent.name == "left_rectified":
            right = root / "right_rectified" / f"{clip}{RIGHT_SUFFIX}"
        else:
            right = left.parent / f"{clip}{RIGHT_SUFFIX}"
        if clip in found:
            continue
        if not right.is_file():
            raise StereobenchError(f"{left} has no right view: {right} is missing")
        found[valid_clip_id(clip)] = (left, right)
    if not found:
        raise StereobenchError(f"no *{LEFT_SUFFIX} under {root}/left_rectified/ or {root}/<id>/; is this an M2SVid "
                               f"or Stereo4D-toolkit folder?")
    return found


def _frames_u8(path: Path) -> tuple[np.ndarray, float]:
    from benchmark.video_io import read_video

    video = read_video(path)
    frames = np.rint(video.frames.permute(0, 2, 3, 1).numpy() * 255.0).astype(np.uint8)
    return frames, float(video.fps)


@dataclass
class M2SVidLayoutJob:
    job_id: str
    left: str
    right: str
    root: str
    flows: str | None = None
    disparity: str = "auto"  # auto | npy | flows | sgbm
    max_disparity: int | None = None

    def is_done(self, out_root: Path) -> bool:
        return clip_is_prepared(out_root, self.job_id)

    def _sources(self) -> tuple[Path, Path | None]:
        npy = Path(self.root) / "disparity" / f"{self.job_id}.npy"
        flow = None
        for folder in [Path(self.root) / self.job_id] + ([Path(self.flows)] if self.flows else []):
            for candidate in (folder / f"{self.job_id}-flows_stereo.pkl", folder / self.job_id /
                              f"{self.job_id}-flows_stereo.pkl"):
                if candidate.is_file():
                    flow = candidate
                    break
            if flow is not None:
                break
        return npy, flow

    def run(self, out_root: Path) -> None:
        from benchmark.dataprep.stereo4d import disparity_from_flows, load_flow_pickle

        left, fps = _frames_u8(Path(self.left))
        right, _ = _frames_u8(Path(self.right))
        if left.shape != right.shape:
            raise StereobenchError(f"{Path(self.right).name} has shape {right.shape[:3]} but {Path(self.left).name} "
                                   f"has {left.shape[:3]}; the two views must match in frames and size")
        npy, flow = self._sources()
        mode = self.disparity
        if mode == "auto":
            mode = "npy" if npy.is_file() else "flows" if flow is not None else "sgbm"
        if mode == "npy":
            if not npy.is_file():
                raise StereobenchError(f"disparity file {npy} is missing (--disparity npy)")
            try:
                disparity = np.load(npy, allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                raise StereobenchError(f"cannot read {npy} ({type(exc).__name__}: {exc}); save float (T, H, W) "
                                       f"with numpy.save") from None
            if disparity.ndim == 4 and disparity.shape[1] == 1:
                disparity = disparity[:, 0]
            if disparity.shape != left.shape[:3] or disparity.dtype.kind != "f":
                raise StereobenchError(f"{npy.name} has {disparity.dtype} {disparity.shape}, expected float "
                                       f"{left.shape[:3]} to match the views")
        elif mode == "flows":
            if flow is None:
                raise StereobenchError(f"no {self.job_id}-flows_stereo.pkl under {self.root}/{self.job_id}/"
                                       + (f" or {self.flows}" if self.flows else "") + " (--disparity flows)")
            flows = load_flow_pickle(flow)
            disparity = disparity_from_flows(flows)
            if disparity.shape != left.shape[:3]:
                raise StereobenchError(f"{flow.name} has flows of {disparity.shape} but the views are "
                                       f"{left.shape[:3]}")
        else:
            from benchmark.dataprep.sgbm import sgbm_disparity

            disparity = sgbm_disparity(left, right, max_disparity=self.max_disparity, lr_check=1.0)
        source = {"dataset": "stereo4d", "layout": "m2svid", "left": Path(self.left).name,
                  "right": Path(self.right).name, "disparity": mode,
                  "disparity_file": npy.name if mode == "npy" else (flow.name if mode == "flows" else None)}
        write_prepared_clip(out_root, self.job_id, left=left, right=right, disparity=disparity, fps=fps,
                            source=source, update=False)  # the command reconciles the manifest once at the end


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from benchmark.dataprep.jobs import add_job_arguments

    parser.add_argument("--root", required=True, metavar="DIR",
                        help="M2SVid data root (left_rectified/, right_rectified/, optional disparity/<id>.npy) or "
                             "the Stereo4D toolkit's processed/ folder (<id>/<id>-left_rectified.mp4 ...)")
    parser.add_argument("--flows", metavar="DIR", help="extra folder of <id>-flows_stereo.pkl files")
    parser.add_argument("--disparity", choices=["auto", "npy", "flows", "sgbm"], default="auto",
                        help="disparity source: disparity/<id>.npy, the flow pickles, SGBM here, or auto = the first "
                             "present in that order (default)")
    parser.add_argument("--max-disparity", type=int, metavar="PX", help="SGBM search range")
    add_job_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from benchmark.dataprep.jobs import parse_shard, run_jobs
    from benchmark.dataprep.stereo4d import m2svid_lists

    clips = find_clips(args.root)
    flows = str(Path(args.flows).expanduser()) if args.flows else None
    if flows is not None and not Path(flows).is_dir():
        raise StereobenchError(f"flow folder {flows} does not exist")
    jobs = [M2SVidLayoutJob(job_id=c, left=str(lr[0]), right=str(lr[1]), root=str(Path(args.root).expanduser()),
                            flows=flows, disparity=args.disparity, max_disparity=args.max_disparity)
            for c, lr in clips.items()]
    out = Path(args.out).expanduser()
    report = run_jobs(jobs, out_root=out, workers=args.workers, shard=parse_shard(args.shard), desc="m2svid",
                      progress=not args.no_progress)
    reconcile_manifest(out, [job.job_id for job in jobs])
    write_split(out, "all", list(clips))
    for name, ids in m2svid_lists().items():
        write_split(out, name, [i for i in ids if i in clips])
    print(f"m2svid layout: {report.summary()}", file=sys.stderr)
    print(f"prepared data in {out}; run it with: stereobench run --dataset stereo4d --option root={out} "
          f"--split m2svid-test", file=sys.stderr)
    return 0 if report.ok else 1
