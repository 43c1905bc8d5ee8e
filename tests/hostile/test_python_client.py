"""Hostile input through the Python client (``Conveyor``, and ``SyncConveyor`` where it has
its own path): free text round-trips, names with a grammar and text PostgreSQL cannot store
are refused with a ConveyorError (or ValueError) saying why, before any SQL is sent; no
call changes a table it should not."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from conveyor import Conveyor, Registry, SyncConveyor
from conveyor.errors import ConfigurationError, ConveyorError
from conveyor.queue.enqueue import JobRequest
from conveyor.settings import MAX_ARGS_BYTES

from ..helpers import DB
from .strings import HOSTILE, STORABLE, UNSTORABLE, census, ident


@pytest.fixture
def registry() -> Registry:
    registry = Registry()

    @registry.task(name="echo")
    def echo(**values: Any) -> None:
        pass

    return registry


async def test_free_text_round_trips(client: Conveyor, db: DB) -> None:
    for text in STORABLE:
        job_id = await client.enqueue("echo", {text: text}, unique_key=text, key=text, meta={"tag": text})
        row = db.one("SELECT task, args, unique_key, key, meta FROM {schema}.jobs WHERE id = %s", [job_id])
        assert row == ("echo", {text: text}, text, text, {"tag": text})
        # The same unique key finds the same job: the key is compared as data.
        assert await client.enqueue("echo", {}, unique_key=text) == job_id
        found = await client.search_jobs(unique_key=text, key=text, task="echo")
        assert [job["id"] for job in found.items] == [job_id]


def filter_calls(client: Conveyor, text: str) -> list[Callable[[], Awaitable[Any]]]:
    """Every listing of the client, filtered by ``text`` wherever a filter takes text."""
    return [
        lambda: client.search_jobs(task=text),
        lambda: client.search_jobs(key=text, unique_key=text),
        lambda: client.search_jobs(id_prefix=text),
        lambda: client.search_jobs(cursor=text),
        lambda: client.search_jobs(state=text),
        lambda: client.history(task=text, key=text),
        lambda: client.list_jobs(task=text),
        lambda: client.dead_jobs(task=text),
        lambda: client.search_jobs(queue=text),
        lambda: client.dead_jobs(queue=text),
        lambda: client.schedule_fires(text),
    ]


async def test_filters_take_any_text_and_find_nothing_or_refuse_it(client: Conveyor, db: DB) -> None:
    await client.enqueue("echo", {})
    before = census(db)
    for text in HOSTILE:
        for made in filter_calls(client, text):
            outcome: Any
            try:
                outcome = await made()
            except (ConveyorError, ValueError) as exc:
                outcome = exc
            if isinstance(outcome, Exception):
                assert str(outcome), (text, made)
            else:
                assert not getattr(outcome, "items", outcome), (text, outcome)
    assert census(db) == before


def named_calls(client: Conveyor, text: str) -> list[tuple[Callable[[], Awaitable[Any]], str]]:
    """Calls that take a name with a grammar, and the words their refusal must hold."""
    return [
        (lambda: client.create_queue(text), "queue name"),
        (lambda: client.pause_queue(text), "queue"),
        (lambda: client.enqueue("echo", {}, queue=text), "queue"),
        (lambda: client.create_schedule(text, "0 9 * * *", "echo"), "schedule name"),
        (lambda: client.trigger_schedule(text), "schedule"),
        (lambda: client.pause_schedule(text), "schedule"),
        (lambda: client.update_schedule(text, {"cron": "* * * * *"}), "schedule"),
        (lambda: client.remove_schedule(text), "schedule"),
    ]


async def test_names_with_a_grammar_are_refused_naming_it(client: Conveyor, db: DB) -> None:
    before = census(db)
    for text in HOSTILE:
        for made, words in named_calls(client, text):
            with pytest.raises(ConveyorError, match=words):
                await made()
    assert census(db) == before


def unstorable_calls(client: Conveyor, text: str) -> list[Callable[[], Awaitable[Any]]]:
    return [
        lambda: client.enqueue("echo", {"value": text}),
        lambda: client.enqueue("echo", {text: 1}),
        lambda: client.enqueue("echo", {}, unique_key=text),
        lambda: client.enqueue("echo", {}, key=text),
        lambda: client.enqueue("echo", {}, meta={"tag": text}),
        lambda: client.pause_task(text),
    ]


async def test_text_postgresql_cannot_store_is_refused_before_sql(client: Conveyor, db: DB) -> None:
    before = census(db)
    for text in UNSTORABLE:
        for made in unstorable_calls(client, text):
            with pytest.raises((ConveyorError, ValueError)) as refused:
                await made()
            assert "NUL" in str(refused.value) or "surrogate" in str(refused.value), refused.value
        with pytest.raises(ConveyorError, match="unknown task"):
            await client.enqueue(text, {})
    assert census(db) == before


async def test_args_at_the_size_limit_pass_and_one_byte_over_is_refused(client: Conveyor, db: DB) -> None:
    empty = len(json.dumps({"blob": ""}, separators=(",", ":")))
    at_limit = {"blob": "x" * (MAX_ARGS_BYTES - empty)}
    job_id = await client.enqueue("echo", at_limit)
    assert db.one("SELECT octet_length(args ->> 'blob') FROM {schema}.jobs WHERE id = %s", [job_id]) == len(
        at_limit["blob"]
    )
    before = census(db)
    with pytest.raises(ConveyorError, match="byte limit"):
        await client.enqueue("echo", {"blob": at_limit["blob"] + "x"})
    with pytest.raises(ConveyorError, match="byte limit"):
        await client.enqueue_many([JobRequest("echo", {"blob": at_limit["blob"] + "x"})])
    assert census(db) == before


async def test_args_nested_ten_thousand_deep_are_refused_without_recursion_error(
    client: Conveyor, db: DB
) -> None:
    deep: Any = []
    for _ in range(10_000):
        deep = [deep]
    before = census(db)
    with pytest.raises(ConveyorError, match="arguments"):
        await client.enqueue("echo", {"value": deep})
    assert census(db) == before


@pytest.mark.parametrize(
    ("cron", "timezone", "words"),
    [
        ("* * *", "UTC", "cron"),
        ("61 * * * *", "UTC", "cron"),
        ("@every", "UTC", "cron"),
        ("", "UTC", "cron"),
        ("0 9 * * *", "Europe/Nowhere", "time zone"),
        ("0 9 * * *", "../../etc/passwd", "time zone"),
        ("0 9 * * *", "/etc/localtime", "time zone"),
        ("0 9 * * *", "", "time zone"),
        ("0 9 * * *", "UTC\x00", "time zone"),
    ],
)
async def test_cron_strings_and_time_zones_that_are_not_are_refused(
    client: Conveyor, db: DB, cron: str, timezone: str, words: str
) -> None:
    before = census(db)
    with pytest.raises(ConveyorError, match=words):
        await client.create_schedule("s", cron, "echo", timezone=timezone)
    await client.create_schedule("s", "0 9 * * *", "echo")
    with pytest.raises(ConveyorError, match=words):
        await client.update_schedule("s", {"cron": cron, "timezone": timezone})
    await client.remove_schedule("s")
    assert census(db) == before


@pytest.mark.parametrize(
    "name", ['x"; drop table y; --', "x" * 64, "", "Conveyor", "1abc", "a-b", "pg_temp", "é"], ids=ident
)
def test_a_hostile_schema_name_is_refused_before_connecting(database_url: str, name: str) -> None:
    with pytest.raises(ConfigurationError, match="schema name"):
        Conveyor(database_url, schema=name)
    with pytest.raises(ConfigurationError, match="schema name"):
        SyncConveyor(database_url, schema=name)


def test_the_sync_client_refuses_as_the_async_one(
    database_url: str, schema: str, db: DB, registry: Registry
) -> None:
    before = census(db)
    with SyncConveyor(database_url, schema=schema, registry=registry) as client:
        with pytest.raises((ConveyorError, ValueError), match="NUL"):
            client.enqueue("echo", {"value": "\x00"})
        with pytest.raises(ConveyorError, match="queue name"):
            client.create_queue("a'; DROP TABLE jobs; --")
        with pytest.raises(ConveyorError, match="time zone"):
            client.create_schedule("s", "0 9 * * *", "echo", timezone="../../etc/passwd")
    assert census(db) == before
