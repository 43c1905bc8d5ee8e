"""A minimal Starlette app serving /health and /metrics, run by uvicorn on a free port in a
thread of the test process (its own event loop), as the Conveyor service's app factory
would serve them; and a `conveyor worker` process to run jobs."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Route

from conveyor import Conveyor
from conveyor.api.health import health
from conveyor.api.metrics import metrics
from conveyor.ops.health import probe_for
from conveyor.ops.metrics import reader_for

from ..helpers import REPO, free_port, subprocess_env, wait_until_sync


def make_app(
    database_url: str,
    schema: str,
    configure: Callable[[Conveyor], None] | None = None,
    reuse: float | None = 0.0,
) -> Starlette:
    """``reuse``: how long a /health or /metrics read is served again (None: the default of a
    second; 0 by default here, so that every request reads anew)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not database_url:  # an application put together without a client
            yield
            return
        async with Conveyor(database_url, schema=schema) as client:
            app.state.conveyor = client
            if reuse is not None:
                probe_for(client).reuse = reader_for(client).reuse = reuse
            if configure is not None:
                configure(client)
            yield

    return Starlette(routes=[Route("/health", health), Route("/metrics", metrics)], lifespan=lifespan)


class Service:
    """``with Service(url, schema) as service:`` then ``service.base`` is its address."""

    def __init__(
        self,
        database_url: str,
        schema: str,
        configure: Callable[[Conveyor], None] | None = None,
        *,
        reuse: float | None = 0.0,
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            make_app(database_url, schema, configure, reuse),
            host="127.0.0.1",
            port=self.port,
            loop="asyncio",
            lifespan="on",
            log_level="warning",
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> Service:
        self._thread.start()
        wait_until_sync(lambda: self.server.started or not self._thread.is_alive(), within=20)
        assert self.server.started, "uvicorn did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(20)
        assert not self._thread.is_alive(), "uvicorn did not stop"


def start_worker(database_url: str, schema: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", "worker", "--tasks", "tests.e2e.metrics_tasks", *args],
        cwd=REPO,
        env=subprocess_env(database_url, schema),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop_worker(process: subprocess.Popen[str]) -> str:
    """SIGTERM (a clean stop: the worker forgets its row) and its output."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output[-3000:]
    return output


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Samples:
    """Every sample by (name, sorted labels), through prometheus-client's own parser."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in samples, f"{key} twice"
            samples[key] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: Any) -> float:
    return samples[(name, tuple(sorted((k, str(v)) for k, v in labels.items())))]
