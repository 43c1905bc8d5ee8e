"""The dashboard's route table: its pages, its actions (POST) and its static files."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..api.auth import Authenticator
from .pages import Dashboard, GetClient

STATIC = Path(__file__).parent / "static"


def routes(get_client: GetClient, authenticator: Authenticator) -> list[BaseRoute]:
    """The dashboard's routes, sharing the API's client and Authenticator (so its key cache
    and failed-attempt limit)."""
    dashboard = Dashboard(get_client, authenticator)
    return [
        Route("/", dashboard.overview, methods=["GET"], name="dashboard_overview"),
        Route("/login", dashboard.login_form, methods=["GET"], name="dashboard_login"),
        Route("/login", dashboard.login, methods=["POST"], name="dashboard_login_post"),
        Route("/logout", dashboard.logout, methods=["POST"], name="dashboard_logout"),
        Route("/dashboard/queues", dashboard.queues_fragment, methods=["GET"], name="dashboard_queues"),
        Route(
            "/dashboard/queues/{queue}/pause",
            dashboard.pause_queue,
            methods=["POST"],
            name="dashboard_pause_queue",
        ),
        Route(
            "/dashboard/queues/{queue}/resume",
            dashboard.resume_queue,
            methods=["POST"],
            name="dashboard_resume_queue",
        ),
        Mount("/dashboard/static", app=StaticFiles(directory=STATIC), name="dashboard_static"),
    ]
