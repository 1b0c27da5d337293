"""Lazy registry of methods: name -> "module:attr" of an adapter class or a :class:`MethodSpec`.

An entry is either a :class:`~methods.base.Method` subclass (its ``meta`` on the class, e.g. the
baselines) or a :class:`~methods.meta.MethodSpec` record: metadata + loader + loader_kwargs +
CLI hooks, which is how variants are declared (``m2svid-no-full-attention`` is the M2SVid adapter
with ``full_attention=False`` and its own weights). Either way::

    METHODS[name](seed=S, **options)   # an adapter; unknown options are a one-line error
    METHODS.meta(name)                 # its MethodMeta (records: without importing torch)
    METHODS.spec(name)                 # its MethodSpec (variants: loader_kwargs, cli_hooks)

Third-party packages add methods through the ``stereobench.methods`` entry-point group in their
own pyproject.toml, without editing the suite::

    [project.entry-points."stereobench.methods"]
    my-method = "my_package.adapter:MyMethod"
"""

from __future__ import annotations

from typing import Any

from benchmark.registry import CliHook, LazyRegistry
from methods.meta import MethodSpec, MethodMeta


class MethodRegistry(LazyRegistry):
    """:class:`LazyRegistry` whose targets may be :class:`MethodSpec` records (variants)."""

    def spec(self, name: str) -> MethodSpec:
        """The registry entry of ``name``; a plain adapter class is wrapped as one (no kwargs, no hooks)."""
        target = self.target(name)
        if isinstance(target, MethodSpec):
            return target
        meta = getattr(target, "meta", None)
        if not isinstance(meta, MethodMeta):
            from benchmark.errors import StereobenchError

            raise StereobenchError(f"method {name!r} points to {self.path(name)!r}, which is neither a Method class "
                                   f"with a MethodMeta `meta` nor a MethodSpec; fix the registration")
        return MethodSpec(meta=meta, loader=self.path(name))

    def meta(self, name: str) -> MethodMeta:
        """The metadata of ``name``: read from the record (no torch import) or the class."""
        return self.spec(name).meta

    def __getitem__(self, name: str) -> Any:
        if name in self._cache:
            return self._cache[name]
        target = self.target(name)
        cls = target.adapter_class() if isinstance(target, MethodSpec) else target
        self._cache[name] = cls
        return cls

    def cli_hooks(self, command: str) -> list[CliHook]:
        """Every hook for ``command`` declared by a registered method, in name order.

        Entries that cannot be imported are skipped here (``stereobench weights`` and ``run``
        report them); a hook name claimed twice keeps the first.
        """
        from benchmark.errors import StereobenchError

        hooks: dict[str, CliHook] = {}
        for name in self.names():
            try:
                entry = self.spec(name)
            except StereobenchError:
                continue
            for hook in entry.cli_hooks:
                if hook.command == command:
                    hooks.setdefault(hook.name, hook)
        return list(hooks.values())


METHODS = MethodRegistry(
    "method",
    {
        "left-copy": "methods.baselines:LeftCopy",
        "warp-only": "methods.baselines:WarpOnly",
        "opencv-inpaint": "methods.baselines:OpenCVInpaint",
        "background-fill": "methods.baselines:BackgroundFill",
        "temporal-fill": "methods.baselines:TemporalFill",
        "m2svid": "methods.m2svid:M2SVID",
        "m2svid-no-full-attention": "methods.m2svid:M2SVID_NO_FULL_ATTENTION",
        "svg": "methods.svg:SVG",
        "svg-10": "methods.svg:SVG_10",
        "stereocrafter": "methods.stereocrafter:STEREOCRAFTER",
        "stereocrafter-8": "methods.stereocrafter:STEREOCRAFTER_8",
        "stereocrafter-1": "methods.stereocrafter:STEREOCRAFTER_1",
        "stereocrafter-nocfg": "methods.stereocrafter:STEREOCRAFTER_NOCFG",
    },
    entry_point_group="stereobench.methods",
)


def weights_entries(names: list[str] | None = None) -> list:
    """One :class:`benchmark.weights.WeightsEntry` per method (all, or ``names``): declared weights and
    whether they are present. A broken adapter becomes an entry with ``error`` set, never hides the
    others. Unknown ``names`` raise the registry's did-you-mean error."""
    from benchmark.weights import WeightsEntry, WeightsStatus

    for name in names or []:
        METHODS.path(name)  # did-you-mean before any work
    entries = []
    for name in names or METHODS.names():
        entry = WeightsEntry(kind="method", name=name)
        try:
            meta = METHODS.meta(name)
            entry.display_name, entry.specs = meta.display_name, tuple(meta.weights)
            method = METHODS[name]()
            entry.status = method.weights_status()
            warning = method.weights_warning() if entry.status.present and hasattr(method, "weights_warning") else None
            if warning:  # e.g. tiny random test folders: say so where the user checks the weights
                entry.status.details = [*entry.status.details,
                                        f"NOT THE PUBLISHED WEIGHTS: {warning}; run results are labelled {name}-TEST-WEIGHTS"]
        except Exception as exc:  # one broken adapter must not hide the others
            entry.status = WeightsStatus(present=False)
            entry.error = f"{type(exc).__name__}: {exc}"
        entries.append(entry)
    return entries
