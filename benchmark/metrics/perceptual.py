"""LPIPS v0.1 (the ``lpips`` package's arithmetic) as one family with a trunk parameter.

The ground truth's unit-normalised trunk features (full frame and each paper-whitened region)
are the family's per-clip state, so every further method runs only its own trunk passes.
"""

from __future__ import annotations

import weakref
from typing import Any, ClassVar

from benchmark.metrics.base import Metric, Prediction, Record, Reference
from benchmark.metrics.spec import MetricSpec


class LpipsState:
    """Cached ground-truth features of one trunk for one clip: variant ("full" or a region name,
    paper-whitened) -> five tensors (T, C_k, h_k, w_k) in the metric's ``feature_dtype``.
    Variants a later Scorer asks for (other regions) are computed on first use."""

    def __init__(self, metric: "LPIPS", reference: Reference):
        self.metric = metric
        # A weak link: the reference owns this state (reference.states), and a strong link back
        # would make a cycle that keeps a clip's features (~0.9 GB at 16x192x192 with VGG) alive
        # until the garbage collector happens to run.
        self._reference = weakref.ref(reference)
        self.features: dict[str, list[Any]] = {}

    @property
    def reference(self) -> Reference:
        reference = self._reference()
        if reference is None:  # pragma: no cover - a state is only used through its reference
            raise RuntimeError("LPIPS state used after its reference was freed")
        return reference

    def get(self, variant: str) -> list[Any]:
        if variant not in self.features:
            video = self.reference.gt if variant == "full" else self.reference.whitened(variant)
            self.features[variant] = self.metric.network().features(video, self.metric.feature_dtype)
        return self.features[variant]


class LPIPS(Metric):
    """LPIPS family; ``net`` is the trunk ("vgg" or "alex"). Full frame: mean over frames of
    the per-frame distance; strict: the per-layer maps averaged over the region
    (:func:`lpips_net.region_distance`); paper: the distance of whitened copies."""

    net: ClassVar[str]

    def network(self):
        from benchmark.metrics.lpips_net import get_lpips_net

        return get_lpips_net(self.net, self.device, self.batch_size)

    def prepare(self, reference: Reference) -> LpipsState:
        state = LpipsState(self, reference)
        for variant in ["full"] + reference.paper_regions():
            state.get(variant)
        return state

    def score(self, prediction: Prediction, state: LpipsState, regions, scoring_protocols) -> list[Record]:
        from benchmark.metrics.lpips_net import per_frame_distance, region_distance

        reference = prediction.reference
        net = self.network()
        maps = net.distance_maps(prediction.video, state.get("full"))
        records = self.full_frame(float(per_frame_distance(maps).mean()), scoring_protocols)
        for r in reference.strict_regions(regions, scoring_protocols):
            records.append(Record(r, "strict", region_distance(maps, reference.mask(r))))
        del maps  # the full-frame maps of a 16x512x512 video are large; free them before the next passes
        for r in reference.paper_regions(regions, scoring_protocols):
            paper_maps = net.distance_maps(prediction.whitened(r), state.get(r))
            records.append(Record(r, "paper", float(per_frame_distance(paper_maps).mean())))
        return records


class LPIPSVgg(LPIPS):
    spec = MetricSpec("lpips_vgg", "LPIPS-VGG", False, (0.0, None), "",
                      "LPIPS v0.1 with the VGG16 trunk, per frame on [-1, 1], mean over frames (the paper's)", True,
                      network="vgg")
    net = "vgg"


class LPIPSAlex(LPIPS):
    spec = MetricSpec("lpips_alex", "LPIPS-AlexNet", False, (0.0, None), "",
                      "LPIPS v0.1 with the AlexNet trunk, per frame on [-1, 1], mean over frames", network="alex")
    net = "alex"
