"""The dashboard's workers page: every worker the roster knows (live, and those silent for
less than an hour), what each serves and runs now, and the scheduler's leader; the table is a
fragment htmx polls every 3 s. Read through ``conveyor.ops.status.workers`` (a viewer's read)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..ops import status as status_ops
from .base import DashboardBase


class WorkersPages(DashboardBase):
    async def workers(self, request: Request) -> Response:
        return await self._render(request, "workers.html")

    async def workers_fragment(self, request: Request) -> Response:
        return await self._render(request, "_workers.html")

    async def _render(self, request: Request, template: str) -> Response:
        found = await self.page_session(request)
        if isinstance(found, Response):
            return found
        roster = await status_ops.workers(await self.get_client(), found.principal)
        return self.render(request, found, template, roster=roster, section="workers")
