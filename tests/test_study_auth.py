"""Admin sign-in: argon2 hashes, the rate limit (in memory and persisted in the study database),
configuration from the environment, and `stereobench study hash-password`."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest

from benchmark.errors import StereobenchError
from study_app import auth
from study_app.auth import ENV_HASH, AdminAuth, check_admin, hash_password
from tests.study_helpers import synthetic_package

CHEAP = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}  # fast to verify; production uses the defaults


@pytest.fixture(scope="module")
def digest():
    return hash_password("correct horse", **CHEAP)


class Clock:
    def __init__(self):
        self.now = datetime(2026, 1, 1, 12, 0, 0)

    def __call__(self):
        return self.now


@pytest.fixture(autouse=True)
def _fresh_default(monkeypatch):
    monkeypatch.setattr(auth, "_default", None)
    monkeypatch.delenv(ENV_HASH, raising=False)


def test_hash_verifies_and_is_salted(digest):
    from argon2 import PasswordHasher

    assert digest.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert PasswordHasher().verify(digest, "correct horse")
    assert hash_password("correct horse", **CHEAP) != digest  # random salt
    assert hash_password("x").startswith("$argon2id$v=19$m=65536,t=3,p=4$")  # argon2-cffi's defaults
    with pytest.raises(StereobenchError, match="empty"):
        hash_password("")


def test_right_and_wrong_passwords(digest):
    a = AdminAuth(digest)
    assert a.check("correct horse", "ip1").ok
    for bad in ("wrong", "", None, 123, "correct horse "):
        assert not a.check(bad, "ip2").ok


def test_rate_limit_locks_then_unlocks_after_the_window(digest):
    clock = Clock()
    a = AdminAuth(digest, clock=clock)
    for _ in range(5):
        assert not a.check("guess", "attacker").ok
    locked = a.check("correct horse", "attacker")  # even the right password is refused now
    assert not locked.ok and locked.locked and 0 < locked.retry_after_s <= 15 * 60
    assert a.check("correct horse", "someone-else").ok  # per client
    clock.now += timedelta(minutes=15, seconds=1)
    assert a.check("correct horse", "attacker").ok


def test_success_resets_the_failures(digest):
    a = AdminAuth(digest, clock=Clock())
    for _ in range(4):
        a.check("guess", "me")
    assert a.check("correct horse", "me").ok
    for _ in range(4):
        assert not a.check("guess", "me").locked
    assert a.check("correct horse", "me").ok


def test_rate_limit_persists_in_the_study_database(tmp_path, digest):
    from study_app.store import StudyStore

    pkg = synthetic_package(tmp_path / "pkg")
    store = StudyStore.open(str(tmp_path / "s.sqlite"), pkg, app_commit=None)
    for _ in range(5):
        assert not AdminAuth(digest, store).check("guess", "10.0.0.7").ok
    store.dispose()
    reopened = StudyStore.open(str(tmp_path / "s.sqlite"), pkg, app_commit=None)  # a restarted server
    result = AdminAuth(digest, reopened).check("correct horse", "10.0.0.7")
    assert result.locked and not result.ok
    assert AdminAuth(digest, reopened).check("correct horse", "10.0.0.8").ok
    assert not check_admin("correct horse", "10.0.0.7", store=reopened, password_hash=digest)
    reopened.dispose()


def test_check_admin_reads_the_environment(monkeypatch, digest):
    with pytest.raises(StereobenchError, match=ENV_HASH):
        check_admin("correct horse", "ip")  # no hash anywhere: the admin page is disabled
    monkeypatch.setenv(ENV_HASH, digest)
    assert check_admin("correct horse", "ip")
    assert not check_admin("nope", "ip")
    monkeypatch.setenv(ENV_HASH, "not-an-argon2-hash")
    with pytest.raises(StereobenchError, match="not an argon2 hash"):
        check_admin("correct horse", "ip3")


def test_configured_hash_wins_over_the_environment(monkeypatch, digest):
    monkeypatch.setenv(ENV_HASH, hash_password("env password", **CHEAP))
    auth.configure(digest)
    assert check_admin("correct horse", "ip") and not check_admin("env password", "ip")


def test_cli_hash_password_from_stdin(monkeypatch, capsys):
    from argon2 import PasswordHasher

    from benchmark.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret pass\n"))
    assert main(["study", "hash-password", "--stdin"]) == 0
    out = capsys.readouterr()
    printed = out.out.strip()
    assert PasswordHasher().verify(printed, "s3cret pass")
    assert "s3cret" not in out.out and "s3cret" not in out.err  # the password is never printed
