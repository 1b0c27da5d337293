"""Lazy name -> "module:attr" registries with did-you-mean errors.

Nothing registers by import side effect: a registry is a plain mapping of names to import
paths, resolved on first use, plus (optionally) a Python entry-point group through which
third-party packages add entries without editing the suite.

:class:`CliHook` / :class:`CliCommand` let a registered component (a method's package) add a
sub-command to a suite command (``weights convert-m2svid``, ``train m2svid``) through its
registry entry; :func:`add_cli_hooks` is what the commands call to discover them.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
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

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a run-time registration, e.g. a test's); unknown names are an error."""
        self._load_plugins()
        if name not in self._paths:
            raise did_you_mean(name, self._paths, self.kind)
        del self._paths[name]
        self._cache.pop(name, None)

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._paths)

    def path(self, name: str) -> str:
        self._load_plugins()
        if name not in self._paths:
            raise did_you_mean(name, self._paths, self.kind)
        return self._paths[name]

    def target(self, name: str) -> Any:
        """The object ``name``'s ``"module:attr"`` path points to (imported now, not cached)."""
        path = self.path(name)
        try:
            return import_path(path)
        except (ImportError, AttributeError) as exc:
            raise StereobenchError(
                f"{self.kind} {name!r} points to {path!r}, which cannot be imported ({exc}); "
                f"fix the registration or install the package that provides it"
            ) from exc

    def __getitem__(self, name: str) -> Any:
        if name in self._cache:
            return self._cache[name]
        obj = self.target(name)
        self._cache[name] = obj
        return obj

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._paths


def import_path(path: str) -> Any:
    """The object at ``"package.module:attr.sub"`` (the module itself without ``:attr``)."""
    module_name, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class CliCommand:
    """A sub-command implementation: its long help, ``add_arguments(parser)`` and ``run(args) -> int``."""

    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class CliHook:
    """A sub-command a registered component adds to a suite command.

    ``command`` is the suite command (``"weights"``, ``"train"``), ``name`` the sub-command
    (``"convert-m2svid"``, ``"m2svid"``), ``target`` the ``"module:attr"`` of its
    :class:`CliCommand` (imported only when the suite command is used), ``help`` its one-line
    summary.
    """

    command: str
    name: str
    target: str
    help: str = ""


def add_cli_hooks(subparsers: argparse._SubParsersAction, hooks: Iterable[CliHook]) -> list[str]:
    """Add one sub-parser per hook (its :class:`CliCommand`'s arguments); returns their names.

    The chosen hook's ``run`` is stored as ``args._hook_run``. A hook whose target cannot be
    imported still gets a sub-parser, whose run raises the import problem as a one-line error:
    one broken plug-in must not take the whole command down.
    """
    names = []
    for hook in hooks:
        parser = subparsers.add_parser(hook.name, help=hook.help, formatter_class=argparse.RawDescriptionHelpFormatter)
        try:
            command = import_path(hook.target)
        except (ImportError, AttributeError) as exc:
            problem = StereobenchError(f"sub-command {hook.command} {hook.name} points to {hook.target!r}, which cannot "
                                       f"be imported ({exc}); reinstall the package that provides it")

            def broken(args: argparse.Namespace, problem: StereobenchError = problem) -> int:
                raise problem

            parser.add_argument("rest", nargs=argparse.REMAINDER)
            parser.set_defaults(_hook_run=broken)
        else:
            parser.description = command.description
            command.add_arguments(parser)
            parser.set_defaults(_hook_run=command.run)
        names.append(hook.name)
    return names
