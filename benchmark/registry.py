"""Lazy name -> "module:attr" registries with did-you-mean errors.

Nothing registers by import side effect: a registry is a plain mapping of names to import
paths, resolved on first use, plus (optionally) a Python entry-point group through which
third-party packages add entries without editing the suite.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from importlib import metadata
from typing import Any

from benchmark.errors import StereobenchError, did_you_mean


class LazyRegistry(Mapping[str, Any]):
    """Maps names to objects imported lazily from ``"package.module:attr"`` strings.

    ``kind`` names what is registered ("method", "dataset", "metric"), for error messages.
    ``entry_point_group``, when given, adds every entry point of that group (third-party
    plug-ins); a built-in name wins over a plug-in of the same name.
    """

    def __init__(self, kind: str, paths: Mapping[str, str], entry_point_group: str | None = None):
        self.kind = kind
        self._paths = dict(paths)
        self._group = entry_point_group
        self._plugins_loaded = entry_point_group is None
        self._cache: dict[str, Any] = {}

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in metadata.entry_points(group=self._group):
            self._paths.setdefault(ep.name, ep.value)

    def register(self, name: str, path: str) -> None:
        """Add ``name -> "module:attr"`` at run time (tests, notebooks)."""
        self._paths[name] = path
        self._cache.pop(name, None)

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._paths)

    def path(self, name: str) -> str:
        self._load_plugins()
        if name not in self._paths:
            raise did_you_mean(name, self._paths, self.kind)
        return self._paths[name]

    def __getitem__(self, name: str) -> Any:
        if name in self._cache:
            return self._cache[name]
        target = self.path(name)
        module_name, _, attr = target.partition(":")
        try:
            obj = importlib.import_module(module_name)
            for part in attr.split(".") if attr else []:
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise StereobenchError(
                f"{self.kind} {name!r} points to {target!r}, which cannot be imported ({exc}); "
                f"fix the registration or install the package that provides it"
            ) from exc
        self._cache[name] = obj
        return obj

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._paths
