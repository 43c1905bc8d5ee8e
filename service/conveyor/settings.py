"""Settings read from the environment, shared by the CLI, the client and the worker."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .errors import ConfigurationError

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
MAX_ARGS_BYTES = 1024 * 1024


def check_schema_name(schema: str) -> str:
    """Schema names are used as identifiers and as the NOTIFY channel: keep them plain."""
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigurationError(
            f"schema name {schema!r} is not allowed: use lowercase letters, digits and _ "
            "(at most 63, not starting with a digit)"
        )
    return schema


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    schema: str = "conveyor"

    def __post_init__(self) -> None:
        check_schema_name(self.schema)

    @classmethod
    def from_env(cls, database_url: str | None = None, schema: str | None = None) -> Settings:
        """Explicit values first, then CONVEYOR_DATABASE_URL / DATABASE_URL and CONVEYOR_SCHEMA."""
        url = (
            database_url or os.environ.get("CONVEYOR_DATABASE_URL") or os.environ.get("DATABASE_URL") or None
        )
        return cls(database_url=url, schema=schema or os.environ.get("CONVEYOR_SCHEMA", "conveyor"))
