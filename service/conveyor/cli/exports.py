"""`conveyor exports`: the export files that can be downloaded (through conveyor.ops as the
local admin; the directory and retention are this process's: CONVEYOR_EXPORTS_DIR and
CONVEYOR_EXPORTS_RETENTION)."""

from __future__ import annotations

import dataclasses

import click

from ..ops import exports as ops
from ..ops.roles import LOCAL_ADMIN
from .common import echo_json, handle_errors, json_option, table


@click.group()
def exports() -> None:
    """The files the export task wrote (docs/exports.md)."""


@exports.command("list")
@json_option
@handle_errors
def exports_list(as_json: bool) -> None:
    """The export files that can be downloaded, newest first, with their size and expiry."""
    found = ops.exports(LOCAL_ADMIN)
    rows = [
        {k: v for k, v in dataclasses.asdict(f).items() if k not in ("stat", "path")} | {"path": str(f.path)}
        for f in found
    ]
    if as_json:
        echo_json(rows)
        return
    headers = ["name", "size", "written_at", "expires_at"]
    click.echo(table([[r[h] for h in headers] for r in rows], headers))
