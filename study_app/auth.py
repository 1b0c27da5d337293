"""Admin sign-in: an argon2 password hash from configuration or the environment, rate limited.

The hash (never the password, never in the repository) comes from, in order: the
``password_hash`` given to :func:`configure` / :class:`AdminAuth` (the app's configuration), or
the environment variable ``STEREOBENCH_STUDY_ADMIN_HASH``. Make one with
``stereobench study hash-password`` (argon2id, argon2-cffi's defaults). Without a hash the admin
page is disabled: :func:`check_admin` raises StereobenchError saying how to set one.

**Rate limiting rule.** Each client (``client_key``: the app passes the client's address) may
fail at most ``max_failures`` (5) times within ``window_s`` (15 minutes); further attempts from
that client are refused *without checking the password* until the oldest of those failures is
older than the window. A successful sign-in clears the client's failures. Attempts are kept in
memory (per process) by default, or in the study database (``admin_attempts`` table) when a
:class:`study_app.store.StudyStore` is given, so a restart does not reset the count.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from benchmark.errors import StereobenchError

ENV_HASH = "STEREOBENCH_STUDY_ADMIN_HASH"
MAX_FAILURES = 5
WINDOW_S = 15 * 60


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def hash_password(password: str, **params: int) -> str:
    """An argon2id hash of ``password`` (argon2-cffi's defaults, random salt). ``params``
    (``time_cost``, ``memory_cost``, ``parallelism``) override the cost; the hash records them,
    so verification uses whatever the hash says (the tests use cheap ones)."""
    from argon2 import PasswordHasher

    if not isinstance(password, str) or not password:
        raise StereobenchError("the admin password must not be empty")
    return PasswordHasher(**params).hash(password)


def admin_hash(password_hash: str | None = None) -> str | None:
    """The configured hash: ``password_hash`` if given, else ``$STEREOBENCH_STUDY_ADMIN_HASH``."""
    value = password_hash if password_hash else os.environ.get(ENV_HASH, "")
    value = value.strip()
    return value or None


class AttemptLog(Protocol):
    def record_admin_attempt(self, client_key: str, ok: bool, at: datetime | None = None) -> None: ...

    def admin_failures_since(self, client_key: str, since: datetime) -> list[datetime]: ...


class MemoryAttempts:
    """Admin sign-in attempts kept in this process (thread-safe)."""

    def __init__(self) -> None:
        self._fails: dict[str, list[datetime]] = defaultdict(list)
        self._lock = threading.Lock()

    def record_admin_attempt(self, client_key: str, ok: bool, at: datetime | None = None) -> None:
        with self._lock:
            if ok:
                self._fails.pop(client_key, None)
            else:
                self._fails[client_key].append(at or _utcnow())

    def admin_failures_since(self, client_key: str, since: datetime) -> list[datetime]:
        with self._lock:
            kept = [t for t in self._fails.get(client_key, []) if t >= since]
            if client_key in self._fails:
                self._fails[client_key] = kept
            return list(kept)


@dataclass(frozen=True)
class AuthResult:
    """``ok``: signed in; ``locked``: refused by the rate limit (password not checked);
    ``retry_after_s``: seconds until the client may try again (0 when not locked)."""

    ok: bool
    locked: bool = False
    retry_after_s: float = 0.0


class AdminAuth:
    """Checks admin passwords against one argon2 hash, with the rate limit of the module docstring."""

    def __init__(self, password_hash: str | None = None, attempts: AttemptLog | None = None, *,
                 max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S,
                 clock: Callable[[], datetime] = _utcnow):
        self._hash = password_hash
        self.attempts = attempts if attempts is not None else MemoryAttempts()
        self.max_failures = int(max_failures)
        self.window = timedelta(seconds=float(window_s))
        self.clock = clock

    @property
    def password_hash(self) -> str | None:
        """The given hash, else the environment's (read at each check, so a changed variable counts)."""
        return admin_hash(self._hash)

    @property
    def configured(self) -> bool:
        return self.password_hash is not None

    def check(self, password: Any, client_key: str) -> AuthResult:
        """Check one sign-in attempt of ``client_key``.

        Raises:
            StereobenchError: no hash is configured, or the configured value is not an argon2 hash.
        """
        from argon2 import PasswordHasher
        from argon2.exceptions import (
            InvalidHashError,
            VerificationError,
            VerifyMismatchError,
        )

        password_hash = self.password_hash
        if password_hash is None:
            raise StereobenchError(f"the admin page is disabled: set {ENV_HASH} to the output of "
                                   "`stereobench study hash-password` (or give the hash in the app's configuration)")
        key = str(client_key or "unknown")[:128]
        now = self.clock()
        fails = self.attempts.admin_failures_since(key, now - self.window)
        if len(fails) >= self.max_failures:
            retry = (min(fails) + self.window - now).total_seconds()
            return AuthResult(ok=False, locked=True, retry_after_s=max(retry, 0.0))
        ok = False
        if isinstance(password, str) and password:
            try:
                ok = PasswordHasher().verify(password_hash, password)
            except VerifyMismatchError:
                ok = False
            except InvalidHashError:
                raise StereobenchError(f"the configured admin hash is not an argon2 hash; set {ENV_HASH} to the output "
                                       "of `stereobench study hash-password`") from None
            except VerificationError:
                ok = False
        self.attempts.record_admin_attempt(key, ok, now)
        return AuthResult(ok=ok)


_default: AdminAuth | None = None
_default_lock = threading.Lock()


def configure(password_hash: str | None = None, store: AttemptLog | None = None, **kwargs: Any) -> AdminAuth:
    """Set the process-wide :class:`AdminAuth` that :func:`check_admin` uses (the app calls this
    once with its configured hash and, to persist the rate limit, its store)."""
    global _default
    with _default_lock:
        _default = AdminAuth(password_hash, store, **kwargs)
        return _default


def check_admin(password: Any, client_key: str, *, store: AttemptLog | None = None,
                password_hash: str | None = None) -> bool:
    """True when ``password`` matches the admin hash and ``client_key`` is not rate limited.

    Uses the process-wide :class:`AdminAuth` (see :func:`configure`; by default the hash from
    the environment, attempts in memory); ``store`` / ``password_hash`` override it for one call.

    Raises:
        StereobenchError: no admin hash is configured (the admin page is disabled).
    """
    global _default
    with _default_lock:
        if _default is None:
            _default = AdminAuth()
        base = _default
    if store is not None or password_hash is not None:
        auth = AdminAuth(password_hash or base._hash, store if store is not None else base.attempts,
                         max_failures=base.max_failures, window_s=base.window.total_seconds(), clock=base.clock)
        return auth.check(password, client_key).ok
    return base.check(password, client_key).ok
