"""Export files downloaded in the browser: the same file, checks and roles as the API's
``GET /api/v1/exports/{file}`` (``conveyor.ops.exports.export_file``), with the dashboard's
session cookie instead of a Bearer header, so a link in a page (the dashboard's, or an
application's that mounts Conveyor) downloads for whoever is signed in. Read-only: no CSRF
token is needed, and the cookie is SameSite=Strict."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from ..errors import ConveyorError, NotFoundError
from ..ops import exports as export_ops
from .base import DashboardBase


class ExportsPages(DashboardBase):
    async def download(self, request: Request) -> Response:
        found = await self.page_session(request)
        if isinstance(found, Response):
            return found
        try:
            export = await asyncio.to_thread(
                export_ops.export_file, found.principal, request.path_params["file"]
            )
        except ConveyorError as exc:
            return self.failed(request, found, exc, missing=(NotFoundError,))
        return FileResponse(
            export.path, media_type=export.media_type, filename=export.name, stat_result=export.stat
        )
