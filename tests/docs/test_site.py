"""The documentation site builds, with --strict (any warning fails: a broken link, a page
missing from the nav, a docstring mkdocstrings cannot read), and the generated reference
pages match the code (scripts/docs_reference.py --check)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ..helpers import REPO

pytestmark = pytest.mark.processes


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "service"), str(REPO), env.get("PYTHONPATH", "")])
    return env


def test_the_site_builds_without_warnings(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    python = (site / "reference" / "python.html").read_text()
    assert "SyncConveyor" in python  # mkdocstrings read the docstrings
    assert "enqueue_many" in python
    assert "assert_enqueued" in (site / "reference" / "testing.html").read_text()
    assert (site / "tutorial" / "first-job.html").exists()


def test_the_generated_reference_pages_are_up_to_date() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/docs_reference.py", "--check"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_the_python_reference_covers_every_public_name() -> None:
    import conveyor

    page = (REPO / "docs" / "reference" / "python.md").read_text()
    documented = set(re.findall(r"^::: conveyor\.(\w+)$", page, re.MULTILINE))
    assert documented == set(conveyor.__all__)
