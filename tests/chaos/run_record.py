"""The record a long chaos run leaves: one JSON line per run appended to
tests/chaos/results/<scenario>.jsonl (committed), with the date, the machine and its load,
the command and the numbers measured."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }


def append_result(scenario: str, numbers: dict[str, Any], *, server: str) -> Path:
    line = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": " ".join(["python", "-m", f"tests.chaos.{scenario}", *sys.argv[1:]]),
        "server": server,
        **numbers,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{scenario}.jsonl"
    with path.open("a") as out:
        out.write(json.dumps(line, default=str) + "\n")
    return path
