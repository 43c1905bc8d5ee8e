"""`conveyor` processes started by a chaos scenario: output to a file each, signals, and a
stop that says whether the process honoured SIGTERM in time (none may be stuck)."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
from pathlib import Path

from ..helpers import REPO

_numbers = itertools.count(1)


class Process:
    """One ``python -m conveyor ARGS`` process, its stdout and stderr in ``folder``."""

    def __init__(self, args: list[str], *, env: dict[str, str], folder: Path) -> None:
        self.name = f"{args[0]}-{next(_numbers)}"
        self.log = folder / f"{self.name}.log"
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "conveyor", *args],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def stop(self, within: float = 30.0) -> int | None:
        """SIGTERM (and SIGCONT, should it be paused), then its exit code; None if it was still
        running after ``within`` seconds (stuck: it is killed then)."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            self.popen.send_signal(signal.SIGCONT)
        try:
            return self.popen.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)
            return None

    def kill(self) -> None:
        if self.alive():
            self.popen.kill()
        self.popen.wait(timeout=10)

    def __str__(self) -> str:
        return f"{self.name} (pid {self.pid}, exit {self.popen.poll()}):\n{self.output()[-3000:]}"
