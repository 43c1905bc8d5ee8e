"""Timeouts from the environment, how they reach psycopg's connect, and which errors they end in."""

from __future__ import annotations

import psycopg
import pytest

from conveyor.db.connections import DEADLINE_MARGIN, connect_kwargs, deadline_of
from conveyor.db.errors import is_transient
from conveyor.errors import ConfigurationError
from conveyor.settings import Settings, Timeouts

VARS = (
    "CONVEYOR_STATEMENT_TIMEOUT",
    "CONVEYOR_LOCK_TIMEOUT",
    "CONVEYOR_CONNECT_TIMEOUT",
    "CONVEYOR_LISTEN_CHECK",
    "CONVEYOR_SERVER_TIMEOUTS",
    "CONVEYOR_PREPARED_STATEMENTS",
    "CONVEYOR_LISTEN_URL",
)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults(env: pytest.MonkeyPatch) -> None:
    timeouts = Timeouts.from_env()
    assert timeouts == Timeouts(statement=10.0, lock=5.0, connect=5.0, listen_check=10.0, server_side=True)
    assert Settings.from_env("postgresql://x/db").listen_url is None


def test_read_from_the_environment(env: pytest.MonkeyPatch) -> None:
    env.setenv("CONVEYOR_STATEMENT_TIMEOUT", "2.5")
    env.setenv("CONVEYOR_LOCK_TIMEOUT", "0")
    env.setenv("CONVEYOR_SERVER_TIMEOUTS", "off")
    env.setenv("CONVEYOR_LISTEN_URL", "postgresql://direct/db")
    settings = Settings.from_env("postgresql://pooler/db")
    assert settings.timeouts.statement == 2.5
    assert settings.timeouts.lock == 0
    assert settings.timeouts.server_side is False
    assert settings.listen_url == "postgresql://direct/db"


@pytest.mark.parametrize(
    ("name", "value"), [("CONVEYOR_STATEMENT_TIMEOUT", "ten"), ("CONVEYOR_LOCK_TIMEOUT", "-1")]
)
def test_bad_values_are_refused_with_the_variable_named(
    env: pytest.MonkeyPatch, name: str, value: str
) -> None:
    env.setenv(name, value)
    with pytest.raises(ConfigurationError, match=name):
        Timeouts.from_env()


def test_server_timeouts_go_in_startup_options_after_the_urls_own(env: pytest.MonkeyPatch) -> None:
    kwargs = connect_kwargs(
        Timeouts(statement=3, lock=0.25, connect=1),
        conninfo="postgresql://h/db?options=-c%20search_path%3Dapp",
    )
    assert kwargs["options"] == (
        "-c search_path=app -c statement_timeout=3000 -c lock_timeout=250"
        " -c idle_in_transaction_session_timeout=3000"
    )
    assert kwargs["connect_timeout"] == 2  # libpq takes whole seconds, at least 2
    assert kwargs["autocommit"] is True
    assert "prepare_threshold" not in kwargs


def test_no_options_when_server_side_timeouts_are_off_or_without_timeouts(env: pytest.MonkeyPatch) -> None:
    assert "options" not in connect_kwargs(Timeouts(server_side=False))
    assert "options" not in connect_kwargs(None)
    assert "connect_timeout" not in connect_kwargs(None)


def test_prepared_statements_off(env: pytest.MonkeyPatch) -> None:
    env.setenv("CONVEYOR_PREPARED_STATEMENTS", "off")
    assert connect_kwargs(None)["prepare_threshold"] is None


def test_the_client_side_deadline_outlasts_the_servers_timeout() -> None:
    assert deadline_of(Timeouts(statement=4)) == 4 + DEADLINE_MARGIN
    assert deadline_of(Timeouts(statement=0)) is None
    assert deadline_of(None) is None


def test_a_session_the_server_ended_for_idling_in_a_transaction_is_worth_retrying() -> None:
    # A process paused mid-transaction finds its session ended when it resumes: its next try,
    # on a new connection, may well succeed (a scheduler must not stop the schedule for it).
    assert is_transient(
        psycopg.errors.lookup("25P03")("terminating connection due to idle-in-transaction timeout")
    )
    assert is_transient(psycopg.errors.lookup("25P04")("terminating connection due to transaction timeout"))
    assert not is_transient(psycopg.errors.lookup("25P02")("current transaction is aborted"))
