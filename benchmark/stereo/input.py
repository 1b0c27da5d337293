"""Moved: :class:`StereoInput` and :func:`params_hash` live in :mod:`benchmark.types`."""

from benchmark.types import StereoInput, params_hash  # noqa: F401  # moved; shim removed at integration

__all__ = ["StereoInput", "params_hash"]
