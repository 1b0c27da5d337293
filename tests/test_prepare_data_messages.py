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


def _ego4d_miniature(folder):
    import json

    from tests.ego4d_scene import Scene, ego4d_frames, write_sbs_video

    write_sbs_video(folder / "vid-a.mp4", ego4d_frames(Scene(d0=6.0, d_box=18.0, seed=1), 40, 120, 160, pan=2.0), 10)
    (folder / "ego4d.json").write_text(json.dumps({"videos": [{"video_uid": "vid-a", "is_stereo": True}]}))
    return folder


def test_ego4d_clip_frames_under_the_minimum_is_refused_not_done_with_no_clips(tmp_path, capsys):
    videos = _ego4d_miniature(tmp_path)
    out = tmp_path / "out"
    argv = ["prepare-data", "ego4d", "--videos", str(videos), "--metadata", str(videos / "ego4d.json"), "--out",
            str(out), "--no-progress"]
    # 16 frames at 10 fps = 1.6 s < the 3.2 s minimum: before, the video was marked done with no clip.
    assert main([*argv, "--clip-frames", "16"]) == 1
    text = capsys.readouterr()
    assert "--clip-frames 16 is 1.60 s at 10 fps, shorter than --min-clip-seconds 3.2" in text.out
    assert "raise --clip-frames to at least 32" in text.out
    assert "1 video(s) failed (listed above)" in text.out and "prepared Ego4D clips" not in text.out
    assert not list((out / "ego4d" / "videos").glob("*.json")) if (out / "ego4d" / "videos").is_dir() else True
    # The suggested fix prepares the clips.
    assert main([*argv, "--clip-frames", "16", "--min-clip-seconds", "1.5"]) == 0
    text = capsys.readouterr()
    assert sorted(p.name for p in (out / "clips").iterdir()) == ["vid-a_clip_0000", "vid-a_clip_0001"]
    assert "prepared Ego4D clips under" in text.out


def test_stereo4d_split_typo_suggests_the_split(tmp_path, capsys):
    from tests.badinput import assert_clean_error

    ann, raw = make_miniature(tmp_path)
    assert_clean_error(["prepare-data", "stereo4d", "--annotations", str(ann), "--raw", str(raw), "--out",
                        str(tmp_path / "out"), "--split", "tset", "--no-progress"], capsys,
                       contains="Did you mean 'test'? splits found:")
