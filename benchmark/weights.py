"""Weights as a shared service: declarations, status, one root folder, one offline resolver.

Every component with weights (a method, a metric's network, later a depth model) declares them as
:class:`WeightSpec` records and reports :class:`WeightsStatus`; they all live under one
:func:`weights_root`, and they are all found by one resolver, :func:`resolve_weights`, which
never downloads:

- a **local** file or folder (any existing path);
- a **Hugging Face cache id** (``"org/name"``, optional ``subfolder`` and ``revision``): looked
  up in the local HF cache only (``huggingface_hub.scan_cache_dir``, which reads the cache
  folder and nothing else; the folder comes from ``$HF_HUB_CACHE`` / ``$HF_HOME`` at call time);
- a **URL** (``https://...``): the file must already have been downloaded into
  :func:`weights_root` (under its file name); when the spec pins a SHA-256 the file is hashed and
  compared, and a mismatch is an error naming the file and the fix.

Why one resolver: the rules (where a download goes, that hub ids are looked up offline, that a
pinned checksum is always checked) then hold for every component, and each component's own code
only says *what* it needs.

``stereobench weights`` lists every registry that has weights through :data:`WEIGHT_PROVIDERS`: a
lazy name -> ``"module:function"`` map whose functions return :class:`WeightsEntry` rows. A new
registry (depth models) plugs in by adding one line here (or an entry point in the
``stereobench.weights`` group), with no edit to the command.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.errors import StereobenchError
from benchmark.registry import LazyRegistry

#: Environment variable naming the shared weights folder.
WEIGHTS_ENV = "STEREOBENCH_WEIGHTS"

# "org/name" (the Hugging Face repo id grammar, loosely): no leading "." "/" or "~", one slash.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def weights_root() -> Path:
    """The folder holding every downloaded or converted weight file of the suite.

    ``$STEREOBENCH_WEIGHTS`` if set, else ``~/.cache/stereobench/weights``; read on every call
    so that tests and users can point it elsewhere at run time. Components use subfolders
    (``lpips/``, ``m2svid/``...); URL downloads sit at the top level under their file name.
    """
    root = os.environ.get(WEIGHTS_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "stereobench" / "weights"


def env_path(var: str) -> Path | None:
    """The path in environment variable ``var`` if it is set and exists."""
    value = os.environ.get(var)
    return Path(value).expanduser() if value and Path(value).expanduser().exists() else None


@dataclass(frozen=True)
class WeightSpec:
    """One set of weights a component needs.

    Attributes:
        name: short label, e.g. ``"unet"``.
        source: where it comes from: a hub repo id (``"TencentARC/StereoCrafter"``), a URL or a
            PyPI requirement.
        revision: pinned revision (commit hash, tag or file checksum) of ``source``.
        env_var: environment variable that points to a local copy, if set.
        filename: file or subfolder inside ``source``.
        how_to_get: the exact command or steps that provide the weights on a new machine.
        sha256: hex SHA-256 of the file when ``source`` is a single file (a URL); empty for hub
            repositories, whose ``revision`` (a commit hash) already pins the content.
        size_bytes: download size in bytes, if known (shown by ``stereobench weights``).
        licence: licence of the weights (may differ from the code's).
    """

    name: str
    source: str
    revision: str = ""
    env_var: str = ""
    filename: str = ""
    how_to_get: str = ""
    sha256: str = ""
    size_bytes: int | None = None
    licence: str = ""

    def local_path(self) -> Path | None:
        """The local copy named by ``env_var`` if that variable is set and the path exists."""
        return env_path(self.env_var) if self.env_var else None

    def pinned(self) -> bool:
        """True when the content is pinned (a revision or a checksum is declared)."""
        return bool(self.revision or self.sha256)

    def resolve(self) -> Path:
        """The local path of these weights (``env_var`` first, then ``source``), never downloading;
        raises :class:`StereobenchError` naming the problem and ``how_to_get``."""
        local = self.local_path()
        if local is not None:
            return resolve_weights(local, sha256=self.sha256 if local.is_file() else "", what=self.name)
        hub = source_kind(self.source) == "hf"
        return resolve_weights(self.source, revision=self.revision if hub else None,
                               subfolder=self.filename if hub else None,
                               filename=self.filename or None, sha256=self.sha256, what=self.name,
                               how_to_get=self.how_to_get)


@dataclass
class WeightsStatus:
    """Whether a component's weights are present; ``how_to_get`` says exactly how if not."""

    present: bool
    location: str = ""
    how_to_get: str = ""
    details: list[str] = field(default_factory=list)


@dataclass
class WeightsEntry:
    """One row of ``stereobench weights``: a component of some registry and its weights.

    ``kind`` names the registry (``"method"``, ``"metric"``, ``"depth model"``); ``error`` is set
    (and ``status`` says missing) when the component could not even be inspected.
    """

    kind: str
    name: str
    display_name: str = ""
    specs: tuple[WeightSpec, ...] = ()
    status: WeightsStatus = field(default_factory=lambda: WeightsStatus(present=False))
    error: str | None = None


# -- the resolver -----------------------------------------------------------------------------

def source_kind(source: str | os.PathLike) -> str:
    """``"url"``, ``"hf"`` (a hub id that is not an existing path) or ``"local"``."""
    text = str(source)
    if text.startswith(("http://", "https://")):
        return "url"
    if not Path(text).expanduser().exists() and _HUB_ID.match(text):
        return "hf"
    return "local"


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder, from the environment at call time.

    ``huggingface_hub`` reads ``$HF_HUB_CACHE`` once, at import; reading it here lets a caller
    (or a test) point the lookup elsewhere after the import.
    """
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def url_download_path(url: str, filename: str | None = None) -> Path:
    """Where the file at ``url`` must be downloaded to: ``weights_root() / <file name>``."""
    name = filename or url.rstrip("/").rsplit("/", 1)[-1]
    return weights_root() / name


def verify_sha256(path: Path, sha256: str, how_to_get: str = "") -> None:
    """Raise a one-line error unless the file at ``path`` hashes to ``sha256`` (hex)."""
    from benchmark.fileio import file_sha256

    digest = file_sha256(path, chunk_size=1 << 22)
    if digest != sha256.lower():
        fix = f"; get it again: {how_to_get}" if how_to_get else "; delete it and download it again"
        raise StereobenchError(f"{path} has SHA-256 {digest[:12]}..., not the pinned {sha256[:12]}... "
                               f"(a truncated or different file){fix}")


def resolve_weights(source: str | os.PathLike, *, revision: str | None = None, subfolder: str | None = None,
                    filename: str | None = None, sha256: str = "", what: str = "weights",
                    how_to_get: str = "") -> Path:
    """The local path of ``source`` (see the module docstring for the three kinds); never downloads.

    Args:
        source: an existing path, a Hugging Face repo id (``"org/name"``), or an ``https://`` URL.
        revision: hub branch, tag or commit hash (default ``"main"``); hub ids only.
        subfolder: folder inside the hub snapshot (or the local folder) to return.
        filename: for URLs, the file name in :func:`weights_root` (default: the URL's last part).
        sha256: hex digest the file must have (local files and URLs); empty = not checked.
        what: the name shown in errors (e.g. ``"M2SVid weights"``).
        how_to_get: the fix shown when the weights are absent or do not match.

    Returns:
        An existing file or folder.

    Raises:
        StereobenchError: absent (naming where it looked and ``how_to_get``), or a checksum
        mismatch.
    """
    kind = source_kind(source)
    fix = f"; {how_to_get}" if how_to_get else ""
    if kind == "url":
        path = url_download_path(str(source), filename)
        if not path.is_file():
            raise StereobenchError(f"{what}: {path} is not there (this suite does not download); "
                                   f"run `wget -O {path} {source}`{fix}")
        if sha256:
            verify_sha256(path, sha256, how_to_get)
        return path
    if kind == "hf":
        lead = f"; huggingface-cli download {source}"
        if fix == lead or fix.startswith((lead + ",", lead + " (")):  # the hub message names that command
            rest = fix[len(lead):].lstrip(",").strip()
            fix = f"; {rest}" if rest else ""
        return _resolve_hub(str(source), revision, subfolder, what, fix)
    path = Path(source).expanduser()
    if not path.exists():
        raise StereobenchError(f"{what}: {path} does not exist; give an existing file or folder, a Hugging Face "
                               f"id already in the cache (org/name) or a URL downloaded into {weights_root()}{fix}")
    if subfolder:
        path = path / subfolder
        if not path.exists():
            raise StereobenchError(f"{what}: {path} does not exist (no {subfolder!r} inside {source}){fix}")
    if sha256 and path.is_file():
        verify_sha256(path, sha256, how_to_get)
    return path


def _resolve_hub(repo_id: str, revision: str | None, subfolder: str | None, what: str, fix: str) -> Path:
    """A cached snapshot folder of model repo ``repo_id`` at ``revision``, read from the cache only.

    ``revision`` may be a ref (``"main"``, a tag) or a commit hash (a prefix of at least 7 hex
    digits is enough); None means ``"main"``. Uses ``huggingface_hub.scan_cache_dir``, which only
    reads the cache folder: no network call can happen.
    """
    from huggingface_hub import scan_cache_dir

    cache = hf_cache_dir()
    at = f"@{revision}" if revision else ""
    get = (f"; this suite does not download: run `huggingface-cli download {repo_id}"
           f"{f' --revision {revision}' if revision else ''}` where the hub is reachable{fix}")
    try:
        info = scan_cache_dir(cache) if cache.is_dir() else None
    except Exception:  # CacheNotFound, or an unreadable folder: nothing cached there for us
        info = None
    repo = next((r for r in (info.repos if info else ()) if r.repo_id == repo_id and r.repo_type == "model"), None)
    if repo is None:
        raise StereobenchError(f"{what}: {repo_id} is not in the Hugging Face cache {cache}{get}")
    wanted = revision or "main"
    found = [r for r in repo.revisions if wanted in r.refs]
    if not found:  # a commit hash, whole or a prefix of at least 7 digits
        found = [r for r in repo.revisions if r.commit_hash == wanted.lower()
                 or (len(wanted) >= 7 and r.commit_hash.startswith(wanted.lower()))]
    if not found and revision is None and len(repo.revisions) == 1:
        found = list(repo.revisions)  # one snapshot and no "main" ref (e.g. downloaded at a commit)
    if not found:
        have = ", ".join(sorted({*(ref for r in repo.revisions for ref in r.refs),
                                 *(r.commit_hash[:12] for r in repo.revisions)})) or "none"
        raise StereobenchError(f"{what}: {repo_id}{at} is not in the Hugging Face cache {cache} (cached revisions: "
                               f"{have}){get}")
    folder = Path(found[0].snapshot_path)
    if subfolder:
        folder = folder / subfolder
        if not folder.exists():
            raise StereobenchError(f"{what}: the cached snapshot of {repo_id}{at} has no {subfolder!r} "
                                   f"({folder}){get}")
    return folder


# -- what `stereobench weights` lists ----------------------------------------------------------

#: Registries with weights: name -> "module:function" returning ``list[WeightsEntry]`` (lazy).
WEIGHT_PROVIDERS = LazyRegistry(
    "weights provider",
    {
        "methods": "methods.registry:weights_entries",
        "metrics": "benchmark.metrics.lpips_weights:weights_entries",
        "depth": "benchmark.depth.listing:weights_entries",
    },
    entry_point_group="stereobench.weights",
)


def entry_to_dict(entry: WeightsEntry) -> dict[str, Any]:
    """JSON form of one listing row (``stereobench weights --json``)."""
    from dataclasses import asdict

    specs = []
    for spec in entry.specs:
        item = asdict(spec)
        local = spec.local_path()
        item["local_path"] = str(local) if local else None
        specs.append(item)
    return {"kind": entry.kind, "name": entry.name, "display_name": entry.display_name, "weights": specs,
            "present": entry.status.present, "location": entry.status.location,
            "how_to_get": entry.status.how_to_get, "details": list(entry.status.details), "error": entry.error}
