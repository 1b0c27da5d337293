"""`stereobench score` end to end on tiny PNG folders and MP4s the test writes itself."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio

from benchmark.cli import main
from benchmark.video_io import write_frames, write_mask

T, H, W = 3, 176, 176


@pytest.fixture
def clip(tmp_path):
    g = torch.Generator().manual_seed(0)
    gt = (torch.rand(T, 3, H, W, generator=g) * 255).round() / 255
    pred = ((gt + 0.05 * torch.randn(T, 3, H, W, generator=g)).clamp(0, 1) * 255).round() / 255
    mask = torch.zeros(T, 1, H, W, dtype=torch.bool)
    mask[:, :, 30:80, 40:100] = True
    write_frames(tmp_path / "gt", gt)
    write_frames(tmp_path / "pred", pred)
    write_mask(tmp_path / "mask", mask)
    return tmp_path, pred, gt, mask


def test_score_prints_one_json_object(clip, capsys):
    root, pred, gt, mask = clip
    code = main(["score", str(root / "pred"), str(root / "gt"), "--mask", str(root / "mask"),
                 "--metrics", "psnr,msssim_2d", "temporal_stability", "--output", str(root / "s.json")])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result == json.loads((root / "s.json").read_text())
    assert set(result["metrics"]) == {"psnr", "msssim_2d", "temporal_stability"}
    for metric in result["metrics"].values():
        assert set(metric) == {"full", "inside", "outside"}
        for region in metric.values():
            assert set(region) == {"paper", "strict"}
    expected = peak_signal_noise_ratio(gt.numpy(), pred.numpy(), data_range=1.0)
    assert result["metrics"]["psnr"]["full"]["paper"] == pytest.approx(expected, abs=1e-4)
    sel = mask.expand(-1, 3, -1, -1)
    inside = peak_signal_noise_ratio(gt[sel].numpy(), pred[sel].numpy(), data_range=1.0)
    assert result["metrics"]["psnr"]["inside"]["strict"] == pytest.approx(inside, abs=1e-4)
    assert result["hole_fraction"] == pytest.approx(float(mask.float().mean()))


def test_score_without_mask_and_single_protocol(clip, capsys):
    root, *_ = clip
    assert main(["score", str(root / "pred"), str(root / "gt"), "--metrics", "psnr", "msssim",
                 "--protocol", "strict"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["metrics"]["psnr"]) == {"full"}
    assert set(result["metrics"]["psnr"]["full"]) == {"strict"}
    # 3 frames are too few for 3-D MS-SSIM: null with the reason, never a crash
    assert result["metrics"]["msssim"]["full"]["strict"] is None
    assert "9 frames" in result["notes"]["msssim/full/strict"]
    assert not any(isinstance(v, float) and math.isnan(v) for v in result["metrics"]["psnr"]["full"].values())


def test_score_bad_input_is_one_line_exit_2(clip, capsys, tmp_path):
    root, pred, gt, mask = clip
    write_frames(tmp_path / "short", pred[:2])
    write_frames(tmp_path / "small", pred[..., :160])
    write_mask(tmp_path / "small_mask", mask[..., :100])
    cases = [
        (["score", str(tmp_path / "short"), str(root / "gt")], "frames"),
        (["score", str(tmp_path / "small"), str(root / "gt")], "resize"),
        (["score", str(root / "pred"), str(root / "gt"), "--mask", str(tmp_path / "small_mask")], "same size"),
        (["score", str(root / "pred"), str(root / "gt"), "--metrics", "lpips_vg"], "Did you mean 'lpips_vgg'"),
        (["score", str(root / "pred"), str(root / "missing")], "missing"),
        (["score", str(root / "pred"), str(root / "gt"), "--left", str(root / "gt")], "--disparity"),
    ]
    for argv, needle in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and needle in err and "\n" not in err, (argv, err)


def test_score_stereo_consistency_from_files(clip, capsys):
    root, pred, gt, mask = clip
    disparity = np.full((T, H, W), 3.0, np.float32)
    np.save(root / "disp.npy", disparity)
    # left view such that the ground truth is its exact right view: right(x) = left(x + 3)
    left = torch.roll(gt, shifts=3, dims=-1)
    write_frames(root / "left", left)
    assert main(["score", str(root / "gt"), str(root / "gt"), "--left", str(root / "left"),
                 "--disparity", str(root / "disp.npy"), "--metrics", "stereo_consistency"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["metrics"]["stereo_consistency"]["full"]["paper"] == pytest.approx(0.0, abs=1e-6)


def test_score_max_frames_and_scoring_protocol_alias(clip, capsys):
    root, pred, gt, mask = clip
    assert main(["score", str(root / "pred"), str(root / "gt"), "--mask", str(root / "mask"), "--metrics", "psnr",
                 "--max-frames", "2", "--scoring-protocol", "strict", "--batch-size", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["frames"] == 2 and result["protocols"] == ["strict"]
    sel = mask[:2].expand(-1, 3, -1, -1)
    inside = peak_signal_noise_ratio(gt[:2][sel].numpy(), pred[:2][sel].numpy(), data_range=1.0)
    assert result["metrics"]["psnr"]["inside"]["strict"] == pytest.approx(inside, abs=1e-4)
