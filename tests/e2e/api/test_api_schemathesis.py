"""schemathesis against the API's OpenAPI document: for every operation, generated requests
(valid and invalid) sent to a running server get no 5xx and no response that breaks the
document (status, media type, headers, body schema). A bounded number of examples per
operation, for CI: with an admin's key, and fewer with a viewer's and an operator's (whose
refusals, 403 problems, must fit the document too). schemathesis's ignored_auth check sends
each request again without credentials and with wrong ones, which must be refused (401);
tokens that are almost right are tried one by one in tests/hostile/test_http_api.py.

The document is the one the server serves (checked below); it is built here from the same
route table at import, since schemathesis makes one test per operation when it is collected.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from psycopg import sql
from schemathesis.checks import positive_data_acceptance

from conveyor.api import create_app
from conveyor.api.app import PREFIX
from conveyor.api.endpoints import GROUPS
from conveyor.api.openapi import document
from conveyor.ops.failed_attempts import FailedAttempts

from ...conftest import end_open_sessions, make_schema
from .support import Keys, Server, bearer, make_keys

pytestmark = pytest.mark.processes

EXAMPLES = 25  # per operation, with an admin's key
LOWER_ROLE_EXAMPLES = 5  # per operation and lower role: refusals (403) and reads must fit too
DOCUMENT = document(GROUPS, prefix=PREFIX)
schema = schemathesis.openapi.from_dict(DOCUMENT)


@pytest.fixture(scope="module")
def fuzzed(database_url: str, migrated_schema: tuple[str, str] | None) -> Iterator[tuple[str, Keys]]:
    """(URL, keys) of one server on one schema for every generated case of this module (of
    each xdist worker): the fuzz needs no isolation between operations, and a schema and a
    server per operation and role cost more than the requests themselves."""
    name = make_schema(database_url, migrated_schema, f"t_fuzz_{uuid.uuid4().hex[:10]}")
    # Room for the requests without credentials schemathesis sends on purpose.
    limiter = FailedAttempts(limit=1_000_000)
    server = Server(create_app(database_url=database_url, schema=name, failed_attempts=limiter)).__enter__()
    try:
        with ThreadPoolExecutor(1) as pool:  # a loop of its own: pytest-asyncio may hold this thread's
            keys = pool.submit(asyncio.run, make_keys(database_url, name, "fuzz")).result()
        yield server.url, keys
    finally:
        server.__exit__()
        end_open_sessions(database_url)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def fuzzed_url(fuzzed: tuple[str, Keys]) -> str:
    return fuzzed[0]


@pytest.fixture
def fuzz_keys(fuzzed: tuple[str, Keys]) -> Keys:
    return fuzzed[1]


def test_the_document_tested_is_the_one_served(fuzzed_url: str) -> None:
    assert httpx.get(f"{fuzzed_url}/api/v1/openapi.json").json() == DOCUMENT


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_the_api_keeps_to_its_document(case: schemathesis.Case, fuzzed_url: str, fuzz_keys: Keys) -> None:
    case.call_and_validate(
        base_url=fuzzed_url,
        headers=bearer(fuzz_keys.admin),
        timeout=60,
        # A request can fit the document and still name what does not exist (a task, a
        # queue in a body or a filter) or carry what only Conveyor can judge (a cron
        # expression, a time zone, a page cursor, arguments against a task's signature):
        # those are 422 problems by design (docs/api.md), which this check counts as
        # wrongly refused. Every other check runs, invalid data rejected included.
        excluded_checks=[positive_data_acceptance],
    )


@schema.parametrize()
@settings(
    max_examples=LOWER_ROLE_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_lower_roles_get_answers_that_keep_to_the_document(
    case: schemathesis.Case, fuzzed_url: str, fuzz_keys: Keys, role: str
) -> None:
    case.call_and_validate(
        base_url=fuzzed_url,
        headers=bearer(fuzz_keys[role]),
        timeout=60,
        excluded_checks=[positive_data_acceptance],
    )
