"""conveyor.contrib.exports run by a real worker on a real database: CSV and JSON Lines,
gzipped or not, of a registered query and of a view; awkward values round-trip; the result's
rows and bytes are the file's; progress is reported; bad input is discarded with a reason;
expired files are removed by the cleanup task."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from conveyor import Conveyor, InvalidOptionError, Registry
from conveyor.contrib import exports
from conveyor.contrib.export_files import ExportSettings
from conveyor.errors import JobFailed
from conveyor.jobs import ClaimedJob
from conveyor.queue.context import JobContext
from conveyor.tasks import default_registry

from ..helpers import DB

# Commas, quotes, newlines (LF and CRLF), backslashes (a JSON escape and a COPY text escape
# alike), tabs, NUL-free control characters, and Unicode beyond the BMP.
AWKWARD = [
    'a,b "quoted" \\ back\\slash',
    "line one\nline two\r\nline three",
    "tab\there \\n not a newline \\\\ two",
    "héllo wörld ✓ 😀 日本語",
    "\x01\x1f control",
    "",
]


@pytest.fixture(autouse=True)
def export_tasks(registry: Registry) -> None:
    """The worker's registry knows the export tasks (they live in the default registry)."""
    for name in (exports.EXPORT_TASK, exports.CLEANUP_TASK):
        task = default_registry.get(name)
        assert task is not None
        registry.add(task)


@pytest.fixture
def app(database_url: str, schema: str) -> Iterator[DB]:
    """The application's own schema (exports never read Conveyor's), dropped after the test."""
    app_db = DB(database_url, f"{schema}_app")
    app_db.all("create schema {schema}")
    yield app_db
    app_db.all("drop schema {schema} cascade")


@pytest.fixture
def settings(tmp_path: Path, app: DB) -> Iterator[ExportSettings]:
    configured = exports.configure(directory=tmp_path / "exports", relations=(f"{app.schema}.*",))
    yield configured
    exports.configure()


@pytest.fixture
def people(app: DB) -> str:
    """A table of awkward values and a view over it; the name of a registered export of it."""
    db = app
    db.all("create table {schema}.people (id integer primary key, name text, score numeric, note text)")
    with db.connect(autocommit=True) as conn:
        for number, value in enumerate(AWKWARD, start=1):
            conn.execute(
                db.compose("insert into {schema}.people values (%s, %s, %s, %s)"),
                [number, value, None if number % 2 else number / 4, None if number == 3 else value[::-1]],
            )
    db.all("create view {schema}.people_view as select id, name, note from {schema}.people")
    name = f"people-{db.schema}"
    exports.register_export(
        name,
        f"SELECT id, name, score, note FROM {db.schema}.people WHERE id >= %(from_id)s ORDER BY id",  # type: ignore[arg-type]  # noqa: S608 - the test's schema name
        params={"from_id": 1},
    )
    return name


def expected_rows(db: DB) -> list[dict[str, Any]]:
    rows = db.all("select id, name, score::text, note from {schema}.people order by id")
    return [dict(zip(("id", "name", "score", "note"), row, strict=True)) for row in rows]


def read(path: Path, gzipped: bool) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if gzipped else data


def parse_csv(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


async def run_job(client: Conveyor, start_worker: Callable[..., Any], args: dict[str, Any]) -> Any:
    job_id = await client.enqueue(exports.EXPORT_TASK, args)
    async with start_worker(queues=[exports.QUEUE]):
        return await client.result(job_id, timeout=60)


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
async def test_csv_of_a_registered_query_round_trips_awkward_values(
    client: Conveyor,
    start_worker: Callable[..., Any],
    app: DB,
    people: str,
    settings: ExportSettings,
    gzipped: bool,
) -> None:
    result = await run_job(client, start_worker, {"export": people, "format": "csv", "gzip": gzipped})

    path = settings.directory / result["file"]
    assert result["file"].endswith(".csv.gz" if gzipped else ".csv")
    assert result["rows"] == len(AWKWARD)
    assert result["bytes"] == path.stat().st_size
    assert result["format"] == "csv"
    assert result["gzip"] is gzipped
    assert result["download"] == f"/api/v1/exports/{result['file']}"
    rows = parse_csv(read(path, gzipped))
    expected = expected_rows(app)
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected, strict=True):
        assert got["id"] == str(want["id"])
        assert got["name"] == want["name"]  # quotes, commas, newlines, backslashes, Unicode
        assert got["score"] == (want["score"] or "")  # NULL is an empty field in CSV
        assert got["note"] == (want["note"] or "")
    assert [name for name in os.listdir(settings.directory)] == [result["file"]]  # no part left


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
async def test_json_lines_of_a_registered_query_are_valid_json_with_every_value_intact(
    client: Conveyor,
    start_worker: Callable[..., Any],
    app: DB,
    people: str,
    settings: ExportSettings,
    gzipped: bool,
) -> None:
    result = await run_job(client, start_worker, {"export": people, "format": "jsonl", "gzip": gzipped})

    data = read(settings.directory / result["file"], gzipped)
    lines = data.decode("utf-8").split("\n")
    assert lines[-1] == ""  # every line ends with a newline, the last one too
    records = [json.loads(line) for line in lines[:-1]]
    assert result["rows"] == len(records) == len(AWKWARD)
    assert result["bytes"] == (settings.directory / result["file"]).stat().st_size
    for got, want in zip(records, expected_rows(app), strict=True):
        assert got["id"] == want["id"]
        assert got["name"] == want["name"]
        assert got["note"] == want["note"]  # None for NULL
        assert (None if got["score"] is None else str(got["score"])) == want["score"]


async def test_a_view_exported_by_name(
    client: Conveyor, start_worker: Callable[..., Any], app: DB, people: str, settings: ExportSettings
) -> None:
    result = await run_job(client, start_worker, {"relation": f"{app.schema}.people_view", "format": "jsonl"})

    assert result["file"].startswith(f"{app.schema}.people_view-")
    records = [json.loads(line) for line in (settings.directory / result["file"]).read_text().splitlines()]
    assert sorted(r["name"] for r in records) == sorted(AWKWARD)
    assert set(records[0]) == {"id", "name", "note"}


async def test_parameters_are_bound_and_a_filename_is_made_safe(
    client: Conveyor, start_worker: Callable[..., Any], app: DB, people: str, settings: ExportSettings
) -> None:
    hostile = "1; drop table people --"
    args = {"export": people, "params": {"from_id": 5}, "filename": "../../etc/passwd.csv"}
    result = await run_job(client, start_worker, args)
    assert result["file"] == "etc_passwd.csv"
    assert [r["id"] for r in parse_csv((settings.directory / "etc_passwd.csv").read_bytes())] == ["5", "6"]

    # A value is a value, never SQL: it fails as a bad integer (no retry mends that), and the
    # table stays.
    job_id = await client.enqueue(exports.EXPORT_TASK, {"export": people, "params": {"from_id": hostile}})
    async with start_worker(queues=[exports.QUEUE]):
        with pytest.raises(JobFailed, match=r"discarded: .*invalid input syntax for type integer"):
            await client.result(job_id, timeout=60)
    assert app.one("select count(*) from {schema}.people") == len(AWKWARD)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
async def test_a_query_ending_in_a_line_comment_exports(
    client: Conveyor, start_worker: Callable[..., Any], settings: ExportSettings, fmt: str
) -> None:
    # SQL as people write it in code, with a comment on its last line.
    exports.register_export(
        "commented",
        """
        SELECT n, n * 2 AS twice
        FROM generate_series(1, 3) n  -- three rows
        """,
    )
    result = await run_job(client, start_worker, {"export": "commented", "format": fmt})
    assert result["rows"] == 3
    data = (settings.directory / result["file"]).read_bytes()
    if fmt == "csv":
        assert [r["twice"] for r in parse_csv(data)] == ["2", "4", "6"]
    else:
        assert [json.loads(line)["twice"] for line in data.splitlines()] == [2, 4, 6]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({"export": "no-such-export"}, "no export is registered as 'no-such-export'"),
        ({}, "name either a registered export"),
        ({"relation": "pg_catalog.pg_authid"}, "may not be exported by name"),
        ({"relation": "x; drop table y"}, "is not a table or view name"),
        ({"relation": "no_such_table"}, "is not a table or view this worker's database user can see"),
        ({"PEOPLE": True, "params": {"nope": 1}}, "takes no parameter 'nope'"),
        ({"PEOPLE": True, "params": {"from_id": {"a": 1}}}, "the export's parameters cannot be sent"),
        ({"export": "broken-query"}, 'column "no_such_column" does not exist'),
    ],
)
async def test_bad_requests_are_discarded_with_a_reason(
    client: Conveyor,
    start_worker: Callable[..., Any],
    db: DB,
    people: str,
    settings: ExportSettings,
    args: dict[str, Any],
    reason: str,
) -> None:
    if args.pop("PEOPLE", False):
        args["export"] = people
    exports.register_export("broken-query", "SELECT no_such_column FROM generate_series(1, 3)")
    job_id = await client.enqueue(exports.EXPORT_TASK, args)
    async with start_worker(queues=[exports.QUEUE]):
        with pytest.raises(JobFailed, match="discarded") as failed:
            await client.result(job_id, timeout=60)
    assert reason in str(failed.value)
    assert db.one("select attempt from {schema}.dead_jobs where id = %s", [job_id]) == 1  # no retries
    assert not settings.directory.exists() or os.listdir(settings.directory) == []


async def test_conveyors_own_tables_are_never_exported_by_name(
    client: Conveyor, start_worker: Callable[..., Any], schema: str, settings: ExportSettings
) -> None:
    exports.configure(directory=settings.directory, relations=("*",))  # even when everything is allowed
    job_id = await client.enqueue(exports.EXPORT_TASK, {"relation": f"{schema}.api_keys"})
    async with start_worker(queues=[exports.QUEUE]):
        with pytest.raises(JobFailed, match="may not be exported by name"):
            await client.result(job_id, timeout=60)


async def test_progress_is_reported_while_rows_stream(
    database_url: str, schema: str, settings: ExportSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task itself on a real connection, with a progress sink that keeps every report."""
    name = f"series-{schema}"
    exports.register_export(name, "SELECT g AS id, repeat('x', 100) AS pad FROM generate_series(1, %(n)s) g")
    monkeypatch.setattr(exports, "PROGRESS_EVERY", 0.0)
    reports: list[tuple[int | None, str | None]] = []
    job = ClaimedJob(7, 1, exports.QUEUE, exports.EXPORT_TASK, {}, 1, 3, 2, None, None)  # type: ignore[arg-type]
    async with AsyncConnectionPool(database_url, kwargs={"autocommit": True}, open=False) as pool:
        ctx = JobContext(job, Registry(), lambda p, m: reports.append((p, m)), pool.connection, schema)
        result = await exports.export(ctx, export=name, params={"n": 50_000})

    assert result["rows"] == 50_000
    assert (settings.directory / result["file"]).stat().st_size == result["bytes"]
    during = reports[:-1]
    assert len(during) >= 3  # about a report per MiB flushed (5 MiB here)
    percents = [p for p, _ in during]
    assert percents == sorted(percents)
    assert all(p is not None and 0 < p < 100 for p in percents)
    assert all(m and "of about 50000 rows" in m for _, m in during)
    assert reports[-1] == (100, f"50000 rows, {result['bytes']} bytes")


async def test_expired_exports_and_abandoned_parts_are_deleted_and_a_rerun_deletes_nothing(
    client: Conveyor, start_worker: Callable[..., Any], people: str, settings: ExportSettings
) -> None:
    result = await run_job(client, start_worker, {"export": people, "format": "csv"})
    fresh = await run_job(client, start_worker, {"export": people, "format": "jsonl"})
    old, part, other = (
        settings.directory / result["file"],
        settings.directory / ".x.csv.1234.part",
        settings.directory / "notes.txt",
    )
    part.write_bytes(b"half")
    other.write_bytes(b"not an export")
    week_ago = time.time() - 8 * 86400
    for path in (old, part, other):
        os.utime(path, (week_ago, week_ago))

    async with start_worker(queues=[exports.QUEUE]):
        first = await client.result(await client.enqueue(exports.CLEANUP_TASK), timeout=60)
        again = await client.result(await client.enqueue(exports.CLEANUP_TASK), timeout=60)

    assert first == {"deleted": 2, "bytes": result["bytes"] + 4}
    assert again == {"deleted": 0, "bytes": 0}
    assert sorted(os.listdir(settings.directory)) == sorted([fresh["file"], "notes.txt"])


async def test_expired_exports_are_deleted_when_the_directory_is_reached_through_a_link(
    client: Conveyor, start_worker: Callable[..., Any], people: str, tmp_path: Path, app: DB
) -> None:
    # A common set-up: CONVEYOR_EXPORTS_DIR is a link to a volume. Exports are written and
    # served through it; the cleanup must delete through it too.
    volume = tmp_path / "volume"
    volume.mkdir()
    (tmp_path / "exports-link").symlink_to(volume, target_is_directory=True)
    exports.configure(directory=tmp_path / "exports-link", relations=(f"{app.schema}.*",))
    try:
        result = await run_job(client, start_worker, {"export": people, "format": "csv"})
        week_ago = time.time() - 8 * 86400
        os.utime(volume / result["file"], (week_ago, week_ago))
        async with start_worker(queues=[exports.QUEUE]):
            cleaned = await client.result(await client.enqueue(exports.CLEANUP_TASK), timeout=60)
    finally:
        exports.configure()
    assert cleaned == {"deleted": 1, "bytes": result["bytes"]}
    assert os.listdir(volume) == []


def test_register_export_refuses_what_it_cannot_run() -> None:
    with pytest.raises(InvalidOptionError, match="not allowed"):
        exports.register_export("bad name", "SELECT 1")
    with pytest.raises(InvalidOptionError, match="the query has no parameter extra"):
        exports.register_export("t-params", "SELECT %(a)s", params={"extra": 1})
    with pytest.raises(InvalidOptionError, match="use named parameters"):
        exports.register_export("t-positional", "SELECT %(a)s, %s")
    with pytest.raises(InvalidOptionError, match="write a literal % as %%"):  # else every job fails
        exports.register_export("t-percent", "SELECT %(a)s WHERE 'x' LIKE 'x%'")
    exports.register_export("t-percent-ok", "SELECT %(a)s WHERE 'x' LIKE 'x%%'")
    exports.register_export("t-same", "SELECT 1")
    exports.register_export("t-same", "SELECT 1")  # again, unchanged: fine
    with pytest.raises(InvalidOptionError, match="registered already"):
        exports.register_export("t-same", "SELECT 2")


def test_the_cleanup_schedule_runs_hourly_by_default() -> None:
    target = Registry()
    spec = exports.schedule_export_cleanup(registry=target)
    assert (spec.name, spec.cron, spec.task, dict(spec.args)) == (
        "exports:delete-expired",
        "0 * * * *",
        exports.CLEANUP_TASK,
        {},
    )
    assert target.schedules() == [spec]
