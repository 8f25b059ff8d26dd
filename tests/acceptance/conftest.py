"""The acceptance suite's user: a working folder and the session's Prefect API."""
import pytest

from tests.acceptance.user_session import User


@pytest.fixture
def user(tmp_path, prefect_harness) -> User:
    return User(tmp_path, prefect_harness)
