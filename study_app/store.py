"""The study database: participants, responses, admin state. SQLAlchemy; SQLite or PostgreSQL.

``StudyStore.open(url_or_path, package)`` opens (creating and migrating with alembic, see
``study_app/migrations/``) the database of one study package:

* SQLite by default, one file per study: ``results/studies/<study_id>/study.sqlite``. Every
  connection runs in WAL mode (readers never block the writer), ``synchronous=NORMAL``,
  ``busy_timeout=30 s``, and every transaction starts with ``BEGIN IMMEDIATE`` (the write lock
  is taken up front, so two writers never deadlock upgrading a read lock).
* PostgreSQL by URL (``postgresql+psycopg://user@host/db`` or a unix socket:
  ``postgresql+psycopg://user@/db?host=/path/to/socket/dir``).

**State lives in the database**, never in a browser session: :meth:`StudyStore.next_trial` is
the first trial of the participant's plan without a stored response, so a refresh, a new tab or
a crashed server resumes exactly there. :meth:`StudyStore.submit` inserts with ``ON CONFLICT DO
NOTHING`` on the unique (participant, trial) constraint: a double click or a rerun stores one
row and reports the second as a duplicate (the first answer is kept). Everything the client
sends is checked server-side (:class:`InvalidResponse`): the trial must be one of the
participant's own, a ranking must give every slot a rank in 1..N forming a competition
(1, 1, 3, 4) or dense (1, 1, 2, 3) ranking, a pairwise answer must be ``A``, ``B`` or
``equal``.

Each response row holds: participant, trial id and number, trial kind, video, the slot mapping
(method per display slot, as shown), the answer, shown / submitted / stored timestamps (UTC),
play and replay counts, viewport, user agent, device and the app's git commit.
:meth:`StudyStore.export_responses` writes exactly the response schema that ``stereobench
analyze`` reads (:mod:`study_app.analysis.schema`); :meth:`StudyStore.export_pwcmp` the
pwcmp-style CSV of pairwise data.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from benchmark.errors import StereobenchError
from benchmark.fileio import atomic_write_bytes, file_sha256
from study_app.package import MANIFEST, StudyPackage, Trial, TrialView

log = logging.getLogger(__name__)

DEFAULT_ROOT = Path("results/studies")
DB_FILE = "study.sqlite"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_PID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PG_LOCK_KEY = 0x5354_5544  # advisory lock that serialises migrations on PostgreSQL


class InvalidResponse(StereobenchError):
    """A submitted value the server refuses (tampered, out of range, not the participant's trial)."""


class StudyClosed(StereobenchError):
    """The study was closed by its admin: nothing more is stored."""


# --------------------------------------------------------------------------------------------
# Models (the head alembic revision creates exactly these; tests/test_study_store.py compares)
# --------------------------------------------------------------------------------------------
class Base(DeclarativeBase):
    pass


class MetaRow(Base):
    __tablename__ = "study_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)


class ParticipantRow(Base):
    __tablename__ = "participants"
    __table_args__ = (Index("ix_participants_slot", "slot"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, nullable=False)
    source: Mapped[str] = mapped_column(String(16), nullable=False)  # invited | open
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    joined_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class ResponseRow(Base):
    __tablename__ = "responses"
    __table_args__ = (UniqueConstraint("participant", "trial_id", name="uq_responses_participant_trial"),
                      Index("ix_responses_video", "video"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    participant: Mapped[str] = mapped_column(String(64), ForeignKey("participants.id"), nullable=False)
    trial_id: Mapped[str] = mapped_column(String(32), nullable=False)
    trial_number: Mapped[int] = mapped_column(Integer, nullable=False)
    trial_kind: Mapped[str] = mapped_column(String(16), nullable=False)
    video: Mapped[str] = mapped_column(Text, nullable=False)
    slot_mapping: Mapped[str] = mapped_column(Text, nullable=False)  # JSON: method per display slot
    answer: Mapped[str] = mapped_column(Text, nullable=False)  # JSON: {"ranks": [...]} or {"choice", "answer"}
    shown_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    submitted_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    stored_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    plays: Mapped[int] = mapped_column(Integer, nullable=False)
    replays: Mapped[int] = mapped_column(Integer, nullable=False)
    viewport: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(512), nullable=True)
    device: Mapped[str | None] = mapped_column(String(32), nullable=True)
    app_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AdminAttemptRow(Base):
    __tablename__ = "admin_attempts"
    __table_args__ = (Index("ix_admin_attempts_client_at", "client_key", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_key: Mapped[str] = mapped_column(String(128), nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    ok: Mapped[bool] = mapped_column(Boolean, nullable=False)


# --------------------------------------------------------------------------------------------
# Values returned to the app
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Participant:
    id: str
    slot: int
    source: str  # "invited" (pre-generated id) or "open" (joined by open enrollment)
    joined_at: datetime | None


@dataclass(frozen=True)
class SubmitResult:
    """``stored``: this call wrote the row; ``duplicate``: a response for (participant, trial)
    already existed (the first one is kept)."""

    stored: bool
    duplicate: bool


@dataclass
class AdminSummary:
    """Live state for the admin page: ``participants`` (id, slot, source, joined_at, done,
    total, last_submitted_at), ``videos`` (video, responses, participants), ``counts``."""

    participants: pd.DataFrame
    videos: pd.DataFrame
    counts: dict[str, Any]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def utcnow() -> datetime:
    """Naive UTC now (the database stores naive UTC)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _to_utc_naive(value: Any, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        if isinstance(value, datetime):
            dt = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ValueError
            dt = datetime.fromtimestamp(float(value), tz=timezone.utc)
        elif isinstance(value, str):
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        else:
            raise TypeError(type(value).__name__)
    except (TypeError, ValueError, OverflowError, OSError):
        raise InvalidResponse(f"{what} {str(value)[:40]!r} is not a time (ISO 8601 or seconds since the epoch)") from None
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return dt


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.replace(tzinfo=timezone.utc).isoformat()


def database_url(url_or_path: str | os.PathLike | None, study_id: str, root: str | os.PathLike = DEFAULT_ROOT) -> str:
    """The SQLAlchemy URL: a URL as given, a path as a SQLite file, None as the default file
    ``<root>/<study_id>/study.sqlite``."""
    if url_or_path is None:
        path = Path(root) / study_id / DB_FILE
    elif "://" in str(url_or_path):
        return str(url_or_path)
    else:
        path = Path(url_or_path)
        if path.is_dir():
            path = path / DB_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}"


def _sqlite_pragmas(dbapi_con, _record) -> None:
    dbapi_con.isolation_level = None  # SQLAlchemy issues BEGIN itself (below)
    cur = dbapi_con.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_begin_deferred(conn) -> None:
    conn.exec_driver_sql("BEGIN")


def make_engine(url: str, *, immediate: bool = True) -> Engine:
    """An engine with the study's SQLite settings (WAL; ``BEGIN IMMEDIATE`` unless
    ``immediate=False``, for read-only transactions, which WAL lets run beside the writer)."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                                   pool_size=8, max_overflow=32, pool_timeout=60)
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin if immediate else _sqlite_begin_deferred)
        else:
            engine = create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=32)
    except (ArgumentError, ImportError, ValueError) as exc:
        raise StereobenchError(f"bad database URL {url!r} ({exc}); use a file path, sqlite:///path or "
                               "postgresql+psycopg://user@host/dbname") from exc
    return engine


def _insert(engine: Engine, table):
    if engine.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise StereobenchError(f"database {engine.dialect.name!r} is not supported; use SQLite or PostgreSQL")
    return insert(table)


def is_complete_ranking(ranks: Sequence[int]) -> bool:
    """Whether ``ranks`` (one per slot) is a competition (1, 1, 3, 4) or dense (1, 1, 2, 3)
    ranking of all slots: minimum 1, and either each tie group of size c at rank r is followed
    by r + c, or the distinct values are 1..D."""
    values, counts = np.unique(np.asarray(ranks, dtype=np.int64), return_counts=True)
    if len(values) == 0 or values[0] != 1:
        return False
    competition = bool(np.all(values[1:] == values[:-1] + counts[:-1]))
    dense = bool(np.all(values == np.arange(1, len(values) + 1)))
    return competition or dense


def _app_commit() -> str | None:
    try:
        from benchmark.provenance import git_info

        return git_info().get("commit")
    except Exception:  # noqa: BLE001 - provenance is informative; never stop a study for it
        return None


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------
class StudyStore:
    """The database of one study package (see the module docstring). Thread-safe: every call
    opens its own short transaction; share one store between the app's sessions."""

    def __init__(self, engine: Engine, package: StudyPackage, app_commit: str | None = None,
                 read_engine: Engine | None = None):
        self.engine = engine
        self.read_engine = read_engine if read_engine is not None else engine
        self.package = package
        self.app_commit = app_commit
        self.url = engine.url.render_as_string(hide_password=True)
        self._skipped: set[str] = set()  # trials whose media went missing (logged once)
        # SQLite has one writer at a time anyway: queueing this process's writers on a lock is
        # fair (FIFO-ish), where SQLite's busy handler polls with growing sleeps and can starve one.
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()

    @contextlib.contextmanager
    def _writing(self):
        """A write transaction (SQLite: BEGIN IMMEDIATE, one writer of this process at a time)."""
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    def _reading(self):
        """A read transaction (SQLite: a deferred BEGIN on a WAL snapshot, beside the writer)."""
        return self.read_engine.begin()

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, url_or_path: str | os.PathLike | None, package: StudyPackage | str | os.PathLike, *,
             root: str | os.PathLike = DEFAULT_ROOT, app_commit: str | None = "auto") -> StudyStore:
        """Open (create, migrate) the database of ``package``.

        Args:
            url_or_path: a SQLAlchemy URL, a SQLite file path, or None for the default file
                ``<root>/<study_id>/study.sqlite``.
            package: the :class:`StudyPackage` (or its folder).
            app_commit: the commit recorded with each response ("auto": this checkout's).

        Raises:
            StereobenchError: unreachable database, or one that belongs to another study or to
                a different build of this study (its trials would not match).
        """
        if not isinstance(package, StudyPackage):
            package = StudyPackage.load(package)
        url = database_url(url_or_path, package.study_id, root)
        engine = make_engine(url)
        reader = make_engine(url, immediate=False) if engine.dialect.name == "sqlite" else engine
        store = cls(engine, package, _app_commit() if app_commit == "auto" else app_commit, read_engine=reader)
        try:
            store._migrate()
            store._bind_package()
        except OperationalError as exc:
            store.dispose()
            raise StereobenchError(f"cannot open the study database {store.url} ({exc.orig}); check the URL, "
                                   "that the server runs and that the folder is writable") from exc
        except BaseException:
            store.dispose()
            raise
        return store

    def _migrate(self) -> None:
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def _bind_package(self) -> None:
        """Record which package the database belongs to (first open) or check it (later)."""
        digest = file_sha256(self.package.dir / MANIFEST)
        now = utcnow()
        with self.engine.begin() as conn:
            meta = dict(conn.execute(select(MetaRow.key, MetaRow.value)).all())
            if "study_id" not in meta:
                for key, value in (("study_id", self.package.study_id), ("kind", self.package.kind),
                                   ("manifest_sha256", digest), ("created_at", _iso(now))):
                    conn.execute(_insert(self.engine, MetaRow.__table__).values(key=key, value=value)
                                 .on_conflict_do_nothing(index_elements=["key"]))
                meta = dict(conn.execute(select(MetaRow.key, MetaRow.value)).all())
            if meta.get("study_id") != self.package.study_id:
                raise StereobenchError(f"the database {self.url} belongs to study {meta.get('study_id')!r}, not "
                                       f"{self.package.study_id!r}; give this study its own database")
            if meta.get("manifest_sha256") != digest:
                raise StereobenchError(f"the database {self.url} was created for another build of study "
                                       f"{self.package.study_id!r} (its study.json changed); its responses refer to "
                                       "other trials: use the original package or a new database")
            rows = [{"id": pid, "slot": slot, "source": "invited", "created_at": now, "joined_at": None}
                    for slot, pid in enumerate(self.package.participant_ids)]
            if rows:
                conn.execute(_insert(self.engine, ParticipantRow.__table__).values(rows)
                             .on_conflict_do_nothing(index_elements=["id"]))

    def dispose(self) -> None:
        """Close the engines' connections."""
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()

    # -- participants ----------------------------------------------------------------------------
    def join(self, participant_id: str) -> Participant | None:
        """The participant with this id (recording the first join), or None when the id is not
        in the study (and open enrollment is off or the study is closed): the app then shows a
        "not in this study" page. With open enrollment a new id is bound to the least-used slot."""
        if not isinstance(participant_id, str) or not _PID.match(participant_id):
            return None
        with self._reading() as conn:  # the common case (a page render of a known participant) writes nothing
            row = conn.execute(select(ParticipantRow.__table__).where(ParticipantRow.id == participant_id)).first()
        if row is not None and row.joined_at is not None:
            return Participant(row.id, row.slot, row.source, row.joined_at)
        now = utcnow()
        with self._writing() as conn:
            row = conn.execute(select(ParticipantRow.__table__).where(ParticipantRow.id == participant_id)).first()
            if row is None:
                if not self.package.open_enrollment or self._is_closed(conn):
                    return None
                used = dict(conn.execute(select(ParticipantRow.slot, func.count()).group_by(ParticipantRow.slot)).all())
                slot = min(range(self.package.n_slots), key=lambda s: (used.get(s, 0), s))
                conn.execute(_insert(self.engine, ParticipantRow.__table__).values(
                    id=participant_id, slot=slot, source="open", created_at=now, joined_at=now)
                    .on_conflict_do_nothing(index_elements=["id"]))
                row = conn.execute(select(ParticipantRow.__table__).where(ParticipantRow.id == participant_id)).first()
            elif row.joined_at is None:
                conn.execute(ParticipantRow.__table__.update().where(ParticipantRow.id == participant_id)
                             .values(joined_at=now))
            return Participant(row.id, row.slot, row.source, row.joined_at or now)

    def _participant(self, conn, participant_id: str):
        if not isinstance(participant_id, str) or not _PID.match(participant_id):
            raise InvalidResponse("participant id is not valid")
        row = conn.execute(select(ParticipantRow.__table__).where(ParticipantRow.id == participant_id)).first()
        if row is None:
            raise InvalidResponse(f"participant {participant_id!r} is not in this study")
        return row

    def _done_ids(self, conn, participant_id: str) -> set[str]:
        return set(conn.execute(select(ResponseRow.trial_id).where(ResponseRow.participant == participant_id)).scalars())

    def next_trial(self, participant_id: str) -> TrialView | None:
        """The participant's first trial without a stored response (None: finished)."""
        with self._reading() as conn:
            p = self._participant(conn, participant_id)
            done = self._done_ids(conn, participant_id)
        for trial in self.package.plan(p.slot):
            if trial.trial_id not in done and self._available(trial):
                return self.package.view(trial)
        return None

    def progress(self, participant_id: str) -> tuple[int, int]:
        """(trials answered, trials in the participant's plan that can be shown)."""
        with self._reading() as conn:
            p = self._participant(conn, participant_id)
            done = self._done_ids(conn, participant_id)
        plan = [t for t in self.package.plan(p.slot) if t.trial_id in done or self._available(t)]
        return sum(t.trial_id in done for t in plan), len(plan)

    def _available(self, trial: Trial) -> bool:
        """Whether every media file of the trial is on disk. A trial whose file went missing after
        the build is skipped (logged once) and the participant goes on with the next one. A
        package without a ``media/`` folder (a data-only package, as in the storage tests) is not
        checked."""
        media_dir = self.package.dir / "media"
        if not media_dir.is_dir():
            return True
        missing = [tok for tok in (*trial.media, *trial.references.values()) if not (media_dir / f"{tok}.mp4").is_file()]
        if missing and trial.trial_id not in self._skipped:
            self._skipped.add(trial.trial_id)
            log.warning("study %s: trial %s (%s, %s) skipped: media file(s) %s missing", self.package.study_id,
                        trial.trial_id, trial.kind, trial.video, ", ".join(f"{t}.mp4" for t in missing))
        return not missing

    # -- answers --------------------------------------------------------------------------------
    def _normalise_answer(self, trial: Trial, answer: Any) -> dict[str, Any]:
        n = trial.n_slots
        if self.package.kind == "ranking":
            if isinstance(answer, Mapping):
                try:
                    answer = [answer[k] if k in answer else answer[str(k)] for k in range(n)]
                except KeyError:
                    raise InvalidResponse(f"the ranking must give a rank to each of the {n} slots") from None
            if isinstance(answer, (str, bytes)) or not isinstance(answer, Sequence) or len(answer) != n:
                raise InvalidResponse(f"the ranking must be a list of {n} ranks, one per slot")
            ranks = []
            for r in answer:
                if isinstance(r, bool) or not isinstance(r, (int, np.integer)) and not (isinstance(r, str) and r.strip().isdigit()):
                    raise InvalidResponse(f"rank {str(r)[:20]!r} is not a whole number")
                r = int(r)
                if not 1 <= r <= n:
                    raise InvalidResponse(f"rank {r} is outside 1-{n}")
                ranks.append(r)
            if not is_complete_ranking(ranks):
                raise InvalidResponse(f"ranks {ranks} are not a complete ranking: the best gets 1 and tied slots share "
                                      "a rank (1, 1, 3, 4 or 1, 1, 2, 3)")
            return {"ranks": ranks}
        choice = answer.strip().lower() if isinstance(answer, str) else answer
        table = {"a": 0, "first": 0, 0: 0, "b": 1, "second": 1, 1: 1, "equal": None, "=": None, "tie": None}
        if isinstance(choice, bool) or choice not in table:
            raise InvalidResponse(f"a pairwise answer is 'A', 'B' or 'equal', got {str(answer)[:20]!r}")
        slot = table[choice]
        if slot is None:
            return {"choice": "equal", "answer": "equal"}
        method = trial.methods[slot]
        return {"choice": "AB"[slot], "answer": "a" if method == trial.method_a else "b"}

    def submit(self, participant_id: str, trial_id: str, answer: Any, *, shown_at: Any = None,
               submitted_at: Any = None, plays: int = 0, replays: int = 0, viewport: Any = None,
               user_agent: str | None = None, device: str | None = None) -> SubmitResult:
        """Store one answer (at most once per participant and trial).

        ``answer``: ranking: one rank per display slot (list, or ``{slot: rank}``), 1 = best, ties
        allowed; pairwise: ``"A"`` (slot 0, shown first), ``"B"`` or ``"equal"``. Times: datetime,
        ISO 8601 or epoch seconds (``submitted_at`` defaults to now). ``viewport``: ``"1920x1080"``
        or ``{"width": .., "height": ..}``.

        Raises:
            InvalidResponse: unknown participant, a trial that is not theirs, a bad answer or count.
            StudyClosed: the study is closed.
        """
        trial = self.package.trial(trial_id) if isinstance(trial_id, str) else None
        norm = None
        with self._writing() as conn:
            if self._is_closed(conn):
                raise StudyClosed("the study is closed; no more answers are stored")
            p = self._participant(conn, participant_id)
            if trial is None or trial.participant_slot != p.slot:
                raise InvalidResponse(f"trial {str(trial_id)[:40]!r} is not one of participant {participant_id!r}'s trials")
            norm = self._normalise_answer(trial, answer)
            counts = {}
            for name, value in (("plays", plays), ("replays", replays)):
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= 1_000_000:
                    raise InvalidResponse(f"{name} must be a whole number >= 0, got {str(value)[:20]!r}")
                counts[name] = int(value)
            if isinstance(viewport, Mapping):
                viewport = f"{viewport.get('width')}x{viewport.get('height')}"
            now = utcnow()
            values = dict(
                participant=participant_id, trial_id=trial.trial_id, trial_number=trial.number, trial_kind=trial.kind,
                video=trial.video, slot_mapping=json.dumps(list(trial.methods)), answer=json.dumps(norm),
                shown_at=_to_utc_naive(shown_at, "shown_at"),
                submitted_at=_to_utc_naive(submitted_at, "submitted_at") or now, stored_at=now,
                viewport=None if viewport is None else str(viewport)[:64],
                user_agent=None if user_agent is None else str(user_agent)[:512],
                device=(str(device)[:32] if device else ("desktop" if self.package.kind == "ranking" else "headset")),
                app_commit=self.app_commit, **counts)
            result = conn.execute(_insert(self.engine, ResponseRow.__table__).values(**values)
                                  .on_conflict_do_nothing(index_elements=["participant", "trial_id"])
                                  .returning(ResponseRow.id))
            stored = result.first() is not None  # no row back: the (participant, trial) row existed
        return SubmitResult(stored=stored, duplicate=not stored)

    # -- state ------------------------------------------------------------------------------------
    def _is_closed(self, conn) -> bool:
        return conn.execute(select(MetaRow.value).where(MetaRow.key == "closed_at")).first() is not None

    @property
    def is_closed(self) -> bool:
        with self._reading() as conn:
            return self._is_closed(conn)

    def close_study(self) -> bool:
        """Close the study: no more answers or new participants. Returns False if it was closed already."""
        with self._writing() as conn:
            result = conn.execute(_insert(self.engine, MetaRow.__table__).values(key="closed_at", value=_iso(utcnow()))
                                  .on_conflict_do_nothing(index_elements=["key"]).returning(MetaRow.key))
            return result.first() is not None

    def response_count(self) -> int:
        with self._reading() as conn:
            return int(conn.execute(select(func.count()).select_from(ResponseRow)).scalar_one())

    def admin_summary(self) -> AdminSummary:
        """Progress per participant and per video, and live counts."""
        with self._reading() as conn:
            parts = conn.execute(select(ParticipantRow.__table__)).all()
            resp = conn.execute(select(ResponseRow.participant, ResponseRow.trial_id, ResponseRow.video,
                                       ResponseRow.trial_kind, ResponseRow.submitted_at)).all()
            closed = self._is_closed(conn)
        r = pd.DataFrame(resp, columns=["participant", "trial_id", "video", "trial_kind", "submitted_at"])
        done = r.groupby("participant").size() if len(r) else pd.Series(dtype=int)
        done_ids = r.groupby("participant")["trial_id"].agg(set) if len(r) else pd.Series(dtype=object)
        last = r.groupby("participant")["submitted_at"].max() if len(r) else pd.Series(dtype=object)
        rows = []
        for p in sorted(parts, key=lambda p: (p.slot, p.id)):
            ids = done_ids.get(p.id, set())
            # As progress(): trials whose media went missing are left out of the total.
            total = sum(t.trial_id in ids or self._available(t) for t in self.package.plan(p.slot))
            rows.append({"participant": p.id, "slot": p.slot, "source": p.source, "joined_at": _iso(p.joined_at),
                         "done": int(done.get(p.id, 0)), "total": total,
                         "finished": int(done.get(p.id, 0)) >= total,
                         "last_submitted_at": _iso(last.get(p.id)) if p.id in last.index else None})
        participants = pd.DataFrame(rows, columns=["participant", "slot", "source", "joined_at", "done", "total",
                                                   "finished", "last_submitted_at"])
        planned: dict[str, int] = {}
        for t in self.package.trials:
            if t.kind == "main":
                planned[t.video] = planned.get(t.video, 0) + 1
        main = r[r["trial_kind"] == "main"]
        videos = pd.DataFrame({"video": sorted(set(planned) | set(main["video"]))})
        videos["planned"] = videos["video"].map(planned).fillna(0).astype(int)
        videos["responses"] = videos["video"].map(main.groupby("video").size()).fillna(0).astype(int)
        videos["participants"] = videos["video"].map(main.groupby("video")["participant"].nunique()).fillna(0).astype(int)
        counts = {"study_id": self.package.study_id, "kind": self.package.kind, "closed": closed,
                  "responses": len(r), "participants": len(participants),
                  "joined": int(participants["joined_at"].notna().sum()),
                  "finished": int(participants["finished"].sum()),
                  "by_kind": {k: int(v) for k, v in r.groupby("trial_kind").size().items()} if len(r) else {}}
        return AdminSummary(participants, videos, counts)

    # -- admin rate limiting (used by study_app.auth) ----------------------------------------------
    def record_admin_attempt(self, client_key: str, ok: bool, at: datetime | None = None) -> None:
        with self._writing() as conn:
            conn.execute(AdminAttemptRow.__table__.insert().values(client_key=str(client_key)[:128],
                                                                   at=at or utcnow(), ok=bool(ok)))

    def admin_failures_since(self, client_key: str, since: datetime) -> list[datetime]:
        """Times of failed admin sign-ins of this client since ``since`` (naive UTC), oldest first;
        a successful sign-in resets the count."""
        with self._reading() as conn:
            rows = conn.execute(select(AdminAttemptRow.at, AdminAttemptRow.ok)
                                .where(AdminAttemptRow.client_key == str(client_key)[:128], AdminAttemptRow.at >= since)
                                .order_by(AdminAttemptRow.at, AdminAttemptRow.id)).all()
        fails: list[datetime] = []
        for at, ok in rows:
            fails = [] if ok else fails + [at]
        return fails

    # -- export ----------------------------------------------------------------------------------
    def _rows(self) -> list:
        with self._reading() as conn:
            return conn.execute(select(ResponseRow.__table__).order_by(ResponseRow.participant,
                                                                        ResponseRow.trial_number)).all()

    def responses_frame(self) -> pd.DataFrame:
        """The responses in the analysis schema (rankings: one row per participant, trial and
        method; pairwise: one row per trial), schema columns first, then the record's extras
        (trial_id, plays, replays, viewport, user_agent, app_commit)."""
        from study_app.analysis.schema import (
            PAIRWISE_COLUMNS,
            RANKING_COLUMNS,
            SCHEMA_VERSION,
        )

        out = []
        for r in self._rows():
            trial = self.package.trial(r.trial_id)
            methods = json.loads(r.slot_mapping)
            answer = json.loads(r.answer)
            common = {"schema_version": SCHEMA_VERSION, "study_id": self.package.study_id, "participant": r.participant,
                      "session": "", "trial": r.trial_number, "trial_kind": r.trial_kind, "video": r.video}
            tail = {"repeat_of": trial.repeat_of if trial else None, "started_at": _iso(r.shown_at),
                    "answered_at": _iso(r.submitted_at), "device": r.device or "",
                    "trial_id": r.trial_id, "plays": r.plays, "replays": r.replays, "viewport": r.viewport or "",
                    "user_agent": r.user_agent or "", "app_commit": r.app_commit or ""}
            if self.package.kind == "ranking":
                expect = list(trial.expect) if trial else [""] * len(methods)
                for slot, (method, rank) in enumerate(zip(methods, answer["ranks"])):
                    out.append({**common, "method": method, "slot": slot, "rank": rank,
                                "attention_expect": expect[slot] if r.trial_kind == "attention" else "", **tail})
            else:
                out.append({**common, "method_a": trial.method_a, "method_b": trial.method_b,
                            "first_shown": trial.first_shown, "answer": answer["answer"],
                            "attention_expect": trial.attention_answer if r.trial_kind == "attention" else "", **tail})
        columns = [c.name for c in (RANKING_COLUMNS if self.package.kind == "ranking" else PAIRWISE_COLUMNS)]
        extras = ["trial_id", "plays", "replays", "viewport", "user_agent", "app_commit"]
        df = pd.DataFrame(out, columns=columns + extras)
        df["repeat_of"] = df["repeat_of"].astype("Int64")
        return df

    def export_responses(self, path: str | os.PathLike, fmt: str | None = None) -> Path:
        """Write the responses (:meth:`responses_frame`) as CSV or Parquet (by suffix or ``fmt``),
        atomically. The table is validated with the analysis' own validator first."""
        from study_app.analysis.schema import validate_pairwise, validate_rankings

        path = Path(path)
        fmt = (fmt or path.suffix.lstrip(".") or "csv").lower()
        if fmt not in ("csv", "parquet"):
            raise StereobenchError(f"export format must be csv or parquet, got {fmt!r} (from {str(path)!r})")
        df = self.responses_frame()
        if len(df):
            (validate_rankings if self.package.kind == "ranking" else validate_pairwise)(df, source="export")
        if fmt == "csv":
            data = df.to_csv(index=False).encode("utf-8")
        else:
            import io

            buf = io.BytesIO()
            df.to_parquet(buf, index=False)
            data = buf.getvalue()
        return atomic_write_bytes(path, data)

    def export_pwcmp(self, path: str | os.PathLike, *, ties: str = "drop", kinds: Sequence[str] = ("main",)) -> Path:
        """pwcmp-style CSV of the pairwise answers (``pw_scale_table``'s layout): one row per
        comparison with ``observer, session_id, scene, condition_A, condition_B, is_A_selected``
        plus ``trial, trial_kind, first_shown``. pwcmp has no ties: ``ties="drop"`` leaves equal
        answers out (as the sign test does), ``ties="both"`` writes two rows, one selecting each
        side (a tie then counts as one vote each). Only trials of ``kinds`` are written."""
        if self.package.kind != "pairwise":
            raise StereobenchError("the pwcmp export is for pairwise (VR) studies; export a ranking study with "
                                   "`stereobench study export` (analysis schema)")
        if ties not in ("drop", "both"):
            raise StereobenchError(f"ties must be 'drop' or 'both', got {ties!r}")
        df = self.responses_frame()
        df = df[df["trial_kind"].isin(list(kinds))]
        rows = []
        for r in df.itertuples(index=False):
            base = {"observer": r.participant, "session_id": 1, "scene": r.video, "condition_A": r.method_a,
                    "condition_B": r.method_b, "trial": r.trial, "trial_kind": r.trial_kind, "first_shown": r.first_shown}
            if r.answer == "equal":
                if ties == "both":
                    rows += [{**base, "is_A_selected": 1}, {**base, "is_A_selected": 0}]
                continue
            rows.append({**base, "is_A_selected": int(r.answer == "a")})
        cols = ["observer", "session_id", "scene", "condition_A", "condition_B", "is_A_selected", "trial", "trial_kind",
                "first_shown"]
        return atomic_write_bytes(Path(path), pd.DataFrame(rows, columns=cols).to_csv(index=False).encode("utf-8"))


__all__ = ["AdminSummary", "Base", "InvalidResponse", "Participant", "StudyClosed", "StudyStore", "SubmitResult",
           "database_url", "is_complete_ranking", "make_engine"]

