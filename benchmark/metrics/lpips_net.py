"""LPIPS v0.1 split into "features of one video" and "distance to cached features", so the
ground truth's trunk features are computed once per clip and reused for every method.

The arithmetic is the ``lpips`` package's (scaling layer, trunk, unit-normalised features,
squared difference, 1x1 linear layers, spatial mean, sum over the five layers); the tests
check it against ``lpips.LPIPS.forward``.
"""

from __future__ import annotations

import torch

from benchmark.metrics.lpips_weights import load_lpips

_EPS = 1e-10  # lpips.normalize_tensor's epsilon

_MODEL_CACHE: dict[tuple[str, str], "LpipsNet"] = {}


def get_lpips_net(net: str, device: torch.device | str = "cpu", batch_size: int = 8) -> "LpipsNet":
    """A cached :class:`LpipsNet` per (trunk, device): weights are loaded and verified once."""
    key = (net, str(torch.device(device)))
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = LpipsNet(net, device)
    model = _MODEL_CACHE[key]
    model.batch_size = batch_size
    return model


class LpipsNet:
    """LPIPS v0.1 with trunk ``net`` ("alex" or "vgg") on ``device``, batched over frames.

    Videos are float32 (T, 3, H, W) in [0, 1]; they are mapped to [-1, 1] (the LPIPS input
    convention) inside. Runs in inference mode, channels-last.
    """

    def __init__(self, net: str, device: torch.device | str = "cpu", batch_size: int = 8):
        self.net_name = net
        self.device = torch.device(device)
        self.batch_size = batch_size
        model = load_lpips(net, self.device)
        self.model = model.to(memory_format=torch.channels_last)
        scaling = model.scaling_layer
        # [0, 1] -> [-1, 1] -> (x - shift) / scale, folded into one affine map.
        self._mul = (2.0 / scaling.scale).to(self.device)
        self._add = ((-1.0 - scaling.shift) / scaling.scale).to(self.device)
        self.lins = [lin.model[-1] for lin in model.lins]  # the 1x1 convs (dropout is a no-op in eval)

    @torch.inference_mode()
    def _features_batch(self, frames: torch.Tensor) -> list[torch.Tensor]:
        x = frames.to(self.device, torch.float32) * self._mul + self._add
        x = x.contiguous(memory_format=torch.channels_last)
        outs = self.model.net(x)
        return [f / (f.square().sum(dim=1, keepdim=True).sqrt_() + _EPS) for f in outs]

    def features(self, video: torch.Tensor, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        """Unit-normalised trunk features of every frame: five tensors (T, C_k, h_k, w_k)."""
        chunks: list[list[torch.Tensor]] = []
        for start in range(0, video.shape[0], self.batch_size):
            chunks.append([f.to(dtype) for f in self._features_batch(video[start:start + self.batch_size])])
        return [torch.cat([chunk[k] for chunk in chunks]) for k in range(len(chunks[0]))]

    @torch.inference_mode()
    def _maps_from_features(self, feats_a: list[torch.Tensor], feats_b: list[torch.Tensor]) -> list[torch.Tensor]:
        return [lin((fa - fb.to(fa.dtype)).square_()) for lin, fa, fb in zip(self.lins, feats_a, feats_b)]

    def distance_maps(self, video: torch.Tensor, reference_features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-layer LPIPS maps (T, 1, h_k, w_k) between ``video`` and cached reference features.

        The spatial mean of each map summed over layers is ``lpips.LPIPS``'s distance per frame.
        Only the ``video`` side runs through the trunk; its features are dropped batch by batch.
        """
        chunks: list[list[torch.Tensor]] = []
        for start in range(0, video.shape[0], self.batch_size):
            sl = slice(start, start + self.batch_size)
            feats = self._features_batch(video[sl])
            chunks.append(self._maps_from_features(feats, [f[sl].to(self.device) for f in reference_features]))
        return [torch.cat([chunk[k] for chunk in chunks]) for k in range(len(chunks[0]))]


def per_frame_distance(maps: list[torch.Tensor]) -> torch.Tensor:
    """LPIPS per frame (T,) from per-layer maps: spatial mean per layer, summed over layers."""
    return sum(m.mean(dim=(1, 2, 3), dtype=torch.float64) for m in maps)


def region_distance(maps: list[torch.Tensor], region: torch.Tensor) -> float:
    """Strict-protocol LPIPS: at each layer, the mean of the layer's map over the region (the
    bool (T, 1, H, W) mask area-resampled to that layer's grid, as fractional weights), summed
    over layers. Equals the mean of :func:`per_frame_distance` when the region is everything.
    NaN for an empty region."""
    total = 0.0
    weight = region.to(maps[0].dtype)
    for layer_map in maps:
        w = torch.nn.functional.interpolate(weight.to(layer_map.device), size=layer_map.shape[-2:], mode="area")
        den = w.sum(dtype=torch.float64)
        if den == 0:
            return float("nan")
        total += float((layer_map * w).sum(dtype=torch.float64) / den)
    return total
