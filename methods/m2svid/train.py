"""End-to-end training of M2SVid (the paper's objective), with accelerate.

Loss per clip (OFFICIAL_CODE_FACTS.md D): the U-Net runs once on a zero latent at sigma = 700
and gives z = c_out F. Then

* latent L2: mean over each frame's latent of (z - target)^2, target = 0.18215 x a *posterior
  sample* of the ground-truth right frame from sgm's first-stage encoder without quant_conv
  (:func:`training_target_encoder` reads the converter's records to pick the encoder that gives
  exactly that), weighted by w = (sigma^2 + 1) / sigma^2;
* image L1: mean |decode(z / 0.18215) - GT| per frame (GT in [-1, 1]), weighted by w;
* LPIPS (VGG16 trunk, v0.1 linear layers) per frame on [-1, 1] inputs;

all weights 1, averaged over frames and batch. Gradients flow through the frozen temporal
decoder; only the U-Net is trained (VAE and CLIP frozen). AdamW (default betas), lr 2e-6,
gradient clipping 1.0, gradient accumulation 2, no scheduler, no EMA, conditioning
augmentation cond_aug = exp(-3 + 0.5 N(0,1)) as both the time id and the noise strength.

Data: any dataset the suite loads with ground-truth right views and disparity
(``benchmark.datasets.get_dataset``), through the shared protocol and warp
(``benchmark.stereo.recipe.make_recipe`` + ``benchmark.stereo.cache.load_input``;
default protocol ``native``: every frame at the native rate and size, 11x11 mask closing, warped
pixels zeroed under the closed mask). :class:`ScheduledClips` then draws training samples the
way the official data loader does (``m2svid/data/datasets.py``, ``configs/training/m2svid_train.yaml``):
per sample one (frames, side) setting out of (4, 512), (16, 256), (25, 192) uniformly, a frame
rate uniformly in 5..30 (integers; it is also the fps time id), a random start time, frames past
the end of the clip zero-padded, the mask dilated 3x3 at native resolution, then one random square
crop (side = the short side) followed by a RandomResizedCrop (scale 0.3-1, ratio 1, bilinear with
antialias) applied jointly to left, right, warped and mask (the mask becomes fractional; the model
sees mask * 2 - 1, resized to latent size without antialias). Multi-GPU / multi-node data parallel, mixed
precision and resumable checkpoints come from ``accelerate`` (launch with ``accelerate launch
-m benchmark.cli train m2svid ...``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from benchmark.errors import StereobenchError
from benchmark.fileio import atomic_write_json
from benchmark.stereo.warp import dilate_mask
from methods._svd.edm import edm_loss_weight, edm_v_scalings
from methods._svd.vae import encode_posterior, sample_posterior
from methods.m2svid.model import LATENT_SCALE, SIGMA_MAX
from methods.m2svid.pipeline import M2SVidPipeline


#: Official per-sample training settings (frames, square side), drawn uniformly
#: (configs/training/m2svid_train.yaml: frame_number [4, 16, 25], resolution [512, 256, 192]).
OFFICIAL_SETTINGS = ((4, 512), (16, 256), (25, 192))
#: Official sampling frame rates: integers 5..30 inclusive (np.random.randint(5, 31)).
OFFICIAL_FPS_RANGE = (5, 30)
#: Official RandomResizedCrop area range (ratio fixed to 1).
OFFICIAL_RESIZE_SCALE = (0.3, 1.0)


@dataclass
class TrainConfig:
    """Settings of :func:`train` (defaults: the official training configuration).

    init: a converted M2SVid folder, an SVD img2vid-xt folder / cached hub id (its 8-channel
    U-Net is expanded to 13 channels as the official init does), or ``"tiny"`` (random tiny
    model: tests and smoke runs). output_dir: checkpoints (``checkpoints/step-N``), the final
    diffusers folder (``final/``) and ``log.jsonl``.

    Sampling schedule (see :class:`ScheduledClips`): ``settings`` are (frames, square side)
    pairs, drawn with probabilities ``setting_weights`` (None = uniform, as official);
    ``fps_range`` the inclusive integer range of sampling frame rates; ``resize_scale`` the
    RandomResizedCrop area range. ``frames`` / ``size``, when given, replace the schedule by a
    single setting (a missing one is taken from the official (16, 256)).
    """

    def schedule(self) -> tuple[tuple[tuple[int, int], ...], tuple[float, ...]]:
        """The (frames, side) settings and their probabilities (normalised)."""
        if self.frames is not None or self.size is not None:
            return ((int(self.frames or 16), int(self.size or 256)),), (1.0,)
        settings = tuple((int(f), int(s)) for f, s in self.settings)
        weights = self.setting_weights or (1.0,) * len(settings)
        if len(weights) != len(settings) or min(weights) < 0 or sum(weights) <= 0:
            raise StereobenchError(f"setting_weights {weights} must be {len(settings)} non-negative numbers, not all 0")
        total = float(sum(weights))
        return settings, tuple(float(w) / total for w in weights)

    init: str
    output_dir: str
    dataset: str = "synthetic"
    dataset_options: dict = field(default_factory=dict)
    protocol: str = "native"
    settings: tuple = OFFICIAL_SETTINGS
    setting_weights: tuple | None = None
    fps_range: tuple = OFFICIAL_FPS_RANGE
    resize_scale: tuple = OFFICIAL_RESIZE_SCALE
    frames: int | None = None
    size: int | None = None
    max_clips: int | None = None
    steps: int = 1000
    learning_rate: float = 2e-6
    gradient_accumulation: int = 2
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    checkpoint_every: int = 500
    validate_every: int = 0
    lpips_net: str | None = "vgg"
    latent_weight: float = 1.0
    l1_weight: float = 1.0
    lpips_weight: float = 1.0
    full_attention: bool = True
    seed: int = 0
    resume: bool = True
    num_workers: int = 0


@dataclass
class TrainSample:
    """One training clip: left, warped (holes 0), hole mask, ground-truth right, frame rate."""

    left: torch.Tensor
    warped: torch.Tensor
    mask: torch.Tensor
    right: torch.Tensor
    fps: float


class ScheduledClips(torch.utils.data.Dataset):
    """Training samples drawn as the official data loader does; one epoch = ``length`` draws.

    Per sample (generator seeded by (seed, index), so a resumed run sees the same sequence):

    1. a clip uniformly; a setting ``(frames, side)`` with probabilities ``weights``; an integer
       frame rate ``fps`` uniformly in ``fps_range`` (inclusive);
    2. frames at ``fps`` from a random start time in [0, duration - frames / fps] (0 if the clip
       is shorter): frame k is the clip frame nearest to start + k / fps; frames past the end
       are zero (left, right, warped and mask), as ffmpeg + zero padding give officially;
    3. warped pixels under the (closed) mask set to 0, then the mask dilated 3x3 (native size);
    4. a random square crop of side min(H, W), then RandomResizedCrop: side
       round(sqrt(U(scale) * S^2)) at a uniform position, resized to ``side`` x ``side``
       (bilinear, antialias), jointly for left, right, warped and mask.

    Items: ``left``, ``warped``, ``right`` float32 (T, 3, side, side) in [0, 1]; ``mask``
    float32 (T, 1, side, side) in [0, 1] (fractional after resizing: the model mask); ``fps``
    (the sampled rate, the fps time id); ``setting`` (index into ``settings``); ``crop``
    (top, left, side) in clip pixels; ``frame_index`` (T,) clip frame of each sample, -1 = padding.
    """

    def __init__(self, samples: list[TrainSample], settings, weights=None, fps_range=OFFICIAL_FPS_RANGE,
                 resize_scale=OFFICIAL_RESIZE_SCALE, seed: int = 0, length: int = 10_000, dilate_mask: bool = True):
        if not samples:
            raise StereobenchError("no training clips: the dataset yielded no clip with a ground-truth right view")
        self.samples, self.settings = samples, tuple((int(f), int(s)) for f, s in settings)
        if not self.settings or any(f < 1 or f > 25 or s < 8 for f, s in self.settings):
            raise StereobenchError(f"training settings {settings} must be (frames 1..25, side >= 8) pairs")
        weights = torch.tensor(weights if weights is not None else [1.0] * len(self.settings), dtype=torch.float64)
        if weights.numel() != len(self.settings) or (weights < 0).any() or weights.sum() <= 0:
            raise StereobenchError(f"setting weights {weights.tolist()} must be {len(self.settings)} non-negative numbers, not all 0")
        self.weights = weights / weights.sum()
        self.fps_range = (int(fps_range[0]), int(fps_range[1]))
        if not 0 < self.fps_range[0] <= self.fps_range[1]:
            raise StereobenchError(f"fps_range {fps_range} must be (low, high) with 0 < low <= high")
        self.resize_scale = (float(resize_scale[0]), float(resize_scale[1]))
        if not 0 < self.resize_scale[0] <= self.resize_scale[1] <= 1:
            raise StereobenchError(f"resize_scale {resize_scale} must satisfy 0 < low <= high <= 1")
        self.seed, self.length, self.dilate_mask = seed, length, dilate_mask

    def __len__(self) -> int:
        return self.length

    def draw(self, g: torch.Generator) -> dict:
        """The random choices of one sample (setting, fps, clip, start, crop), as plain numbers."""
        clip_index = int(torch.randint(len(self.samples), (1,), generator=g))
        setting = int(torch.multinomial(self.weights, 1, generator=g))
        fps = int(torch.randint(self.fps_range[0], self.fps_range[1] + 1, (1,), generator=g))
        sample = self.samples[clip_index]
        total, _, height, width = sample.left.shape
        frames, _ = self.settings[setting]
        duration = total / float(sample.fps)
        start = float(torch.rand((), generator=g, dtype=torch.float64)) * max(duration - frames / fps, 0.0)
        square = min(height, width)
        y0 = int(torch.randint(height - square + 1, (1,), generator=g))
        x0 = int(torch.randint(width - square + 1, (1,), generator=g))
        low, high = self.resize_scale
        area = square * square * (low + (high - low) * float(torch.rand((), generator=g, dtype=torch.float64)))
        side = min(max(int(round(math.sqrt(area))), 1), square)
        i = int(torch.randint(square - side + 1, (1,), generator=g))
        j = int(torch.randint(square - side + 1, (1,), generator=g))
        return {"clip": clip_index, "setting": setting, "fps": fps, "start": start, "crop": (y0 + i, x0 + j, side)}

    def __getitem__(self, index: int) -> dict:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        choice = self.draw(g)
        sample = self.samples[choice["clip"]]
        frames, out_side = self.settings[choice["setting"]]
        total = sample.left.shape[0]
        # Nearest clip frame to each sampling time (ffmpeg's fps filter rounds to the nearest).
        times = choice["start"] + torch.arange(frames, dtype=torch.float64) / choice["fps"]
        index_float = torch.floor(times * float(sample.fps) + 0.5)
        frame_index = torch.where(index_float < total, index_float, -1).long()
        take = frame_index.clamp(min=0)
        top, left_px, side = choice["crop"]
        height, width = sample.left.shape[-2:]
        # Work on the crop plus a 1-pixel margin (the 3x3 dilation sees just outside the crop).
        y0, y1 = max(top - 1, 0), min(top + side + 1, height)
        x0, x1 = max(left_px - 1, 0), min(left_px + side + 1, width)
        region = (take, slice(None), slice(y0, y1), slice(x0, x1))
        closed = sample.mask[region].bool()
        warped = torch.where(closed, 0.0, sample.warped[region].float())
        model_mask = dilate_mask(closed, 3) if self.dilate_mask else closed
        stack = torch.cat([sample.left[region].float(), sample.right[region].float(), warped, model_mask.float()], dim=1)
        stack = stack[:, :, top - y0:top - y0 + side, left_px - x0:left_px - x0 + side]
        if side != out_side:
            stack = F.interpolate(stack, size=(out_side, out_side), mode="bilinear", align_corners=False, antialias=True)
        stack = stack * (frame_index >= 0).to(stack.dtype)[:, None, None, None]  # zero padding past the end
        return {"left": stack[:, 0:3], "right": stack[:, 3:6], "warped": stack[:, 6:9], "mask": stack[:, 9:10],
                "fps": torch.tensor(float(choice["fps"])), "setting": choice["setting"],
                "crop": torch.tensor(choice["crop"]), "frame_index": frame_index}


def load_training_samples(config: TrainConfig) -> list[TrainSample]:
    """Clips of ``config.dataset`` through the one input recipe (shared protocol and warp, the
    same inputs ``run`` and ``prepare`` build); clips without disparity or ground truth are skipped."""
    from benchmark.datasets import get_dataset
    from benchmark.stereo.cache import MissingDepthError, load_input
    from benchmark.stereo.recipe import make_recipe

    dataset = get_dataset(config.dataset, **config.dataset_options)
    names = list(dataset.clip_names())[: config.max_clips]
    samples = []
    for name in tqdm(names, desc="loading training clips", disable=len(names) < 4):
        recipe = make_recipe(dataset, name, config.protocol)
        try:
            inp, gt_right = load_input(dataset, recipe, cache=None)
        except MissingDepthError:
            continue
        if gt_right is None:
            continue
        samples.append(TrainSample(inp.left, inp.warped, inp.mask, gt_right, inp.fps))
    return samples


def build_pipeline_for_training(init: str, full_attention: bool = True) -> M2SVidPipeline:
    """The model to train: a converted M2SVid folder, an SVD folder/hub id (expanded), or "tiny"."""
    from methods.m2svid.pipeline import check_weights_folder, load_pipeline, resolve_weights_folder, tiny_components

    if init == "tiny":
        unet, vae, encoder = tiny_components(seed=0)
        unet.full_attention = full_attention
        return M2SVidPipeline(unet, vae, encoder)
    folder = resolve_weights_folder(init)
    if not check_weights_folder(folder):
        return load_pipeline(folder, full_attention=full_attention)
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionModelWithProjection

    from methods.m2svid.model import expand_conv_in

    missing = [p for p in ("unet", "vae", "image_encoder") if not (folder / p / "config.json").exists()]
    if missing:
        raise StereobenchError(f"--init {init}: {folder} is neither a converted M2SVid folder nor an SVD img2vid-xt "
                               f"folder (missing {', '.join(missing)})")
    unet = expand_conv_in(UNetSpatioTemporalConditionModel.from_pretrained(folder / "unet"))
    unet.full_attention = full_attention
    vae = AutoencoderKLTemporalDecoder.from_pretrained(folder / "vae")
    encoder = CLIPVisionModelWithProjection.from_pretrained(folder / "image_encoder")
    return M2SVidPipeline(unet, vae, encoder)


def training_target_encoder(pipe: M2SVidPipeline) -> tuple[object, bool, str]:
    """Which encoder computes the official training target for ``pipe``'s weights.

    Officially the target is sgm's *first-stage* encoder without quant_conv, while the
    conditions (and the converted VAE) use the conditioner's encoder + quant_conv
    (OFFICIAL_CODE_FACTS.md C, D). The converter records whether the two encoders are equal
    (``first_stage_encoder_equals_conditioner_encoder``) and whether quant_conv is the identity
    (``quant_conv_is_identity``) in ``m2svid.json``; this reads them:

    * both true, or no record (a tiny model, an SVD init, a checkpoint without a first stage):
      the VAE's ``encode`` (encoder + quant_conv), exactly the official target in the first
      case;
    * encoders equal, quant_conv not the identity: the VAE's encoder *without* quant_conv;
    * encoders differ: the first-stage encoder the converter saved (``training_target_encoder/``,
      no quant_conv); a folder that says they differ but lacks it is an error.

    Returns (module, use_quant_conv, description).
    """
    records = pipe.manifest
    same = records.get("first_stage_encoder_equals_conditioner_encoder")
    identity = records.get("quant_conv_is_identity")
    if pipe.target_encoder is not None:
        return pipe.target_encoder, True, "training_target_encoder (first-stage encoder, no quant_conv)"
    if same is False:
        raise StereobenchError(
            "the M2SVid folder records a first-stage encoder that differs from the conditioning encoder but does not "
            "hold it (training_target_encoder/): convert the checkpoint again with the current "
            "`stereobench weights convert-m2svid` so training can compute the official target")
    if same is True and identity is False:
        return pipe.vae, False, "vae encoder without quant_conv (quant_conv is not the identity)"
    return pipe.vae, True, "vae.encode (encoder + quant_conv)"


def training_target(pipe: M2SVidPipeline, gt_m11: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The official latent target of one clip: 0.18215 x a posterior *sample* of the ground-truth
    right frames (T, 3, H, W) in [-1, 1], encoded as :func:`training_target_encoder` says.

    Returns (T, 4, H/8, W/8) in the pipeline's dtype; the noise is drawn from ``generator`` (CPU).
    """
    encoder, use_quant_conv, _ = training_target_encoder(pipe)
    # One encoder call over all frames, as before the plumbing moved (same float rounding).
    posterior = encode_posterior(encoder, gt_m11, chunk_size=len(gt_m11), use_quant_conv=use_quant_conv)
    return LATENT_SCALE * sample_posterior(posterior, generator)


def m2svid_loss(pipe: M2SVidPipeline, batch: dict, lpips_model=None, generator: torch.Generator | None = None,
                weights: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> tuple[torch.Tensor, dict[str, float]]:
    """The paper's training loss for a batch of clips; returns (loss, parts).

    ``batch`` as :class:`ScheduledClips` yields it: ``left``, ``warped`` (0 under the closed
    mask), ``right`` (B, T, 3, H, W) in [0, 1]; ``mask`` (B, T, 1, H, W) the model mask in
    [0, 1] (dilated; fractional after resizing); ``fps`` (B,) the fps time id.
    """
    unet, vae = pipe.unet, pipe.vae
    device = next(unet.parameters()).device
    left, warped, right = (batch[k].to(device, torch.float32) for k in ("left", "warped", "right"))
    mask = batch["mask"].to(device)
    batch_size, frames = left.shape[:2]
    sigma = SIGMA_MAX
    w = edm_loss_weight(sigma)  # VWeighting
    _, c_out, _, c_noise = edm_v_scalings(sigma)
    with torch.no_grad():
        concat, tokens, ids, targets, gt_m11 = [], [], [], [], []
        for b in range(batch_size):  # loop over clips of the batch (B is 1 per GPU officially)
            cond_aug = math.exp(-3 + 0.5 * float(torch.randn((), generator=generator)))
            m = mask[b].float()  # model mask in [0, 1]: already dilated (and resampled) by the data
            left_m11 = left[b] * 2 - 1
            warped_m11 = warped[b] * 2 - 1  # already 0 under the closed mask (official order)
            noise = torch.randn((2, *left_m11.shape), generator=generator).to(device)
            c, i = pipe.conditioning(left_m11 + cond_aug * noise[0], warped_m11 + cond_aug * noise[1], m, float(batch["fps"][b]))
            i[0, 2] = cond_aug
            concat.append(c), ids.append(i), tokens.append(pipe.clip_tokens(left_m11)[None])
            gt = right[b] * 2 - 1
            gt_m11.append(gt)
            targets.append(training_target(pipe, gt, generator))
        concat, tokens, ids = torch.cat(concat), torch.cat(tokens), torch.cat(ids)
        target, gt_m11 = torch.stack(targets).float(), torch.stack(gt_m11)
    sample = torch.cat([torch.zeros_like(concat[:, :, :4]), concat], dim=2)
    z = c_out * unet(sample, c_noise, tokens, ids)
    latent_l2 = w * ((z.float() - target) ** 2).mean(dim=(2, 3, 4)).mean()
    decoded = vae.decode((z / LATENT_SCALE).flatten(0, 1).to(pipe.dtype), num_frames=frames).sample.float()
    gt_flat = gt_m11.flatten(0, 1)
    l1 = w * (decoded - gt_flat).abs().mean(dim=(1, 2, 3)).mean()
    lpips_value = torch.zeros((), device=device)
    if lpips_model is not None and weights[2]:
        lpips_value = lpips_model(decoded, gt_flat).mean()
    loss = weights[0] * latent_l2 + weights[1] * l1 + weights[2] * lpips_value
    parts = {"loss": loss, "latent_l2": latent_l2, "l1": l1, "lpips": lpips_value}
    return loss, {k: float(v.detach()) for k, v in parts.items()}


def _latest_checkpoint(output_dir: Path) -> Path | None:
    found = sorted((output_dir / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    return next((p for p in reversed(found) if (p / "trainer_state.json").exists()), None)


def train(config: TrainConfig, samples: list[TrainSample] | None = None, pipe: M2SVidPipeline | None = None) -> dict:
    """Train the U-Net; returns ``{"step", "history", "output_dir", "pipeline"}``. Resumes from the latest
    complete checkpoint in ``output_dir`` when ``config.resume``."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    output_dir = Path(config.output_dir)
    accelerator = Accelerator(mixed_precision=config.mixed_precision, gradient_accumulation_steps=config.gradient_accumulation,
                              project_dir=str(output_dir))
    set_seed(config.seed)
    pipe = pipe or build_pipeline_for_training(config.init, config.full_attention)
    training_target_encoder(pipe)  # a folder that cannot give the official target fails before any data work
    samples = samples if samples is not None else load_training_samples(config)
    lpips_model = None
    if config.lpips_net and config.lpips_weight:
        from benchmark.metrics.lpips_weights import load_lpips

        lpips_model = load_lpips(config.lpips_net, accelerator.device).requires_grad_(False)
    unet = pipe.unet.train().requires_grad_(True)
    pipe.vae.to(accelerator.device).requires_grad_(False)
    pipe.image_encoder.to(accelerator.device).requires_grad_(False)
    if config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.learning_rate)
    settings, setting_weights = config.schedule()
    data = ScheduledClips(samples, settings, setting_weights, config.fps_range, config.resize_scale, seed=config.seed,
                          length=config.steps * config.gradient_accumulation * accelerator.num_processes)
    loader = torch.utils.data.DataLoader(data, batch_size=1, shuffle=False, num_workers=config.num_workers)
    unet, optimizer, loader = accelerator.prepare(unet, optimizer, loader)
    pipe.unet = unet

    step, history = 0, []
    latest = _latest_checkpoint(output_dir) if config.resume else None
    if latest is not None:
        accelerator.load_state(str(latest))
        step = json.loads((latest / "trainer_state.json").read_text())["step"]
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "train_config.json").write_text(json.dumps(asdict(config), indent=2))
    generator = torch.Generator().manual_seed(config.seed * 7919 + step)
    batches = iter(accelerator.skip_first_batches(loader, step * config.gradient_accumulation) if step else loader)
    weights = (config.latent_weight, config.l1_weight, config.lpips_weight)
    progress = tqdm(total=config.steps, initial=step, desc="m2svid train", disable=not accelerator.is_main_process)
    log = output_dir / "log.jsonl"
    while step < config.steps:
        start = time.perf_counter()
        for _ in range(config.gradient_accumulation):
            batch = next(batches)
            with accelerator.accumulate(unet), accelerator.autocast():
                loss, parts = m2svid_loss(pipe, batch, lpips_model, generator, weights)
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm:
                    accelerator.clip_grad_norm_(unet.parameters(), config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
        step += 1
        parts.update(step=step, seconds=time.perf_counter() - start)
        history.append(parts)
        progress.update(1)
        progress.set_postfix(loss=f"{parts['loss']:.4f}")
        if accelerator.is_main_process:
            with open(log, "a") as fh:
                fh.write(json.dumps(parts) + "\n")
        if config.validate_every and step % config.validate_every == 0:
            validate(pipe, samples[:1], output_dir, step)
        if (config.checkpoint_every and step % config.checkpoint_every == 0) or step == config.steps:
            target = output_dir / "checkpoints" / f"step-{step}"
            accelerator.save_state(str(target))
            if accelerator.is_main_process:
                atomic_write_json(target / "trainer_state.json", {"step": step})
    progress.close()
    pipe.unet = accelerator.unwrap_model(unet).eval()
    return {"step": step, "history": history, "output_dir": str(output_dir), "pipeline": pipe}


def validate(pipe: M2SVidPipeline, samples: list[TrainSample], output_dir: Path, step: int) -> list[dict]:
    """Score the current model on ``samples`` with the suite's Scorer (PSNR / SSIM, no LPIPS
    for speed); rows are appended to ``validation.jsonl``."""
    from benchmark.metrics.scorer import Scorer

    unet = pipe.unet
    was_training = unet.training
    unet.eval()
    scorer = Scorer(metrics=["psnr"], device=next(unet.parameters()).device)
    rows = []
    with torch.no_grad():
        for index, sample in enumerate(samples):
            pred = pipe(sample.left, sample.warped, sample.mask, fps=sample.fps)
            for row in scorer.score(pred, scorer.prepare_reference(sample.right, sample.mask)):
                rows.append({"step": step, "clip": index, **row})
    with open(output_dir / "validation.jsonl", "a") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    unet.train(was_training)
    return rows
