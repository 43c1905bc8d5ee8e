"""Export files: list them and download one (any role: exports are for their readers)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from pydantic import Field

from ...contrib.export_files import MEDIA_TYPES, ExportFile
from ...errors import NotFoundError
from ...ops import exports as ops
from ...ops.roles import Role
from ..routing import Call, FileOut, Group, Output, Params

group = Group("exports", "Files written by the export task (conveyor.exports.export), until they expire.")


class ExportOut(Output):
    file: str = Field(description="The file's name: download it at download.")
    bytes: int
    media_type: str
    written_at: datetime
    expires_at: datetime = Field(description="After this it is no longer served, and the cleanup deletes it.")
    download: str = Field(description="Its path under the API's root.")

    @classmethod
    def of(cls, found: ExportFile) -> ExportOut:
        return cls(
            file=found.name,
            bytes=found.size,
            media_type=found.media_type,
            written_at=found.written_at,
            expires_at=found.expires_at,
            download=f"/api/v1/exports/{found.name}",
        )


class ExportList(Output):
    """The export files that can be downloaded, newest first."""

    exports: list[ExportOut]


@group.route("GET", "/exports", role=Role.VIEWER, summary="List export files")
async def list_exports(call: Call) -> ExportList:
    found = await asyncio.to_thread(ops.exports, call.principal)
    return ExportList(exports=[ExportOut.of(f) for f in found])


class ExportPath(Params):
    file: Annotated[
        str, Field(max_length=255, description="The file's name, as the export job's result gives it.")
    ]


class ExportFileOut(FileOut):
    """The export file: CSV, JSON Lines, or either gzipped"""

    media_types = tuple(dict.fromkeys(MEDIA_TYPES.values()))


@group.route(
    "GET",
    "/exports/{file}",
    role=Role.VIEWER,
    summary="Download an export file",
    missing=(NotFoundError,),
)
async def download_export(call: Call, path: ExportPath) -> ExportFileOut:
    """The file as an attachment (Content-Disposition), with its media type: ``text/csv``,
    ``application/x-ndjson`` or ``application/gzip``. Range requests resume a download. A
    name that is not an export file's (a path, ``..``, a hidden or linked file), a file that
    does not exist and one that has expired are all 404."""
    found = await asyncio.to_thread(ops.export_file, call.principal, path.file)
    return ExportFileOut(
        path=str(found.path), media_type=found.media_type, filename=found.name, stat=found.stat
    )
