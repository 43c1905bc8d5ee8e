"""Producers that enqueue continuously while PostgreSQL restarts: one straight into the
database (the Python client), one through the HTTP API. Each keeps the ids whose enqueue was
acknowledged (every one must complete) and counts the refusals by their error."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import Counter
from contextlib import AbstractContextManager
from typing import Any

import httpx

from conveyor import SyncConveyor


class Enqueuer(ABC):
    """Enqueues ``touch`` every ``interval`` seconds in a thread until stopped."""

    def __init__(self, name: str, interval: float) -> None:
        self.name = name
        self.interval = interval
        self.acknowledged: list[int] = []
        self.failures: Counter[str] = Counter()
        self.unclear: list[str] = []  # failures that do not say the database is unavailable
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"enqueuer-{name}", daemon=True)
        self._n = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), f"the {self.name} enqueuer is stuck"

    def _run(self) -> None:
        with self.session():
            while not self._stopping.wait(self.interval):
                self._n += 1
                self.enqueue_one(self._n)

    @abstractmethod
    def session(self) -> AbstractContextManager[Any]:
        """What the enqueues of one run share (a client, a connection), opened and closed."""

    @abstractmethod
    def enqueue_one(self, n: int) -> None:
        """Enqueue the run's n-th job; count what it gave."""


class DirectEnqueuer(Enqueuer):
    """Through the sync Python client, on its own connection pool."""

    def __init__(self, url: str, schema: str, interval: float) -> None:
        super().__init__("direct", interval)
        self.client = SyncConveyor(url, schema=schema)

    def session(self) -> SyncConveyor:
        return self.client

    def enqueue_one(self, n: int) -> None:
        try:
            self.acknowledged.append(self.client.enqueue("touch", {"n": n}, queue="chaos"))
        except Exception as exc:
            kind = type(exc).__name__
            self.failures[kind] += 1
            import psycopg
            import psycopg_pool

            if not isinstance(exc, psycopg.OperationalError | psycopg_pool.PoolTimeout):
                self.unclear.append(f"{kind}: {exc}")


class HttpEnqueuer(Enqueuer):
    """POST /api/v1/jobs on the API."""

    def __init__(self, api_url: str, token: str, interval: float) -> None:
        super().__init__("http", interval)
        self.http = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def session(self) -> httpx.Client:
        return self.http

    def enqueue_one(self, n: int) -> None:
        try:
            response = self.http.post("/api/v1/jobs", json={"task": "touch", "args": {"n": n}})
        except httpx.TransportError as exc:
            # The API process stays up through a restart: it must answer, not drop the request.
            self.failures[type(exc).__name__] += 1
            self.unclear.append(f"{type(exc).__name__}: {exc}")
            return
        if response.status_code == 201:
            self.acknowledged.append(int(response.json()["id"]))
            return
        problem = (
            response.json()
            if response.headers.get("content-type", "").startswith("application/problem+json")
            else {}
        )
        kind = f"{response.status_code} {problem.get('type', response.text[:80])}"
        self.failures[kind] += 1
        if kind != "503 urn:conveyor:problem:database-unavailable":
            self.unclear.append(f"{kind}: {problem.get('detail', response.text[:300])}")
