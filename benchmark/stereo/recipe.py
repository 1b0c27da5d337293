"""The input recipe: everything that decides a clip's :class:`~benchmark.types.StereoInput`.

One frozen :class:`InputRecipe` names the dataset (its ``spec.name`` and revision, never the
user's spelling of it), the clip, the clip protocol with all its settings, the depth source with
its settings, D_max and convergence, the warp (name and mode), the hole post-processing (the
protocol's closing) and the stage version. Its :meth:`~InputRecipe.key` (the on-disk cache key)
and its :meth:`~InputRecipe.params` (what goes into ``StereoInput.params``) are both derived
from ONE description, :meth:`~InputRecipe.describe`, so the key can never miss a parameter that
changes the input, and two callers that mean the same input always get the same key.

Every caller builds recipes with :func:`make_recipe` (runner, ``stereobench prepare``, M2SVid
training and, later, ``convert``), then gets the input through the cache with
:func:`benchmark.stereo.cache.load_input`::

    dataset = get_dataset("synthetic", num_clips=2)
    recipe = make_recipe(dataset, "scene-000", "quick", warp="shared")
    inp, gt_right = load_input(dataset, recipe, StereoInputCache())

Depth is a first-class part of the recipe: :data:`DEPTH_SOURCES` lists the sources and the
settings each accepts. ``gt`` is the dataset's ground-truth disparity, used as it is (no
settings, no D_max or convergence: rescaling it would no longer match the ground-truth right
view it is scored against). ``files`` (the clip's own depth files) and the depth models
(``depth-anything-v2``, ``transformers``, ``depthcrafter``) are normalised to [0, 1]
(``stability``) and scaled by D_max (pixels, or ``d_max_percent`` of the width, default 5 %) and
convergence (default 0); the model's id and weights revision, its settings, the normalisation,
D_max and convergence are all in the key, so a change of any of them is another cache entry.

This module imports no dataset code (the stereo floor must not import ``benchmark.datasets``):
a dataset is any object with ``spec`` (``name``, ``revision``, ``default_protocol``) and
``clip_names()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from benchmark.errors import StereobenchError, did_you_mean
from benchmark.stereo.protocol import ClipProtocol, get_protocol
from benchmark.types import params_hash

#: Version of the shared stage's output; part of every cache key. Bump it whenever the stage's
#: output changes, so stale entries are never reused.
STAGE_VERSION = "stereo-stage-2"  # 2: shared warp holes = front-surface coverage < 0.5

#: Version of the key's layout. 3: the key is the hash of :meth:`InputRecipe.describe` (dataset
#: ``spec.name``, depth source and its settings, D_max, convergence now included); entries made
#: under version 2 keys are simply never found again and get rebuilt.
KEY_VERSION = 3


@dataclass(frozen=True)
class DepthSource:
    """A way to get disparity for a clip.

    Attributes:
        name: registry name (``"gt"``, ``"files"``, ``"depth-anything-v2"``...).
        description: one line for help texts.
        settings: names of the settings it accepts (keyword arguments of :func:`make_recipe`).
        uses_d_max: whether D_max / convergence apply (a relative depth model's output is
            normalised and scaled by them; ground-truth disparity is already in pixels).
        model: the :data:`benchmark.depth.DEPTH_MODELS` name that computes it ("" for ``gt`` and
            ``files``, which read data the dataset carries).
        defaults: setting values used when the caller gives none (they go into the key too).
    """

    name: str
    description: str
    settings: tuple[str, ...] = ()
    uses_d_max: bool = False
    model: str = ""
    defaults: tuple[tuple[str, Any], ...] = ()


#: Settings of the temporal normalisation (:func:`benchmark.depth.normalize_video`) and D_max in
#: percent of the width, taken by every source that scales by D_max.
NORMALISE_SETTINGS = ("stability", "lookahead", "decay", "low_percentile", "high_percentile", "d_max_percent")
#: Settings that name a model's weights: ``weights`` (a folder or hub id) resolves to ``model`` and
#: ``revision`` when the recipe is made, so changed weights make another key.
MODEL_SETTINGS = ("weights", "variant", "output")
#: Settings of the depth models themselves (passed to :func:`benchmark.depth.load_depth_model`).
MODEL_OPTION_KEYS = ("variant", "output", "steps", "window", "overlap", "max_res", "seed", "svd",
                     "noise_aug_strength")
#: D_max when neither pixels nor a percentage is given: M2SVid's rule, 5 % of the width.
DEFAULT_D_MAX_PERCENT = 5.0
#: Convergence when none is given: 0 (everything in front of the screen; M2SVid's rule).
DEFAULT_CONVERGENCE = 0.0

#: Depth sources by name. ``gt``: the dataset's ground-truth disparity (a folder dataset's
#: ``<name>_disparity.npy``), used unchanged. ``files``: the clip's own depth files
#: (``<name>_depth.*`` beside a folder dataset's video). The others run a depth model of
#: :data:`benchmark.depth.DEPTH_MODELS` on the protocol-processed left video (cached below the
#: input cache by video content and model identity).
DEPTH_SOURCES: dict[str, DepthSource] = {
    "gt": DepthSource("gt", "the dataset's ground-truth disparity, in pixels of the left view, unchanged"),
    "files": DepthSource(
        "files", "the clip's own depth files (<name>_depth.npy/.npz, or a <name>_depth/ folder of PNG16/EXR/NPY "
                 "frames), normalised and scaled by D_max", settings=("kind", *NORMALISE_SETTINGS), uses_d_max=True,
        defaults=(("kind", "disparity"), ("stability", "ema"))),
    "depth-anything-v2": DepthSource(
        "depth-anything-v2", "Depth Anything V2 (per frame, transformers), temporally normalised",
        settings=(*MODEL_SETTINGS, *NORMALISE_SETTINGS), uses_d_max=True, model="depth-anything-v2",
        defaults=(("stability", "ema"),)),
    "transformers": DepthSource(
        "transformers", "any transformers depth-estimation checkpoint (weights=folder or cached hub id)",
        settings=(*MODEL_SETTINGS, *NORMALISE_SETTINGS), uses_d_max=True, model="transformers",
        defaults=(("stability", "ema"),)),
    "depthcrafter": DepthSource(
        "depthcrafter", "DepthCrafter (video diffusion, windows of 110 frames; research-only licence)",
        settings=("weights", "steps", "window", "overlap", "max_res", "seed", "svd", "noise_aug_strength",
                  *NORMALISE_SETTINGS), uses_d_max=True,
        model="depthcrafter",
        # the official output is min-max normalised over the whole video
        defaults=(("stability", "video"), ("low_percentile", 0.0), ("high_percentile", 100.0))),
}


def _json_value(name: str, value: Any) -> Any:
    """``value`` as a canonical JSON value (ints and floats of equal value hash alike)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        if not math.isfinite(float(value)):
            raise StereobenchError(f"{name} must be a finite number, got {value}")
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(name, v) for v in value]
    raise StereobenchError(f"{name} must be a number, string, true/false or a list of them, got {type(value).__name__}")


@dataclass(frozen=True)
class InputRecipe:
    """Everything that decides one clip's StereoInput; build it with :func:`make_recipe`.

    Attributes:
        dataset: the dataset's ``spec.name`` (``"synthetic"``, ``"folder-<dir>"``), never a path.
        dataset_revision: ``spec.revision``: content checksum / version of the dataset.
        clip: clip name inside the dataset (``"scene-000"``), without the dataset prefix.
        protocol: the clip protocol (frames, fps, resize, crop, padding, hole-mask closing).
        depth: depth source name, a key of :data:`DEPTH_SOURCES`.
        depth_settings: the depth source's settings as sorted ``(name, value)`` pairs.
        d_max: maximum disparity in pixels for depth sources that scale by it, else None.
        convergence: normalised depth of the zero-parallax plane for those sources, else None.
        warp: warp rule name: ``"shared"`` or a method's native rule (``"m2svid"``, ...).
        stage_version: :data:`STAGE_VERSION` when the recipe was made.
    """

    dataset: str
    dataset_revision: str
    clip: str
    protocol: ClipProtocol
    depth: str = "gt"
    depth_settings: tuple[tuple[str, Any], ...] = ()
    d_max: float | None = None
    convergence: float | None = None
    warp: str = "shared"
    stage_version: str = STAGE_VERSION

    def __post_init__(self) -> None:
        for name in ("dataset", "clip", "warp", "depth", "stage_version"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise StereobenchError(f"input recipe: {name} must be a non-empty string, got {value!r}")
        if not isinstance(self.protocol, ClipProtocol):
            raise StereobenchError(f"input recipe: protocol must be a ClipProtocol, got {type(self.protocol).__name__}")
        # Canonical forms, so equal recipes hash alike whatever types the caller used.
        object.__setattr__(self, "dataset_revision", str(self.dataset_revision or ""))
        settings = tuple(sorted((str(k), _json_value(f"depth setting {k!r}", v)) for k, v in dict(self.depth_settings).items()))
        object.__setattr__(self, "depth_settings", settings)
        for name in ("d_max", "convergence"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _json_value(name, value))
        if self.d_max is not None and self.d_max < 0:
            raise StereobenchError(f"D_max must be >= 0 pixels, got {self.d_max}")

    @property
    def warp_mode(self) -> str:
        """``"shared"`` for the suite's warp, ``"native"`` for a method's own rule."""
        return "shared" if self.warp == "shared" else "native"

    @property
    def hole_mask_closing(self) -> int:
        """Side of the square closing applied to the hole mask (the protocol's), pixels; 0 = none."""
        return int(self.protocol.hole_mask_closing)

    @property
    def clip_id(self) -> str:
        """Dataset-qualified clip identity, ``"<dataset>/<clip>"`` (as ``Clip.clip_id``)."""
        return f"{self.dataset}/{self.clip}"

    def describe(self) -> dict[str, Any]:
        """Every field that changes the input, as a JSON-serialisable dict (a fresh copy).

        The key and the params both come from this dict: add a field here and both follow.
        """
        return {
            "dataset": self.dataset,
            "dataset_revision": self.dataset_revision,
            "clip": self.clip,
            "protocol": self.protocol.to_dict(),
            "depth_source": self.depth,
            "depth_settings": dict(self.depth_settings),
            "d_max": self.d_max,
            "convergence": self.convergence,
            "warp": self.warp,
            "warp_mode": self.warp_mode,
            "hole_mask_closing": self.hole_mask_closing,
            "stage_version": self.stage_version,
        }

    def key(self) -> str:
        """Cache key: 32 hex digits, a SHA-256 prefix of :meth:`describe` and :data:`KEY_VERSION`."""
        return params_hash({"key_version": KEY_VERSION, **self.describe()})

    def params(self) -> dict[str, Any]:
        """What goes into ``StereoInput.params``: :meth:`describe` plus ``cache_key``."""
        return {**self.describe(), "cache_key": self.key()}


def make_recipe(dataset: Any, clip: str, protocol: ClipProtocol | str | None = None, *, warp: str = "shared",
                depth: str = "gt", d_max: float | None = None, convergence: float | None = None,
                **depth_settings: Any) -> InputRecipe:
    """The one way to say which input a clip gets; cheap (no clip is loaded).

    Args:
        dataset: a dataset object (``spec.name``, ``spec.revision``, ``spec.default_protocol``,
            ``clip_names()``), as :func:`benchmark.datasets.get_dataset` returns it. Its
            ``spec.name`` goes into the recipe, so a folder given as ``data/x``, ``/abs/data/x`` or
            ``data/x/`` is one dataset.
        clip: clip name from ``dataset.clip_names()``; a dataset-qualified id
            (``"synthetic/scene-000"``) is accepted too.
        protocol: protocol object or name; None = the dataset's default protocol.
        warp: ``"shared"`` or a native warp name (see :data:`benchmark.stereo.WARPS`).
        depth: depth source, a key of :data:`DEPTH_SOURCES` (``"gt"``).
        d_max: maximum disparity in pixels (depth sources that scale by it only).
        convergence: zero-parallax depth (depth sources that scale by D_max only).
        **depth_settings: settings of the depth source (none for ``gt``).

    Raises:
        StereobenchError: unknown clip, protocol, warp or depth source (with did-you-mean), a
            setting the depth source does not take, D_max/convergence for ``gt``.
    """
    from benchmark.stereo import WARPS

    spec = getattr(dataset, "spec", None)
    if spec is None or not isinstance(getattr(spec, "name", None), str):
        raise TypeError(f"make_recipe needs a dataset object with a spec (get_dataset(...)), got {type(dataset).__name__}")
    if not isinstance(clip, str):
        raise StereobenchError(f"clip name must be a string, got {type(clip).__name__}")
    names = list(dataset.clip_names())
    if clip not in names and clip.startswith(spec.name + "/") and clip[len(spec.name) + 1:] in names:
        clip = clip[len(spec.name) + 1:]
    if clip not in names:
        raise did_you_mean(clip, names, f"{spec.name} clip")
    protocol = get_protocol(protocol if protocol is not None else getattr(spec, "default_protocol", "paper"))
    if warp not in WARPS.names():
        raise did_you_mean(str(warp), WARPS.names(), "warp")
    if depth not in DEPTH_SOURCES:
        raise did_you_mean(str(depth), DEPTH_SOURCES, "depth source")
    source = DEPTH_SOURCES[depth]
    unknown = sorted(set(depth_settings) - set(source.settings))
    if unknown:
        accepted = ", ".join(source.settings) or "no settings"
        raise StereobenchError(f"depth source {depth!r} does not take {', '.join(unknown)}; it takes {accepted}")
    if not source.uses_d_max and (d_max is not None or convergence is not None):
        raise StereobenchError(
            f"depth source {depth!r} gives disparity in pixels already; D_max and convergence apply to depth "
            f"models only (drop them, or choose a depth model)")
    if source.uses_d_max:
        depth_settings = _depth_settings(source, d_max, depth_settings)
        if convergence is None:
            convergence = DEFAULT_CONVERGENCE
    return InputRecipe(dataset=spec.name, dataset_revision=getattr(spec, "revision", "") or "", clip=clip,
                       protocol=protocol, depth=depth, depth_settings=tuple(depth_settings.items()),
                       d_max=d_max, convergence=convergence, warp=warp)


def _depth_settings(source: DepthSource, d_max: float | None, settings: dict[str, Any]) -> dict[str, Any]:
    """A depth source's settings with its defaults, D_max as pixels or percent, and a model's
    ``weights`` resolved to ``model`` + ``revision`` (cheap: no model is loaded)."""
    from benchmark.depth.stability import STABILITY_MODES

    out = {**dict(source.defaults), **{k: v for k, v in settings.items() if v is not None}}
    if d_max is not None and "d_max_percent" in out:
        raise StereobenchError("give D_max once: in pixels (d_max) or in percent of the width (d_max_percent)")
    if d_max is None:
        out.setdefault("d_max_percent", DEFAULT_D_MAX_PERCENT)
        if not (float(out["d_max_percent"]) >= 0):
            raise StereobenchError(f"D_max must be >= 0 percent of the width, got {out['d_max_percent']}")
    if out.get("stability") not in STABILITY_MODES:
        raise did_you_mean(str(out.get("stability")), STABILITY_MODES, "depth stability mode")
    if source.model:
        from benchmark.depth import depth_model_identity

        model_settings = {k: out.pop(k) for k in MODEL_OPTION_KEYS if k in out}
        spec = depth_model_identity(source.model, weights=out.pop("weights", None), **model_settings)
        out.update(model=spec["model"], revision=spec["revision"], **spec["settings"])
    return out


__all__ = ["DEFAULT_CONVERGENCE", "DEFAULT_D_MAX_PERCENT", "DEPTH_SOURCES", "KEY_VERSION", "STAGE_VERSION", "DepthSource", "InputRecipe", "make_recipe"]
