"""Declarative records of methods, importable without torch: metadata, options, registry entries.

- :class:`MethodMeta`: what a method is (paper, licence, weights, native size, steps...).
- :class:`MethodOptions`: base of every method's options model (strict pydantic: an unknown key
  or a wrongly typed value is an error, never silently ignored); :func:`validate_options` turns
  a violation into one :class:`~benchmark.errors.StereobenchError` line with did-you-mean.
- :class:`MethodSpec`: a registry entry as data (mteb's ``ModelMeta`` with ``loader`` +
  ``loader_kwargs``): metadata, the adapter class that runs it, the option defaults that make
  this variant, and the CLI sub-commands the method's package adds. A variant (M2SVid without
  full attention, StereoCrafter at 8 steps) is another entry over the same adapter class, not a
  copied subclass. (Not called ``MethodEntry``: that is a run config's method line in
  :mod:`benchmark.config`.)

Everything here is plain data, so that ``METHODS.meta(name)`` of a record never imports torch or
a model library.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from benchmark.errors import StereobenchError, did_you_mean
from benchmark.registry import CliHook
from benchmark.weights import WeightSpec


@dataclass(frozen=True)
class MethodMeta:
    """Declarative description of a method (shown in leaderboards and `stereobench weights`).

    ``native_resolution`` is (height, width) the method was trained at, or None when it runs
    at any size; ``native_frames`` the frames per forward call (None = any);
    ``denoising_steps`` 0 for non-generative methods; ``native_warp`` the name of the method's
    official warp rule in :mod:`benchmark.stereo` used in ``native`` mode (None = shared warp).
    ``outside_mask`` is the method's promise about pixels outside the hole mask: ``"warped"``
    (returned exactly as the input's warped view, i.e. only holes are filled) or ``"any"`` (the
    method may change them; e.g. generative refiners that also fix warping artefacts).
    ``version`` is the adapter's own version; it goes into every result's provenance, so bump it
    when a change alters outputs.
    """

    name: str
    display_name: str
    paper: str = ""
    citation: str = ""
    url: str = ""
    licence: str = ""
    weights: tuple[WeightSpec, ...] = ()
    native_resolution: tuple[int, int] | None = None
    native_frames: int | None = None
    denoising_steps: int = 0
    needs_gpu: bool = False
    native_warp: str | None = None
    description: str = ""
    outside_mask: str = "any"
    version: str = "1"

    def __post_init__(self) -> None:
        if self.outside_mask not in ("warped", "any"):
            raise ValueError(f"outside_mask must be 'warped' or 'any', got {self.outside_mask!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (run manifests, ``stereobench weights``)."""
        return asdict(self)


class MethodOptions(BaseModel):
    """Base of a method's options: typed fields with defaults and a one-line ``description``.

    Strict (``"3"`` is not an int, ``1`` is not a bool), unknown keys forbidden, NaN and infinity
    refused, frozen. A method declares ``class Options(MethodOptions): ...`` and reads the
    validated values from ``self.config``.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("pathlib.", "").replace("NoneType", "None")


def validate_options(model: type[MethodOptions], options: Mapping[str, Any], label: str) -> MethodOptions:
    """``model(**options)``, or one :class:`StereobenchError` line naming the first bad option.

    ``label`` names the method in the message (``"temporal-fill"``, ``"M2SVid"``). An unknown key
    gets a did-you-mean over the declared option names; a wrongly typed or out-of-range value
    names the option, the value, what is expected and the option's one-line help.
    """
    try:
        return model(**options)
    except ValidationError as exc:
        errors = exc.errors()
        unknown = next((e for e in errors if e.get("type") == "extra_forbidden"), None)
        if unknown is not None:
            key = str(unknown["loc"][0])
            names = list(model.model_fields)
            if not names:
                raise StereobenchError(f"{label} takes no options, got {key!r}; remove it") from None
            raise did_you_mean(key, names, f"{label} option") from None
        first = errors[0]
        key = str(first["loc"][0]) if first.get("loc") else "?"
        info = model.model_fields.get(key)
        expected = f"; expected {_type_name(info.annotation)}" if info is not None else ""
        help_text = f" ({info.description})" if info is not None and info.description else ""
        raise StereobenchError(f"{label} option {key!r}={options.get(key)!r}: {first.get('msg')}{expected}"
                               f"{help_text}") from None


def options_help(model: type[MethodOptions]) -> list[str]:
    """One line per option: ``name: type = default  help`` (for docs and listings)."""
    lines = []
    for name, info in model.model_fields.items():
        lines.append(f"{name}: {_type_name(info.annotation)} = {info.default!r}  {info.description or ''}".rstrip())
    return lines


# Adapter classes bound to a variant, built once per entry (METHODS[name] is METHODS[name]); keyed by
# everything that defines the binding, so two different records never share a class.
_BOUND: dict[tuple[str, str, str], type] = {}


@dataclass(frozen=True)
class MethodSpec:
    """A method as data: metadata + the adapter that runs it + the option defaults of this variant.

    Attributes:
        meta: the variant's :class:`MethodMeta` (available without importing ``loader``).
        loader: ``"module:Class"`` of the :class:`~methods.base.Method` subclass that runs it.
        loader_kwargs: option defaults that make this variant (e.g. ``{"full_attention": False}``
            or ``{"num_inference_steps": 8}``); the user's options override them, and the
            variant's own options validation applies to both.
        cli_hooks: sub-commands this method's package adds to the CLI (``weights convert-m2svid``,
            ``train m2svid``); the commands discover them through the registry.
    """

    meta: MethodMeta
    loader: str
    loader_kwargs: Mapping[str, Any] = field(default_factory=dict)
    cli_hooks: tuple[CliHook, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "loader_kwargs", MappingProxyType(dict(self.loader_kwargs)))

    @property
    def name(self) -> str:
        return self.meta.name

    def variant(self, loader_kwargs: Mapping[str, Any] | None = None, cli_hooks: tuple[CliHook, ...] = (),
                **meta_changes: Any) -> MethodSpec:
        """Another entry over the same loader: ``meta`` with ``meta_changes``, the given option
        defaults (merged over this entry's) and its own CLI hooks (none by default)."""
        return MethodSpec(meta=replace(self.meta, **meta_changes), loader=self.loader,
                           loader_kwargs={**self.loader_kwargs, **(loader_kwargs or {})}, cli_hooks=cli_hooks)

    def adapter_class(self) -> type:
        """The loader class (imported now), bound to this entry when it is a variant.

        When the loader class already carries this entry's metadata and there are no
        ``loader_kwargs``, it is returned as is. Otherwise a subclass is generated from the data
        (no code of its own: ``meta`` and ``defaults`` differ, nothing else), so that
        ``type(method).meta`` names the variant wherever a result records it.
        """
        key = (repr(self.meta), self.loader, repr(sorted(self.loader_kwargs.items())))
        if key in _BOUND:
            return _BOUND[key]
        module_name, _, attr = self.loader.partition(":")
        try:
            cls: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                cls = getattr(cls, part)
        except (ImportError, AttributeError) as exc:
            raise StereobenchError(f"method {self.meta.name!r}: loader {self.loader!r} cannot be imported ({exc}); "
                                   f"install the package that provides it") from exc
        if getattr(cls, "meta", None) == self.meta and not self.loader_kwargs:
            bound = cls
        else:
            bound = type(cls.__name__, (cls,), {
                "meta": self.meta, "defaults": MappingProxyType({**getattr(cls, "defaults", {}), **self.loader_kwargs}),
                "spec": self, "__module__": cls.__module__, "__qualname__": f"{cls.__qualname__}[{self.meta.name}]",
                "__doc__": f"{self.meta.display_name}: {cls.__name__} with defaults {dict(self.loader_kwargs)}.",
            })
        _BOUND[key] = bound
        return bound
