"""The method API every adapter implements.

An adapter is small: declarative :class:`MethodMeta` next to the code, ``load(device, dtype)``
and ``refine(StereoInput) -> Tensor[T, 3, H, W]``. Chunking, tiling, a method's own warp in
``native`` mode and weight handling live inside the adapter's own module.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from benchmark.stereo.input import StereoInput


@dataclass(frozen=True)
class WeightSpec:
    """One set of weights a method needs.

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


@dataclass(frozen=True)
class MethodMeta:
    """Declarative description of a method (shown in leaderboards and `stereobench weights`).

    ``native_resolution`` is (height, width) the method was trained at, or None when it runs
    at any size; ``native_frames`` the frames per forward call (None = any);
    ``denoising_steps`` 0 for non-generative methods; ``native_warp`` the name of the method's
    official warp rule in :mod:`benchmark.stereo` used in ``native`` mode (None = shared warp).
    ``outside_mask`` is the method's promise about pixels outside the hole mask: ``"warped"``
    (returned exactly as the input's warped view, i.e. only holes are filled) or ``"any"`` (the
    method may change them; e.g. generative refiners that also fix warping artefacts).
    ``version`` is the adapter's own version; it goes into every result's provenance, so bump it
    when a change alters outputs.
    """

    name: str
    display_name: str
    paper: str = ""
    citation: str = ""
    url: str = ""
    licence: str = ""
    weights: tuple[WeightSpec, ...] = ()
    native_resolution: tuple[int, int] | None = None
    native_frames: int | None = None
    denoising_steps: int = 0
    needs_gpu: bool = False
    native_warp: str | None = None
    description: str = ""
    outside_mask: str = "any"
    version: str = "1"

    def __post_init__(self) -> None:
        if self.outside_mask not in ("warped", "any"):
            raise ValueError(f"outside_mask must be 'warped' or 'any', got {self.outside_mask!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (run manifests, ``stereobench weights``)."""
        return asdict(self)


@dataclass
class WeightsStatus:
    """Whether a method's weights are present; ``how_to_get`` says exactly how if not."""

    present: bool
    location: str = ""
    how_to_get: str = ""
    details: list[str] = field(default_factory=list)


class Method(ABC):
    """Base class of method adapters.

    Subclasses set ``meta`` and implement :meth:`refine`; methods with weights override
    :meth:`weights_status` and :meth:`load`. ``refine`` must return float32 (T, 3, H, W) in
    [0, 1] on the same device as its input, at the input's size, and be deterministic given
    ``seed``.
    """

    meta: ClassVar[MethodMeta]

    def __init__(self, seed: int = 0, **options):
        self.seed = seed
        self.options = options
        self.device = torch.device("cpu")
        self.dtype = torch.float32

    def weights_status(self) -> WeightsStatus:
        """Default: no weights needed."""
        return WeightsStatus(present=True, location="(no weights)")

    def load(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> "Method":
        """Load weights (if any) onto ``device`` in ``dtype``; returns ``self``."""
        self.device = torch.device(device)
        self.dtype = dtype
        return self

    def unload(self) -> None:
        """Release weights and device memory (the runner calls it after a method's last clip)."""

    @abstractmethod
    def refine(self, inp: StereoInput) -> torch.Tensor:
        """Right video, float32 (T, 3, H, W) in [0, 1], from the shared input."""

    def generator(self, device: torch.device | str | None = None) -> torch.Generator:
        """A generator seeded with ``self.seed`` (fresh per call: refine is reproducible)."""
        return torch.Generator(device=device or self.device).manual_seed(self.seed)


def env_path(var: str) -> Path | None:
    """The path in environment variable ``var`` if it is set and exists."""
    value = os.environ.get(var)
    return Path(value).expanduser() if value and Path(value).expanduser().exists() else None
