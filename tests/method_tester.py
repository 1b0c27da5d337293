"""Shared tester for method adapters (the diffusers ``get_dummy_components`` idea).

Every adapter's test module reuses it::

    from tests.method_tester import MethodTesterMixin

    class TestMyMethod(MethodTesterMixin):
        def make_method(self, **options):
            return MyMethod(seed=0, tiny_config=True, **options)   # tiny random weights

        # optional hooks, see below
        def save_and_reload(self, method, tmp_path):
            method.save_weights(tmp_path / "w.safetensors")
            return MyMethod(seed=0, weights=tmp_path / "w.safetensors").load("cpu")

Hooks (override as needed):

- ``make_method(**options) -> Method`` (required): a fresh, unloaded adapter, tiny weights.
- ``make_input() -> StereoInput``: default :func:`make_layered_scene` with ``input_size``
  (T, H, W) = ``(4, 64, 64)``; override ``input_size`` for methods with size constraints (e.g.
  sides divisible by 64).
- ``save_and_reload(method, tmp_path) -> Method``: save the loaded method's weights, build a
  new adapter from the saved file(s) and load it. Required when ``meta.weights`` is non-empty:
  the test fails if an adapter declares weights but does not override this hook.
- ``check_outside_mask(output, inp)``: asserts the method's promise about pixels outside the
  hole mask; the default follows ``meta.outside_mask`` ("warped": equal to ``inp.warped``
  exactly; "any": no check).
- ``determinism_atol`` (default 0.0): tolerance between two runs with the same seed.
- ``device_atol`` (default 1e-4): tolerance between the CPU and the CUDA output.

``make_method(**options)`` must pass ``options`` on to the adapter: the mixin checks that an
unknown option is an error and that every declared option has a default and one-line help.

The tests run on CPU by default; the CUDA ones are marked ``gpu`` and skipped without a device.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmark.errors import StereobenchError
from benchmark.types import StereoInput
from benchmark.weights import WeightsStatus
from methods.base import Method
from methods.meta import MethodMeta


def smooth_texture(channels: int, height: int, width: int, generator: torch.Generator, cell: int = 4) -> torch.Tensor:
    """Random low-frequency texture, float32 (C, H, W) in [0, 1] (bilinear upsampling of noise)."""
    coarse = torch.rand(1, channels, height // cell + 2, width // cell + 2, generator=generator)
    fine = torch.nn.functional.interpolate(coarse, scale_factor=cell, mode="bilinear", align_corners=False)
    return fine[0, :, :height, :width].contiguous()


def make_layered_scene(
    frames: int = 4,
    height: int = 64,
    width: int = 64,
    background_disparity: int = 2,
    foreground_disparity: int = 8,
    square: int | None = None,
    velocity: int = -6,
    seed: int = 0,
) -> tuple[StereoInput, torch.Tensor]:
    """A two-layer scene with an exact ground-truth right view, built analytically (no warp code).

    A textured background plane at integer disparity ``background_disparity`` and a textured
    square at ``foreground_disparity`` that moves ``velocity`` pixels per frame horizontally over
    a static camera. Integer disparities make the forward warp exact, so the warped view is the
    ground truth with the disoccluded pixels zeroed, and the hole mask is known in closed form:
    the ``foreground_disparity - background_disparity`` columns just right of the square's right
    edge in the right view, plus the ``background_disparity`` columns at the right border that
    leave the frame.

    Returns:
        (StereoInput, gt_right float32 (T, 3, H, W)).
    """
    g = torch.Generator().manual_seed(seed)
    side = square or max(8, height // 3)
    d_bg, d_fg = background_disparity, foreground_disparity
    background = smooth_texture(3, height, width + d_bg, g)
    foreground = smooth_texture(3, side, side, g, cell=2) * 0.5 + 0.5  # brighter: easy to tell apart
    y0 = (height - side) // 2
    left = background[:, :, :width].expand(frames, -1, -1, -1).clone()
    gt_right = background[:, :, d_bg:d_bg + width].expand(frames, -1, -1, -1).clone()
    disparity = torch.full((frames, 1, height, width), float(d_bg))
    mask = torch.zeros(frames, 1, height, width, dtype=torch.bool)
    mask[:, :, :, width - d_bg:] = True  # background leaving the frame at the right border
    x_start = width // 2 if velocity < 0 else width // 6
    for t in range(frames):  # a handful of frames: building the fixture, not a method
        x0 = x_start + velocity * t
        left[t, :, y0:y0 + side, x0:x0 + side] = foreground
        disparity[t, :, y0:y0 + side, x0:x0 + side] = float(d_fg)
        gt_right[t, :, y0:y0 + side, x0 - d_fg:x0 - d_fg + side] = foreground
        mask[t, :, y0:y0 + side, x0 + side - d_fg:x0 + side - d_bg] = True
    warped = torch.where(mask, torch.zeros_like(gt_right), gt_right)
    inp = StereoInput(
        left=left, warped=warped, mask=mask, disparity=disparity, clip_id="test/layered", fps=5.0,
        params={"scene": "layered", "seed": seed, "frames": frames, "size": [height, width]},
    )
    return inp, gt_right


class MethodTesterMixin:
    """Contract tests every method adapter inherits; see the module docstring for the hooks."""

    input_size: tuple[int, int, int] = (4, 64, 64)
    determinism_atol: float = 0.0
    device_atol: float = 1e-4

    # -- hooks -------------------------------------------------------------------------------
    def make_method(self, **options) -> Method:  # pragma: no cover - must be overridden
        raise NotImplementedError("override make_method() in the adapter's test class")

    def make_input(self) -> StereoInput:
        frames, height, width = self.input_size
        inp, _ = make_layered_scene(frames, height, width)
        return inp

    def save_and_reload(self, method: Method, tmp_path: Path) -> Method | None:
        return None

    def check_outside_mask(self, output: torch.Tensor, inp: StereoInput) -> None:
        if type(self.make_method()).meta.outside_mask == "warped":
            keep = (~inp.mask).expand_as(output)
            assert torch.equal(output[keep], inp.warped.to(output.device)[keep]), (
                "meta.outside_mask == 'warped' but pixels outside the hole mask changed")

    # -- helpers -----------------------------------------------------------------------------
    def _refine(self, device: str = "cpu", **options) -> tuple[torch.Tensor, StereoInput]:
        inp = self.make_input().to(device)
        method = self.make_method(**options).load(device)
        with torch.no_grad():
            out = method.refine(inp)
        return out, inp

    # -- tests -------------------------------------------------------------------------------
    def test_meta_is_declared(self):
        method = self.make_method()
        meta = type(method).meta
        assert isinstance(meta, MethodMeta)
        assert meta.name and meta.display_name and meta.licence, "name, display name and licence are required"
        for spec in meta.weights:
            assert spec.pinned(), f"weights {spec.name!r} of {meta.name} have no pinned revision or checksum"
            assert spec.how_to_get, f"weights {spec.name!r} of {meta.name} do not say how to get them"
        assert isinstance(method.weights_status(), WeightsStatus)

    def test_unknown_option_is_an_error(self):
        # Bug 2 of issue 9: an option typo must never silently run the defaults.
        with pytest.raises(StereobenchError, match="no_such_option_xyz"):
            self.make_method(no_such_option_xyz=1)

    def test_options_are_declared(self):
        options = type(self.make_method()).Options
        for name, info in options.model_fields.items():
            assert info.description, f"option {name!r} has no one-line help (Field(description=...))"
            assert not info.is_required(), f"option {name!r} has no default"

    def test_output_contract(self):
        out, inp = self._refine()
        assert out.shape == inp.left.shape, f"expected {tuple(inp.left.shape)}, got {tuple(out.shape)}"
        assert out.dtype == torch.float32
        assert out.device == inp.left.device
        assert torch.isfinite(out).all(), "output has NaN or inf"
        assert out.min() >= 0.0 and out.max() <= 1.0, f"output outside [0, 1]: [{out.min()}, {out.max()}]"

    def test_input_not_modified(self):
        inp = self.make_input()
        before = [x.clone() for x in (inp.left, inp.warped, inp.mask, inp.disparity)]
        with torch.no_grad():
            self.make_method().load("cpu").refine(inp)
        after = (inp.left, inp.warped, inp.mask, inp.disparity)
        assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True)), "refine() changed its input"

    def test_outside_mask_promise(self):
        out, inp = self._refine()
        self.check_outside_mask(out, inp)

    def test_deterministic_with_seed(self):
        first, _ = self._refine()
        second, _ = self._refine()
        assert torch.allclose(first, second, atol=self.determinism_atol, rtol=0), "two runs with one seed differ"
        # The same loaded instance called twice must not carry state between calls either.
        inp = self.make_input()
        method = self.make_method().load("cpu")
        with torch.no_grad():
            a, b = method.refine(inp), method.refine(inp)
        assert torch.allclose(a, b, atol=self.determinism_atol, rtol=0)

    @pytest.mark.gpu
    def test_cuda_matches_cpu(self):
        cpu_out, _ = self._refine("cpu")
        cuda_out, _ = self._refine("cuda")
        assert cuda_out.device.type == "cuda"
        assert torch.allclose(cuda_out.cpu(), cpu_out, atol=self.device_atol, rtol=0)

    def test_save_and_reload_weights(self, tmp_path):
        method = self.make_method().load("cpu")
        reloaded = self.save_and_reload(method, tmp_path)
        if reloaded is None:
            if type(method).meta.weights:
                pytest.fail(f"{type(method).meta.name} declares weights: override save_and_reload()")
            pytest.skip("method has no weights")
        inp = self.make_input()
        with torch.no_grad():
            expected, got = method.refine(inp), reloaded.refine(inp)
        assert torch.allclose(expected, got, atol=self.determinism_atol, rtol=0), "reloaded weights give other output"
