"""conveyor.contrib.housekeeping run by a real worker: old rows deleted in batches and new
ones kept, a re-run deleting nothing; old files deleted, new ones, directories and links left;
what the settings do not allow is discarded with a clear reason."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor, InvalidOptionError, Registry
from conveyor.contrib import housekeeping
from conveyor.contrib.old_files import Deleted, sweep
from conveyor.errors import JobFailed
from conveyor.tasks import default_registry

from ..helpers import DB

DAY = 86400.0


@pytest.fixture(autouse=True)
def housekeeping_tasks(registry: Registry) -> None:
    for name in (housekeeping.DELETE_ROWS_TASK, housekeeping.DELETE_FILES_TASK):
        task = default_registry.get(name)
        assert task is not None
        registry.add(task)


@pytest.fixture
def app(database_url: str, schema: str) -> Iterator[DB]:
    app_db = DB(database_url, f"{schema}_app")
    app_db.all("create schema {schema}")
    yield app_db
    app_db.all("drop schema {schema} cascade")


@pytest.fixture
def files(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "allowed"
    root.mkdir()
    housekeeping.configure(directories=(root,), tables=())
    yield root
    housekeeping.configure()


async def run(client: Conveyor, start_worker: Callable[..., Any], task: str, args: dict[str, Any]) -> Any:
    job_id = await client.enqueue(task, args)
    async with start_worker(queues=[housekeeping.QUEUE]):
        return await client.result(job_id, timeout=60)


def make_events(app: DB, *, old: int, new: int) -> None:
    """``old`` events 100 days old (one a minute), ``new`` from the last days; and a dated log."""
    app.all("create table {schema}.events (id bigserial primary key, at timestamptz not null, body text)")
    app.all(
        "insert into {schema}.events (at, body) select now() - interval '100 days' - g * interval '1 minute',"
        " 'old' from generate_series(1, %s) g",
        [old],
    )
    app.all(
        "insert into {schema}.events (at, body) select now() - g * interval '1 hour', 'new'"
        " from generate_series(1, %s) g",
        [new],
    )


async def test_old_rows_go_in_batches_new_ones_stay_and_a_rerun_deletes_nothing(
    client: Conveyor, start_worker: Callable[..., Any], app: DB
) -> None:
    make_events(app, old=2_500, new=300)
    housekeeping.configure(tables=(f"{app.schema}.events",))
    try:
        args = {"table": f"{app.schema}.events", "column": "at", "older_than": "90d", "batch_size": 1000}
        first = await run(client, start_worker, housekeeping.DELETE_ROWS_TASK, args)
        again = await run(client, start_worker, housekeeping.DELETE_ROWS_TASK, args)
    finally:
        housekeeping.configure()

    assert first["deleted"] == 2_500
    assert first["batches"] == 3  # 1000, 1000, 500
    assert again["deleted"] == 0
    assert again["batches"] == 1
    assert app.all("select body, count(*) from {schema}.events group by body") == [("new", 300)]


async def test_rows_of_a_partitioned_table_and_a_date_column(
    client: Conveyor, start_worker: Callable[..., Any], app: DB
) -> None:
    app.all("create table {schema}.log (day date not null, n int) partition by range (day)")
    app.all(
        "create table {schema}.log_old partition of {schema}.log for values from ('2000-01-01') to ('2025-01-01')"
    )
    app.all(
        "create table {schema}.log_new partition of {schema}.log for values from ('2025-01-01') to ('2100-01-01')"
    )
    app.all("insert into {schema}.log select date '2020-01-01' + g, g from generate_series(1, 700) g")
    app.all("insert into {schema}.log select current_date - (g % 20), g from generate_series(1, 300) g")
    housekeeping.configure(tables=(f"{app.schema}.*",))
    try:
        args = {"table": f"{app.schema}.log", "column": "day", "older_than": "30d", "batch_size": 100}
        result = await run(client, start_worker, housekeeping.DELETE_ROWS_TASK, args)
    finally:
        housekeeping.configure()
    assert result["deleted"] == 700
    assert result["batches"] >= 7
    assert app.one("select count(*) from {schema}.log") == 300
    assert app.one("select min(day) >= current_date - 30 from {schema}.log") is True


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (
            {"table": "ALLOWED", "column": "at", "older_than": "soon"},
            "older_than: duration 'soon' is not valid",
        ),
        ({"table": "ALLOWED", "column": "at", "older_than": "0d"}, "older_than must be more than nothing"),
        (  # a valid duration, but past the database's earliest time
            {"table": "ALLOWED", "column": "at", "older_than": "100000000w"},
            "older_than: '100000000w' reaches before the earliest time the database knows",
        ),
        ({"table": "ALLOWED", "column": "body", "older_than": "1d"}, "is text, not a date or timestamp"),
        ({"table": "ALLOWED", "column": "nope", "older_than": "1d"}, "has no column 'nope'"),
        ({"table": "ALLOWED", "column": "at; drop", "older_than": "1d"}, "is not a column name"),
        ({"table": "x; drop table y", "column": "at", "older_than": "1d"}, "is not a table name"),
        (
            {"table": "OTHER", "column": "at", "older_than": "1d"},
            "is not a table housekeeping may delete from",
        ),
        ({"table": "CONVEYOR", "column": "enqueued_at", "older_than": "1d"}, "is not a table housekeeping"),
        (
            {"table": "ALLOWED", "column": "at", "older_than": "1d", "batch_size": 0},
            "batch_size must be from 1",
        ),
    ],
)
async def test_rows_outside_what_is_allowed_are_refused_with_a_reason(
    client: Conveyor,
    start_worker: Callable[..., Any],
    app: DB,
    schema: str,
    db: DB,
    args: dict[str, Any],
    reason: str,
) -> None:
    make_events(app, old=10, new=10)
    app.all("create table {schema}.other (at timestamptz)")
    names = {"ALLOWED": f"{app.schema}.events", "OTHER": f"{app.schema}.other", "CONVEYOR": f"{schema}.jobs"}
    args = {**args, "table": names.get(args["table"], args["table"])}
    housekeeping.configure(tables=(f"{app.schema}.events", f"{schema}.*"))
    try:
        job_id = await client.enqueue(housekeeping.DELETE_ROWS_TASK, args)
        async with start_worker(queues=[housekeeping.QUEUE]):
            with pytest.raises(JobFailed, match="discarded") as failed:
                await client.result(job_id, timeout=60)
    finally:
        housekeeping.configure()
    assert reason in str(failed.value)
    assert db.one("select attempt from {schema}.dead_jobs where id = %s", [job_id]) == 1
    assert app.one("select count(*) from {schema}.events") == 20


def aged(path: Path, days: float, content: bytes = b"x") -> Path:
    path.write_bytes(content)
    moment = time.time() - days * DAY
    os.utime(path, (moment, moment))
    return path


async def test_old_files_go_new_ones_stay_and_links_and_directories_are_left_alone(
    client: Conveyor, start_worker: Callable[..., Any], files: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    precious = aged(outside / "precious.log", 30)
    aged(files / "old.log", 10, b"12345")
    aged(files / "old.txt", 10)
    aged(files / "new.log", 1)
    (files / "link.log").symlink_to(precious)  # an old target: neither followed nor deleted
    (files / "linked-dir").symlink_to(outside, target_is_directory=True)
    sub = files / "sub"
    sub.mkdir()
    aged(sub / "deep.log", 10, b"123")
    os.utime(sub, (time.time() - 10 * DAY,) * 2)  # an old directory stays a directory

    args = {"directory": str(files), "older_than": "7d", "pattern": "*.log"}
    resolved = str(files.resolve())  # noqa: ASYNC240 - set-up, before any job runs
    flat = await run(client, start_worker, housekeeping.DELETE_FILES_TASK, args)
    assert flat["deleted"] == 1
    assert flat["bytes"] == 5
    assert sorted(os.listdir(files)) == ["link.log", "linked-dir", "new.log", "old.txt", "sub"]

    deep = await run(client, start_worker, housekeeping.DELETE_FILES_TASK, {**args, "recursive": True})
    assert deep == {"deleted": 1, "bytes": 3, "directory": resolved}
    assert sub.is_dir()
    assert os.listdir(sub) == []
    assert precious.exists()
    assert (files / "link.log").is_symlink()

    again = await run(client, start_worker, housekeeping.DELETE_FILES_TASK, {**args, "recursive": True})
    assert again["deleted"] == 0


async def test_a_tree_deeper_than_pythons_recursion_limit_is_swept_to_its_bottom(
    client: Conveyor, start_worker: Callable[..., Any], files: Path
) -> None:
    # Whoever can write the directory can nest it this deep; the walk must not crash on it.
    aged(files / "top.log", 10)
    fd = os.open(files, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(1200):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            fd, child = child, fd
            os.close(child)
        os.close(os.open("bottom.log", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
        os.utime("bottom.log", (0, 0), dir_fd=fd)
        os.close(fd)

        args = {"directory": str(files), "older_than": "1d", "recursive": True}
        result = await run(client, start_worker, housekeeping.DELETE_FILES_TASK, args)
        assert result["deleted"] == 2
        assert os.listdir(files) == ["d"]
    finally:
        flatten(files / "d")  # pytest's own clean-up of tmp_path recurses, and would fail on it


def flatten(top: Path) -> None:
    """Remove a chain of nested ``d`` directories one level at a time, without recursion."""
    spare = top.with_name("spare")
    if not top.exists():
        return
    while (top / "d").exists():
        (top / "d").rename(spare)
        for leftover in top.iterdir():
            leftover.unlink()
        top.rmdir()
        spare.rename(top)
    for leftover in top.iterdir():
        leftover.unlink()
    top.rmdir()


def test_a_directory_moved_out_while_it_is_walked_does_not_lead_the_walk_outside(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    for top in (root, outside):
        for name in ("a", "m"):
            (top / name / "deep").mkdir(parents=True)
            aged(top / name / "deep" / "old.log", 10)
    moved: list[str] = []

    def move_the_branch_being_walked(done: Deleted) -> None:
        if not moved:  # the first deletion: move its branch out of the root, mid-walk
            walked = next(n for n in ("a", "m") if not (root / n / "deep" / "old.log").exists())
            (root / walked).rename(outside / "moved")
            moved.append(walked)

    done = sweep(
        root, time.time(), matches=lambda _: True, recursive=True, on_file=move_the_branch_being_walked
    )
    assert done.files == 1  # the walk stopped where ".." no longer led back into the root
    for name in ("a", "m"):
        assert (outside / name / "deep" / "old.log").exists()


async def test_two_runs_at_once_delete_each_file_once_and_neither_fails(
    client: Conveyor, start_worker: Callable[..., Any], files: Path
) -> None:
    for number in range(400):
        aged(files / f"f{number}.tmp", 10, b"ab")
    args = {"directory": str(files), "older_than": "1d"}
    ids = [await client.enqueue(housekeeping.DELETE_FILES_TASK, args) for _ in range(2)]
    async with start_worker(queues=[housekeeping.QUEUE], concurrency=2):
        results = await asyncio.gather(*(client.result(job_id, timeout=60) for job_id in ids))
    assert sum(r["deleted"] for r in results) == 400
    assert sum(r["bytes"] for r in results) == 800
    assert os.listdir(files) == []


@pytest.mark.parametrize("where", ["OUTSIDE", "ESCAPE", "LINK"])
async def test_a_directory_outside_the_allowed_roots_is_refused(
    client: Conveyor, start_worker: Callable[..., Any], files: Path, tmp_path: Path, db: DB, where: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = aged(outside / "victim.log", 30)
    (files / "to-outside").symlink_to(outside, target_is_directory=True)
    directory = {
        "OUTSIDE": str(outside),
        "ESCAPE": str(files / ".." / "outside"),
        "LINK": str(files / "to-outside"),  # inside by name, outside once resolved
    }[where]
    job_id = await client.enqueue(
        housekeeping.DELETE_FILES_TASK, {"directory": directory, "older_than": "1d"}
    )
    async with start_worker(queues=[housekeeping.QUEUE]):
        with pytest.raises(JobFailed, match="is outside the directories housekeeping may clean"):
            await client.result(job_id, timeout=60)
    assert db.one("select attempt from {schema}.dead_jobs where id = %s", [job_id]) == 1
    assert victim.exists()


async def test_with_no_roots_configured_every_directory_is_refused(
    client: Conveyor, start_worker: Callable[..., Any], tmp_path: Path
) -> None:
    housekeeping.configure(directories=())
    try:
        job_id = await client.enqueue(
            housekeeping.DELETE_FILES_TASK, {"directory": str(tmp_path), "older_than": "1d"}
        )
        async with start_worker(queues=[housekeeping.QUEUE]):
            with pytest.raises(JobFailed, match="none are set"):
                await client.result(job_id, timeout=60)
    finally:
        housekeeping.configure()


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CONVEYOR_HOUSEKEEPING_DIRS", f"{tmp_path}/a:{tmp_path}/b")
    monkeypatch.setenv("CONVEYOR_HOUSEKEEPING_TABLES", "logs.*, public.events")
    monkeypatch.setenv("CONVEYOR_HOUSEKEEPING_BATCH_TIMEOUT", "2m")
    settings = housekeeping.HousekeepingSettings.from_env()
    assert settings.directories == (tmp_path / "a", tmp_path / "b")
    assert settings.allows_table("logs", "anything")
    assert settings.allows_table("public", "events")
    assert not settings.allows_table("public", "users")
    assert settings.batch_timeout == 120
    assert settings.root_of((tmp_path / "b" / "x").resolve()) == (tmp_path / "b").resolve()
    assert settings.root_of((tmp_path / "c").resolve()) is None


def test_schedule_helpers_check_the_age_and_make_valid_names() -> None:
    target = Registry()
    rows = housekeeping.schedule_delete_old_rows("public.events", "at", "90d", "0 3 * * *", registry=target)
    files = housekeeping.schedule_delete_old_files("/var/tmp/app", "7d", "0 * * * *", registry=target)
    assert rows.name == "delete-old-rows:public.events"
    assert files.name == "delete-old-files:var_tmp_app"
    assert files.args == {"directory": "/var/tmp/app", "older_than": "7d", "pattern": "*", "recursive": False}
    with pytest.raises(InvalidOptionError, match="older_than must be more than nothing"):
        housekeeping.schedule_delete_old_rows("t", "at", "0s", "0 3 * * *", registry=target)
