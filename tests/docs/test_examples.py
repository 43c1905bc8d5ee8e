"""Every code block of docs/ meant to run is run here, against real PostgreSQL (the test's own
schema), as a user would run it: python blocks as scripts, conveyor commands through the
installed ``conveyor`` command, long-running ones (``conveyor dev``) as processes. The marks
are explained in tests/docs/blocks.py; a python block (or a conveyor command) without one fails.

Pages run in a temporary folder with ``DATABASE_URL`` and ``CONVEYOR_SCHEMA`` set to the test's
database and schema. Two substitutions keep pages runnable beside other tests: ``conveyor dev``
gets ``--api-port 0`` (a free port), and ``http://127.0.0.1:8000`` in later commands becomes
the address it printed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from ..helpers import subprocess_env, url_with_driver, wait_until_sync
from .blocks import DOCS, SHELLS, Block, blocks, commands, pages

pytestmark = pytest.mark.processes

RUNNABLE = [page for page in pages() if any(b.runs for b in blocks(page))]
DEFAULT_ROOT = "http://127.0.0.1:8000"
STEP_TIMEOUT = 60


def test_every_block_that_could_run_is_marked() -> None:
    unmarked = [b.where for page in pages() for b in blocks(page) if b.needs_mark and b.mark is None]
    assert not unmarked, (
        "mark these blocks with <!-- docs: run -->, <!-- docs: file NAME --> or "
        "<!-- docs: not run: REASON --> on the line before the fence (tests/docs/blocks.py): "
        + ", ".join(unmarked)
    )
    bad = [
        f"{b.where} ({b.mark})"
        for page in pages()
        for b in blocks(page)
        if b.mark is not None
        and not (b.mark in ("run", "run in background") or b.mark.startswith(("file ", "not run: ")))
    ]
    assert not bad, "unknown marks: " + ", ".join(bad)


@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: str(p.relative_to(DOCS)))
def test_the_page_runs(page: Path, tmp_path: Path, database_url: str, schema: str) -> None:
    # DATABASE_URL as applications keep it: a postgresql:// URL.
    url = url_with_driver(database_url, "postgresql")
    env = subprocess_env(url, schema, DATABASE_URL=url, PYTHONUNBUFFERED="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("CONVEYOR_TASKS", None)
    root = DEFAULT_ROOT
    with ExitStack() as background:
        for number, block in enumerate(blocks(page)):
            if not block.runs:
                continue
            assert block.mark is not None
            if block.mark.startswith("file "):
                (tmp_path / block.mark.removeprefix("file ").strip()).write_text(block.code)
            elif block.mark == "run in background":
                root = background.enter_context(_background(block, env, tmp_path)) or root
            elif block.lang == "python":
                script = tmp_path / f"block_{number}.py"
                script.write_text(block.code)
                _check(block, [sys.executable, script.name], env, tmp_path)
            elif block.lang in SHELLS:
                for command in commands(block):
                    _check(block, shell(command.replace(DEFAULT_ROOT, root)), env, tmp_path)
            else:
                pytest.fail(f"{block.where}: cannot run a {block.lang!r} block")


def shell(command: str) -> list[str]:
    """A block's command for bash; a pipeline fails when any of its commands does."""
    return ["bash", "-o", "pipefail", "-c", command]


def _check(
    block: Block, argv: list[str], env: dict[str, str], cwd: Path, *, timeout: float = STEP_TIMEOUT
) -> None:
    """Run one step in a process group of its own; a step that fails or outlives ``timeout``
    fails the test, and whatever the step started is killed with it (subprocess.run's own
    timeout kills the step alone, then waits on the pipes its children still hold)."""
    process = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        stdout, stderr = process.communicate()
        pytest.fail(
            f"{block.where}: {shlex.join(argv)} still running after {timeout:g} s\n"
            f"--- stdout\n{stdout}\n--- stderr\n{stderr}"
        )
    finally:
        _kill_group(process)  # what the step left running
    assert process.returncode == 0, (
        f"{block.where}: {shlex.join(argv)} exited {process.returncode}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    )


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is gone
        os.killpg(process.pid, signal.SIGKILL)


@contextmanager
def _background(block: Block, env: dict[str, str], cwd: Path) -> Iterator[str | None]:
    """Start the block's one command; yield the API root it printed (conveyor dev), if any."""
    [command] = commands(block)
    argv = shlex.split(command)
    is_dev = argv[:2] == ["conveyor", "dev"]
    if is_dev:
        argv += ["--api-port", "0", "--poll-interval", "0.2", "--grace", "5"]
    out, err = cwd / "background.stdout", cwd / "background.stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=stdout, stderr=stderr)
    try:

        def ready() -> bool:
            if process.poll() is not None:
                pytest.fail(f"{block.where}: {command} exited {process.returncode}:\n{err.read_text()}")
            return not is_dev or "Ctrl-C to stop" in out.read_text()

        wait_until_sync(ready, within=STEP_TIMEOUT)
        found = re.search(r"API at (http://\S+)/api/v1", out.read_text()) if is_dev else None
        yield found[1] if found else None
        assert process.poll() is None, f"{block.where}: {command} stopped early:\n{err.read_text()}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_a_failing_step_fails_and_what_it_started_is_killed(tmp_path: Path) -> None:
    block = Block(DOCS / "index.md", 1, "sh", "", "run")
    env = dict(os.environ)
    with pytest.raises(AssertionError, match="exited 1"):
        _check(block, shell("false | cat"), env, tmp_path)
    with pytest.raises(pytest.fail.Exception, match="still running after 1 s"):
        _check(block, shell("sleep 30 & echo $! > left.pid; wait"), env, tmp_path, timeout=1)
    left = int((tmp_path / "left.pid").read_text())
    wait_until_sync(lambda: not _alive(left), within=10)
    _check(block, shell("sleep 30 > /dev/null 2>&1 & echo $! > left.pid"), env, tmp_path)  # a daemon
    left = int((tmp_path / "left.pid").read_text())
    wait_until_sync(lambda: not _alive(left), within=10)


def _alive(pid: int) -> bool:
    """Whether the process runs (a zombie waiting for its parent to reap it does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
