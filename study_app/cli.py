"""Build, serve, export and close user studies (the desktop ranking and the VR pairwise study).

A study goes: build a package from a run's saved outputs (or a folder of videos), serve it,
share the participant links, watch progress on the admin page, close it, export the responses
and analyse them with `stereobench analyze`.

Subcommands:
  build          a study package: trials, anonymised H.264 media, balanced assignment, manifest
  serve          the participant pages, the admin page and the headset page (Streamlit)
  status         progress per participant and per video, from the database
  export         responses in the schema `stereobench analyze` reads (CSV / Parquet); pwcmp CSV
  close          stop accepting answers and new participants
  hash-password  print an argon2 hash for STEREOBENCH_STUDY_ADMIN_HASH (the admin password)

Examples:
  stereobench study build results/runs/<run id> --out results/studies/desktop1 --participants 13
  stereobench study build my_videos/ --kind pairwise --pairs stereocrafter:m2svid --out results/studies/vr1
  export STEREOBENCH_STUDY_ADMIN_HASH="$(stereobench study hash-password)"
  stereobench study serve results/studies/desktop1 --port 8501
  stereobench study status results/studies/desktop1
  stereobench study close results/studies/desktop1
  stereobench study export results/studies/desktop1 --out responses.csv
  stereobench analyze responses.csv --out results/analysis/desktop1

The database is results/studies/<study id>/study.sqlite unless --db gives a SQLite path or a
URL (postgresql+psycopg://user@host/dbname). docs/study.md describes the whole flow.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from benchmark.errors import StereobenchError


def _csv(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("give a comma-separated list")
    return items


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _port(text: str) -> int:
    value = _positive(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is 1-65535, got {value}")
    return value


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=None, metavar="URL_OR_PATH",
                   help="the study database: a SQLite file path or a SQLAlchemy URL "
                        "(postgresql+psycopg://user@host/db); default results/studies/<study id>/study.sqlite under the current "
                        "folder (use the same --db for serve, status, export and close)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="study_command", metavar="<subcommand>")
    fmt = argparse.RawDescriptionHelpFormatter

    b = sub.add_parser("build", help="build a study package from a run or a folder of videos", formatter_class=fmt,
                       description="Build a study package: per video the methods' right views (ranking) or "
                                   "side-by-side stereo pairs (pairwise), transcoded to H.264 on one frame grid under "
                                   "opaque tokens, with training, attention and repeat trials and a balanced "
                                   "assignment of videos to participants.\n\nSOURCE: a run folder, a run id under "
                                   "results/runs, or a folder with one sub-folder per clip holding left.mp4, "
                                   "mask.mp4, warped.mp4 (gt.mp4 optional) and <method>.mp4 per method.")
    b.add_argument("source", help="run folder, run id, or folder of videos")
    b.add_argument("--out", required=True, type=Path, help="the package folder to create (e.g. results/studies/desktop1)")
    b.add_argument("--kind", choices=("ranking", "pairwise"), default="ranking",
                   help="ranking: desktop, rank 1-N with ties (Table 2); pairwise: VR, A / B / equal (Table 3)")
    b.add_argument("--methods", type=_csv, default=None, help="methods to show, comma-separated (default: all saved)")
    b.add_argument("--pairs", type=_csv, default=None, metavar="A:B,...", help="pairwise: the method pairs (default: all)")
    b.add_argument("--participants", type=_positive, default=8, help="participant slots / join ids (default 8)")
    b.add_argument("--participant-ids", type=_csv, default=None, metavar="ID,...",
                   help="use these join ids (one slot each) instead of random ones")
    b.add_argument("--open-enrollment", action="store_true", help="also accept ids that are not pre-generated")
    b.add_argument("--videos-per-participant", type=_positive, default=None,
                   help="videos (pairwise: video-pair comparisons) per participant (default: all)")
    b.add_argument("--attention", type=_count, default=2, help="attention trials per participant (default 2)")
    b.add_argument("--repeats", type=_count, default=1, help="repeated trials per participant (default 1)")
    b.add_argument("--training", type=_count, default=1, help="training trials per participant (default 1)")
    b.add_argument("--seed", type=int, default=0, help="seed of the assignment, slot mappings and orders")
    b.add_argument("--study-id", default=None, help="default: the --out folder's name")
    b.add_argument("--max-height", type=_positive, default=None, help="downscale taller videos to this height")
    b.add_argument("--crf", type=int, default=20, help="x264 quality, 0-51, lower is better (default 20)")
    b.add_argument("--fps", type=float, default=None, help="common frame rate (default: the left view's)")
    b.add_argument("--overwrite", action="store_true", help="replace an existing package folder")
    b.add_argument("--runs-root", type=Path, default=Path("results/runs"), help="where run ids are looked up")

    s = sub.add_parser("serve", help="serve the study (participant, admin and headset pages)",
                       description="Serve the study: participant pages (/?pid=ID), the admin page (/?page=admin, "
                                   "password hash in STEREOBENCH_STUDY_ADMIN_HASH), the headset page (/xr?pid=ID) "
                                   "and the media. Prints the links; Ctrl-C stops it.")
    s.add_argument("package", type=Path, help="the study package folder")
    _add_db(s)
    s.add_argument("--port", type=_port, default=8501, help="default 8501")
    s.add_argument("--host", default="localhost", help="0.0.0.0 to reach it from the LAN (a headset needs HTTPS then)")
    s.add_argument("--certfile", default=None, help="TLS certificate (HTTPS for a headset on the LAN)")
    s.add_argument("--keyfile", default=None, help="TLS key")

    st = sub.add_parser("status", help="progress per participant and per video")
    st.add_argument("package", type=Path, help="the study package folder")
    _add_db(st)

    e = sub.add_parser("export", help="export responses for `stereobench analyze` (and pwcmp)")
    e.add_argument("package", type=Path, help="the study package folder")
    _add_db(e)
    e.add_argument("--out", required=True, type=Path, help="responses file: .csv or .parquet")
    e.add_argument("--pwcmp", type=Path, default=None, help="pairwise only: also write a pwcmp-style CSV here")
    e.add_argument("--pwcmp-ties", choices=("drop", "both"), default="drop",
                   help="pwcmp has no ties: drop equal answers, or write one row for each side")

    c = sub.add_parser("close", help="stop accepting answers and new participants")
    c.add_argument("package", type=Path, help="the study package folder")
    _add_db(c)

    h = sub.add_parser("hash-password", help="print an argon2 hash of the admin password",
                       description="Prompts for the admin password (twice) and prints its argon2 hash; put it in "
                                   "STEREOBENCH_STUDY_ADMIN_HASH. --stdin reads one line instead (scripts).")
    h.add_argument("--stdin", action="store_true", help="read the password from standard input")


def _open(args):
    from study_app.package import StudyPackage
    from study_app.store import StudyStore

    package = StudyPackage.load(args.package)
    if args.db is None:
        # status/export/close read the database serve wrote: the default file is relative to the
        # current folder, so from another folder it would be a new, empty database (0 responses).
        from study_app.store import DB_FILE, DEFAULT_ROOT

        default = DEFAULT_ROOT / package.study_id / DB_FILE
        if not default.is_file():
            raise StereobenchError(
                f"no database for study {package.study_id!r} at {default} (relative to {Path.cwd()}): run this in "
                f"the folder where `stereobench study serve` ran, or give the database with --db PATH_OR_URL")
    return package, StudyStore.open(args.db, package)


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "study_command", None)
    if command is None:
        raise StereobenchError("give a subcommand: stereobench study build|serve|status|export|close|hash-password "
                               "(see `stereobench study --help`)")
    if command == "build":
        return _build(args)
    if command == "hash-password":
        return _hash_password(args)
    if command == "serve":
        from study_app.package import StudyPackage

        StudyPackage.load(args.package)  # a clear error before importing the web app
        try:
            from study_app.web.serve import serve
        except ImportError as exc:
            raise StereobenchError(f"the study web app is not available ({exc}); run `make install`") from exc
        serve(args.package, db_url=args.db, port=args.port, host=args.host, certfile=args.certfile, keyfile=args.keyfile)
        return 0
    package, store = _open(args)
    try:
        if command == "status":
            summary = store.admin_summary()
            c = summary.counts
            print(f"study {c['study_id']} ({c['kind']}): {'closed' if c['closed'] else 'open'}, {c['responses']} responses, "
                  f"{c['joined']}/{c['participants']} participants joined, {c['finished']} finished")
            with_pd_options(lambda: print(summary.participants.to_string(index=False)))
            with_pd_options(lambda: print(summary.videos.to_string(index=False)))
        elif command == "close":
            newly = store.close_study()
            print(f"study {package.study_id} {'closed' if newly else 'was already closed'}; "
                  f"{store.response_count()} responses kept")
        elif command == "export":
            if args.out.suffix.lower() not in (".csv", ".parquet"):
                raise StereobenchError(f"--out {str(args.out)!r} must end in .csv or .parquet")
            if args.pwcmp is not None and package.kind != "pairwise":
                raise StereobenchError("--pwcmp is for pairwise (VR) studies; this is a ranking study")
            path = store.export_responses(args.out)
            n = store.response_count()
            print(f"wrote {path} ({n} responses); analyse with: stereobench analyze {path} --out results/analysis/"
                  f"{package.study_id}")
            if args.pwcmp is not None:
                print(f"wrote {store.export_pwcmp(args.pwcmp, ties=args.pwcmp_ties)} (pwcmp)")
    finally:
        store.dispose()
    return 0


def with_pd_options(fn) -> None:
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_rows", 500, "display.max_columns", 20):
        fn()


def _build(args) -> int:
    from study_app.package import build_study

    if not 0 <= args.crf <= 51:
        raise StereobenchError(f"--crf must be 0-51, got {args.crf}")
    if args.fps is not None and not args.fps > 0:
        raise StereobenchError(f"--fps must be positive, got {args.fps}")
    if args.kind == "ranking" and args.pairs is not None:
        raise StereobenchError("--pairs is for --kind pairwise; a ranking study shows all methods at once")
    package = build_study(
        args.source, args.out, kind=args.kind, methods=args.methods, participants=args.participants, seed=args.seed,
        pairs=args.pairs, videos_per_participant=args.videos_per_participant, attention=args.attention,
        repeats=args.repeats, training=args.training, participant_ids=args.participant_ids,
        open_enrollment=args.open_enrollment, study_id=args.study_id, fps=args.fps, max_height=args.max_height,
        crf=args.crf, overwrite=args.overwrite, runs_root=args.runs_root)
    m = package.manifest
    print(f"built study {package.study_id} ({package.kind}) in {package.dir}: {len(m['videos'])} videos, "
          f"{len(m['methods'])} methods, {len(package.trials)} trials for {package.n_slots} participants, "
          f"{len(m['media'])} media files")
    for s in m["skipped"]:
        print(f"skipped video {s['video']}: {s['reason']} (see {package.dir / 'build.log'})")
    print(f"serve it with: stereobench study serve {package.dir}")
    return 0


def _hash_password(args) -> int:
    from study_app.auth import ENV_HASH, hash_password

    if args.stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise StereobenchError("no terminal to prompt on; pass --stdin and pipe the password")
        password = getpass.getpass("admin password: ")
        if getpass.getpass("again: ") != password:
            raise StereobenchError("the two passwords differ; try again")
    digest = hash_password(password)
    print(digest)
    print(f"# export {ENV_HASH}='{digest}'", file=sys.stderr)
    return 0
