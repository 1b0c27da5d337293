"""Strict method options (issue 9, bug 2) and method variants as registry data.

Every method declares typed options; an unknown name or a wrongly typed value is one
StereobenchError line (with did-you-mean), from Python, from a YAML config and from the CLI. A
variant is a registry record (metadata + loader_kwargs) over one adapter class.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pytest

from benchmark.errors import StereobenchError
from methods.meta import MethodSpec, MethodMeta
from methods.registry import METHODS
from tests.badinput import REPO, assert_clean_error

BAD_OPTIONS = [
    # (method, options, text the error must contain)
    ("temporal-fill", {"max_ofset": 3}, "Did you mean 'max_offset'"),
    ("temporal-fill", {"min_seperation": 1.0}, "Did you mean 'min_separation'"),
    ("temporal-fill", {"motion_compensaton": False}, "Did you mean 'motion_compensation'"),
    ("temporal-fill", {"max_offset": "3"}, "max_offset"),
    ("temporal-fill", {"max_offset": 2.5}, "valid integer"),
    ("temporal-fill", {"max_offset": -1}, "greater than or equal to 0"),
    ("temporal-fill", {"min_separation": math.nan}, "finite"),
    ("temporal-fill", {"min_separation": "1px"}, "min_separation"),
    ("temporal-fill", {"motion_compensation": 1}, "valid boolean"),
    ("temporal-fill", {"motion_compensation": "yes"}, "valid boolean"),
    ("opencv-inpaint", {"raduis": 3}, "Did you mean 'radius'"),
    ("opencv-inpaint", {"algoritm": "ns"}, "Did you mean 'algorithm'"),
    ("opencv-inpaint", {"radius": 0}, "greater than 0"),
    ("opencv-inpaint", {"radius": -2.0}, "greater than 0"),
    ("opencv-inpaint", {"radius": math.inf}, "finite"),
    ("opencv-inpaint", {"algorithm": 3}, "valid string"),
    ("opencv-inpaint", {"algorithm": "tela"}, "Did you mean 'telea'"),
    ("left-copy", {"strength": 1}, "takes no options"),
    ("warp-only", {"fill": 0}, "takes no options"),
    ("background-fill", {"max_offset": 3}, "takes no options"),
    ("m2svid", {"chunk_frame": 4}, "Did you mean 'chunk_frames'"),
    ("m2svid", {"tile_sise": 512}, "Did you mean 'tile_size'"),
    ("m2svid", {"chunk_frames": "4"}, "valid integer"),
    ("m2svid", {"chunk_frames": 26}, "less than or equal to 25"),
    ("m2svid", {"chunk_frames": 0}, "greater than or equal to 1"),
    ("m2svid", {"cond_aug": -0.1}, "greater than or equal to 0"),
    ("m2svid", {"tiny_random": "yes"}, "valid boolean"),
    ("m2svid", {"weights": 3}, "weights"),
    ("m2svid", {"decode_chunk_size": 0}, "greater than or equal to 1"),
    ("m2svid-no-full-attention", {"full_atention": True}, "Did you mean 'full_attention'"),
    ("m2svid-no-full-attention", {"temporal_overlap": -4}, "greater than or equal to 0"),
]


@pytest.mark.parametrize("name,options,needle", BAD_OPTIONS, ids=[f"{n}-{sorted(o)[0]}-{i}" for i, (n, o, _) in enumerate(BAD_OPTIONS)])
def test_bad_option_is_a_one_line_error(name, options, needle):
    with pytest.raises(StereobenchError) as info:
        METHODS[name](seed=0, **options)
    message = str(info.value)
    assert needle in message and "\n" not in message
    assert sorted(options)[0] in message  # the option the user typed is named


@pytest.mark.parametrize("name", METHODS.names())
def test_every_registered_method_refuses_an_unknown_option(name):
    with pytest.raises(StereobenchError, match="no_such_option_xyz"):
        METHODS[name](seed=0, no_such_option_xyz=1)


@pytest.mark.parametrize("name", METHODS.names())
def test_every_option_is_typed_documented_and_defaulted(name):
    cls = METHODS[name]
    for option, info in cls.Options.model_fields.items():
        assert info.description and "\n" not in info.description, f"{name}.{option} has no one-line help"
        assert not info.is_required(), f"{name}.{option} has no default"
    cls(seed=0)  # the defaults themselves validate


def test_valid_options_are_used_and_kept_exactly_as_given():
    method = METHODS["temporal-fill"](seed=3, max_offset=2, min_separation=1)  # an int is a fine float
    assert (method.max_offset, method.min_separation, method.motion_compensation) == (2, 1.0, True)
    assert method.options == {"max_offset": 2, "min_separation": 1}  # what results record: as given
    assert method.config.min_separation == 1.0 and method.seed == 3
    inpaint = METHODS["opencv-inpaint"](algorithm="ns", radius=5)
    assert (inpaint.algorithm, inpaint.radius) == ("ns", 5.0)


def _write_config(tmp_path, method_yaml: str):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(f"""\
        datasets:
          - name: synthetic
            options: {{num_clips: 1, size: 32, num_frames: 2}}
        methods:
        {textwrap.indent(method_yaml, '  ')}
        metrics: [psnr]
        leaderboard: false
        """))
    return path


@pytest.mark.parametrize("method_yaml,needle", [
    ("- {name: temporal-fill, options: {max_ofset: 3}}", "Did you mean 'max_offset'"),
    ("- {name: temporal-fill, options: {max_offset: three}}", "max_offset"),
    ("- {name: temporal-fill, options: {motion_compensation: 1}}", "valid boolean"),
    ("- {name: opencv-inpaint, options: {radius: 0}}", "greater than 0"),
    ("- {name: m2svid, options: {chunk_frame: 4}}", "Did you mean 'chunk_frames'"),
])
def test_config_file_options_go_through_the_same_constructor(tmp_path, method_yaml, needle):
    from benchmark.config import load_config

    config = load_config(_write_config(tmp_path, method_yaml))
    entry = config.methods[0]
    with pytest.raises(StereobenchError, match=needle):
        METHODS[entry.name](seed=config.seed, **entry.options)


@pytest.mark.parametrize("method_yaml,needle", [
    ("- {name: temporal-fill, options: {max_ofset: 3}}", "max_offset"),
    ("- {name: opencv-inpaint, options: {raduis: 2}}", "radius"),
])
def test_config_file_typo_stops_the_run_with_one_line(tmp_path, capsys, method_yaml, needle):
    config = _write_config(tmp_path, method_yaml)
    assert_clean_error(["run", "--config", config, "--out", tmp_path / "runs"], capsys, contains=needle)
    assert not list((tmp_path / "runs").rglob("rows*.jsonl"))  # refused before any work


# -- variants as data ------------------------------------------------------------------------

def test_m2svid_variants_share_one_adapter_and_differ_as_declared():
    from methods.m2svid import M2SVID, M2SVID_NO_FULL_ATTENTION
    from methods.m2svid.adapter import M2SVid

    full, plain = METHODS["m2svid"], METHODS["m2svid-no-full-attention"]
    assert full is M2SVid and issubclass(plain, M2SVid)
    code = [k for k, v in plain.__dict__.items() if callable(v) or isinstance(v, (property, staticmethod, classmethod))]
    assert not code, f"a variant must not carry code of its own: {code}"
    assert {"meta", "defaults"} <= plain.__dict__.keys()
    assert M2SVID.loader == M2SVID_NO_FULL_ATTENTION.loader
    meta_full, meta_plain = METHODS.meta("m2svid"), METHODS.meta("m2svid-no-full-attention")
    assert (meta_full.name, meta_plain.name) == ("m2svid", "m2svid-no-full-attention")
    assert meta_plain.display_name == "M2SVid (no full attention)"
    assert meta_full.weights[0].env_var == "M2SVID_WEIGHTS"
    assert meta_plain.weights[0].env_var == "M2SVID_NO_FULL_ATTENTION_WEIGHTS"
    # Everything not declared as different is shared.
    same = {k: v for k, v in meta_full.to_dict().items() if k not in ("name", "display_name", "weights", "description")}
    assert same == {k: v for k, v in meta_plain.to_dict().items() if k in same}
    assert full(seed=0).config.full_attention is True and plain(seed=0).config.full_attention is False
    assert plain(seed=0, full_attention=True).config.full_attention is True  # the user's option wins
    assert type(plain(seed=0)).meta is meta_plain  # what a run records as the method's meta
    assert METHODS["m2svid-no-full-attention"] is plain  # one class per entry


def test_meta_of_a_record_needs_no_torch():
    code = ("import sys; from methods.registry import METHODS; m = METHODS.meta('m2svid-no-full-attention'); "
            "assert m.denoising_steps == 1; hooks = METHODS.spec('m2svid').cli_hooks; "
            "assert {h.command for h in hooks} == {'weights', 'train'}; "
            "print(sorted(x for x in ('torch', 'diffusers') if x in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_m2svid_options_cover_the_pipeline_options_with_their_defaults():
    from dataclasses import fields

    from methods.m2svid.adapter import M2SVid
    from methods.m2svid.pipeline import InferenceOptions

    declared = M2SVid.Options.model_fields
    defaults = InferenceOptions()
    for f in fields(InferenceOptions):
        assert f.name in declared, f"InferenceOptions.{f.name} is not an M2SVid option"
        assert declared[f.name].default == getattr(defaults, f.name)
    method = M2SVid(chunk_frames=4, temporal_overlap=2, decode_chunk_size=3)
    assert (method.inference_options.chunk_frames, method.inference_options.temporal_overlap,
            method.inference_options.decode_chunk_size) == (4, 2, 3)


def _steps_adapter():
    """A stand-in for a many-step method (StereoCrafter at 25 / 8 / 1 steps)."""
    import torch
    from pydantic import Field

    from methods.base import Method, MethodOptions

    class Steps(Method):
        meta = MethodMeta(name="steps-25", display_name="Steps (25)", licence="test", denoising_steps=25)

        class Options(MethodOptions):
            num_inference_steps: int = Field(25, ge=1, description="denoising steps")

        def refine(self, inp):
            return torch.zeros_like(inp.left)

    return Steps


def test_a_steps_variant_is_one_record_not_a_subclass(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "Steps", _steps_adapter(), raising=False)
    base = MethodSpec(meta=MethodMeta(name="steps-25", display_name="Steps (25)", licence="test", denoising_steps=25),
                       loader=f"{__name__}:Steps")
    fast = base.variant(loader_kwargs={"num_inference_steps": 8}, name="steps-8", display_name="Steps (8)",
                        denoising_steps=8)
    monkeypatch.setattr(sys.modules[__name__], "STEPS_8", fast, raising=False)
    METHODS.register("steps-8", f"{__name__}:STEPS_8")
    try:
        method = METHODS["steps-8"](seed=0)
        assert method.config.num_inference_steps == 8 and type(method).meta.denoising_steps == 8
        assert METHODS.meta("steps-8").display_name == "Steps (8)"
        assert METHODS["steps-8"](seed=0, num_inference_steps=1).config.num_inference_steps == 1
        with pytest.raises(StereobenchError, match="Did you mean 'num_inference_steps'"):
            METHODS["steps-8"](seed=0, num_inference_step=4)
        assert base.adapter_class() is sys.modules[__name__].Steps  # the base entry is the class itself
    finally:
        METHODS._paths.pop("steps-8", None)
        METHODS._cache.pop("steps-8", None)
