"""Logging for Conveyor's long-running processes: plain text or JSON lines.

Every failure a worker sees (an attempt failing, a retry, a job moved to the dead-letter
table, a rescue, a hand-back) is one record of the ``conveyor.worker`` logger whose message
reads on its own and whose ``extra`` fields (``event``, ``job_id``, ``task``, ``queue``,
``attempt``, ``max_attempts``, ``error``, ...) say the same for machines. With the JSON-lines
format each record is one JSON object with those fields at the top level.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from .errors import ConfigurationError

FORMATS = ("text", "json")
FORMAT_ENV = "CONVEYOR_LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the record's ``extra``
    fields, and ``traceback`` when the record carries an exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["traceback"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(verbose: bool = False, fmt: str | None = None, *, stream: TextIO | None = None) -> None:
    """Send log records to ``stream`` (stderr) as text or JSON lines (``fmt``; default from
    CONVEYOR_LOG_FORMAT, else text), at INFO, or DEBUG when ``verbose`` (tracebacks of failed
    attempts are logged at DEBUG)."""
    chosen = (fmt or os.environ.get(FORMAT_ENV) or "text").strip().lower()
    if chosen not in FORMATS:
        raise ConfigurationError(f"unknown log format {chosen!r}: use text or json ({FORMAT_ENV})")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLinesFormatter() if chosen == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose else logging.WARNING)
