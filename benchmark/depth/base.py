"""The depth-model API: :class:`DepthModel`, the :data:`DEPTH_MODELS` registry, :func:`load_depth_model`.

A depth model turns a video into **relative inverse depth** ("disparity-like": larger = nearer),
float32 ``(T, H, W)`` at the input's size, NaN where it has no value. Per-frame models (Depth
Anything V2) give each frame its own affine-invariant scale; :mod:`benchmark.depth.stability`
normalises a whole video (or a stream) to [0, 1] without per-frame flicker, and
:func:`benchmark.stereo.disparity.disparity_from_normalized_depth` turns that into pixels with
D_max and convergence.

Every model declares:

- ``SETTINGS``: the settings it takes and their defaults (keyword arguments of
  :func:`load_depth_model`); an unknown setting is a one-line error naming the accepted ones;
- :attr:`DepthModel.spec` (what weights: name, model id or folder, revision) and
  :attr:`DepthModel.settings` (every value that changes the output): both go into cache keys, so
  a change of model, weights or setting never reuses another's depth;
- ``LICENCE``: the licence of its weights (DepthCrafter: research only), shown by
  ``stereobench weights``.

This unit imports the ground floor only (never the stereo stage, datasets or anything above).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from benchmark.errors import StereobenchError, did_you_mean
from benchmark.registry import LazyRegistry
from benchmark.types import params_hash

#: Depth sources by name -> ``"module:Class"`` (a :class:`DepthModel` subclass), resolved lazily.
#: Third-party packages add models through the ``stereobench.depth_models`` entry-point group.
DEPTH_MODELS = LazyRegistry(
    "depth model",
    {
        "files": "benchmark.depth.files:FileDepth",
        "depth-anything-v2": "benchmark.depth.transformers_depth:DepthAnythingV2",
        "transformers": "benchmark.depth.transformers_depth:TransformersDepth",
        "depthcrafter": "benchmark.depth.depthcrafter:DepthCrafter",
    },
    entry_point_group="stereobench.depth_models",
)


class DepthModel(ABC):
    """A source of relative inverse depth for videos.

    Subclasses set the class attributes and implement :meth:`_predict`; build them with
    :func:`load_depth_model`.

    Class attributes:
        NAME: registry name.
        DESCRIPTION: one line for help texts and listings.
        SETTINGS: accepted settings and their defaults.
        LICENCE: licence of the weights ("" for none).
        VIDEO: True for models that see a window of frames at once (DepthCrafter); False for
            per-frame models (their output needs temporal normalisation).
    """

    NAME: ClassVar[str] = ""
    DESCRIPTION: ClassVar[str] = ""
    SETTINGS: ClassVar[dict[str, Any]] = {}
    LICENCE: ClassVar[str] = ""
    VIDEO: ClassVar[bool] = False

    def __init__(self, *, weights: Any = None, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                 **settings: Any):
        self._settings = self.check_settings(settings)
        self.weights = weights
        self.device = torch.device(device)
        self.dtype = dtype if dtype is not None else torch.float32

    # -- identity ---------------------------------------------------------------------------
    @property
    def licence(self) -> str:
        """Licence of the weights in use."""
        return self.LICENCE

    @property
    def spec(self) -> dict[str, Any]:
        """Which model and weights: ``{"name", "model", "revision"}`` (JSON values; cache keys)."""
        return {"name": self.NAME, "model": "", "revision": ""}

    @property
    def settings(self) -> dict[str, Any]:
        """Every setting that changes the output (a fresh dict; cache keys)."""
        return {k: v for k, v in self._settings.items() if k not in self.SPEED_SETTINGS}

    def identity(self) -> dict[str, Any]:
        """``{"spec": ..., "settings": ...}``: what a depth cache entry is keyed by."""
        return {"spec": self.spec, "settings": self.settings}

    def key(self) -> str:
        """32 hex digits identifying :meth:`identity`."""
        return params_hash(self.identity())

    # -- prediction -------------------------------------------------------------------------
    def predict(self, frames: torch.Tensor, *, start: int = 0) -> torch.Tensor:
        """Relative inverse depth of a video (or a window of one).

        Args:
            frames: float (T, 3, H, W) in [0, 1], RGB, T >= 1.
            start: index of ``frames[0]`` in the whole video (models that read per-frame data,
                like ``files``, use it; image models ignore it).

        Returns:
            float32 (T, H, W) on the input's device, larger = nearer, NaN where invalid.

        Raises:
            StereobenchError: frames of the wrong shape or type.
        """
        if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[1] != 3 or frames.shape[0] == 0:
            raise StereobenchError(f"depth model {self.NAME!r} needs frames (T, 3, H, W) with T > 0, got "
                                   f"{tuple(getattr(frames, 'shape', ())) or type(frames).__name__}")
        if not frames.is_floating_point():
            raise StereobenchError(f"depth model {self.NAME!r} needs float frames in [0, 1], got {frames.dtype}")
        t, _, h, w = frames.shape
        with torch.inference_mode():
            out = self._predict(frames, int(start))
        if tuple(out.shape) != (t, h, w):  # pragma: no cover - a model bug, not user input
            raise RuntimeError(f"depth model {self.NAME!r} returned {tuple(out.shape)}, expected {(t, h, w)}")
        return out.to(device=frames.device, dtype=torch.float32)

    @abstractmethod
    def _predict(self, frames: torch.Tensor, start: int) -> torch.Tensor:
        """(T, H, W) relative inverse depth for validated frames."""

    #: Settings that change speed, not the output (left out of :attr:`settings` and identities).
    SPEED_SETTINGS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def check_settings(cls, settings: dict[str, Any]) -> dict[str, Any]:
        """``SETTINGS`` updated by ``settings``; an unknown name is a one-line error."""
        unknown = sorted(set(settings) - set(cls.SETTINGS))
        if unknown:
            accepted = ", ".join(sorted(cls.SETTINGS)) or "no settings"
            raise StereobenchError(f"depth model {cls.NAME!r} does not take {', '.join(unknown)}; it takes {accepted}")
        return {**cls.SETTINGS, **settings}

    @classmethod
    def identify(cls, weights: Any = None, **settings: Any) -> dict[str, Any]:
        """What a model built with these arguments would be, without loading it (cheap; for
        input recipes): ``{"model", "revision", "settings"}`` as :attr:`spec` and
        :attr:`settings` of the loaded model would say."""
        merged = cls.check_settings(settings)
        return {"model": "", "revision": "",
                "settings": {k: v for k, v in merged.items() if k not in cls.SPEED_SETTINGS}}

    @classmethod
    def weight_specs(cls) -> tuple:
        """The :class:`~benchmark.weights.WeightSpec` records of the default weights (for listings)."""
        return ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(spec={self.spec}, settings={self.settings})"


def depth_model_class(name: str) -> type[DepthModel]:
    """The class registered as ``name`` (did-you-mean error for an unknown name)."""
    if name not in DEPTH_MODELS:
        raise did_you_mean(str(name), DEPTH_MODELS.names(), "depth model")
    return DEPTH_MODELS[name]


def depth_model_identity(name: str, *, weights: Any = None, **settings: Any) -> dict[str, Any]:
    """``{"model", "revision", "settings"}`` of a model without loading it (see
    :meth:`DepthModel.identify`); resolves weights offline, so absent weights fail here already."""
    return depth_model_class(name).identify(weights=weights, **settings)


def load_depth_model(name: str, *, weights: Any = None, device: str | torch.device = "cpu",
                     dtype: torch.dtype | None = None, **settings: Any) -> DepthModel:
    """A ready depth model by registry name.

    Args:
        name: a key of :data:`DEPTH_MODELS` (``"files"``, ``"depth-anything-v2"``,
            ``"transformers"``, ``"depthcrafter"``).
        weights: a local folder, a Hugging Face id already in the cache, or None for the model's
            default (``files``: unused).
        device: torch device for the model.
        dtype: compute dtype (default float32).
        **settings: model settings (see the class's ``SETTINGS``; ``files`` takes ``path`` and
            ``kind``).

    Raises:
        StereobenchError: unknown name (did-you-mean), unknown setting, weights that are absent
            (naming how to get them) or not a model of that kind.
    """
    cls = depth_model_class(name)
    return cls(weights=weights, device=device, dtype=dtype, **settings)


__all__ = ["DEPTH_MODELS", "DepthModel", "depth_model_class", "depth_model_identity", "load_depth_model"]
