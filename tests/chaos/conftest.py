"""Fixtures of the chaos tests: a PostgreSQL server of their own that they may restart, and a
proxy in front of the test server that can freeze its links."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..helpers import FreezingProxy
from .cluster import Cluster, fresh_schema, own_cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with own_cluster() as started:
        yield started


@pytest.fixture
def restart_schema(cluster: Cluster, request: pytest.FixtureRequest) -> str:
    return fresh_schema(cluster.url, f"r_{abs(hash(request.node.nodeid)) % 10**10}")


@pytest.fixture
def proxy(database_url: str) -> Iterator[FreezingProxy]:
    link = FreezingProxy(database_url)
    try:
        yield link
    finally:
        link.thaw()
        link.close()
