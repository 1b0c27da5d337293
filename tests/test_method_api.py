"""Method API: metadata validation, registry did-you-mean, third-party entry points."""

from __future__ import annotations

from importlib import metadata

import pytest

import benchmark.registry as registry_module
from benchmark.errors import StereobenchError
from benchmark.registry import LazyRegistry
from benchmark.weights import WeightSpec
from methods.meta import MethodMeta
from methods.registry import METHODS


def test_unknown_method_suggests_the_closest_name():
    with pytest.raises(StereobenchError, match="Did you mean 'background-fill'"):
        METHODS["backgroud-fill"]


def test_third_party_entry_point_is_found(monkeypatch):
    fake = metadata.EntryPoint(name="plugin-copy", value="methods.baselines:LeftCopy", group="stereobench.methods")
    real = metadata.entry_points

    def entry_points(**kwargs):
        if kwargs.get("group") == "stereobench.methods":
            return metadata.EntryPoints([fake])
        return real(**kwargs)

    monkeypatch.setattr(registry_module.metadata, "entry_points", entry_points)
    reg = LazyRegistry("method", {"left-copy": "methods.baselines:LeftCopy"}, entry_point_group="stereobench.methods")
    assert "plugin-copy" in reg.names()
    from methods.baselines import LeftCopy

    assert reg["plugin-copy"] is LeftCopy


def test_meta_rejects_unknown_outside_mask_promise_and_reports_pinning():
    with pytest.raises(ValueError, match="outside_mask"):
        MethodMeta(name="x", display_name="X", outside_mask="sometimes")
    assert WeightSpec("w", "repo/x", revision="abc123").pinned()
    assert not WeightSpec("w", "repo/x").pinned()
    assert MethodMeta(name="x", display_name="X").to_dict()["name"] == "x"


def test_weights_command_lists_every_method(capsys):
    from benchmark.cli import main

    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    for name in ("left-copy", "temporal-fill", "lpips_vgg"):
        assert name in out


def test_method_authors_find_every_name_in_methods_base():
    # Method authors import everything from methods.base (README): the weight records and MethodMeta too.
    import benchmark.weights as weights
    import methods.base as base
    import methods.meta as meta

    assert base.WeightSpec is weights.WeightSpec and base.WeightsStatus is weights.WeightsStatus
    assert base.MethodMeta is meta.MethodMeta


def test_registry_meta_and_entry_for_plain_classes_and_records():
    from methods.baselines import TemporalFill

    assert METHODS.meta("temporal-fill") is TemporalFill.meta
    entry = METHODS.spec("temporal-fill")
    assert entry.loader == "methods.baselines:TemporalFill" and not entry.cli_hooks and not entry.loader_kwargs
    assert METHODS.spec("m2svid-no-full-attention").loader_kwargs == {"full_attention": False}
    with pytest.raises(StereobenchError, match="Did you mean 'm2svid'"):
        METHODS.meta("m2svd")


def test_method_cli_hooks_are_discovered_by_the_commands(capsys):
    from benchmark.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    assert "m2svid" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["weights", "--help"])
    assert exc.value.code == 0
    assert "convert-m2svid" in capsys.readouterr().out
