"""Operations on export files (written by ``conveyor.exports.export``), with the role each needs.

Contract: listing and downloading need a viewer, the least role: an export is a report its
readers fetch. A file is served only if its name is an export file's (one plain name: no
path, no ``..``, no leading dot, no NUL), it is a regular file directly in the exports
directory (a symbolic link is never followed), and it has not expired; anything else is a
:class:`NotFoundError` (404), so a caller learns nothing about what else the directory holds.
The settings (directory, retention) are the process's (``contrib.export_files``): the API
process must see the directory the workers write.
"""

from __future__ import annotations

from datetime import datetime

from ..contrib.export_files import ExportFile, ExportSettings, current, find, is_export_name, list_files
from ..errors import NotFoundError
from .roles import Principal, Role, require


def export_file(
    principal: Principal, name: str, *, settings: ExportSettings | None = None, now: datetime | None = None
) -> ExportFile:
    """The export file ``name``, checked, for download (``now``: the time expiry is judged at)."""
    require(principal, Role.VIEWER, "downloading exports")
    if not is_export_name(name):
        raise NotFoundError(
            f"{name!r} is not the name of an export file (letters, digits, _ . - and an export's extension)"
        )
    found = find(settings or current(), name, now=now)
    if found is None:
        raise NotFoundError(f"no export file named {name!r} (it may have expired)")
    return found


def exports(
    principal: Principal, *, settings: ExportSettings | None = None, now: datetime | None = None
) -> list[ExportFile]:
    """The export files that can be downloaded, newest first."""
    require(principal, Role.VIEWER, "listing exports")
    return list_files(settings or current(), now=now)
