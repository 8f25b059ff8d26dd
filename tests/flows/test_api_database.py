"""Several declip commands at once: the first keeps Prefect's shared database, the next get private ones (issue 21
item 8). The other command is played by this test holding the lock, so the outcome does not depend on timing."""
from __future__ import annotations

import fcntl
import os

import pytest

from declip.flows import api_database
from declip.flows.api_database import LOCK_NAME, URL_VARIABLES, choose_api_database


@pytest.fixture
def clean(monkeypatch):
    for name in ("PREFECT_API_URL", *URL_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(api_database, "_HELD", [])
    yield
    for fd in api_database._HELD:
        os.close(fd)


def test_the_first_command_keeps_the_shared_database(tmp_path, clean):
    assert choose_api_database(tmp_path) is None
    assert not any(os.environ.get(v) for v in URL_VARIABLES)
    other = os.open(tmp_path / LOCK_NAME, os.O_RDWR)
    try:  # the lock is now held: another command would be told so
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(other)


def test_a_second_command_gets_a_private_database_removed_at_exit(tmp_path, clean, monkeypatch):
    exits = []
    monkeypatch.setattr(api_database.atexit, "register", lambda f, *a: exits.append((f, a)))
    first = os.open(tmp_path / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(first, fcntl.LOCK_EX)  # another command's temporary API holds the shared database
    try:
        line = choose_api_database(tmp_path)
    finally:
        os.close(first)
    private = tmp_path / f"declip-api-{os.getpid()}.db"
    assert os.environ[URL_VARIABLES[0]] == f"sqlite+aiosqlite:///{private}"
    assert line.startswith("declip: another declip command's temporary Prefect API") and private.name in line
    private.write_bytes(b"x")
    (tmp_path / f"{private.name}-wal").write_bytes(b"x")
    for f, args in exits:
        f(*args)
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME]


def test_a_users_server_or_database_is_left_alone(tmp_path, clean, monkeypatch):
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", "postgresql+asyncpg://db/prefect")
    assert choose_api_database(tmp_path) is None
    assert not (tmp_path / LOCK_NAME).exists()
    monkeypatch.delenv("PREFECT_API_DATABASE_CONNECTION_URL")
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert choose_api_database(tmp_path) is None and not (tmp_path / LOCK_NAME).exists()
