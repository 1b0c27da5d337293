"""Diffusers-format model folders: where they are and whether they are complete.

A pipeline folder (``save_pretrained`` layout) holds one subfolder per component (``unet/``,
``vae/``, ``image_encoder/``...), each with a ``config.json`` and a weights file, plus files of
the method's own (a manifest). :func:`resolve_folder` finds the folder without downloading
(through the suite's one resolver, :func:`benchmark.weights.resolve_weights`: a local path or
a Hugging Face id already in the cache); :func:`check_folder` lists what is missing and
:func:`require_folder` turns that into one error line naming it, before any weights are read
(so a half-copied folder fails in milliseconds, not in the middle of ``from_pretrained``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from benchmark.errors import StereobenchError

#: File name patterns of a component's weights (diffusers and transformers, sharded or not).
WEIGHT_PATTERNS = ("*.safetensors", "*.bin")


def resolve_folder(source: str | os.PathLike, what: str = "weights", how_to_get: str = "") -> Path:
    """The local folder for ``source``: an existing path, or a hub id found in the HF cache only.

    Raises:
        StereobenchError: the path does not exist, the id is not cached (naming the
        ``huggingface-cli download`` command and ``how_to_get``), or the path is a file.
    """
    from benchmark.weights import resolve_weights

    folder = resolve_weights(source, what=what, how_to_get=how_to_get)
    if not folder.is_dir():
        raise StereobenchError(f"{what}: {folder} is a file, not a diffusers-format folder"
                               f"{'; ' + how_to_get if how_to_get else ''}")
    return folder


def component_missing(folder: Path, component: str) -> str | None:
    """Why ``folder/component`` is not a loadable diffusers/transformers component, or None."""
    sub = folder / component
    if not (sub / "config.json").is_file():
        return component
    if not any(any(sub.glob(pattern)) for pattern in WEIGHT_PATTERNS):
        return f"{component} (config.json but no weights file)"
    return None


def check_folder(folder: str | os.PathLike, components: Iterable[str], files: Iterable[str] = ()) -> list[str]:
    """What ``folder`` lacks: component subfolders without ``config.json`` or weights, then
    missing ``files`` (relative paths). Empty when complete."""
    folder = Path(folder)
    missing = [reason for name in components if (reason := component_missing(folder, name))]
    missing += [name for name in files if not (folder / name).is_file()]
    return missing


def require_folder(folder: str | os.PathLike, components: Iterable[str], files: Iterable[str] = (),
                   what: str = "model folder", fix: str = "") -> Path:
    """``folder`` as a Path if :func:`check_folder` finds nothing missing, else a StereobenchError
    "<what> <folder> lacks <items>; <fix>"."""
    components, files = tuple(components), tuple(files)
    missing = check_folder(folder, components, files)
    if missing:
        layout = ", ".join([f"{c}/" for c in components] + list(files))
        raise StereobenchError(f"{what} {folder} lacks {', '.join(missing)}; it must hold {layout}"
                               f"{'; ' + fix if fix else ''}")
    return Path(folder)


#: ``block_out_channels`` of the published U-Nets built on SD/SVD (SVD's spatio-temporal U-Net,
#: StereoCrafter's fine-tune of it, zeroscope's UNet3DConditionModel).
PUBLISHED_UNET_WIDTHS = [320, 640, 1280, 1280]


def unet_width_warning(config_file: str | os.PathLike, what: str) -> str | None:
    """A one-line warning when the U-Net's ``config.json`` is not the published architecture
    (``block_out_channels`` other than :data:`PUBLISHED_UNET_WIDTHS`, as in tiny random test
    folders), else None. The runner labels such results so they never pass for the method's."""
    import json

    try:
        widths = json.loads(Path(config_file).read_text()).get("block_out_channels")
    except (OSError, ValueError) as exc:
        return f"{what}: cannot read {config_file} ({exc})"
    if list(widths or []) != PUBLISHED_UNET_WIDTHS:
        return (f"{what} at {Path(config_file).parent} is not the published model (block_out_channels {widths}, "
                f"published {PUBLISHED_UNET_WIDTHS}): tiny or random test weights")
    return None
