"""What `prepare-data stereo4d` and the prepared datasets tell a newcomer: a run where every clip
failed does not claim that data was prepared, the height refusal names --min-height, and a missing
prepared root names --option root= beside the preparation command."""

from __future__ import annotations

import pytest

from benchmark.cli import main
from benchmark.datasets.ego4d import Ego4DStereo
from benchmark.datasets.stereo4d import Stereo4D
from benchmark.errors import StereobenchError
from tests.test_stereo4d import make_miniature


def test_all_failed_says_so_and_names_min_height(tmp_path, capsys):
    ann, raw = make_miniature(tmp_path)  # a 1280x640 video: under the toolkit's 1920 px
    code = main(["prepare-data", "stereo4d", "--annotations", str(ann), "--raw", str(raw), "--out",
                 str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "or pass --min-height 640 to take a lower stream" in err
    assert "1 clip(s) failed (listed above): fix them and rerun the same command" in err
    assert "prepared data in" not in err


@pytest.mark.parametrize("cls, env", [(Stereo4D, "STEREOBENCH_STEREO4D_ROOT"), (Ego4DStereo, "STEREOBENCH_EGO4D_ROOT")])
def test_absent_root_names_the_root_option_and_the_variable(tmp_path, cls, env):
    with pytest.raises(StereobenchError) as info:
        cls(root=tmp_path / "nope")
    message = str(info.value)
    assert "does not exist; prepare it with: stereobench prepare-data" in message
    assert f"(prepared elsewhere: pass --option root=DIR or set ${env})" in message
