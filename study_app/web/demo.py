"""``make study``: a demo ranking study on the embedded default's saved videos, in one command.

``python -m study_app.web.demo --check-run`` exits 0 when a run under ``results/runs`` has saved
videos (``make study`` runs ``make benchmark`` first otherwise). Without it: the newest such run
is built into a study package under ``results/studies/demo-<run id>/`` (once; later calls reuse
it), an admin password is made up for this session unless ``STEREOBENCH_STUDY_ADMIN_HASH`` is
set, and the study is served at http://localhost:8501 with the participant and admin links
printed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

RUNS = Path("results/runs")
STUDIES = Path("results/studies")
DEMO_METHODS = 4  # the paper's Table 2 ranks four methods


def newest_run_with_videos(root: Path = RUNS):
    """The RunDir of the newest run that saved videos, or None."""
    from benchmark.run_store import RunDir, list_runs

    if not root.is_dir():
        return None
    for run_id in sorted(list_runs(root), reverse=True):
        try:
            run = RunDir.at(root / run_id)
            if run.saved_clips():
                return run
        except Exception:  # noqa: BLE001, S112 - an unreadable run is simply not a candidate
            continue
    return None


def demo_methods(run) -> list[str] | None:
    """Up to four methods with saved videos; the left copy (no right view at all) goes first."""
    dataset, clip = run.saved_clips()[0]
    methods = sorted(run.saved_methods(dataset, clip))
    if len(methods) <= DEMO_METHODS:
        return None
    preferred = [m for m in methods if m != "left-copy"]
    return preferred[:DEMO_METHODS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m study_app.web.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check-run", action="store_true", help="exit 0 when a run with saved videos exists")
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--participants", type=int, default=4)
    args = parser.parse_args(argv)
    run = newest_run_with_videos()
    if args.check_run:
        return 0 if run is not None else 1
    if run is None:
        print("error: no run with saved videos under results/runs; run `make benchmark` first", file=sys.stderr)
        return 2
    from study_app.package import StudyPackage, build_study
    from study_app.web.serve import serve

    out = STUDIES / f"demo-{run.run_id}"
    if (out / "study.json").is_file():
        package = StudyPackage.load(out)
    else:
        print(f"building the demo study from run {run.run_id} into {out} ...")
        package = build_study(run.path, out, kind="ranking", methods=demo_methods(run),
                              participants=args.participants, seed=0)
    if not os.environ.get("STEREOBENCH_STUDY_ADMIN_HASH"):
        from argon2 import PasswordHasher

        password = secrets.token_urlsafe(9)
        os.environ["STEREOBENCH_STUDY_ADMIN_HASH"] = PasswordHasher().hash(password)
        print(f"admin password for this session: {password}  (set STEREOBENCH_STUDY_ADMIN_HASH to choose one)")
    serve(package.dir, port=args.port, host=args.host)
    return 0


if __name__ == "__main__":
    sys.exit(main())
