"""Leaderboards: bootstrap intervals against SciPy, declared directions, paper rows kept apart,
self-contained HTML, plots, and the `stereobench leaderboard` command."""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.stats

from benchmark.cli import main
from benchmark.errors import StereobenchError
from benchmark.leaderboard import bootstrap_ci, build_leaderboard, make_boards
from benchmark.plots import pareto_front
from benchmark.provenance import RunManifest
from benchmark.results import ResultsWriter, pair_rows, rows_to_frame, skip_row

# method -> (psnr, lpips_vgg, refine seconds): "sharp" wins PSNR, "perceptual" wins LPIPS.
METHODS = {"sharp": (30.0, 0.30, 2.0), "perceptual": (25.0, 0.10, 4.0), "slow-bad": (20.0, 0.40, 8.0)}


def _rows(run_id="20250101-000000-aaaaaa", dataset="synthetic", n_clips=5, methods=METHODS, seed=0,
          extra_metric=False):
    rng = np.random.default_rng(seed)
    rows = []
    for method, (psnr, lpips, seconds) in methods.items():
        for c in range(n_clips):
            quality = []
            for protocol in ("paper", "strict"):
                for region in ("full", "inside", "outside"):
                    quality.append({"metric": "psnr", "region": region, "protocol": protocol,
                                    "value": psnr + rng.normal(0, 0.5)})
                    quality.append({"metric": "lpips_vgg", "region": region, "protocol": protocol,
                                    "value": lpips + rng.normal(0, 0.01)})
            if extra_metric:
                quality.append({"metric": "mystery_score", "region": "full", "protocol": "paper", "value": float(c)})
            rows += pair_rows(run_id=run_id, method=method, dataset=dataset, clip=f"clip-{c}", clip_protocol="quick",
                              warp_mode="shared", device="cpu (test)", quality=quality,
                              timings={"time_refine_s": seconds * (1 + 0.01 * c), "time_refine_s_per_frame": seconds / 8,
                                       "peak_mem_bytes": 2**20 * seconds})
    return rows


def _table_rows(markdown: str, title_part: str) -> dict[str, str]:
    """Method -> its Markdown row, in the first table whose heading contains ``title_part``."""
    section = markdown.split(title_part, 1)[1].split("\n### ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| Method"):
            rows[line.split("|")[1].strip()] = line
    return rows


def _cell(row: str, header_row: str, header: str) -> str:
    headers = [h.strip() for h in header_row.split("|")[1:-1]]
    return [c.strip() for c in row.split("|")[1:-1]][headers.index(header)]


def _header_row(markdown: str, title_part: str) -> str:
    section = markdown.split(title_part, 1)[1]
    return next(line for line in section.splitlines() if line.startswith("| Method"))


# ------------------------------------------------------------------------------------ statistics
@pytest.mark.parametrize("n", [7, 40])
def test_bootstrap_interval_matches_scipy_percentile_bootstrap(n):
    data = np.random.default_rng(n).gamma(2.0, 1.5, size=n)
    mean, low, high = bootstrap_ci(data, n_resamples=20000, seed=1)
    reference = scipy.stats.bootstrap((data,), np.mean, n_resamples=20000, method="percentile",
                                      confidence_level=0.95, random_state=np.random.default_rng(2))
    width = reference.confidence_interval.high - reference.confidence_interval.low
    assert mean == pytest.approx(data.mean(), rel=1e-12)
    assert low < mean < high
    # Two independent Monte-Carlo estimates of the same percentiles: agree within a few % of the width.
    assert low == pytest.approx(reference.confidence_interval.low, abs=0.04 * width)
    assert high == pytest.approx(reference.confidence_interval.high, abs=0.04 * width)


def test_bootstrap_edge_cases_and_determinism():
    assert bootstrap_ci([3.0]) == (3.0, 3.0, 3.0)
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    assert all(np.isnan(bootstrap_ci([])))
    assert bootstrap_ci([1.0, np.nan, 3.0])[0] == 2.0  # NaN (a failed clip) is dropped
    data = np.arange(10.0)
    assert bootstrap_ci(data, seed=5) == bootstrap_ci(data, seed=5)
    # The chunked path (more indices than one chunk) gives the same numbers as one draw would.
    big = np.random.default_rng(0).normal(size=5000)
    m, lo, hi = bootstrap_ci(big, n_resamples=2000, seed=0)
    se = big.std(ddof=1) / np.sqrt(big.size)
    assert lo == pytest.approx(m - 1.96 * se, abs=0.15 * se) and hi == pytest.approx(m + 1.96 * se, abs=0.15 * se)


def test_pareto_front_against_brute_force():
    rng = np.random.default_rng(3)
    cost, quality = rng.uniform(1, 10, 30), rng.uniform(0, 1, 30)
    for higher in (True, False):
        q = quality if higher else -quality
        brute = [i for i in range(30) if not any(cost[j] <= cost[i] and q[j] >= q[i] and (cost[j] < cost[i] or q[j] > q[i])
                                                 for j in range(30))]
        assert sorted(pareto_front(cost, quality, higher)) == sorted(brute)
    assert pareto_front([1, 2, 3], [0.5, 0.4, 0.9], True) == [0, 2]


# ------------------------------------------------------------------------------------ tables
def test_best_value_is_bold_in_the_declared_direction(tmp_path):
    written = build_leaderboard(rows_to_frame(_rows(extra_metric=True)), tmp_path, plots=False, n_resamples=200)
    markdown = written["markdown"].read_text()
    title = "synthetic - protocol quick - warp shared: overall"
    rows, header = _table_rows(markdown, title), _header_row(markdown, title)
    psnr, lpips = "PSNR ↑ (dB)", "LPIPS-VGG ↓"
    assert _cell(rows["sharp"], header, psnr).startswith("**")            # highest PSNR
    assert not _cell(rows["perceptual"], header, psnr).startswith("**")
    assert _cell(rows["perceptual"], header, lpips).startswith("**")      # lowest LPIPS
    assert not _cell(rows["sharp"], header, lpips).startswith("**")
    time_header = "refine time per clip ↓ (s)"
    assert _cell(rows["sharp"], header, time_header).startswith("**")     # fastest
    assert not _cell(rows["slow-bad"], header, time_header).startswith("**")
    # A metric nobody declared gets no arrow and never a bold cell.
    assert "mystery_score (direction not declared)" in header
    assert all("**" not in _cell(r, header, "mystery_score (direction not declared)") for r in rows.values())
    # Region tables exist for each scoring protocol and follow the same rule.
    for protocol in ("paper", "strict"):
        for region in ("full", "inside", "outside"):
            part = f"region {region}, scoring protocol {protocol}"
            region_rows = _table_rows(markdown, part)
            assert _cell(region_rows["sharp"], _header_row(markdown, part), psnr).startswith("**")
    # Methods are ordered best-first by PSNR; the cell is "mean [low, high]" around the mean.
    assert list(rows) == ["sharp", "perceptual", "slow-bad"]
    cell = _cell(rows["sharp"], header, psnr).strip("*")
    mean, low, high = map(float, re.match(r"([\d.]+) \[([\d.]+), ([\d.]+)\]", cell).groups())
    assert low <= mean <= high and 29 < mean < 31


def test_csv_is_tidy_and_matches_the_table(tmp_path):
    import pandas as pd

    rows = _rows()
    written = build_leaderboard(rows_to_frame(rows), tmp_path, plots=False, n_resamples=300)
    table = pd.read_csv(written["csv"])
    psnr = table[(table["metric"] == "psnr") & (table["region"] == "inside") & (table["protocol"] == "strict")]
    truth = {m: np.mean([r.value for r in rows if r.method == m and r.metric == "psnr" and r.region == "inside"
                         and r.protocol == "strict"]) for m in METHODS}
    for _, rec in psnr.iterrows():
        assert rec["mean"] == pytest.approx(truth[rec["method"]])
        assert rec["ci_low"] <= rec["mean"] <= rec["ci_high"] and rec["n_clips"] == 5
    assert psnr.set_index("method")["best"].to_dict() == {"sharp": True, "perceptual": False, "slow-bad": False}
    assert not table[["method", "metric", "region", "protocol", "source"]].duplicated().any()


def test_paper_rows_only_on_stereo4d_and_clearly_marked(tmp_path):
    import pandas as pd

    frame = rows_to_frame(_rows(dataset="synthetic") + _rows(dataset="stereo4d", seed=1))
    written = build_leaderboard(frame, tmp_path, plots=False, n_resamples=100)
    markdown = written["markdown"].read_text()
    assert markdown.index("## stereo4d") < markdown.index("## synthetic")  # boards in name order
    stereo4d = markdown.split("## stereo4d", 1)[1].split("## synthetic", 1)[0]
    synthetic = markdown.split("## synthetic", 1)[1]
    marker = "reported in paper (Stereo4D test set, A100)"
    assert marker not in synthetic
    assert f"stereo4d - protocol quick - warp shared: {marker}" in stereo4d
    paper_rows = _table_rows(stereo4d, f": {marker}")
    assert len(paper_rows) == 5 and all(marker in name for name in paper_rows)
    m2svid = next(r for name, r in paper_rows.items() if name.startswith("M2SVid (1 step) -"))
    assert "26.20" in m2svid and "0.1800" in m2svid and "2.100" in m2svid and "**" not in m2svid
    assert "**" not in "".join(paper_rows.values())
    # Measured tables never carry paper rows.
    measured = _table_rows(stereo4d, "warp shared: overall")
    assert set(measured) == set(METHODS)
    table = pd.read_csv(written["csv"])
    reported = table[table["source"].str.startswith("reported in paper")]
    assert set(reported["dataset"]) == {"stereo4d"} and not reported["best"].any()
    assert set(reported[reported["metric"] == "psnr"]["mean"]) == {25.6, 24.9, 25.3, 26.2}


def test_skips_errors_and_newest_run_per_method(tmp_path):
    old = _rows(run_id="20250101-000000-aaaaaa", methods={"sharp": (10.0, 0.9, 1.0)})
    new = _rows(run_id="20250102-000000-bbbbbb")
    new += pair_rows(run_id="20250102-000000-bbbbbb", method="sharp", dataset="synthetic", clip="clip-9",
                     clip_protocol="quick", warp_mode="shared", quality=[], error=RuntimeError("out of memory"))
    new.append(skip_row(run_id="20250102-000000-bbbbbb", method="svg", dataset="synthetic",
                        reason="weights missing: run `stereobench weights svg`"))
    boards = make_boards(rows_to_frame(old + new), n_resamples=50)
    assert len(boards) == 1
    board = boards[0]
    assert board.runs["sharp"] == "20250102-000000-bbbbbb"  # the old run's 10 dB never mixes in
    assert board.quality[("sharp", "psnr", "full", "paper")].mean > 25
    assert board.errors["sharp"] == ["clip-9: RuntimeError: out of memory"]
    assert board.skips["svg"] == ["weights missing: run `stereobench weights svg`"]
    markdown = build_leaderboard(rows_to_frame(old + new), tmp_path, plots=False, n_resamples=50)["markdown"].read_text()
    assert "weights missing: run `stereobench weights svg`" in markdown and "out of memory" in markdown


def _run(root, run_id, started_at, rows, revision=None, protocol=None):
    """A run folder with a manifest (start time, dataset revision, clip-protocol settings)."""
    provenance = {"started_at": started_at, "protocol": protocol or {"name": "quick", "num_frames": 16}}
    if revision:
        provenance["datasets"] = {"synthetic": {"revision": revision, "options": {}}}
    RunManifest.start(root / run_id, run_id, provenance).finish()
    ResultsWriter(root / run_id).append(rows)


def _revision(revision, rows):
    import dataclasses

    return [dataclasses.replace(r, dataset_revision=revision) for r in rows]


def test_boards_never_mix_data_revisions_or_protocol_settings_and_newest_is_by_start_time(tmp_path):
    from benchmark.run_store import load_manifests, load_results

    root = tmp_path / "runs"
    one = {"sharp": METHODS["sharp"]}
    # Revision A: "zz-custom" started first (its id sorts last) with a bad "sharp"; the timestamp-id
    # run started later with the good one. Rows of "zz-custom" predate the dataset_revision field:
    # their revision comes from the manifest.
    old_rows = _rows(run_id="zz-custom", methods={"sharp": (10.0, 0.9, 1.0)})
    _run(root, "zz-custom", "2025-01-01T10:00:00+00:00", old_rows, revision="rev-A")
    new_rows = _revision("rev-A", _rows(run_id="20250101-110000-bbbbbb", methods=one))
    _run(root, "20250101-110000-bbbbbb", "2025-01-01T11:00:00+00:00", new_rows)
    # Revision B (other dataset options): "perceptual" only, started last of all.
    other_rows = _revision("rev-B", _rows(run_id="20250101-120000-cccccc", methods={"perceptual": METHODS["perceptual"]}))
    _run(root, "20250101-120000-cccccc", "2025-01-01T12:00:00+00:00", other_rows)
    # Revision A again, same protocol name, other settings (8 frames): "slow-bad".
    short_rows = _revision("rev-A", _rows(run_id="20250101-130000-dddddd", methods={"slow-bad": METHODS["slow-bad"]}))
    _run(root, "20250101-130000-dddddd", "2025-01-01T13:00:00+00:00", short_rows,
         protocol={"name": "quick", "num_frames": 8})
    # Revision B, a protocol setting the title does not show (padding): its own board all the same.
    padded_rows = _revision("rev-B", _rows(run_id="20250101-140000-eeeeee", methods={"padded": (22.0, 0.5, 1.0)}))
    _run(root, "20250101-140000-eeeeee", "2025-01-01T14:00:00+00:00", padded_rows,
         protocol={"name": "quick", "num_frames": 16, "pad": "reflect"})

    frame = load_results(root)
    boards = make_boards(frame, load_manifests(root), n_resamples=50)
    by_methods = {tuple(b.methods): b for b in boards}
    assert set(by_methods) == {("sharp",), ("perceptual",), ("slow-bad",), ("padded",)}  # nothing shares a table
    sharp = by_methods[("sharp",)]
    assert sharp.dataset_revision == "rev-A" and sharp.runs == {"sharp": "20250101-110000-bbbbbb"}
    assert sharp.quality[("sharp", "psnr", "full", "paper")].mean > 25  # the 10 dB run never mixes in
    assert by_methods[("perceptual",)].dataset_revision == "rev-B"
    titles = [b.title for b in boards]
    assert len(set(titles)) == 4 and len({b.slug for b in boards}) == 4
    assert "rev-B" in by_methods[("perceptual",)].title and "8 frames" in by_methods[("slow-bad",)].title
    assert "protocol settings" in by_methods[("padded",)].title
    written = build_leaderboard(frame, tmp_path / "lb", plots=False, n_resamples=50, results_root=root)
    markdown = written["markdown"].read_text()
    for board in boards:
        assert f"## {board.title}\n" in markdown
    import pandas as pd

    table = pd.read_csv(written["csv"])
    psnr = table[(table["metric"] == "psnr") & (table["region"] == "full") & (table["protocol"] == "paper")]
    assert dict(zip(psnr["method"], psnr["dataset_revision"])) == {"sharp": "rev-A", "perceptual": "rev-B",
                                                                    "slow-bad": "rev-A", "padded": "rev-B"}


def test_empty_frame_is_a_one_line_error(tmp_path):
    with pytest.raises(StereobenchError, match="no result rows"):
        build_leaderboard(rows_to_frame([]), tmp_path)


# ------------------------------------------------------------------------------------ HTML, plots, CLI
def _write_runs(root, with_videos=False):
    import torch

    from benchmark.run_store import RunDir

    run_id = "20250101-000000-aaaaaa"
    run_dir = root / run_id
    RunManifest.start(run_dir, run_id, {"protocol": {"name": "quick", "num_frames": 8, "crop": [256, 256]}}).finish()
    ResultsWriter(run_dir).append(_rows(run_id=run_id, n_clips=3))
    if with_videos:
        from benchmark.video_io import write_video

        for c in range(3):
            for name in ("left", "warped", "mask", "gt", *METHODS):
                write_video(RunDir.at(run_dir).video_path("synthetic", f"clip-{c}", name), torch.rand(2, 3, 16, 16), fps=5)
    return run_id


def test_html_is_self_contained_with_embedded_plots_and_frame_strips(tmp_path):
    root = tmp_path / "runs"
    _write_runs(root, with_videos=True)
    from benchmark.run_store import load_results

    # As the runner calls it: the frame remembers its results folder (manifests, saved videos).
    written = build_leaderboard(load_results(root), tmp_path / "lb", n_resamples=100, results_root=root)
    kinds = {key.rsplit(":", 1)[-1] for key in written if key.startswith("plot:")}
    assert kinds == {"scatter", "distribution", "strip"}
    page = written["html"].read_text()
    assert page.count("data:image/png;base64,") == 3
    refs = re.findall(r"""(?:src|href)\s*=\s*["']?([^"' >]+)""", page, flags=re.I)
    assert refs and all(ref.startswith("data:") for ref in refs)
    assert "<link" not in page.lower() and "<script" not in page.lower() and "url(" not in page.lower()
    assert "<style>" in page
    # The title names the dataset and the clip protocol with its frames and size.
    assert "synthetic - protocol quick (8 frames, 256x256) - warp shared" in page
    for path in written.values():
        assert path.is_file() and path.stat().st_size > 0


def test_frame_strip_is_skipped_without_videos(tmp_path):
    root = tmp_path / "runs"
    _write_runs(root, with_videos=False)
    from benchmark.leaderboard import leaderboard_from_runs

    written = leaderboard_from_runs(root, out_dir=tmp_path / "lb", n_resamples=50)
    assert not any(key.endswith(":strip") for key in written)
    assert any(key.endswith(":scatter") for key in written)


def test_cli_prints_tables_and_the_html_path(tmp_path, capsys):
    root = tmp_path / "runs"
    run_id = _write_runs(root)
    out = tmp_path / "lb"
    assert main(["leaderboard", "--results", str(root), "--runs", run_id, run_id[:10], "--out", str(out),
                 "--no-plots", "--resamples", "100"]) == 0
    stdout = capsys.readouterr().out
    assert "| Method | clips | PSNR ↑ (dB)" in stdout and "| **" not in stdout.split("sharp", 1)[0]
    assert f"html:       {out / 'leaderboard.html'}" in stdout
    assert (out / "leaderboard.md").is_file() and (out / "leaderboard.csv").is_file()


def test_cli_bad_input_gives_one_line_errors(tmp_path, capsys):
    root = tmp_path / "runs"
    _write_runs(root)
    assert main(["leaderboard", "--results", str(root), "--run", "20250101-000000-aaaaab", "--out",
                 str(tmp_path / "lb")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Did you mean '20250101-000000-aaaaaa'" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["leaderboard", "--results", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no runs found") and err.count("\n") == 0
    assert main(["leaderboard", "--results", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_overall_table_shows_memory_growth_and_old_rows_the_absolute_peak(tmp_path):
    """Schema-2 rows carry the refine call's memory growth next to the absolute peak; the overall
    table shows the growth and says so. Schema-1 rows (only the absolute peak) still read, and the
    table then says that it shows the absolute peak."""
    import dataclasses

    new = pair_rows(run_id="r-new", method="m", dataset="synthetic", clip="c", clip_protocol="quick",
                    quality=[{"metric": "psnr", "value": 20.0}],
                    timings={"time_refine_s": 1.0, "peak_mem_growth_bytes": 3 * 2**20, "peak_mem_bytes": 3000 * 2**20})
    summary = build_leaderboard(rows_to_frame(new), tmp_path / "new", plots=False, n_resamples=10)["summary"]
    text = summary.read_text()
    header = _header_row(text, ": overall")
    assert "Peak memory growth ↓ (MiB)" in header and "absolute" not in header
    assert _cell(_table_rows(text, ": overall")["m"], header, "Peak memory growth ↓ (MiB)").strip("*") == "3.000"
    assert "Peak memory growth = what the refine call needed" in text
    old = [dataclasses.replace(r, schema_version=1) for r in pair_rows(
        run_id="r-old", method="m", dataset="synthetic", clip="c", clip_protocol="quick",
        quality=[{"metric": "psnr", "value": 20.0}], timings={"time_refine_s": 1.0, "peak_mem_bytes": 3000 * 2**20})]
    writer = ResultsWriter(tmp_path / "runs" / "r-old")
    writer.append(old)
    from benchmark.run_store import load_results

    frame = load_results(tmp_path / "runs")
    assert set(frame["schema_version"]) == {1}
    text = build_leaderboard(frame, tmp_path / "old", plots=False, n_resamples=10,
                             results_root=tmp_path / "runs")["summary"].read_text()
    header = _header_row(text, ": overall")
    assert "Peak memory (absolute) ↓ (MiB)" in header
    assert "absolute peak during refine" in text


def test_a_run_where_every_method_was_skipped_lists_them(tmp_path):
    """Skip rows that know their clip protocol and warp mode (as the runner writes them) still
    make a board when nothing was measured: each skipped method is a row with its reason."""
    rows = [skip_row(run_id="20250102-000000-bbbbbb", method=m, dataset="synthetic", reason=f"{m} needs a GPU",
                     clip_protocol="quick", warp_mode="shared", dataset_revision="gen1-abc")
            for m in ("stereocrafter-1", "svg-10")]
    boards = make_boards(rows_to_frame(rows), n_resamples=50)
    assert len(boards) == 1 and boards[0].skips == {"stereocrafter-1": ["stereocrafter-1 needs a GPU"],
                                                    "svg-10": ["svg-10 needs a GPU"]}
    markdown = build_leaderboard(rows_to_frame(rows), tmp_path, plots=False, n_resamples=50)["markdown"].read_text()
    assert "stereocrafter-1 needs a GPU" in markdown and "svg-10 needs a GPU" in markdown
    assert _cell(_table_rows(markdown, "overall")["svg-10"], _header_row(markdown, "overall"), "skipped") == "yes"
    assert "every method was skipped" in markdown and "no ground-truth" not in markdown
