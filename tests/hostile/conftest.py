"""The hostile tests of the HTTP API and the dashboard use the API tests' fixtures: a server
on a free port, keys of each role (and a revoked one), an httpx client."""

from __future__ import annotations

from ..e2e.api.conftest import api_url, http, keys, serve  # noqa: F401 - fixtures shared
