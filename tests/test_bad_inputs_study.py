"""`stereobench study ...` bad inputs: one `error:` line, exit 2, no traceback; a missing video file
is skipped and logged while the study is built from the rest."""

from __future__ import annotations

import io

import pytest

from tests.badinput import assert_clean_error
from tests.study_helpers import METHODS, make_video_folder, synthetic_package


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return make_video_folder(tmp_path_factory.mktemp("src") / "videos", n_videos=2, methods=METHODS[:2], gt=False,
                             size=(16, 16), frames=4)


def test_build_missing_source(capsys, tmp_path):
    assert_clean_error(["study", "build", str(tmp_path / "nope"), "--out", str(tmp_path / "o")], capsys,
                       contains="does not exist")


def test_build_folder_without_videos(capsys, tmp_path):
    (tmp_path / "empty" / "clip").mkdir(parents=True)
    assert_clean_error(["study", "build", str(tmp_path / "empty"), "--out", str(tmp_path / "o")], capsys,
                       contains="no videos in the study layout")


def test_build_source_is_a_file(capsys, tmp_path):
    (tmp_path / "f.mp4").write_bytes(b"x")
    assert_clean_error(["study", "build", str(tmp_path / "f.mp4"), "--out", str(tmp_path / "o")], capsys,
                       contains="is a file")


def test_build_unknown_method_suggests(capsys, tmp_path, source):
    assert_clean_error(["study", "build", str(source), "--out", str(tmp_path / "o"), "--methods",
                        f"{METHODS[0]},{METHODS[1]}y"], capsys, contains=f"Did you mean '{METHODS[1]}'")


def test_build_one_method_is_not_a_study(capsys, tmp_path, source):
    assert_clean_error(["study", "build", str(source), "--out", str(tmp_path / "o"), "--methods", METHODS[0]], capsys,
                       contains="at least two methods")


def test_build_pairs_for_a_ranking_study(capsys, tmp_path, source):
    assert_clean_error(["study", "build", str(source), "--out", str(tmp_path / "o"), "--pairs",
                        f"{METHODS[0]}:{METHODS[1]}"], capsys, contains="--kind pairwise")


def test_build_bad_pair_syntax(capsys, tmp_path, source):
    assert_clean_error(["study", "build", str(source), "--out", str(tmp_path / "o"), "--kind", "pairwise",
                        "--pairs", METHODS[0]], capsys, contains="separated by ':'")


def test_build_existing_out(capsys, tmp_path, source):
    (tmp_path / "o").mkdir()
    assert_clean_error(["study", "build", str(source), "--out", str(tmp_path / "o")], capsys, contains="--overwrite")


@pytest.mark.parametrize("flag, value, contains", [
    ("--participants", "0", "at least 1"), ("--attention", "-1", "0 or more"), ("--crf", "99", "0-51"),
    ("--videos-per-participant", "5", "from 1 to the 2"), ("--participant-ids", "a,a", "distinct"),
    ("--participant-ids", "a b,c", "letters, digits"), ("--study-id", "bad/id", "study id"), ("--fps", "0", "positive"),
])
def test_build_bad_numbers_and_ids(capsys, tmp_path, source, flag, value, contains):
    assert_clean_error(["study", "build", str(source), "--out", str(tmp_path / "o"), flag, value], capsys,
                       contains=contains)


def test_build_missing_video_file_is_skipped_and_logged(capsys, tmp_path):
    from benchmark.cli import main

    src = make_video_folder(tmp_path / "v", n_videos=2, methods=METHODS[:2], gt=False, size=(16, 16), frames=4)
    (src / "clip0" / f"{METHODS[1]}.mp4").unlink()
    assert main(["study", "build", str(src), "--out", str(tmp_path / "pkg"), "--participants", "2"]) == 0
    out = capsys.readouterr().out
    assert "skipped video clip0" in out and "file missing" in out and "1 videos" in out
    assert "skipped clip0" in (tmp_path / "pkg" / "build.log").read_text()


def test_export_status_close_on_a_missing_package(capsys, tmp_path):
    for sub in ("export", "status", "close", "serve"):
        extra = ["--out", str(tmp_path / "r.csv")] if sub == "export" else []
        assert_clean_error(["study", sub, str(tmp_path / "nope"), *extra], capsys, contains="does not exist")


def test_status_on_a_folder_that_is_not_a_package(capsys, tmp_path):
    (tmp_path / "plain").mkdir()
    assert_clean_error(["study", "status", str(tmp_path / "plain")], capsys, contains="not a study package")


def test_export_bad_suffix_and_pwcmp_on_a_ranking_study(capsys, tmp_path):
    pkg = synthetic_package(tmp_path / "pkg")
    db = str(tmp_path / "s.sqlite")
    assert_clean_error(["study", "export", str(pkg), "--db", db, "--out", str(tmp_path / "r.xlsx")], capsys,
                       contains=".csv or .parquet")
    assert_clean_error(["study", "export", str(pkg), "--db", db, "--out", str(tmp_path / "r.csv"), "--pwcmp",
                        str(tmp_path / "p.csv")], capsys, contains="pairwise")


def test_bad_database_url(capsys, tmp_path):
    pkg = synthetic_package(tmp_path / "pkg")
    assert_clean_error(["study", "status", str(pkg), "--db", "nosuchdriver://x/y"], capsys, contains="database URL")


def test_database_of_another_study(capsys, tmp_path):
    from benchmark.cli import main

    db = str(tmp_path / "s.sqlite")
    assert main(["study", "status", str(synthetic_package(tmp_path / "a", study_id="first")), "--db", db]) == 0
    capsys.readouterr()
    assert_clean_error(["study", "status", str(synthetic_package(tmp_path / "b", study_id="second")), "--db", db],
                       capsys, contains="belongs to study 'first'")


def test_hash_password_needs_a_terminal_or_stdin(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert_clean_error(["study", "hash-password"], capsys, contains="--stdin")
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert_clean_error(["study", "hash-password", "--stdin"], capsys, contains="must not be empty")


def test_no_subcommand(capsys):
    assert_clean_error(["study"], capsys, contains="give a subcommand")


def test_close_then_export_flow(capsys, tmp_path):
    """Not an error case: close and export work from the command line and say what they did."""
    from benchmark.cli import main

    pkg = synthetic_package(tmp_path / "pkg")
    db = str(tmp_path / "s.sqlite")
    assert main(["study", "close", str(pkg), "--db", db]) == 0
    assert main(["study", "close", str(pkg), "--db", db]) == 0
    assert main(["study", "export", str(pkg), "--db", db, "--out", str(tmp_path / "r.csv")]) == 0
    out = capsys.readouterr().out
    assert "closed" in out and "was already closed" in out and "(0 responses)" in out
    assert (tmp_path / "r.csv").read_text().startswith("schema_version,study_id,participant")


def test_status_export_close_without_a_database_do_not_make_an_empty_one(capsys, tmp_path, monkeypatch):
    """Without --db the default database is results/studies/<study id>/study.sqlite under the
    current folder; run elsewhere, status reported 0 responses from a new empty database and
    export wrote an empty file. Now it is a clear error, and nothing is created."""
    from benchmark.cli import main
    from study_app.store import StudyStore

    pkg = synthetic_package(tmp_path / "pkg", study_id="s1")
    monkeypatch.chdir(tmp_path)
    for sub in ("status", "close", "export"):
        extra = ["--out", str(tmp_path / "r.csv")] if sub == "export" else []
        assert_clean_error(["study", sub, str(pkg), *extra], capsys, contains="no database for study 's1'")
    assert not (tmp_path / "results").exists() and not (tmp_path / "r.csv").exists()
    from study_app.package import StudyPackage

    StudyStore.open(None, StudyPackage.load(pkg)).dispose()  # what serve does in this folder
    assert main(["study", "status", str(pkg)]) == 0
    assert "study s1" in capsys.readouterr().out


def test_build_with_one_method_picked_names_the_choices(capsys, tmp_path, source):
    """The source has two methods; `--methods` picking one said "the source has 1"."""
    assert_clean_error(["study", "build", str(source), "--out", str(tmp_path / "o"), "--methods", METHODS[0]], capsys,
                       contains=f"--methods picks 1 ({METHODS[0]}): choose two or more of {', '.join(sorted(METHODS[:2]))}")


def test_status_into_a_closed_pipe_is_quiet(tmp_path):
    """`stereobench study status DIR | head -2` printed "error: Broken pipe; fix the cause, ..."."""
    import subprocess
    import sys

    pkg = synthetic_package(tmp_path / "pkg", participants=40)
    code = ("import sys; from benchmark.cli import main; "
            f"sys.exit(main(['study', 'status', {str(pkg)!r}, '--db', {str(tmp_path / 's.sqlite')!r}]))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Broken pipe" not in err and "error" not in err.lower(), err
