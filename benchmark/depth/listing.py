"""``stereobench weights`` rows for the depth models (a :data:`benchmark.weights.WEIGHT_PROVIDERS`
entry): each registered model's default weights, whether they are present and how to get them."""

from __future__ import annotations

from benchmark.depth.base import DEPTH_MODELS
from benchmark.errors import StereobenchError
from benchmark.weights import WeightsEntry, WeightsStatus


def weights_entries() -> list[WeightsEntry]:
    """One row per depth model (``files`` needs no weights; ``transformers`` takes whatever
    checkpoint is named, so it has no row); never downloads or loads a model."""
    rows = []
    for name in DEPTH_MODELS.names():
        try:
            cls = DEPTH_MODELS[name]
            specs = tuple(cls.weight_specs())
        except (StereobenchError, ImportError) as exc:
            rows.append(WeightsEntry(kind="depth model", name=name, error=str(exc)))
            continue
        if not specs and getattr(cls, "WEIGHTS_FROM_USER", False):
            continue  # ``transformers``: whatever checkpoint the user names; nothing to list
        if not specs:
            rows.append(WeightsEntry(kind="depth model", name=name, display_name=cls.DESCRIPTION,
                                     status=WeightsStatus(present=True)))
            continue
        found, missing = [], []
        for spec in specs:
            try:
                found.append((spec, spec.resolve()))
            except StereobenchError:
                missing.append(spec)
        details = [f"{spec.name}: present at {path}" for spec, path in found]
        details += [f"licence of {spec.name}: {spec.licence}" for spec in specs if spec.licence]
        if cls.LICENCE:
            details.append(f"licence: {cls.LICENCE}")
        # Alternatives (Depth Anything V2's variants): one is enough; parts (DepthCrafter's U-Net and
        # the SVD components): every one is needed.
        present = not missing if getattr(cls, "ALL_WEIGHTS_REQUIRED", False) else bool(found)
        status = WeightsStatus(present=present, location=str(found[0][1]) if found else "",
                               how_to_get=specs[0].how_to_get, details=details)
        rows.append(WeightsEntry(kind="depth model", name=name, display_name=cls.DESCRIPTION, specs=specs,
                                 status=status))
    return rows


__all__ = ["weights_entries"]
