"""Tiny study sources and packages for the study-app tests (written under tmp_path, seeded).

* :func:`make_video_folder` writes a folder of videos in the study layout (one sub-folder per
  clip: left, mask, warped, gt and one file per method), small enough to encode in a second.
* :func:`make_run` writes the same videos into a run folder through :class:`RunDir`.
* :func:`synthetic_package` writes a study.json with any number of trials and no media (for
  storage and load tests, where encoding would only cost time).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import torch

#: Distinctive method names, so an anonymity check that finds one in a file is meaningful.
METHODS = ("stereocrafterx", "m2svidmethod", "opencvinpaintx", "temporalfillx")


def _clip(generator: torch.Generator, frames: int, height: int, width: int) -> torch.Tensor:
    base = torch.rand(1, 3, height, width, generator=generator)
    drift = torch.linspace(0, 0.3, frames).view(frames, 1, 1, 1)
    return (base + drift).clamp(0, 1)


def make_video_folder(root: Path, n_videos: int = 3, methods=METHODS, frames: int = 8, size=(24, 32), fps: float = 8.0,
                      gt: bool = True, longer: str | None = None, seed: int = 0) -> Path:
    """Write ``root/clipK/{left,mask,warped,gt,<method>}.mp4``; ``longer``: one stimulus name
    that gets 3 extra frames (the build must cut it to the others' length)."""
    from benchmark.video_io import write_mask, write_video

    g = torch.Generator().manual_seed(seed)
    names = ["left", "mask", "warped", *(["gt"] if gt else []), *methods]
    for v in range(n_videos):
        folder = root / f"clip{v}"
        for name in names:
            n = frames + (3 if name == longer else 0)
            video = _clip(g, n, *size)
            if name == "mask":
                write_mask(folder / "mask.mp4", video[:, :1] > 0.6, fps=fps)
            else:
                write_video(folder / f"{name}.mp4", video, fps=fps)
    return root


def make_run(root: Path, run_id: str = "2026-01-01_000000_test", dataset: str = "synthetic", **kwargs) -> Path:
    """A run folder with a manifest and saved videos (``videos/<dataset>/<clip>/<name>.mp4``)."""
    from benchmark.run_store import RunDir

    src = make_video_folder(root / "_src", **kwargs)
    run = RunDir(root / "runs", run_id)
    run.path.mkdir(parents=True)
    run.write_manifest({"run_id": run_id, "status": "complete"})
    for clip in sorted(p for p in src.iterdir() if p.is_dir()):
        for f in clip.iterdir():
            dest = run.video_path(dataset, clip.name, f.stem)
            dest.parent.mkdir(parents=True, exist_ok=True)
            f.rename(dest)
    return run.path


def synthetic_package(root: Path, kind: str = "ranking", participants: int = 4, trials_per_participant: int = 6,
                      methods=METHODS, open_enrollment: bool = False, study_id: str = "synthetic-study") -> Path:
    """A study.json (no media files) with ``trials_per_participant`` main trials per slot (one
    video each) plus one attention trial, for the storage and load tests."""
    from study_app.package import CONTROL, FORMAT, FORMAT_VERSION

    media, trials = {}, []
    rng = torch.Generator().manual_seed(1)

    def token():
        tok = secrets.token_hex(16)
        media[tok] = {"sha256": "0" * 64, "bytes": 0, "frames": 8, "fps": 8.0, "gop": 8}
        return tok

    for slot in range(participants):
        for n in range(1, trials_per_participant + 2):
            attention = n == trials_per_participant + 1
            video = f"clip{(n - 1 + slot) % trials_per_participant}"
            if kind == "ranking":
                order = [methods[int(i)] for i in torch.randperm(len(methods), generator=rng)]
                expect = [""] * len(order)
                if attention:
                    order[0], expect[0] = CONTROL, "worst"
                trials.append({"trial_id": secrets.token_hex(6), "participant_slot": slot, "number": n,
                               "kind": "attention" if attention else "main", "video": video,
                               "media": [token() for _ in order], "methods": order,
                               "references": {"left": token(), "mask": token()}, "expect": expect, "repeat_of": None,
                               "method_a": None, "method_b": None, "first_shown": None, "attention_answer": ""})
            else:
                a, b = (methods[0], CONTROL) if attention else (methods[0], methods[1])
                first = "a" if (n + slot) % 2 else "b"
                shown = [a, b] if first == "a" else [b, a]
                trials.append({"trial_id": secrets.token_hex(6), "participant_slot": slot, "number": n,
                               "kind": "attention" if attention else "main", "video": video,
                               "media": [token(), token()], "methods": shown, "references": {},
                               "expect": ["worst" if m == CONTROL else "" for m in shown], "repeat_of": None,
                               "method_a": a, "method_b": b, "first_shown": first,
                               "attention_answer": "a" if attention else ""})
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "study_id": study_id, "kind": kind,
                "created_at": "2026-01-01T00:00:00+00:00", "seed": 0, "source": "synthetic", "methods": list(methods),
                "pairs": [], "videos": [f"clip{i}" for i in range(trials_per_participant)], "skipped": [],
                "participants": [f"P{i + 1:02d}" for i in range(participants)], "open_enrollment": open_enrollment,
                "design": {}, "media": media, "trials": trials}
    root.mkdir(parents=True, exist_ok=True)
    (root / "study.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


# ------------------------------------------------------------------------------------ PostgreSQL
class PostgresServer:
    """A throwaway PostgreSQL cluster on a private unix socket (no TCP), started from Debian's
    binaries (``/usr/lib/postgresql/<v>/bin``). As root, initdb and the server run as the
    ``postgres`` user (initdb refuses root), in a folder that user owns."""

    def __init__(self, base: Path):
        import glob
        import os
        import shutil
        import socket
        import subprocess

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not bins:
            raise RuntimeError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl); "
                               "`make install` installs Debian's postgresql package")
        self.bin = Path(bins[-1]).parent
        self.base = base
        self.data, self.sock = base / "data", base / "sock"
        self.sock.mkdir(parents=True)
        with socket.socket() as s:  # a free port number: it only names the socket file
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                raise RuntimeError("running as root without runuser: cannot start PostgreSQL as another user")
            shutil.chown(base, "postgres")
            shutil.chown(self.sock, "postgres")
            self.prefix = [runuser, "-u", "postgres", "--"]
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "test", "--auth=trust", "-E", "UTF8",
                   "--no-sync"])
        opts = f"-k {self.sock} -p {self.port} -c listen_addresses='' -c fsync=off"
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(base / "log"), "-w",
                   "-t", "60", "start"])
        self._subprocess = subprocess

    def _run(self, cmd: list[str]) -> None:
        import subprocess

        out = subprocess.run(self.prefix + cmd, capture_output=True, text=True, timeout=120, check=False, cwd=self.base)
        if out.returncode != 0:
            raise RuntimeError(f"{Path(cmd[0]).name} failed: {(out.stderr or out.stdout).strip()[-400:]}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://test@/{database}?host={self.sock}&port={self.port}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(host=str(self.sock), port=self.port, user="test", dbname="postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        except RuntimeError:
            pass
