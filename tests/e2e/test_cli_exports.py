"""`conveyor exports list`: the files the API would serve, as this process's settings say."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from .test_cli import conveyor, env_without_database, expect_error, ok, table

pytestmark = pytest.mark.processes


def test_exports_list_shows_the_servable_files_only(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "new.csv").write_text("a\n1\n")
    (folder / "old.jsonl.gz").write_bytes(b"x")
    past = time.time() - 3 * 86400
    os.utime(folder / "old.jsonl.gz", (past, past))
    (folder / ".part.csv.1.part").write_text("half")
    (folder / "notes.txt").write_text("not an export")
    env = env_without_database(CONVEYOR_EXPORTS_DIR=str(folder), CONVEYOR_EXPORTS_RETENTION="2d")

    header, rows = table(ok(conveyor("exports", "list", env=env, cwd=tmp_path)))
    assert header == ["name", "size", "written_at", "expires_at"]
    assert list(rows) == ["new.csv"]
    assert rows["new.csv"][1] == "4"
    listed = json.loads(ok(conveyor("exports", "list", "--json", env=env, cwd=tmp_path)))
    assert [(f["name"], f["media_type"]) for f in listed] == [("new.csv", "text/csv")]

    env["CONVEYOR_EXPORTS_RETENTION"] = "7d"
    listed = json.loads(ok(conveyor("exports", "list", "--json", env=env, cwd=tmp_path)))
    assert [f["name"] for f in listed] == ["new.csv", "old.jsonl.gz"]


def test_an_exports_directory_that_is_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "exports"
    not_a_folder.write_text("a file, set by mistake\n")
    env = env_without_database(CONVEYOR_EXPORTS_DIR=str(not_a_folder))

    line = expect_error(conveyor("exports", "list", env=env, cwd=tmp_path), "the exports directory")
    assert str(not_a_folder) in line
    assert "CONVEYOR_EXPORTS_DIR" in line
