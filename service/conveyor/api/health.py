"""``GET /health``: is Conveyor working (``conveyor.ops.health`` says how it is judged).

JSON with ``status`` ``ok``, ``degraded`` or ``down`` and the reasons; HTTP 200 for ok and
degraded (the service works; restarting it would mend nothing), 503 for down (the database
cannot be reached, or Conveyor is not installed in it). No authentication: orchestrators
and load balancers probe it. It names no URL, host, user or password. A burst of probes
costs one check (reused for a second), made on a connection of its own with a 2 s deadline.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..ops.health import DOWN, probe_for


async def health(request: Request) -> Response:
    """``GET /health``; needs a :class:`~conveyor.Conveyor` client on ``app.state.conveyor``."""
    client = getattr(request.app.state, "conveyor", None)
    if client is None:  # the application was put together without one: say so, as down
        return JSONResponse(
            {"status": DOWN, "reasons": ["this service has no Conveyor client (app.state.conveyor)"]},
            status_code=503,
            headers={"Cache-Control": "no-store"},
        )
    report = await probe_for(client).report(client)
    return JSONResponse(
        report.to_json(), status_code=report.http_status, headers={"Cache-Control": "no-store"}
    )
