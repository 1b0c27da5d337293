import pytest

from benchmark.cli import main
from benchmark.errors import StereobenchError
from benchmark.registry import LazyRegistry


def test_registry_resolves_lazily_and_suggests():
    reg = LazyRegistry("thing", {"sqrt": "math:sqrt", "broken": "no_such_module_xyz:f"})
    assert reg["sqrt"](9.0) == 3.0
    with pytest.raises(StereobenchError, match="Did you mean 'sqrt'"):
        reg["sqrtt"]
    with pytest.raises(StereobenchError, match="cannot be imported"):
        reg["broken"]
    assert "sqrt" in reg and sorted(reg) == ["broken", "sqrt"]
    reg.register("floor", "math:floor")
    assert reg["floor"](2.5) == 2
    reg.unregister("floor")
    assert "floor" not in reg and sorted(reg) == ["broken", "sqrt"]
    with pytest.raises(StereobenchError, match="Did you mean 'sqrt'"):
        reg.unregister("sqrtt")


def test_cli_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "stereobench" in out and "Typical use" in out


def test_cli_unknown_command_fails(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2


def test_leftover_arguments_are_reported_with_the_subcommands_usage(capsys):
    # argparse reports leftovers with the top-level usage unless the leaf parser raises them.
    with pytest.raises(SystemExit) as exc:
        main(["weights", "convert-m2svid", "a.pt", "out/"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage: stereobench weights convert-m2svid" in err and "--out" in err
    assert "unrecognized arguments: out/" in err


def test_missing_dataset_folder_is_named(tmp_path, capsys):
    missing = tmp_path / "no_such_videos"
    assert main(["prepare", "--dataset", str(missing), "--no-preview"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: dataset folder") and "does not exist" in err and len(err.splitlines()) == 1


def test_train_refuses_zero_steps(tmp_path, capsys):
    code = main(["train", "m2svid", "--init", "tiny", "--dataset", "synthetic", "--frames", "4", "--size", "64",
                 "--steps", "0", "--output", str(tmp_path / "t")])
    assert code == 2
    assert "--steps must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "t" / "final").exists()


def test_weights_listing_names_each_download_once(capsys):
    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    assert "m2svid_weights.pt/m2svid_weights.pt" not in out
    assert "https://storage.googleapis.com/gresearch/m2svid/m2svid_weights.pt" in out


def test_os_errors_become_one_line(monkeypatch, capsys):
    import errno

    import benchmark.commands.leaderboard as leaderboard_command

    def disk_full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/results/runs/x/rows.jsonl")

    monkeypatch.setattr(leaderboard_command, "run", disk_full)
    monkeypatch.delenv("STEREOBENCH_DEBUG", raising=False)
    assert main(["leaderboard"]) == 2
    err = capsys.readouterr().err.strip()
    # The cause first, then the user's path (the wording around them belongs to cli.py).
    assert err.startswith("error: No space left on device") and "/results/runs/x/rows.jsonl" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_train_m2svid_runs_through_the_packages_cli_hook(tmp_path, capsys):
    # The sub-command comes from the M2SVid registry entry (methods.m2svid.cli), not benchmark/commands.
    out = tmp_path / "t"
    code = main(["train", "m2svid", "--init", "tiny", "--dataset", "synthetic", "--dataset-option", "size=32",
                 "--dataset-option", "num_clips=1", "--dataset-option", "num_frames=4", "--frames", "2",
                 "--size", "32", "--steps", "1", "--checkpoint-every", "1", "--no-lpips", "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    assert (out / "final" / "m2svid.json").is_file() and (out / "checkpoints" / "step-1").is_dir()
    assert "trained 1 steps" in capsys.readouterr().out


def test_convert_accepts_a_new_an_empty_or_a_converted_out_folder(tmp_path):
    import argparse

    import torch

    from methods.m2svid.cli import check_convert_arguments

    checkpoint = tmp_path / "m2svid_weights.pt"
    torch.save({"module": {}}, checkpoint)
    converted = tmp_path / "converted"
    converted.mkdir()
    (converted / "m2svid.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    for out in (None, tmp_path / "new" / "folder", tmp_path / "empty", converted):
        check_convert_arguments(argparse.Namespace(checkpoint=checkpoint, out=out, svd_source=None))
