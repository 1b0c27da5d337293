"""The run configuration: a YAML file (``stereobench run --config x.yaml``) or command-line flags.

Schema (every key optional; defaults shown)::

    run_id: null              # null: resume the newest unfinished run with the same config, else new
    out: results/runs         # where runs are written: <out>/<run_id>/
    cache: null               # stereo-input cache folder (null: $STEREOBENCH_CACHE or the suite's default)
    datasets:                 # a name, or {name, options, clips}
      - name: synthetic
        options: {num_clips: 3, size: 256, num_frames: 8}   # keyword options of the dataset
        clips: 2              # first N clips, or a list of clip names (null = all)
      - middlebury-motorcycle
    methods: all              # "all" (every registered method) or a list of names or
                              # {name, options, label} (label = the name in results, to run one
                              # method twice with different options)
    protocol: quick           # clip protocol name, or {name: paper, num_frames: 8, ...}
    warp_mode: shared         # shared | native (each method's official warp)
    depth: gt                 # where disparity comes from: gt (the dataset's) | files (<name>_depth.npy
                              # beside a folder dataset's video) | depth-anything-v2 | transformers |
                              # depthcrafter, or {name: depth-anything-v2, weights: DIR, d_max: 24,
                              # d_max_percent: 5, convergence: 0, stability: ema, ...} (docs/depth.md)
    metrics: [psnr, msssim, lpips_vgg, lpips_alex]
    regions: [full, inside, outside]
    scoring_protocols: [paper, strict]
    device: auto              # auto (cuda if available) | cpu | cuda | cuda:1 | mps
    dtype: float32            # float32 | float16 | bfloat16 (what methods load in)
    seed: 0
    warmup: auto              # warm-up calls per method before timing (auto: 1 on CUDA, 0 on CPU; >= 0)
    save_videos: false        # write <out>/<run_id>/videos/<dataset>/<clip>/{left,warped,mask,gt,<method>}.mp4
    overwrite: only-missing   # only-missing | never | always  (see docs/runner.md)
    leaderboard: true         # build the leaderboard at the end
    title: null               # leaderboard title (default names the protocol and warp mode)

Unknown keys are an error naming the key, with a did-you-mean hint: a typo never silently runs
the defaults. Values are checked here too (a device name, ``warmup`` >= 0, non-empty folders and
lists); names that need a registry (metrics, methods and their options, datasets and clips) are
checked by the runner's plan before any work (:mod:`benchmark.runner.plan`).
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from benchmark.errors import StereobenchError, did_you_mean

DEFAULT_METRICS = ("psnr", "msssim", "lpips_vgg", "lpips_alex")


class Overwrite(str, Enum):
    """What a run does with (method, clip) pairs that already have results in its run folder.

    - ``only-missing`` (default): run pairs without a complete result, and retry pairs whose
      latest result is an error; completed pairs are kept.
    - ``never``: run only pairs that have no complete result at all (errors are kept, not retried).
    - ``always``: recompute every pair; the new rows supersede the old ones.
    """

    ONLY_MISSING = "only-missing"
    NEVER = "never"
    ALWAYS = "always"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class DatasetEntry(_Strict):
    """One dataset of a run: registry name, its options, which clips."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)
    clips: int | list[str] | None = None

    @field_validator("clips")
    @classmethod
    def _positive(cls, value):
        if isinstance(value, int) and value < 1:
            raise ValueError("clips must be a positive number of clips or a list of clip names")
        return value


class MethodEntry(_Strict):
    """One method of a run: registry name, constructor options, label used in results."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None

    @property
    def result_name(self) -> str:
        return self.label or self.name


class RunConfig(_Strict):
    """The resolved configuration of a run (see the module docstring for every key)."""

    run_id: str | None = None
    out: str = "results/runs"
    cache: str | None = None
    datasets: list[DatasetEntry] = Field(default_factory=lambda: [DatasetEntry(name="synthetic")])
    methods: Literal["all"] | list[MethodEntry] = "all"
    protocol: str | dict[str, Any] = "quick"
    warp_mode: Literal["shared", "native"] = "shared"
    depth: str | dict[str, Any] = "gt"
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    regions: list[Literal["full", "inside", "outside"]] = Field(default_factory=lambda: ["full", "inside", "outside"])
    scoring_protocols: list[Literal["paper", "strict"]] = Field(default_factory=lambda: ["paper", "strict"])
    device: str = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    seed: int = 0
    warmup: int | Literal["auto"] = "auto"
    save_videos: bool = False
    overwrite: Overwrite = Overwrite.ONLY_MISSING
    leaderboard: bool = True
    title: str | None = None

    @field_validator("datasets", mode="before")
    @classmethod
    def _dataset_names(cls, value):
        items = [value] if isinstance(value, (str, dict)) else value
        return [{"name": v} if isinstance(v, str) else v for v in items or []]

    @field_validator("methods", mode="before")
    @classmethod
    def _method_names(cls, value):
        if value == "all" or value is None:
            return "all"
        items = [value] if isinstance(value, (str, dict)) else value
        return [{"name": v} if isinstance(v, str) else v for v in items]

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        text = value.strip().lower()
        if not re.match(r"^(auto|cpu|cuda|cuda:\d+|mps)$", text):
            hint = " (a GPU is spelled 'cuda')" if text.startswith("gpu") else ""
            raise ValueError(f"unknown device {value!r}{hint}; use auto, cpu, cuda or cuda:N")
        return text

    @field_validator("warmup")
    @classmethod
    def _warmup(cls, value):
        if isinstance(value, int) and value < 0:
            raise ValueError("warmup must be 0 or more calls, or auto")
        return value

    @field_validator("out")
    @classmethod
    def _out(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("out must name a folder (default results/runs)")
        return value

    @field_validator("cache")
    @classmethod
    def _cache(cls, value):
        if value is not None and not value.strip():
            raise ValueError("cache must name a folder, or be null for the default")
        return value

    @field_validator("metrics", "regions", "scoring_protocols")
    @classmethod
    def _non_empty(cls, value):
        if not value:
            raise ValueError("must list at least one name")
        return value

    def protocol_name_and_overrides(self) -> tuple[str, dict[str, Any]]:
        if isinstance(self.protocol, str):
            return self.protocol, {}
        overrides = dict(self.protocol)
        name = overrides.pop("name", None)
        if not name:
            raise StereobenchError("config key 'protocol' as a mapping needs a 'name', e.g. {name: paper, num_frames: 8}")
        return str(name), overrides

    def depth_name_and_settings(self) -> tuple[str, dict[str, Any]]:
        """The depth source's name and its keyword arguments of
        :func:`benchmark.stereo.recipe.make_recipe` (``d_max``, ``convergence``, settings)."""
        if isinstance(self.depth, str):
            return self.depth, {}
        settings = dict(self.depth)
        name = settings.pop("name", None)
        if not name:
            raise StereobenchError("config key 'depth' as a mapping needs a 'name', e.g. {name: depth-anything-v2, "
                                   "weights: path/to/model}")
        return str(name), settings

    @field_validator("depth")
    @classmethod
    def _depth(cls, value):
        from benchmark.stereo.recipe import DEPTH_SOURCES

        name = value if isinstance(value, str) else value.get("name")
        if isinstance(name, str) and name not in DEPTH_SOURCES:
            raise did_you_mean(name, DEPTH_SOURCES, "depth source")
        return value

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json())

    def content_hash(self) -> str:
        """Hash of everything that determines the rows (not run_id / out / cache / leaderboard /
        title / save_videos / overwrite): two commands with equal hashes produce the same rows."""
        data = self.to_dict()
        for key in ("run_id", "out", "cache", "leaderboard", "title", "save_videos", "overwrite"):
            data.pop(key, None)
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


_MODELS: dict[str, type[BaseModel]] = {"": RunConfig, "datasets": DatasetEntry, "methods": MethodEntry}


def _explain(exc: ValidationError, source: str) -> StereobenchError:
    """One line naming the first problem (the key, and a did-you-mean for unknown keys)."""
    errors = exc.errors()
    # Unions (methods: "all" | list) report one error per branch: the most specific one wins.
    err = next((e for e in errors if e.get("type") == "extra_forbidden"),
               next((e for e in errors if not any("literal" in str(p) for p in e.get("loc", ()))), errors[0]))
    loc = [str(p) for p in err.get("loc", ()) if not (isinstance(p, str) and "[" in p)]
    where = ".".join(loc) or "(top level)"
    if err.get("type") == "extra_forbidden":
        key = loc[-1]
        parent = loc[0] if len(loc) > 1 else ""
        model = _MODELS.get(parent, RunConfig)
        hint = did_you_mean(key, model.model_fields, "config key")
        return StereobenchError(f"{source}: {where}: {hint}")
    message = str(err.get("msg", "")).removeprefix("Value error, ")
    shown = repr(err.get("input"))
    shown = shown if len(shown) <= 120 else shown[:117] + "..."
    return StereobenchError(f"{source}: config key {where!r}: {message} (got {shown})")


def parse_config(data: dict[str, Any] | None, source: str = "config") -> RunConfig:
    """Validate a config mapping; raises StereobenchError naming the first bad key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise StereobenchError(f"{source}: the top level must be a mapping of keys, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, source) from None


def _strict_loader():
    """PyYAML's SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last
    one silently, so a repeated ``datasets:`` would drop the first list without a word)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice; keep one", key_node.start_mark)
            seen.add(key)
        return loader.construct_mapping(node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return StrictLoader


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML config file (UTF-8; a key given twice is an error)."""
    import yaml

    path = Path(path)
    if path.is_dir():
        raise StereobenchError(f"config file {path} is a folder; pass a YAML file such as configs/embedded.yaml")
    if not path.is_file():
        raise StereobenchError(f"config file {path} does not exist; see configs/embedded.yaml for an example")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StereobenchError(f"config file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 YAML") from None
    except OSError as exc:
        raise StereobenchError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    if "\x00" in text:
        raise StereobenchError(f"config file {path} holds NUL bytes (a binary file?); pass a YAML text file")
    try:
        data = yaml.load(text, Loader=_strict_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise StereobenchError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse_config(data, source=str(path))


def merge_overrides(config: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """A new config with ``overrides`` (from command-line flags; None values ignored) applied."""
    data = config.to_dict()
    data.update({k: v for k, v in overrides.items() if v is not None})
    return parse_config(data, source="command line")
