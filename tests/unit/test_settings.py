"""Unit tests for conveyor.settings: schema names and reading the environment."""

import pytest

from conveyor.errors import ConfigurationError
from conveyor.settings import MAX_ARGS_BYTES, Settings, Timeouts, check_schema_name, normalize_database_url

ENV_VARS = ("CONVEYOR_DATABASE_URL", "DATABASE_URL", "CONVEYOR_SCHEMA")
EXPLICIT = "postgresql://explicit/db"
CONVEYOR_URL = "postgresql://conveyor-env/db"
PLAIN_URL = "postgresql://plain-env/db"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean environment: none of Conveyor's variables set."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# -- check_schema_name --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["conveyor", "_private", "a", "jobs_2024", "t_0123abcd", "a" * 62, "_" * 62])
def test_good_schema_names(name: str) -> None:
    assert check_schema_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "1conveyor",
        "Conveyor",
        "CONVEYOR",
        "my-schema",
        "my schema",
        "my.schema",
        'quo"te',
        "semi;colon",
        "émile",
        "a" * 63,  # its control channel would be its job channel (settings._SCHEMA_NAME)
        "a" * 64,
        " conveyor",
        "pg_temp",
        "pg_catalog",
        "pg_conveyor",
        'x"; drop table y; --',
    ],
)
def test_bad_schema_names(name: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        check_schema_name(name)
    assert str(info.value) == (
        f"schema name {name!r} is not allowed: use lowercase letters, digits and _ "
        "(at most 62, not starting with a digit nor with pg_)"
    )


def test_schema_name_with_a_trailing_newline_is_refused() -> None:
    """``$`` in a Python regex also matches before a final newline."""
    with pytest.raises(ConfigurationError):
        check_schema_name("conveyor\n")


# -- Settings ------------------------------------------------------------------------------


def test_settings_defaults() -> None:
    settings = Settings()
    assert settings.database_url is None
    assert settings.schema == "conveyor"


def test_settings_check_the_schema() -> None:
    with pytest.raises(ConfigurationError, match=r"^schema name 'Bad-Name' is not allowed"):
        Settings(schema="Bad-Name")


def test_settings_are_immutable() -> None:
    settings = Settings(database_url=EXPLICIT)
    with pytest.raises(AttributeError):
        settings.schema = "other"  # type: ignore[misc]


def test_args_limit_is_one_mebibyte() -> None:
    assert MAX_ARGS_BYTES == 1_048_576


# -- Settings.from_env precedence ----------------------------------------------------------------


def test_from_env_with_nothing_set(env: pytest.MonkeyPatch) -> None:
    assert Settings.from_env() == Settings(database_url=None, schema="conveyor")


def test_explicit_url_wins_over_both_variables(env: pytest.MonkeyPatch) -> None:
    env.setenv("CONVEYOR_DATABASE_URL", CONVEYOR_URL)
    env.setenv("DATABASE_URL", PLAIN_URL)
    assert Settings.from_env(database_url=EXPLICIT).database_url == EXPLICIT


def test_conveyor_database_url_wins_over_database_url(env: pytest.MonkeyPatch) -> None:
    env.setenv("CONVEYOR_DATABASE_URL", CONVEYOR_URL)
    env.setenv("DATABASE_URL", PLAIN_URL)
    assert Settings.from_env().database_url == CONVEYOR_URL


def test_database_url_is_the_last_resort(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", PLAIN_URL)
    assert Settings.from_env().database_url == PLAIN_URL


def test_conveyor_database_url_alone(env: pytest.MonkeyPatch) -> None:
    env.setenv("CONVEYOR_DATABASE_URL", CONVEYOR_URL)
    assert Settings.from_env().database_url == CONVEYOR_URL


def test_empty_values_count_as_unset(env: pytest.MonkeyPatch) -> None:
    env.setenv("CONVEYOR_DATABASE_URL", "")
    env.setenv("DATABASE_URL", PLAIN_URL)
    assert Settings.from_env(database_url="").database_url == PLAIN_URL
    env.setenv("DATABASE_URL", "")
    assert Settings.from_env().database_url is None


def test_schema_precedence(env: pytest.MonkeyPatch) -> None:
    assert Settings.from_env().schema == "conveyor"
    env.setenv("CONVEYOR_SCHEMA", "jobs_env")
    assert Settings.from_env().schema == "jobs_env"
    assert Settings.from_env(schema="jobs_explicit").schema == "jobs_explicit"
    # An empty variable is no setting (as for DATABASE_URL, and as the CLI reads it); an
    # empty schema given explicitly is refused, not taken for the default.
    env.setenv("CONVEYOR_SCHEMA", "")
    assert Settings.from_env().schema == "conveyor"
    with pytest.raises(ConfigurationError, match=r"^schema name '' is not allowed"):
        Settings.from_env(schema="")


def test_bad_schema_from_the_environment_is_refused(env: pytest.MonkeyPatch) -> None:
    env.setenv("CONVEYOR_SCHEMA", "Not-Valid")
    with pytest.raises(ConfigurationError, match=r"^schema name 'Not-Valid' is not allowed"):
        Settings.from_env()
    # An explicit, valid schema overrides the bad variable.
    assert Settings.from_env(schema="fine").schema == "fine"


def test_from_env_reads_at_call_time(env: pytest.MonkeyPatch) -> None:
    first = Settings.from_env()
    env.setenv("DATABASE_URL", PLAIN_URL)
    second = Settings.from_env()
    assert (first.database_url, second.database_url) == (None, PLAIN_URL)


# -- normalize_database_url -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("postgresql+psycopg://app:s%40cret@db:5432/app", "postgresql://app:s%40cret@db:5432/app"),
        ("postgresql+psycopg2://app@db/app?sslmode=require", "postgresql://app@db/app?sslmode=require"),
        ("postgresql+asyncpg://app@db/app", "postgresql://app@db/app"),
        ("postgresql+asyncpg://app@db/app?ssl=true", "postgresql://app@db/app?sslmode=require"),
        (
            "postgresql+asyncpg://app@db/app?ssl=verify-full&application_name=web%20app",
            "postgresql://app@db/app?sslmode=verify-full&application_name=web%20app",
        ),
        ("postgres://app@db/app", "postgresql://app@db/app"),
        ("PostgreSQL+Psycopg://app@db/app", "postgresql://app@db/app"),
        ("postgresql://app@db/app?options=-c%20statement_timeout%3D5s", None),
        ("host=db dbname=app user=app", None),
        ("", None),
    ],
)
def test_database_urls_in_the_forms_applications_have_are_read_as_libpq_urls(
    url: str, normalized: str | None
) -> None:
    assert normalize_database_url(url) == (url if normalized is None else normalized)


def test_a_url_for_another_driver_is_refused_by_its_scheme() -> None:
    with pytest.raises(ConfigurationError, match=r"^database URL scheme 'postgresql\+pg' is not one"):
        normalize_database_url("postgresql+pg://app@db/app")


def test_settings_read_a_sqlalchemy_url_from_the_environment(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", "postgresql+psycopg://app@db/app")
    assert Settings.from_env().database_url == "postgresql://app@db/app"
    assert Settings(database_url="postgres://x@y/z").database_url == "postgresql://x@y/z"


def test_the_listen_url_is_read_in_sqlalchemy_form_too(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", "postgresql+psycopg://app@pgbouncer/app")
    env.setenv("CONVEYOR_LISTEN_URL", "postgresql+psycopg://app@db/app")
    settings = Settings.from_env()
    assert settings.listen_url == "postgresql://app@db/app"


@pytest.mark.parametrize(
    ("raw", "seconds"), [("5", 5.0), ("5s", 5.0), ("2m", 120.0), ("0.5", 0.5), ("0", 0.0), ("1h", 3600.0)]
)
def test_timeouts_take_durations_from_the_environment(
    env: pytest.MonkeyPatch, raw: str, seconds: float
) -> None:
    env.setenv("CONVEYOR_STATEMENT_TIMEOUT", raw)
    assert Timeouts.from_env().statement == seconds


@pytest.mark.parametrize("raw", ["nan", "inf", "1e400", "-1", "5x", "0.0001", "99999999999", "30d"])
def test_timeouts_out_of_range_or_unreadable_are_refused_in_one_line(
    env: pytest.MonkeyPatch, raw: str
) -> None:
    env.setenv("CONVEYOR_LOCK_TIMEOUT", raw)
    with pytest.raises(ConfigurationError, match=r"^CONVEYOR_LOCK_TIMEOUT"):
        Timeouts.from_env()
