"""Bad input to `stereobench prepare-data ego4d`: mistakes in the command line end with one
`error:` line and exit 2 before any work; a bad video (malformed homography JSON, not
side-by-side, too short) is logged with its one-line reason and skipped while the others are
prepared (exit 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.dataprep import ego4d as E
from tests.badinput import assert_clean_error
from tests.ego4d_scene import (
    H_LEFT,
    H_RIGHT,
    Scene,
    ego4d_frames,
    homography_json,
    write_sbs_video,
)

EYE_W, EYE_H = 160, 120


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    base = tmp_path_factory.mktemp("ego4d-bad")
    videos, homs = base / "videos", base / "homs"
    scene = Scene(d0=2.0, gx=0.02, gy=0.0, box=(60, 40, 110, 90), d_box=9.0)
    good = ego4d_frames(scene, 16, EYE_H, EYE_W)
    write_sbs_video(videos / "good.mp4", good, 5)
    write_sbs_video(videos / "badjson.mp4", good, 5)
    write_sbs_video(videos / "mono.mp4", good[:, :, :EYE_W + 54], 5)          # 214x120: aspect 1.78
    write_sbs_video(videos / "short.mp4", good[:6], 5)                        # 1.2 s
    crop = E.compute_valid_region(H_LEFT, H_RIGHT, (EYE_W, EYE_H))
    for uid in ("good", "mono", "short"):
        homography_json(homs / f"{uid}.mp4.json", H_LEFT, H_RIGHT, crop)
    (homs / "badjson.mp4.json").write_text(json.dumps({"homography_left": [[1, 0], [0, 1]],
                                                       "homography_right": np.eye(3).tolist(), "croping": crop}))
    meta = base / "ego4d.json"
    meta.write_text(json.dumps({"videos": [{"video_uid": u, "is_stereo": True}
                                           for u in ("good", "badjson", "mono", "short")]
                                + [{"video_uid": "absent", "is_stereo": True}, {"video_uid": "x", "is_stereo": False}]}))
    return base


def test_bad_videos_are_logged_and_skipped_and_the_good_one_is_prepared(folder, capsys):
    out = folder / "out"
    rc = main(["prepare-data", "ego4d", "--videos", str(folder / "videos"), "--homographies", str(folder / "homs"),
               "--metadata", str(folder / "ego4d.json"), "--out", str(out), "--clip-frames", "16", "--no-progress"])
    text = capsys.readouterr()
    both = text.out + text.err
    assert rc == 1
    assert "1 done, 0 already done, 3 failed" in text.out
    assert "failed badjson: homography JSON" in both and "'homography_left' must be a 3x3" in both
    assert "failed mono: video mono is 214x120 (aspect 1.78)" in both and "not side-by-side" in both
    assert "failed short: video short has 6 frames (1.20 s at 5 fps); a clip needs at least 3.2 s" in both
    assert "1 stereo video(s) of the metadata are not in" in text.err                  # 'absent' is reported
    assert "Traceback" not in both
    assert [p.name for p in (out / "clips").iterdir() if not p.name.startswith(".")] == ["good_clip_0000"]
    # every failure line is one line
    for line in both.splitlines():
        if line.lstrip().startswith("failed "):
            assert line.count("failed ") == 1


def test_jobs_survive_pickling_for_worker_processes(folder):
    """`--workers N` sends jobs to spawned processes: a job must round-trip through pickle."""
    import argparse
    import pickle

    parser = argparse.ArgumentParser()
    E.add_arguments(parser)
    args = parser.parse_args(["--videos", str(folder / "videos"), "--homographies", str(folder / "homs"),
                              "--out", str(folder / "o")])
    jobs, _ = E.build_jobs(args)
    assert [j.job_id for j in jobs] == ["badjson", "good", "mono", "short"]
    clone = pickle.loads(pickle.dumps(jobs[1]))
    assert clone == jobs[1] and clone.key() == jobs[1].key() and clone.homography.endswith("good.mp4.json")


@pytest.mark.parametrize("extra,contains", [
    (["--clip-frames", "1"], "--clip-frames must be at least 2"),
    (["--min-clip-seconds", "0"], "--min-clip-seconds must be a positive number"),
    (["--lr-check", "-1"], "--lr-check must be a positive number"),
    (["--max-disparity", "0"], "--max-disparity must be a positive number"),
    (["--shard", "3/2"], "--shard must look like i/n"),
    (["--video-uids", "nope"], "video(s) nope not found"),
])
def test_bad_options_are_one_line_errors(folder, capsys, extra, contains):
    assert_clean_error(["prepare-data", "ego4d", "--videos", str(folder / "videos"), "--out",
                        str(folder / "never"), *extra], capsys, contains=contains)
    assert not (folder / "never").exists()


def test_bad_folders_and_metadata_are_one_line_errors(folder, capsys, tmp_path):
    base = ["prepare-data", "ego4d", "--out", str(tmp_path / "o")]
    assert_clean_error([*base, "--videos", str(tmp_path / "missing")], capsys, contains="is not a folder")
    assert_clean_error([*base, "--videos", str(folder / "videos"), "--homographies", str(tmp_path / "nohoms")],
                       capsys, contains="--homographies")
    bad_meta = tmp_path / "meta.json"
    bad_meta.write_text('{"clips": []}')
    assert_clean_error([*base, "--videos", str(folder / "videos"), "--metadata", str(bad_meta)], capsys,
                       contains="is not Ego4D's ego4d.json")
    assert_clean_error([*base, "--videos", str(folder / "videos"), "--metadata", str(tmp_path / "none.json")],
                       capsys, contains="does not exist")
    mono_meta = tmp_path / "mono.json"
    mono_meta.write_text(json.dumps({"videos": [{"video_uid": "good", "is_stereo": False}]}))
    assert_clean_error([*base, "--videos", str(folder / "videos"), "--metadata", str(mono_meta)], capsys,
                       contains="no Ego4D stereo videos to prepare")
    assert_clean_error([*base, "--videos", str(tmp_path)], capsys, contains="no Ego4D stereo videos")
    assert_clean_error([*base, "--videos", str(folder / "videos"), "--shift-rule", "half"], capsys,
                       contains="invalid choice")


def test_the_dataset_says_what_is_missing(tmp_path):
    from benchmark.datasets import get_dataset
    from benchmark.errors import StereobenchError

    with pytest.raises(StereobenchError, match="needs its prepared folder: --option root=DIR or set "
                                               "STEREOBENCH_EGO4D_ROOT"):
        get_dataset("ego4d")
    with pytest.raises(StereobenchError, match=r"folder .*nothing does not exist; prepare it with: stereobench "
                                               r"prepare-data ego4d"):
        get_dataset("ego4d", root=str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(StereobenchError, match=r"200 of 200 clips of split 'test'.*c324287b-5b1c-4d26-9d21-"
                                               r"8aceadaddda6_clip_0096"):
        get_dataset("ego4d", root=str(tmp_path / "empty"), split="test")
