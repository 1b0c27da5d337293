"""The metric adapter surface: :class:`Metric`, and what it is handed (:class:`Reference`,
:class:`Prediction`) and returns (:class:`Record`).

A metric family is a small class (pyiqa's model)::

    class PSNR(Metric):
        spec = MetricSpec("psnr", "PSNR", higher_is_better=True, value_range=(0.0, None), unit="dB")

        def score(self, prediction, state, regions, scoring_protocols) -> list[Record]:
            ...

plus one line in :mod:`benchmark.metrics.registry`. The :class:`~benchmark.metrics.scorer.Scorer`
keeps the loop over metrics, the per-clip caching of the ground-truth side and the generic rules
(empty regions, missing inputs, NaN notes), so a family only computes numbers.

- ``prepare(reference) -> state``: the method-independent work of this metric for one clip
  (e.g. LPIPS's ground-truth trunk features), done once per clip and cached on the reference.
  The default caches nothing (``None``).
- ``score(prediction, state, regions, scoring_protocols) -> list[Record]``: one record per
  (region, scoring protocol) the family can compute; the Scorer fills the others with NaN.
  ``prediction.reference`` is the clip's :class:`Reference`.

Family modules import torch inside their methods, never at module level: the registry and
:data:`~benchmark.metrics.spec.METRIC_SPECS` import the classes to read their declared specs,
and that must stay cheap for the leaderboard.

Conventions (DESIGN.md section 2): videos float32 (T, 3, H, W) in [0, 1] RGB; hole mask bool
(T, 1, H, W), True = hole; disparity float32 (T, 1, H, W) in left-view pixels, x_R = x_L - d,
NaN invalid. Region masks are bool (T, 1, H, W) (None = the full frame).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from benchmark.metrics.spec import REGIONS, SCORING_PROTOCOLS, MetricSpec

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Record:
    """One number of one metric: ``value`` for ``region`` under ``scoring`` protocol ("paper" or
    "strict"), with ``note`` saying why when it is NaN or when the protocol does not apply."""

    region: str
    scoring: str
    value: float
    note: str | None = None


@dataclass
class Reference:
    """Everything about one clip's ground truth that does not depend on the method.

    ``gt`` (T, 3, H, W) float32 in [0, 1] on the scoring device; ``hole_mask`` (T, 1, H, W) bool
    or None; ``left`` / ``disparity`` optional (stereo consistency). ``regions`` /
    ``scoring_protocols``: what the preparing Scorer was asked for (metrics precompute for
    those). ``states``: metric name -> what its ``prepare`` returned. Region masks and
    paper-whitened ground truths are computed on first use and cached. ``seconds``: wall time
    of the preparation.
    """

    gt: torch.Tensor
    hole_mask: torch.Tensor | None
    left: torch.Tensor | None = None
    disparity: torch.Tensor | None = None
    regions: tuple[str, ...] = REGIONS
    scoring_protocols: tuple[str, ...] = SCORING_PROTOCOLS
    states: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    _masks: dict[str, Any] = field(default_factory=dict, repr=False)
    _empty: dict[str, bool] = field(default_factory=dict, repr=False)
    _whitened: dict[str, Any] = field(default_factory=dict, repr=False)

    def mask(self, region: str) -> torch.Tensor | None:
        """Bool (T, 1, H, W) mask of ``region`` (None for "full")."""
        if region not in self._masks:
            from benchmark.metrics import functional as fn

            mask = fn.region_mask(self.hole_mask, region)
            self._masks[region] = mask
            self._empty[region] = mask is not None and not bool(mask.any())
        return self._masks[region]

    def is_empty(self, region: str) -> bool:
        """True when ``region`` has no pixel in any frame (e.g. "inside" of a clip without holes)."""
        self.mask(region)
        return self._empty[region]

    def whitened(self, region: str) -> torch.Tensor:
        """The paper protocol's ground truth: every pixel outside ``region`` set to 1.0."""
        if region not in self._whitened:
            from benchmark.metrics import functional as fn

            self._whitened[region] = fn.whiten_outside(self.gt, self.mask(region))
        return self._whitened[region]

    def scored_regions(self, scoring: str, regions=None, scoring_protocols=None) -> list[str]:
        """Non-empty regions other than "full" scored under the scoring protocol ``scoring``
        (none when it is not among ``scoring_protocols``; defaults: what the reference was made for)."""
        regions = self.regions if regions is None else regions
        scoring_protocols = self.scoring_protocols if scoring_protocols is None else scoring_protocols
        if scoring not in scoring_protocols:
            return []
        return [r for r in regions if r != "full" and not self.is_empty(r)]

    def paper_regions(self, regions=None, scoring_protocols=None) -> list[str]:
        """The regions whitening applies to ("paper")."""
        return self.scored_regions("paper", regions, scoring_protocols)

    def strict_regions(self, regions=None, scoring_protocols=None) -> list[str]:
        """The regions scored by the per-pixel-map average ("strict")."""
        return self.scored_regions("strict", regions, scoring_protocols)


@dataclass
class Prediction:
    """One method's predicted right view ``video`` (T, 3, H, W) float32 in [0, 1] on the scoring
    device, scored against ``reference``; paper-whitened copies are cached so every metric
    shares them."""

    video: torch.Tensor
    reference: Reference
    _whitened: dict[str, Any] = field(default_factory=dict, repr=False)

    def whitened(self, region: str) -> torch.Tensor:
        """The prediction with every pixel outside ``region`` set to 1.0 (paper protocol)."""
        if region not in self._whitened:
            from benchmark.metrics import functional as fn

            self._whitened[region] = fn.whiten_outside(self.video, self.reference.mask(region))
        return self._whitened[region]


class Metric(ABC):
    """Base class of a metric family; see the module docstring.

    Subclasses declare ``spec`` (a :class:`MetricSpec`) and implement :meth:`score` (and
    :meth:`prepare` when part of the work depends only on the ground truth). The Scorer builds
    one instance per metric with its ``device`` (torch.device), ``batch_size`` (frames per
    network call, >= 1) and ``feature_dtype`` (storage dtype of cached network features).
    """

    spec: ClassVar[MetricSpec]

    def __init__(self, device: Any = "cpu", batch_size: int = 8, feature_dtype: Any = None):
        import torch

        self.device = torch.device(device)
        self.batch_size = batch_size
        self.feature_dtype = torch.float32 if feature_dtype is None else feature_dtype

    @property
    def name(self) -> str:
        return self.spec.name

    def prepare(self, reference: Reference) -> Any:
        """Method-independent work for one clip; cached by the Scorer in ``reference.states``."""
        return None

    @abstractmethod
    def score(self, prediction: Prediction, state: Any, regions: list[str],
              scoring_protocols: list[str]) -> list[Record]:
        """Records for the (region, scoring protocol) pairs this family computes (every metric
        family implements it; a class without it cannot be instantiated)."""

    # helpers for families --------------------------------------------------------------------
    @staticmethod
    def full_frame(value: float, scoring_protocols, note: str | None = None) -> list[Record]:
        """The region "full" under every scoring protocol: both protocols are the same number."""
        return [Record("full", protocol, value, note) for protocol in scoring_protocols]

    @staticmethod
    def for_all(regions, scoring_protocols, value: float = math.nan, note: str | None = None) -> list[Record]:
        """The same value and note for every region and scoring protocol (e.g. a NaN with a reason)."""
        return [Record(region, protocol, value, note) for region in regions for protocol in scoring_protocols]

    @classmethod
    def compute(cls, pred, gt, hole_mask=None, region: str = "full", protocol: str = "paper",
                left=None, disparity=None, device=None) -> float:
        """One number: this metric of ``pred`` against ``gt`` for one region and scoring protocol::

            METRICS["psnr"].compute(pred, gt, hole_mask, region="inside", protocol="strict")
        """
        from benchmark.metrics.scorer import Scorer

        scorer = Scorer([cls.spec.name], regions=[region], scoring_protocols=[protocol], device=device)
        rows = scorer.score(pred, scorer.prepare_reference(gt, hole_mask, left=left, disparity=disparity))
        return rows[0]["value"]
