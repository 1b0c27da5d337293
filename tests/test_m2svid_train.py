"""M2SVid training on the tiny configuration (CPU): one step trains only the U-Net, a short
overfit lowers the loss, a resumed run continues the step count."""

from __future__ import annotations

import json

import pytest
import torch

from methods.m2svid.pipeline import M2SVidPipeline, tiny_components
from methods.m2svid.train import TrainConfig, TrainSample, m2svid_loss, train
from tests.method_tester import make_layered_scene


def _samples():
    inp, gt = make_layered_scene(3, 16, 16, background_disparity=1, foreground_disparity=3, square=6, velocity=-1)
    return [TrainSample(inp.left, inp.warped, inp.mask, gt, inp.fps)]


def _dilated(mask):
    return (torch.nn.functional.max_pool2d(mask.float(), 3, 1, 1) > 0.5).float()


def _pipe():
    return M2SVidPipeline(*tiny_components(seed=0))


def _config(tmp_path, **kw):
    base = dict(init="tiny", output_dir=str(tmp_path / "run"), frames=3, size=16, steps=1, gradient_accumulation=1,
                lpips_net=None, checkpoint_every=0, learning_rate=1e-3)
    return TrainConfig(**{**base, **kw})


def test_one_step_changes_unet_only(tmp_path):
    pipe = _pipe()
    before = {name: {k: v.clone() for k, v in m.state_dict().items()}
              for name, m in (("unet", pipe.unet), ("vae", pipe.vae), ("clip", pipe.image_encoder))}
    result = train(_config(tmp_path), samples=_samples(), pipe=pipe)
    assert result["step"] == 1 and result["history"][0]["loss"] > 0
    changed = lambda name, m: any(not torch.equal(before[name][k], v) for k, v in m.state_dict().items())  # noqa: E731
    assert changed("unet", pipe.unet)
    assert not changed("vae", pipe.vae) and not changed("clip", pipe.image_encoder)


def test_short_overfit_lowers_latent_loss(tmp_path):
    # The image terms have a high floor with a frozen *random* tiny decoder, so the overfit is
    # measured on the latent term alone (same code path, other weights 0).
    pipe = _pipe()
    samples = _samples()
    batch = {"left": samples[0].left[None], "warped": samples[0].warped[None], "mask": _dilated(samples[0].mask)[None],
             "right": samples[0].right[None], "fps": torch.tensor([5.0])}

    def loss_now():
        pipe.unet.eval()
        with torch.no_grad():
            return m2svid_loss(pipe, batch, generator=torch.Generator().manual_seed(0))[1]["latent_l2"]

    initial = loss_now()
    # Whole clip at its own rate every step (scale 1, fps = the clip's): the batch above.
    train(_config(tmp_path, steps=12, learning_rate=1e-2, l1_weight=0.0, lpips_weight=0.0, fps_range=(5, 5),
                  resize_scale=(1.0, 1.0)), samples=samples, pipe=pipe)
    final = loss_now()
    assert final < 0.5 * initial, (initial, final)


def test_resume_continues_step_count(tmp_path):
    samples = _samples()
    first = train(_config(tmp_path, steps=2, checkpoint_every=1), samples=samples, pipe=_pipe())
    assert first["step"] == 2
    assert json.loads((tmp_path / "run" / "checkpoints" / "step-2" / "trainer_state.json").read_text())["step"] == 2
    pipe = _pipe()
    second = train(_config(tmp_path, steps=3, checkpoint_every=1), samples=samples, pipe=pipe)
    assert second["step"] == 3 and len(second["history"]) == 1  # one new step after resuming at 2
    # The resumed U-Net started from the checkpoint, not from the fresh init.
    fresh = _pipe()
    assert any(not torch.equal(a, b) for a, b in zip(pipe.unet.state_dict().values(), fresh.unet.state_dict().values()))
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]


def test_lpips_term_uses_suite_weights_or_names_the_fix(tmp_path):
    from benchmark.errors import StereobenchError

    try:
        from benchmark.metrics.lpips_weights import load_lpips

        lpips_model = load_lpips("vgg", "cpu")
    except StereobenchError as exc:
        assert "weights" in str(exc).lower()
        pytest.skip(f"LPIPS VGG weights not built here: {exc}")
    samples = _samples()
    batch = {"left": samples[0].left[None], "warped": samples[0].warped[None], "mask": samples[0].mask[None],
             "right": samples[0].right[None], "fps": torch.tensor([5.0])}
    pipe = _pipe()
    with torch.no_grad():
        loss, parts = m2svid_loss(pipe, batch, lpips_model, torch.Generator().manual_seed(0))
    assert parts["lpips"] > 0
    assert loss.item() == pytest.approx(parts["latent_l2"] + parts["l1"] + parts["lpips"], rel=1e-5)


# ---- training-sample schedule (official mix of settings, fps and RandomResizedCrop) ----------

def _counting_clip(frames=40, height=20, width=28, fps=30.0):
    """A clip whose left frame k is the constant k / 100 (so sampled frames can be identified)."""
    left = (torch.arange(frames, dtype=torch.float32) / 100).view(-1, 1, 1, 1).expand(frames, 3, height, width).clone()
    g = torch.Generator().manual_seed(5)
    right = torch.rand(frames, 3, height, width, generator=g)
    warped = torch.rand(frames, 3, height, width, generator=g)
    mask = torch.zeros(frames, 1, height, width, dtype=torch.bool)
    mask[:, :, 6:11, 9:13] = True
    mask[:, :, 0:2, 0:3] = True  # touches the border
    return TrainSample(left, warped, mask, right, fps)


def test_default_schedule_is_the_official_mix():
    config = TrainConfig(init="tiny", output_dir="unused")
    settings, weights = config.schedule()
    assert settings == ((4, 512), (16, 256), (25, 192)) and weights == pytest.approx((1 / 3,) * 3)
    assert config.fps_range == (5, 30) and config.resize_scale == (0.3, 1.0) and config.protocol == "native"
    assert TrainConfig(init="tiny", output_dir="unused", frames=8, size=64).schedule() == (((8, 64),), (1.0,))


def test_schedule_frequencies_fps_and_shapes():
    from methods.m2svid.train import ScheduledClips

    settings, weights = ((2, 8), (3, 16), (5, 12)), (0.5, 0.3, 0.2)
    data = ScheduledClips([_counting_clip()], settings, weights, fps_range=(5, 30), seed=3, length=2000)
    n = 900
    counts, fps_counts, scales = [0, 0, 0], {}, []
    for index in range(n):
        item = data[index]
        frames, side = settings[item["setting"]]
        counts[item["setting"]] += 1
        assert item["left"].shape == item["right"].shape == item["warped"].shape == (frames, 3, side, side)
        assert item["mask"].shape == (frames, 1, side, side) and item["frame_index"].shape == (frames,)
        fps = int(item["fps"])
        fps_counts[fps] = fps_counts.get(fps, 0) + 1
        scales.append(int(item["crop"][2]) ** 2 / 20**2)
    for count, p in zip(counts, weights):  # binomial: within 4.5 standard deviations
        assert abs(count - n * p) < 4.5 * (n * p * (1 - p)) ** 0.5, (counts, weights)
    assert set(fps_counts) == set(range(5, 31))  # integers 5..30 inclusive, uniformly
    expected = n / 26
    assert all(abs(c - expected) < 4.5 * (expected * (1 - 1 / 26)) ** 0.5 for c in fps_counts.values()), fps_counts
    # RandomResizedCrop area fraction: U(0.3, 1) up to the rounding of the side to whole pixels.
    scales = torch.tensor(scales)
    assert scales.min() >= 0.3 - 2 / 20 and scales.max() <= 1.0
    assert abs(float(scales.mean()) - 0.65) < 0.03
    # Same index -> same sample (resumable); another seed -> another sequence.
    assert torch.equal(data[7]["left"], data[7]["left"])
    other = ScheduledClips([_counting_clip()], settings, weights, seed=4)
    assert any(not torch.equal(data[i]["crop"], other[i]["crop"]) for i in range(5))


def test_sample_matches_torchvision_resized_crop_and_official_mask_order():
    """Frames at the sampled rate (nearest frame), zero padding past the end, the warped view
    zeroed under the closed mask before the 3x3 dilation, and one joint crop + bilinear
    antialiased resize, compared with torchvision's resized_crop (an independent reference)."""
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    from methods.m2svid.train import ScheduledClips

    clip = _counting_clip()
    data = ScheduledClips([clip], ((25, 16),), fps_range=(5, 30), seed=0, length=100)
    seen_padding = False
    for index in range(12):
        item = data[index]
        frame_index = item["frame_index"]
        valid = frame_index >= 0
        seen_padding |= bool((~valid).any())
        step = 30 / float(item["fps"])
        gaps = frame_index[valid].diff().double()
        assert ((gaps - step).abs() <= 1).all()  # nearest frame at fps: gaps are floor/ceil of 30/fps
        assert valid[: int(valid.sum())].all()  # padding only at the end
        top, left, side = item["crop"].tolist()
        take = frame_index.clamp(min=0)
        dilated = (torch.nn.functional.max_pool2d(clip.mask[take].float(), 3, 1, 1) > 0.5).float()
        zeroed = torch.where(clip.mask[take], 0.0, clip.warped[take])

        def reference(video):
            out = TF.resized_crop(video, top, left, side, side, [16, 16], InterpolationMode.BILINEAR, antialias=True)
            return out * valid.float()[:, None, None, None]

        for key, video in (("left", clip.left[take]), ("right", clip.right[take]), ("warped", zeroed), ("mask", dilated)):
            assert torch.allclose(item[key], reference(video), atol=1e-5), key
        assert torch.allclose(item["left"][valid][:, 0, 0, 0], frame_index[valid].float() / 100, atol=1e-6)
    assert seen_padding  # 25 frames at low fps run past the 40-frame clip: zero frames, as official


# ---- the official training target: first-stage encoder without quant_conv ------------------

def _converted_folder(tmp_path, first_stage_shift: float = 0.0):
    """A tiny checkpoint in the official layout with a first stage (equal to the conditioner's
    encoder unless shifted) and a random, non-identity quant_conv, converted to a folder."""
    from methods.m2svid.convert import ENCODER_PREFIX, FIRST_STAGE_ENCODER_PREFIX, convert_checkpoint
    from tests.test_m2svid_convert import _official_state, _reference, _tiny_configs, _write

    unet, vae, encoder = _reference()
    state = _official_state(unet, vae, encoder)
    first_stage = {FIRST_STAGE_ENCODER_PREFIX + k[len(ENCODER_PREFIX):]: v.clone()
                   for k, v in state.items() if k.startswith(ENCODER_PREFIX)}
    first_stage[FIRST_STAGE_ENCODER_PREFIX + "conv_in.bias"] += first_stage_shift
    out = convert_checkpoint(_write(tmp_path, {**state, **first_stage}), tmp_path / "converted", dtype=torch.float32,
                             **_tiny_configs(encoder))
    return out, vae, first_stage


@pytest.mark.parametrize("shift", [0.0, 0.25])
def test_training_target_is_the_first_stage_encoder_without_quant_conv(tmp_path, shift):
    import copy

    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    from methods.m2svid.convert import FIRST_STAGE_ENCODER_PREFIX
    from methods.m2svid.train import build_pipeline_for_training, training_target, training_target_encoder

    folder, vae, first_stage = _converted_folder(tmp_path, shift)
    manifest = json.loads((folder / "m2svid.json").read_text())
    assert manifest["quant_conv_is_identity"] is False
    assert manifest["first_stage_encoder_equals_conditioner_encoder"] is (shift == 0.0)
    assert (folder / "training_target_encoder").is_dir() is (shift != 0.0)
    pipe = build_pipeline_for_training(str(folder))
    module, use_quant_conv, _ = training_target_encoder(pipe)
    assert use_quant_conv is (shift != 0.0)  # the saved first-stage encoder has no quant_conv of its own
    # Independent reference: the first-stage encoder's own tensors, no quant_conv, posterior sample.
    reference_encoder = copy.deepcopy(vae.encoder)
    with torch.no_grad():
        reference_encoder.conv_in.bias.copy_(first_stage[FIRST_STAGE_ENCODER_PREFIX + "conv_in.bias"])
    gt = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        posterior = DiagonalGaussianDistribution(reference_encoder(gt))
        noise = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(4))
        expected = 0.18215 * (posterior.mean + posterior.std * noise)
        target = training_target(pipe, gt, torch.Generator().manual_seed(4))
        with_quant_conv = 0.18215 * pipe.vae.encode(gt).latent_dist.mean
    assert torch.allclose(target, expected, atol=1e-5)
    assert not torch.allclose(target, with_quant_conv, atol=1e-2)  # what training used before


def test_loss_reads_the_records_and_a_folder_without_the_target_encoder_is_refused(tmp_path):
    from benchmark.errors import StereobenchError
    from methods.m2svid.train import build_pipeline_for_training, training_target_encoder

    folder, _, _ = _converted_folder(tmp_path)
    pipe = build_pipeline_for_training(str(folder))
    samples = _samples()
    batch = {"left": samples[0].left[None], "warped": samples[0].warped[None], "mask": _dilated(samples[0].mask)[None],
             "right": samples[0].right[None], "fps": torch.tensor([5.0])}
    with torch.no_grad():
        recorded = m2svid_loss(pipe, batch, generator=torch.Generator().manual_seed(0))[1]["latent_l2"]
        pipe.manifest = {}  # no records: the VAE's encode (encoder + quant_conv), as before
        unrecorded = m2svid_loss(pipe, batch, generator=torch.Generator().manual_seed(0))[1]["latent_l2"]
    assert recorded != pytest.approx(unrecorded, rel=1e-4)
    pipe.manifest = {"first_stage_encoder_equals_conditioner_encoder": False, "quant_conv_is_identity": True}
    with pytest.raises(StereobenchError, match="convert the checkpoint again"):
        training_target_encoder(pipe)
    with pytest.raises(StereobenchError, match="training_target_encoder"):
        train(_config(tmp_path), samples=samples, pipe=pipe)
