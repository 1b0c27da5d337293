"""The M2SVid method adapters (full attention and the official no-full-attention variant)."""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import fields
from pathlib import Path
from typing import ClassVar

import torch

from benchmark.errors import StereobenchError
from benchmark.stereo.input import StereoInput
from methods.base import Method, MethodMeta, WeightSpec, WeightsStatus

PAPER = "M2SVid: End-to-End Inpainting and Refinement for Monocular-to-Stereo Video Conversion"
CITATION = "Shvetsova, Bhat, Truong, Kuehne, Tombari. M2SVid. 2025."
GCS = "https://storage.googleapis.com/gresearch/m2svid"
OFFICIAL_CODE = "m2svid@11b0133093d6abfcc6ff953890edf05457975318"


def weights_root() -> Path:
    """``$STEREOBENCH_WEIGHTS`` or ``~/.cache/stereobench/weights`` (shared with other weights)."""
    root = os.environ.get("STEREOBENCH_WEIGHTS")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "stereobench" / "weights"


def _spec(filename: str, size_gb: float, variant_dir: str, env_var: str) -> WeightSpec:
    return WeightSpec(
        name="m2svid-checkpoint",
        source=f"{GCS}/{filename}",
        revision=f"file linked by {OFFICIAL_CODE} (no checksum published; the converter records its sha256)",
        env_var=env_var,
        filename=filename,
        size_bytes=int(size_gb * 1e9),
        licence="Apache-2.0",
        how_to_get=(
            f"wget {GCS}/{filename} && stereobench weights convert-m2svid {filename} "
            f"--out {weights_root() / variant_dir}  (VAE/CLIP come from the checkpoint; if it lacks them add "
            f"--svd-source stabilityai/stable-video-diffusion-img2vid-xt from your Hugging Face cache); "
            f"or set {env_var} to a converted folder"
        ),
    )


class M2SVid(Method):
    """M2SVid on diffusers: one U-Net call per window of <= 25 frames.

    Options (keyword arguments): ``weights`` (converted folder or cached hub id; default
    ``$M2SVID_WEIGHTS`` then ``$STEREOBENCH_WEIGHTS/m2svid``), ``tiny_random=True`` (a tiny
    random model of the same structure: smoke tests only), and any field of
    :class:`methods.m2svid.pipeline.InferenceOptions` (``chunk_frames``, ``temporal_overlap``,
    ``tile_size``, ``tile_overlap``, ``decode_chunk_size``...).
    """

    full_attention: ClassVar[bool] = True
    weights_env: ClassVar[str] = "M2SVID_WEIGHTS"
    variant_dir: ClassVar[str] = "m2svid"
    meta = MethodMeta(
        name="m2svid",
        display_name="M2SVid",
        paper=PAPER,
        citation=CITATION,
        url="https://m2svid.github.io/",
        licence="Apache-2.0",
        weights=(_spec("m2svid_weights.pt", 4.64, "m2svid", "M2SVID_WEIGHTS"),),
        native_resolution=(512, 512),
        native_frames=16,
        denoising_steps=1,
        needs_gpu=True,
        native_warp="m2svid",
        outside_mask="any",
        description="SVD U-Net with 13-channel input (left, warped, mask), full attention for disoccluded "
        "tokens, single-step inference; frames 16 (evaluation) / up to 25 per call.",
    )

    def __init__(self, seed: int = 0, **options):
        super().__init__(seed=seed, **options)
        from methods.m2svid.pipeline import InferenceOptions

        names = {f.name for f in fields(InferenceOptions)}
        unknown = set(options) - names - {"weights", "tiny_random"}
        if unknown:
            raise StereobenchError(f"unknown M2SVid option(s) {sorted(unknown)}; valid: weights, tiny_random, {', '.join(sorted(names))}")
        self.inference_options = InferenceOptions(**{k: v for k, v in options.items() if k in names})
        self.pipeline = None

    # -- weights ---------------------------------------------------------------------------
    def weights_source(self) -> str:
        """The folder or hub id ``load`` will read (option, env var, then the default folder)."""
        if self.options.get("weights"):
            return str(self.options["weights"])
        if os.environ.get(self.weights_env):
            return os.environ[self.weights_env]
        return str(weights_root() / self.variant_dir)

    def weights_status(self) -> WeightsStatus:
        from methods.m2svid.pipeline import MANIFEST, check_weights_folder, resolve_weights_folder

        how = self.meta.weights[0].how_to_get
        if self.options.get("tiny_random"):
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
        if self.options.get("tiny_random"):
            unet, vae, encoder = tiny_components(seed=0)
            unet.full_attention = self.full_attention
            modules = [m.to(device) if dtype == torch.float32 else m.to(device, dtype) for m in (unet, vae, encoder)]
            self.pipeline = M2SVidPipeline(*modules, options=self.inference_options)
        else:
            self.pipeline = load_pipeline(self.weights_source(), device, dtype, full_attention=self.full_attention,
                                          options=self.inference_options)
        self.device, self.dtype = device, dtype
        return self

    def unload(self) -> None:
        self.pipeline = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def refine(self, inp: StereoInput) -> torch.Tensor:
        """Right video float32 (T, 3, H, W) in [0, 1] on the input's device."""
        if self.pipeline is None:
            raise StereobenchError("M2SVid.refine() called before load(); call method.load(device) first")
        inp.validate()
        out = self.pipeline(inp.left, inp.warped, inp.mask, fps=float(inp.fps), seed=self.seed)
        return out.to(inp.left.device, torch.float32)


class M2SVidNoFullAttention(M2SVid):
    """The official variant without full attention for disoccluded tokens (its own weights)."""

    full_attention: ClassVar[bool] = False
    weights_env: ClassVar[str] = "M2SVID_NO_FULL_ATTENTION_WEIGHTS"
    variant_dir: ClassVar[str] = "m2svid-no-full-attention"
    meta = MethodMeta(
        **{
            **M2SVid.meta.to_dict(),
            "name": "m2svid-no-full-attention",
            "display_name": "M2SVid (no full attention)",
            "weights": (_spec("m2svid_no_full_atten_weights.pt", 4.6, "m2svid-no-full-attention",
                              "M2SVID_NO_FULL_ATTENTION_WEIGHTS"),),
            "description": "M2SVid without full attention for disoccluded tokens (official ablation weights).",
        }
    )
