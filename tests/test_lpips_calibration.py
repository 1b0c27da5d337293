"""LPIPS calibration against the LPIPS authors' published numbers (tests/data/lpips, BSD-2-Clause,
see ATTRIBUTION.md), and an independent NumPy (NHWC, flax-layout) forward pass for VGG.

Images follow lpips' own convention: RGB, ``uint8 / 127.5 - 1`` in [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.metrics.lpips_weights import FIX_COMMAND, load_converted_state, load_lpips, weight_path

DATA = Path(__file__).parent / "data" / "lpips"

# Published (LPIPS authors' README, AlexNet v0.1) and, for VGG, measured here and confirmed by the
# independent NumPy forward pass below (docs/metrics.md).
CALIBRATION = {
    ("alex", "ex_p0"): 0.722, ("alex", "ex_p1"): 0.138,
    ("vgg", "ex_p0"): 0.569, ("vgg", "ex_p1"): 0.422,
}


def _image(name: str) -> np.ndarray:
    return np.asarray(Image.open(DATA / f"{name}.png").convert("RGB"), dtype=np.float32) / 127.5 - 1.0


def _need(net: str) -> None:
    if not weight_path(net).is_file():
        pytest.skip(f"LPIPS {net} weights not built; run {FIX_COMMAND}")


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_calibration_numbers(net):
    _need(net)
    model = load_lpips(net, prefer_torchvision=False)
    ref = torch.from_numpy(_image("ex_ref")).permute(2, 0, 1)[None]
    for other in ("ex_p0", "ex_p1"):
        x = torch.from_numpy(_image(other)).permute(2, 0, 1)[None]
        with torch.inference_mode():
            distance = float(model(ref, x))
        assert round(distance, 3) == CALIBRATION[(net, other)], (net, other, distance)


# --- an independent forward pass: NumPy, NHWC, kernels in flax layout (kh, kw, in, out) ----------

def _conv(x, kernel, bias, stride=1, pad=1):
    kh, kw, cin, cout = kernel.shape
    x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    h, w = (x.shape[0] - kh) // stride + 1, (x.shape[1] - kw) // stride + 1
    columns = np.empty((h, w, kh, kw, cin), np.float32)
    for i in range(kh):
        for j in range(kw):
            columns[:, :, i, j] = x[i:i + stride * h:stride, j:j + stride * w:stride]
    return np.maximum(columns.reshape(h * w, -1) @ kernel.reshape(-1, cout) + bias, 0).reshape(h, w, cout)


def _maxpool(x, k, s):
    h, w = (x.shape[0] - k) // s + 1, (x.shape[1] - k) // s + 1
    out = np.full((h, w, x.shape[2]), -np.inf, np.float32)
    for i in range(k):
        for j in range(k):
            out = np.maximum(out, x[i:i + s * h:s, j:j + s * w:s])
    return out


def _numpy_vgg_lpips(state: dict, a: np.ndarray, b: np.ndarray) -> float:
    shift = np.array([-0.030, -0.088, -0.188], np.float32)
    scale = np.array([0.458, 0.448, 0.450], np.float32)
    convs = [(state[f"features.{i}.weight"].permute(2, 3, 1, 0).numpy(), state[f"features.{i}.bias"].numpy())
             for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)]
    plan = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
    taps = {1, 4, 8, 12, 16}  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3

    def trunk(x):
        outs, n = [], 0
        for i, step in enumerate(plan):
            if step == "M":
                x = _maxpool(x, 2, 2)
            else:
                x = _conv(x, *convs[n])
                n += 1
                if i in taps:
                    outs.append(x)
        return outs

    total = 0.0
    for k, (fa, fb) in enumerate(zip(trunk((a - shift) / scale), trunk((b - shift) / scale))):
        fa = fa / (np.sqrt((fa ** 2).sum(-1, keepdims=True)) + 1e-10)
        fb = fb / (np.sqrt((fb ** 2).sum(-1, keepdims=True)) + 1e-10)
        total += float((((fa - fb) ** 2) @ state[f"lin{k}.model.1.weight"].flatten().numpy()).mean())
    return total


def test_vgg_matches_independent_numpy_forward():
    _need("vgg")
    state = load_converted_state("vgg")
    model = load_lpips("vgg", prefer_torchvision=False)
    ref = _image("ex_ref")
    for other in ("ex_p0", "ex_p1"):
        x = _image(other)
        with torch.inference_mode():
            torch_value = float(model(torch.from_numpy(ref).permute(2, 0, 1)[None],
                                      torch.from_numpy(x).permute(2, 0, 1)[None]))
        assert _numpy_vgg_lpips(state, ref, x) == pytest.approx(torch_value, rel=1e-4)
