"""`conveyor api` (one process and --workers 2) and `conveyor dev` serving the API, as real
processes: they print where they listen, serve with API keys, and stop cleanly on a signal."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from ...helpers import REPO, subprocess_env, wait_until_sync
from .support import Keys, bearer

pytestmark = pytest.mark.processes

LISTENING = re.compile(r"(http://[0-9.]+:[0-9]+)/api/v1")


class Running:
    def __init__(self, popen: subprocess.Popen[bytes], out: Path, err: Path) -> None:
        self.popen = popen
        self.out = out
        self.err = err

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def __str__(self) -> str:
        return f"exit {self.popen.poll()}\n--- stdout\n{self.stdout()}\n--- stderr\n{self.stderr()}"

    def url(self) -> str:
        wait_until_sync(
            lambda: self.popen.poll() is not None or LISTENING.search(self.stdout()) is not None, within=60
        )
        found = LISTENING.search(self.stdout())
        assert found, str(self)
        return found[1]

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.popen.send_signal(signum)
        return self.popen.wait(timeout=60)


@contextmanager
def conveyor(*args: str, env: dict[str, str], folder: Path) -> Iterator[Running]:
    name = args[0]
    out, err = folder / f"{name}.stdout", folder / f"{name}.stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        popen = subprocess.Popen(
            [sys.executable, "-m", "conveyor", *args], cwd=REPO, env=env, stdout=stdout, stderr=stderr
        )
    running = Running(popen, out, err)
    try:
        yield running
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait(timeout=10)


@pytest.fixture
def env(database_url: str, schema: str) -> dict[str, str]:
    return subprocess_env(database_url, schema, PYTHONUNBUFFERED="1")


def serving(url: str) -> bool:
    """Whether the API at ``url`` answers (its document) yet."""
    try:
        return httpx.get(url + "/api/v1/openapi.json", timeout=10).status_code == 200
    except httpx.TransportError:
        return False


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.parametrize("workers", [1, 2])
def test_conveyor_api_serves_until_a_signal(
    env: dict[str, str], keys: Keys, tmp_path: Path, workers: int
) -> None:
    args = [
        "api",
        "--port",
        "0",
        "--tasks",
        "tests.e2e.api_tasks",
        "--workers",
        str(workers),
        "--no-access-log",
    ]
    with conveyor(*args, env=env, folder=tmp_path) as api:
        url = api.url()
        with httpx.Client(base_url=url, headers=bearer(keys.operator), timeout=30) as http:

            def serving() -> bool:
                try:
                    return http.get("/api/v1/queues").status_code == 200
                except httpx.TransportError:
                    return False

            wait_until_sync(serving, within=60)
            response = http.post("/api/v1/jobs", json={"task": "api_add", "args": {"a": 1, "b": 2}})
            assert response.status_code == 201, response.text
            # The API process imported the task modules: arguments are checked against them.
            refused = http.post("/api/v1/jobs", json={"task": "api_add", "args": {"a": "x", "b": 2}})
            assert refused.status_code == 422, refused.text
            if workers > 1:
                wait_until_sync(lambda: len(children(api.popen.pid)) >= workers, within=30)
        assert api.stop() == 0, str(api)
    assert "Traceback" not in api.stderr(), str(api)


def test_conveyor_api_says_when_its_port_is_taken_or_the_schema_is_missing(
    env: dict[str, str], tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run(
            [sys.executable, "-m", "conveyor", "api", "--port", str(port)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert run.returncode == 1, run
    assert f"cannot listen on 127.0.0.1:{port}" in run.stderr, run.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "conveyor", "api", "--port", "0"],
        cwd=REPO,
        env={**env, "CONVEYOR_SCHEMA": "not_installed_here"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1, missing
    assert "conveyor migrate" in missing.stderr, missing.stderr


def test_conveyor_dev_serves_the_api_with_its_printed_key(env: dict[str, str], tmp_path: Path) -> None:
    args = [
        "dev",
        "--tasks",
        "tests.e2e.api_tasks",
        "--api-port",
        "0",
        "--poll-interval",
        "0.2",
        "--grace",
        "5",
    ]
    with conveyor(*args, env=env, folder=tmp_path) as dev:
        url = dev.url()
        wait_until_sync(lambda: dev.popen.poll() is not None or "Ctrl-C to stop" in dev.stdout(), within=60)
        token = re.search(r"Authorization: Bearer (cvk_\S+)'", dev.stdout())
        assert token, str(dev)
        with httpx.Client(base_url=url, headers=bearer(token[1]), timeout=30) as http:
            wait_until_sync(lambda: " serving " in dev.stderr(), within=60)  # its worker is up
            job = http.post("/api/v1/jobs", json={"task": "api_add", "args": {"a": 20, "b": 22}})
            assert job.status_code == 201, job.text
            result = http.get(f"/api/v1/jobs/{job.json()['id']}/result", params={"timeout": 20})
            assert result.json()["result"] == 42, result.text
        assert dev.stop(signal.SIGINT) == 0, str(dev)
    assert "Traceback" not in dev.stderr(), str(dev)
