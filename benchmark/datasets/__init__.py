"""Datasets by name: a lazy registry and helpers.

A dataset is any object with

- ``spec``: :class:`benchmark.datasets.base.DatasetSpec` (name, licence, revision, default protocol);
- ``clip_names() -> list[str]``;
- ``load_clip(name) -> Clip`` at native size and frame rate (callers apply a clip protocol with
  :func:`benchmark.stereo.protocol.apply_protocol`); optionally ``load_clip(name, window=...)``
  taking the protocol's :class:`benchmark.types.TimeWindow`, so a reader decodes only the frames
  the protocol keeps (``folder`` does). :func:`load_clip` passes the window when the dataset
  accepts one.

Built in (no download):

=========================  ===================================================================
``synthetic``              procedural clips with exact ground truth (options: num_clips, size,
                           num_frames, fps, seed, integer_disparity)
``middlebury-motorcycle``  the real Middlebury pair shipped in scikit-image, as panning clips
                           (options: num_frames, fps, step, fill_disparity)
``folder``                 your own videos: ``<name>_left.mp4`` [+ ``<name>_right.mp4``]
                           [+ ``<name>_disparity.npy``] (option: root)
``prepared``               a folder written by ``stereobench prepare-data`` (options: root, split,
                           allow_missing, verify; layout in benchmark/datasets/prepared.py)
``stereo4d``               Stereo4D clips you prepared (``prepare-data stereo4d`` or ``m2svid``;
                           options: root, split = train | test | m2svid-test | m2svid-val64, ...)
=========================  ===================================================================

Third-party packages add datasets without editing the suite::

    [project.entry-points."stereobench.datasets"]
    my-data = "my_package.data:MyDataset"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmark.datasets.base import DatasetSpec
from benchmark.types import Clip
from benchmark.errors import StereobenchError
from benchmark.registry import LazyRegistry

DATASETS = LazyRegistry(
    "dataset",
    {
        "synthetic": "benchmark.datasets.synthetic:SyntheticDataset",
        "middlebury-motorcycle": "benchmark.datasets.middlebury:MiddleburyMotorcycle",
        "folder": "benchmark.datasets.folder:FolderDataset",
        "prepared": "benchmark.datasets.prepared:PreparedDataset",
        "stereo4d": "benchmark.datasets.stereo4d:Stereo4D",
        "ego4d": "benchmark.datasets.ego4d:Ego4DStereo",
    },
    entry_point_group="stereobench.datasets",
)

#: Datasets that ship with the suite (used by `make benchmark` / `stereobench prepare` defaults).
BUNDLED = ("synthetic", "middlebury-motorcycle")


def get_dataset(name: str, **options: Any):
    """Instantiate dataset ``name`` with ``options`` (keyword arguments of its class).

    ``name`` may also be a path to an existing directory, which loads it as a ``folder``
    dataset. Unknown names raise :class:`StereobenchError` with a did-you-mean hint; unknown
    options raise one naming the accepted ones.
    """
    if name not in DATASETS and ("/" in name or name.startswith(".")) and Path(name).expanduser().is_dir():
        options = {"root": name, **options}
        name = "folder"
    elif name not in DATASETS and ("/" in name or name.startswith((".", "~"))):
        raise StereobenchError(f"dataset folder {name!r} does not exist; give an existing directory of videos "
                               f"or a dataset name ({', '.join(DATASETS.names())})")
    factory = DATASETS[name]
    try:
        return factory(**options)
    except TypeError as exc:
        import inspect

        try:
            accepted = [p for p in inspect.signature(factory).parameters if p != "self"]
        except (TypeError, ValueError):
            accepted = []
        raise StereobenchError(f"dataset {name!r} does not accept options {sorted(options)} ({exc}); "
                               f"it accepts: {', '.join(accepted) or 'no options'}") from None


def parse_options(pairs: list[str] | None, what: str = "dataset option", example: str = "size=256") -> dict[str, Any]:
    """``["size=256", "seed=3", "root=data/x"]`` -> ``{"size": 256, "seed": 3, "root": "data/x"}``.

    Values that read as int, float or true/false become those types; everything else stays a string.
    ``what`` and ``example`` name the flag in the error for a malformed pair (other commands'
    KEY=VALUE flags parse with this too).
    """
    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise StereobenchError(f"{what} {pair!r} must look like KEY=VALUE, e.g. {example}")
        options[key.strip().replace("-", "_")] = _coerce(value.strip())
    return options


def _coerce(value: str) -> Any:
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def load_clip(dataset, name: str, protocol=None) -> Clip:
    """``dataset.load_clip(name)``, with the protocol's time window where the dataset takes one
    (:func:`benchmark.stereo.protocol.load_windowed_clip`, which callers on the stereo floor use)."""
    from benchmark.stereo.protocol import load_windowed_clip

    return load_windowed_clip(dataset, name, protocol)


def dataset_names() -> list[str]:
    """Every registered dataset name (built-in and plug-ins)."""
    return DATASETS.names()


__all__ = ["BUNDLED", "Clip", "DATASETS", "DatasetSpec", "dataset_names", "get_dataset", "load_clip", "parse_options"]
