"""The method API every adapter implements.

An adapter is small: declarative :class:`MethodMeta` next to the code, a strict ``Options``
model, ``load(device, dtype)`` and ``refine(StereoInput) -> Tensor[T, 3, H, W]``. Chunking,
tiling, a method's own warp in ``native`` mode and weight handling live inside the adapter's own
module. The torch-free records (:class:`MethodMeta`, :class:`MethodOptions`,
:class:`MethodSpec`) live in :mod:`methods.meta`; the weight records in :mod:`benchmark.weights`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from benchmark.types import StereoInput
from benchmark.weights import WeightSpec, WeightsStatus, env_path  # noqa: F401  re-exported for method authors
from methods.meta import MethodSpec, MethodMeta, MethodOptions, validate_options

__all__ = ["Method", "MethodSpec", "MethodMeta", "MethodOptions", "WeightSpec", "WeightsStatus", "env_path"]


class Method(ABC):
    """Base class of method adapters.

    Subclasses set ``meta``, declare their options as ``class Options(MethodOptions)`` (typed
    fields with defaults and one-line help; the default takes none) and implement
    :meth:`refine`; methods with weights override :meth:`weights_status` and :meth:`load`.
    ``refine`` must return float32 (T, 3, H, W) in [0, 1] on the same device as its input, at
    the input's size, and be deterministic given ``seed``.

    Construction is the same for every method: ``Adapter(seed=S, **options)``. The options are
    validated against ``Options`` over the variant's ``defaults`` (a registry entry's
    ``loader_kwargs``): an unknown name or a wrongly typed value raises one
    :class:`~benchmark.errors.StereobenchError` line (with did-you-mean), never runs the
    defaults. ``self.options`` keeps the options exactly as given (what results record),
    ``self.config`` the validated values with defaults filled in.
    """

    meta: ClassVar[MethodMeta]
    Options: ClassVar[type[MethodOptions]] = MethodOptions
    #: Option defaults of this variant (set from a registry entry's ``loader_kwargs``).
    defaults: ClassVar[Mapping[str, Any]] = {}
    #: How error messages name the method's options (default: ``meta.name``).
    option_label: ClassVar[str] = ""

    def __init__(self, seed: int = 0, **options):
        self.seed = seed
        self.options = options
        self.config = validate_options(self.Options, {**self.defaults, **options},
                                       self.option_label or self.meta.name)
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
        """Release weights and device memory (the runner calls it after a method's last clip).

        Methods that keep their loaded model in ``self.pipeline`` need not override this."""
        if getattr(self, "pipeline", None) is not None:
            self.pipeline = None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    @abstractmethod
    def refine(self, inp: StereoInput) -> torch.Tensor:
        """Right video, float32 (T, 3, H, W) in [0, 1], from the shared input."""

    def generator(self, device: torch.device | str | None = None) -> torch.Generator:
        """A generator seeded with ``self.seed`` (fresh per call: refine is reproducible)."""
        return torch.Generator(device=device or self.device).manual_seed(self.seed)
