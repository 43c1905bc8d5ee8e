"""Downloading exports over HTTP: a file a real worker exported is served to admin and viewer
keys alike, byte for byte, with its media type and as an attachment; no key is a 401; names
that are not an export file's, links and directories are 404s that reveal nothing; an
expired file is no longer served and is gone once the cleanup task ran."""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor import Conveyor, Registry
from conveyor.contrib import exports
from conveyor.contrib.export_files import ExportSettings
from conveyor.tasks import default_registry

from ...helpers import DB
from .support import Keys, bearer, problem


@pytest.fixture
def settings(tmp_path: Path, database_url: str, schema: str) -> Iterator[ExportSettings]:
    app = DB(database_url, f"{schema}_app")
    app.all("create schema {schema}")
    app.all(
        "create table {schema}.items as select g as id, 'item ' || g as name from generate_series(1, 500) g"
    )
    configured = exports.configure(directory=tmp_path / "exports", relations=(f"{app.schema}.items",))
    yield configured
    exports.configure()
    app.all("drop schema {schema} cascade")


@pytest.fixture
def export_tasks(registry: Registry) -> None:
    for name in (exports.EXPORT_TASK, exports.CLEANUP_TASK):
        task = default_registry.get(name)
        assert task is not None
        registry.add(task)


async def exported(
    client: Conveyor, start_worker: Callable[..., Any], schema: str, **args: Any
) -> dict[str, Any]:
    job_id = await client.enqueue(exports.EXPORT_TASK, {"relation": f"{schema}_app.items", **args})
    async with start_worker(queues=[exports.QUEUE]):
        result: dict[str, Any] = await client.result(job_id, timeout=60)
    return result


@pytest.mark.usefixtures("export_tasks")
async def test_admin_and_viewer_keys_download_the_file_as_it_was_exported(
    client: Conveyor,
    start_worker: Callable[..., Any],
    schema: str,
    settings: ExportSettings,
    api_url: str,
    keys: Keys,
) -> None:
    csv_result = await exported(client, start_worker, schema, format="csv")
    gz_result = await exported(client, start_worker, schema, format="jsonl", gzip=True)
    on_disk = (settings.directory / csv_result["file"]).read_bytes()

    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        for role in ("admin", "viewer"):
            response = await http.get(csv_result["download"], headers=bearer(keys[role]))
            assert response.status_code == 200, response.text
            assert response.content == on_disk
            assert response.headers["content-type"] == "text/csv; charset=utf-8"
            assert response.headers["content-disposition"] == f'attachment; filename="{csv_result["file"]}"'
            assert response.headers["content-length"] == str(csv_result["bytes"])
            assert response.headers["cache-control"] == "no-store"

        response = await http.get(gz_result["download"], headers=bearer(keys.viewer))
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/gzip"
        lines = gzip.decompress(response.content).decode().splitlines()
        assert len(lines) == gz_result["rows"] == 500

        # A download resumes: a range of the file.
        response = await http.get(
            csv_result["download"], headers={**bearer(keys.viewer), "Range": "bytes=10-19"}
        )
        assert response.status_code == 206
        assert response.content == on_disk[10:20]
        head = await http.head(csv_result["download"], headers=bearer(keys.viewer))
        assert head.status_code == 200
        assert head.headers["content-length"] == str(len(on_disk))
        assert head.content == b""

        listing = (await http.get("/api/v1/exports", headers=bearer(keys.viewer))).json()["exports"]
        assert {e["file"] for e in listing} == {csv_result["file"], gz_result["file"]}
        assert {e["bytes"] for e in listing} == {csv_result["bytes"], gz_result["bytes"]}

        problem(await http.get(csv_result["download"]), 401, "unauthenticated")
        problem(await http.get(csv_result["download"], headers=bearer(keys.revoked)), 401, "unauthenticated")


@pytest.mark.parametrize(
    "name",
    [
        "..",
        "...csv",
        ".hidden.csv",
        "passwd",
        "notes.txt",
        "x.csv%00.txt",
        "%2E%2E%2Fsecret.csv",
        "..%2Fsecret.csv",
        "%2Fetc%2Fpasswd.csv",
        "link.csv",
        "folder.csv",
    ],
)
def test_names_that_are_not_export_files_are_refused_and_reveal_nothing(
    name: str, settings: ExportSettings, api_url: str, keys: Keys, tmp_path: Path
) -> None:
    settings.directory.mkdir(parents=True, exist_ok=True)
    secret = tmp_path / "secret.csv"
    secret.write_text("secret,data\n")
    (settings.directory / "link.csv").symlink_to(secret)
    (settings.directory / "folder.csv").mkdir()
    (settings.directory / ".hidden.csv").write_text("hidden\n")
    (settings.directory / "notes.txt").write_text("notes\n")

    response = httpx.get(f"{api_url}/api/v1/exports/{name}", headers=bearer(keys.admin), timeout=30)
    if "%00" in name:  # the API refuses NUL in any path parameter, before the endpoint
        problem(response, 422, "validation")
    else:
        body = problem(response, 404)
        assert body["type"] in ("urn:conveyor:problem:not-found", "urn:conveyor:problem:no-such-endpoint")
    assert b"secret" not in response.content.replace(b"secret.csv", b"")
    assert b"hidden\n" not in response.content


@pytest.mark.usefixtures("export_tasks")
async def test_an_expired_export_is_not_served_and_the_cleanup_deletes_it(
    client: Conveyor,
    start_worker: Callable[..., Any],
    schema: str,
    settings: ExportSettings,
    api_url: str,
    keys: Keys,
) -> None:
    old = await exported(client, start_worker, schema, format="csv", filename="old")
    new = await exported(client, start_worker, schema, format="csv", filename="new")
    past = time.time() - settings.retention.total_seconds() - 60
    os.utime(settings.directory / old["file"], (past, past))

    async with httpx.AsyncClient(base_url=api_url, headers=bearer(keys.viewer), timeout=30) as http:
        body = problem(await http.get(old["download"]), 404, "not-found")
        assert "expired" in body["detail"]
        assert (settings.directory / old["file"]).exists()  # not served, not yet deleted
        listing = (await http.get("/api/v1/exports")).json()["exports"]
        assert [e["file"] for e in listing] == [new["file"]]

        async with start_worker(queues=[exports.QUEUE]):
            cleaned = await client.result(await client.enqueue(exports.CLEANUP_TASK), timeout=60)
        assert cleaned == {"deleted": 1, "bytes": old["bytes"]}
        assert not (settings.directory / old["file"]).exists()
        problem(await http.get(old["download"]), 404, "not-found")
        assert (await http.get(new["download"])).status_code == 200
