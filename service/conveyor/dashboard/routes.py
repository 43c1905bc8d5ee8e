"""The dashboard's route table: its pages, its actions (POST) and its static files.

Every page and action answers a failure that is not the asker's with an error page: 503 when
the database cannot answer now (unreachable, or a statement over its timeout), 500 otherwise,
each logged once with an id the page shows and counted as the API's problems are
(``conveyor_api_problems_total``), and the connection kept (an exception let through would
make the server close it)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..api.auth import Authenticator
from ..api.problems import COUNTS, unexpected
from .base import GetClient
from .dead_pages import DeadPages
from .exports_pages import ExportsPages
from .jobs_pages import JobsPages
from .jobs_view import redact_fields_from_env
from .pages import Dashboard
from .queue_pages import QueuePages
from .render import page
from .schedules_pages import schedule_routes
from .workers_pages import WorkersPages

STATIC = Path(__file__).parent / "static"


def routes(
    get_client: GetClient, authenticator: Authenticator, *, redact: frozenset[str] | None = None
) -> list[BaseRoute]:
    """The dashboard's routes, sharing the API's client and Authenticator (so its key cache
    and failed-attempt limit). ``redact``: the field names hidden in a job's arguments and
    result (default: CONVEYOR_DASHBOARD_REDACT's, see ``jobs_view``)."""
    dashboard = Dashboard(get_client, authenticator)
    dead = DeadPages(get_client, authenticator)
    workers = WorkersPages(get_client, authenticator)
    queue_pages = QueuePages(get_client, authenticator)
    redact_fields = redact_fields_from_env() if redact is None else redact
    jobs = JobsPages(get_client, authenticator, redact=redact_fields)
    exports = ExportsPages(get_client, authenticator)
    table: list[BaseRoute] = [
        _get("/", dashboard.overview, "dashboard_overview"),
        _get("/login", dashboard.login_form, "dashboard_login"),
        _post("/login", dashboard.login, "dashboard_login_post"),
        _post("/logout", dashboard.logout, "dashboard_logout"),
        _get("/dashboard/queues", dashboard.queues_fragment, "dashboard_queues"),
        _post("/dashboard/queues/{queue}/pause", dashboard.pause_queue, "dashboard_pause_queue"),
        _post("/dashboard/queues/{queue}/resume", dashboard.resume_queue, "dashboard_resume_queue"),
        # Dead letters and workers (dead_pages, workers_pages).
        _get("/dashboard/dead", dead.dead, "dashboard_dead"),
        _get("/dashboard/dead/confirm", dead.confirm, "dashboard_dead_confirm"),
        _post("/dashboard/dead/retry", dead.retry, "dashboard_dead_retry"),
        _post("/dashboard/dead/purge", dead.purge, "dashboard_dead_purge"),
        _get("/dashboard/dead/{job_id:int}/errors", dead.errors_fragment, "dashboard_dead_errors"),
        _post("/dashboard/dead/{job_id:int}/retry", dead.retry_one, "dashboard_dead_retry_one"),
        _get("/dashboard/workers", workers.workers, "dashboard_workers"),
        _get("/dashboard/workers/live", workers.workers_fragment, "dashboard_workers_live"),
        *schedule_routes(get_client, authenticator, redact=redact_fields),
        # The queue page and the throughput chart (queue_pages).
        _get("/dashboard/queues/{queue}", queue_pages.queue_page, "dashboard_queue"),
        _get("/dashboard/queues/{queue}/live", queue_pages.queue_live, "dashboard_queue_live"),
        _post("/dashboard/queues/{queue}/limits", queue_pages.set_limits, "dashboard_queue_limits"),
        _get("/dashboard/throughput", queue_pages.throughput_fragment, "dashboard_throughput"),
        # -- Jobs (jobs_pages) --
        _get("/dashboard/jobs", jobs.jobs, "dashboard_jobs"),
        _get("/dashboard/jobs/{job_id:int}", jobs.job, "dashboard_job"),
        _get("/dashboard/jobs/{job_id:int}/live", jobs.job_live, "dashboard_job_live"),
        _get("/dashboard/jobs/{job_id:int}/delete", jobs.confirm_delete, "dashboard_job_delete"),
        _post("/dashboard/jobs/{job_id:int}/{action}", jobs.job_action, "dashboard_job_action"),
        # Export files, for links in pages (exports_pages).
        _get("/dashboard/exports/{file}", exports.download, "dashboard_export"),
        Mount("/dashboard/static", app=StaticFiles(directory=STATIC), name="dashboard_static"),
    ]
    for route in table:
        if isinstance(route, Route):
            route.app = guarded(route.endpoint)  # the handler Starlette calls for it
    return table


Endpoint = Callable[[Request], Awaitable[Response]]


def _get(path: str, endpoint: Endpoint, name: str) -> Route:
    return Route(path, endpoint, methods=["GET"], name=name)


def _post(path: str, endpoint: Endpoint, name: str) -> Route:
    return Route(path, endpoint, methods=["POST"], name=name)


def guarded(endpoint: Endpoint) -> Callable[..., Awaitable[None]]:
    """``endpoint`` as an ASGI app whose failures become an error page (the module's contract)."""

    @functools.wraps(endpoint)
    async def answer(scope: object, receive: object, send: object) -> None:
        request = Request(scope, receive, send)  # type: ignore[arg-type]
        try:
            response = await endpoint(request)
        except Exception as exc:
            problem = unexpected(exc, method=request.method, path=request.url.path)
            COUNTS.add(problem.kind)
            message = f"{problem.detail} (error {problem.extra.get('error_id', '?')})."
            response = page(
                request,
                "error.html",
                message=message,
                status_code=problem.kind.status,
                headers=problem.headers,
            )
        await response(scope, receive, send)  # type: ignore[arg-type]

    return answer
