"""The M2SVid method adapter, shared by both official variants.

The variants (``m2svid`` and ``m2svid-no-full-attention``) are registry entries declared as
data in :mod:`methods.m2svid` (metadata + ``loader_kwargs``); this module holds the one class
that runs them.
"""

from __future__ import annotations

import json
import os
import typing
import warnings
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, create_model

from benchmark.errors import StereobenchError
from benchmark.types import StereoInput
from benchmark.weights import WeightsStatus, weights_root
from methods.base import Method, MethodOptions
from methods.m2svid import M2SVID

# One-line help of each InferenceOptions field (the pipeline owns the fields and their defaults;
# a field added there without a line here still works, with a pointer to its docstring).
_INFERENCE_HELP: dict[str, tuple[str, dict[str, Any]]] = {
    "chunk_frames": ("frames per U-Net call (official: up to 25)", {"ge": 1, "le": 25}),
    "temporal_overlap": ("frames cross-faded between consecutive windows", {"ge": 0}),
    "tile_size": ("spatial tile side in pixels of the padded frame (tiles only above it)", {"ge": 1}),
    "tile_overlap": ("pixels cross-faded between neighbouring tiles", {"ge": 0}),
    "encode_chunk_size": ("frames per VAE-encoder batch (exact: the encoder is per frame)", {"ge": 1}),
    "decode_chunk_size": ("frames per temporal-decoder call (None: one call per window, official)", {"ge": 1}),
    "motion_bucket_id": ("SVD motion bucket id (official 127)", {}),
    "cond_aug": ("noise level of the conditioning augmentation (official 0.02)", {"ge": 0}),
    "dilate_mask": ("dilate the hole mask 3x3 as the official code does", {}),
    "progress": ("show a progress bar over windows", {}),
}


def _options_model() -> type[MethodOptions]:
    """M2SVid's options: its own (weights, tiny_random, full_attention) plus every field of
    :class:`methods.m2svid.pipeline.InferenceOptions`, typed from the dataclass, so the two never
    drift apart."""
    from methods.m2svid.pipeline import InferenceOptions

    hints = typing.get_type_hints(InferenceOptions)
    inference = {}
    for f in fields(InferenceOptions):
        help_text, limits = _INFERENCE_HELP.get(f.name, ("see methods.m2svid.pipeline.InferenceOptions", {}))
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        inference[f.name] = (hints[f.name], Field(default, description=help_text, **limits))
    return create_model(
        "M2SVidOptions", __base__=MethodOptions, __module__=__name__,
        weights=(str | Path | None, Field(None, description="converted folder or cached hub id (default: "
                                          "$<variant env var>, then $STEREOBENCH_WEIGHTS/<variant>)")),
        tiny_random=(bool, Field(False, description="a tiny random model of the same structure (smoke tests only)")),
        full_attention=(bool, Field(True, description="full attention for disoccluded tokens (the official "
                                    "ablation trained without it is `m2svid-no-full-attention`)")),
        **inference,
    )


class M2SVid(Method):
    """M2SVid on diffusers: one U-Net call per window of <= 25 frames.

    Options (keyword arguments, see :func:`_options_model`): ``weights`` (converted folder or
    cached hub id; default the variant's environment variable, then
    ``$STEREOBENCH_WEIGHTS/<variant name>``), ``tiny_random=True`` (a tiny random model of the
    same structure: smoke tests only), ``full_attention`` (the variant's default), and any field
    of :class:`methods.m2svid.pipeline.InferenceOptions` (``chunk_frames``,
    ``temporal_overlap``, ``tile_size``, ``tile_overlap``, ``decode_chunk_size``...).
    """

    meta = M2SVID.meta
    Options = _options_model()
    option_label = "M2SVid"

    def __init__(self, seed: int = 0, **options):
        super().__init__(seed=seed, **options)
        from methods.m2svid.pipeline import InferenceOptions

        names = {f.name for f in fields(InferenceOptions)}
        self.inference_options = InferenceOptions(**{k: getattr(self.config, k) for k in names})
        self.full_attention = self.config.full_attention
        self.pipeline = None

    @property
    def weights_env(self) -> str:
        """The environment variable naming this variant's folder (from its weight spec)."""
        return self.meta.weights[0].env_var

    @property
    def variant_dir(self) -> str:
        """This variant's default folder under :func:`weights_root` (its registry name)."""
        return self.meta.name

    # -- weights ---------------------------------------------------------------------------
    def weights_source(self) -> str:
        """The folder or hub id ``load`` will read (option, env var, then the default folder)."""
        if self.config.weights:
            return str(self.config.weights)
        if os.environ.get(self.weights_env):
            return os.environ[self.weights_env]
        return str(weights_root() / self.variant_dir)

    def weights_status(self) -> WeightsStatus:
        from methods.m2svid.pipeline import MANIFEST, check_weights_folder, resolve_weights_folder

        how = self.meta.weights[0].how_to_get
        if self.config.tiny_random:
            return WeightsStatus(present=True, location="(tiny random weights)")
        source = self.weights_source()
        try:
            folder = resolve_weights_folder(source)
        except StereobenchError as exc:
            return WeightsStatus(present=False, location=source, how_to_get=how, details=[str(exc)])
        missing = check_weights_folder(folder)
        if missing:
            return WeightsStatus(present=False, location=str(folder), how_to_get=how, details=[f"missing: {', '.join(missing)}"])
        manifest = json.loads((folder / MANIFEST).read_text())
        details = [f"{k}: {manifest[k]}" for k in ("source_file", "source_sha256", "full_attention") if k in manifest]
        return WeightsStatus(present=True, location=str(folder), details=details)

    def load(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> "M2SVid":
        from methods.m2svid.pipeline import M2SVidPipeline, load_pipeline, tiny_components

        device = torch.device(device)
        if device.type == "cpu" and dtype == torch.float16:
            warnings.warn("M2SVid: float16 is not supported well on CPU; falling back to float32", RuntimeWarning, stacklevel=2)
            dtype = torch.float32
        if self.config.tiny_random:
            unet, vae, encoder = tiny_components(seed=0)
            unet.full_attention = self.full_attention
            modules = [m.to(device) if dtype == torch.float32 else m.to(device, dtype) for m in (unet, vae, encoder)]
            self.pipeline = M2SVidPipeline(*modules, options=self.inference_options)
        else:
            self.pipeline = load_pipeline(self.weights_source(), device, dtype, full_attention=self.full_attention,
                                          options=self.inference_options)
        self.device, self.dtype = device, dtype
        return self

    def refine(self, inp: StereoInput) -> torch.Tensor:
        """Right video float32 (T, 3, H, W) in [0, 1] on the input's device."""
        if self.pipeline is None:
            raise StereobenchError("M2SVid.refine() called before load(); call method.load(device) first")
        inp.validate()
        out = self.pipeline(inp.left, inp.warped, inp.mask, fps=float(inp.fps), seed=self.seed)
        return out.to(inp.left.device, torch.float32)
