"""Provenance of a run: what code, packages, data, configuration and machine made its results.

:func:`collect_provenance` gathers it; :class:`RunManifest` writes it as
``results/runs/<run_id>/manifest.json`` through :class:`benchmark.run_store.RunDir` (the one
owner of run folders), atomically, at the start of a run (status
``"running"``) and again at the end (status ``"finished"`` or ``"failed"``, end time), so a
killed run is recognisable by a manifest still saying ``"running"``.

Manifest fields (``MANIFEST_SCHEMA_VERSION`` 1): ``schema_version``, ``results_schema_version``,
``run_id``, ``status``, ``started_at`` / ``finished_at`` (ISO 8601 UTC), ``git`` (``commit``,
``dirty``, ``branch``; None outside a git checkout), ``packages`` (name -> version, None when not
installed), ``python``, ``platform``, ``device`` (``name``, ``kind``, ``cuda``, ``count``),
``threads`` (torch intra-op threads and CPU count), ``hostname``, ``command`` (argv),
``config`` (the fully resolved configuration), ``seeds``, ``datasets`` (name -> revision and
checksums), ``protocol`` (the clip protocol: name and parameters), ``warp_mode``, ``error`` (why
a failed run stopped) and ``extra``.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmark.errors import StereobenchError
from benchmark.results import SCHEMA_VERSION
from benchmark.run_store import RunDir

MANIFEST_SCHEMA_VERSION = 1

PACKAGES: tuple[str, ...] = (
    "stereobench", "torch", "torchvision", "diffusers", "transformers", "accelerate", "safetensors",
    "numpy", "scipy", "pandas", "lpips", "pytorch_msssim", "scikit-image", "opencv-python-headless",
    "av", "pillow", "matplotlib", "pydantic", "PyYAML",
)
"""Distributions whose versions go into every manifest (missing ones are recorded as None)."""


def utc_now_iso() -> str:
    """Current time as ISO 8601 UTC with seconds, e.g. ``2025-01-01T12:00:00+00:00``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_info(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """``{"commit", "dirty", "branch"}`` of the git checkout holding ``path`` (default: this
    package's source). All None outside git (e.g. an installed wheel) or without a git binary.
    ``dirty`` is True when tracked files differ from the commit (untracked files are ignored:
    results folders and caches are untracked on purpose)."""
    cwd = Path(path) if path is not None else Path(__file__).resolve().parent
    if cwd.is_file():
        cwd = cwd.parent
    if not cwd.exists():
        return {"commit": None, "dirty": None, "branch": None}
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit is None:
        return {"commit": None, "dirty": None, "branch": None}
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], cwd)
    return {"commit": commit, "dirty": None if status is None else bool(status), "branch": branch}


def package_versions(names: tuple[str, ...] | list[str] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (importlib.metadata), None when absent."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            alt = name.replace("_", "-") if "_" in name else name.replace("-", "_")
            try:
                versions[name] = metadata.version(alt)
            except metadata.PackageNotFoundError:
                versions[name] = None
    return versions


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_info(device: str | None = None) -> dict[str, Any]:
    """The compute device: CUDA device name when CUDA is (or ``device`` says it should be) used,
    else the CPU model. ``{"kind", "name", "cuda", "count", "cpu"}``."""
    info: dict[str, Any] = {"kind": "cpu", "name": cpu_model(), "cuda": None, "count": 0, "cpu": cpu_model()}
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return info
    wants_cpu = device is not None and str(device).startswith("cpu")
    if torch.cuda.is_available() and not wants_cpu:
        index = torch.device(device).index if device and str(device).startswith("cuda") else None
        index = torch.cuda.current_device() if index is None else index
        info.update(kind="cuda", name=torch.cuda.get_device_name(index), cuda=torch.version.cuda,
                    count=torch.cuda.device_count(), index=index)
    return info


def device_label(device: str | None = None) -> str:
    """Short device text for result rows, e.g. ``"cuda (NVIDIA H100 80GB HBM3)"``, ``"cpu (AMD EPYC ...)"``."""
    info = device_info(device)
    return f"{info['kind']} ({info['name']})"


def thread_info() -> dict[str, Any]:
    """Threads available to the run: torch intra-op threads, os.cpu_count, affinity, OMP setting."""
    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    try:
        info["affinity"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        info["affinity"] = None
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        info["torch_threads"] = None
    return info


def collect_provenance(
    config: dict[str, Any] | None = None,
    seeds: Any = None,
    datasets: dict[str, Any] | None = None,
    protocol: Any = None,
    warp_mode: str | None = None,
    *,
    device: str | None = None,
    argv: list[str] | None = None,
    repo_path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Everything needed to reproduce or question a run, as a JSON-serialisable dict.

    Args:
        config: the fully resolved configuration (after defaults and overrides).
        seeds: the seeds used (an int, a list, or a dict name -> seed).
        datasets: dataset name -> revision / checksums (e.g. ``{"synthetic": {"revision": "v1"}}``).
        protocol: the clip protocol: its name, a dict of its parameters (frames, fps, size), or a
            protocol object (``to_dict()`` or a dataclass).
        warp_mode: ``"shared"`` or ``"native"``.
        device: the device the methods run on (``"cuda"``, ``"cuda:1"``, ``"cpu"``).
        argv: the command line (default ``sys.argv``).
        repo_path: where to look for the git checkout (default: this package's source).

    Returns a dict with the keys listed in the module docstring (without ``run_id`` / ``status``).
    """
    if protocol is not None and not isinstance(protocol, (str, dict)):
        protocol = _jsonable(protocol)
    return {
        "results_schema_version": SCHEMA_VERSION,
        "git": git_info(repo_path),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "device": device_info(device),
        "threads": thread_info(),
        "hostname": socket.gethostname(),
        "command": list(sys.argv if argv is None else argv),
        "config": config or {},
        "seeds": seeds,
        "datasets": datasets or {},
        "protocol": protocol,
        "warp_mode": warp_mode,
        "started_at": utc_now_iso(),
        "finished_at": None,
    }


def _jsonable(obj: Any) -> Any:
    """A protocol or spec object as plain data: ``to_dict()``, a dataclass's fields, or ``str``."""
    import dataclasses

    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return str(obj)


@dataclass
class RunManifest:
    """``manifest.json`` of a run, written atomically at start and at finish.

    Usage::

        manifest = RunManifest.start(run_dir, run_id, collect_provenance(config, seeds, ...))
        ...                                   # the run
        manifest.finish()                     # or manifest.finish("failed", error=str(exc))
    """

    path: Path
    run_id: str
    provenance: dict[str, Any]
    status: str = "running"
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {"schema_version": MANIFEST_SCHEMA_VERSION, "run_id": self.run_id, "status": self.status,
                "error": self.error, "extra": self.extra}
        data.update(self.provenance)
        return data

    def _run_dir(self) -> tuple[RunDir, int]:
        """The run folder and rank this manifest file belongs to (``manifest-rank<k>.json``)."""
        name = self.path.name
        rank = int(name[len("manifest-rank"):-len(".json")]) if name.startswith("manifest-rank") else 0
        return RunDir.at(self.path.parent), rank

    def write(self) -> Path:
        run, rank = self._run_dir()
        return run.write_manifest(self.to_dict(), rank=rank)

    @classmethod
    def start(cls, run_dir: str | os.PathLike, run_id: str, provenance: dict[str, Any],
              **extra: Any) -> "RunManifest":
        """Create ``<run_dir>/manifest.json`` with status ``"running"``."""
        manifest = cls(RunDir.at(run_dir).manifest_path(), run_id, dict(provenance), extra=dict(extra))
        manifest.provenance.setdefault("started_at", utc_now_iso())
        manifest.write()
        return manifest

    def update(self, **extra: Any) -> Path:
        """Record more facts (e.g. skipped methods, counts) and rewrite the manifest."""
        self.extra.update(extra)
        return self.write()

    def finish(self, status: str = "finished", error: str | None = None, **extra: Any) -> Path:
        """Mark the run ``finished`` (or ``failed`` / ``interrupted``) with its end time."""
        self.status = status
        self.error = error
        self.extra.update(extra)
        self.provenance["finished_at"] = utc_now_iso()
        return self.write()

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> "RunManifest":
        """Read an existing manifest (e.g. to resume a run and mark it finished later); raises
        StereobenchError when it is missing or unreadable."""
        run = RunDir.at(run_dir)
        path = run.manifest_path()
        data = run.read_manifest()
        if data is None or "run_id" not in data:
            raise StereobenchError(f"manifest {path} is missing or unreadable; start a new run with --new")
        meta_keys = {"schema_version", "run_id", "status", "error", "extra"}
        provenance = {k: v for k, v in data.items() if k not in meta_keys}
        return cls(path, data["run_id"], provenance, status=data.get("status", "running"),
                   extra=data.get("extra") or {}, error=data.get("error"))


__all__ = [
    "MANIFEST_SCHEMA_VERSION", "PACKAGES", "RunManifest", "collect_provenance", "cpu_model", "device_info",
    "device_label", "git_info", "package_versions", "thread_info", "utc_now_iso",
]
