"""Export files downloaded with the dashboard's session: the same file and checks as the API's
download (any role, a viewer included); no session leads to the login page; names that are
not an export file's, links and missing files are 404 pages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.contrib.export_files import configure

from ..api.support import Keys
from .conftest import session

pytestmark = pytest.mark.processes


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "exports"
    directory.mkdir()
    configure(directory=directory)
    yield directory
    configure()


def test_a_signed_in_viewer_downloads_an_export_file(app_url: str, keys: Keys, folder: Path) -> None:
    (folder / "students-7.csv").write_text("roll_no,name\n21CSE001,Ada\n")
    http, _ = session(app_url, keys.viewer)
    with http:
        got = http.get("/dashboard/exports/students-7.csv")
    assert got.status_code == 200, got.text
    assert got.text == "roll_no,name\n21CSE001,Ada\n"
    assert got.headers["content-type"].startswith("text/csv")
    assert 'filename="students-7.csv"' in got.headers["content-disposition"]


def test_without_a_session_the_download_leads_to_the_login_page(app_url: str, folder: Path) -> None:
    (folder / "students-7.csv").write_text("roll_no\n")
    http, _ = session(app_url, "")
    with http:
        http.cookies.clear()
        got = http.get("/dashboard/exports/students-7.csv")
    assert got.status_code == 303
    assert got.headers["location"].endswith("/login")


@pytest.mark.parametrize("name", ["missing.csv", ".hidden.csv", "notes.txt", "..%2Fsecret.csv", "linked.csv"])
def test_what_is_not_an_export_file_is_a_404_page(app_url: str, keys: Keys, folder: Path, name: str) -> None:
    secret = folder.parent / "secret.csv"
    secret.write_text("password\nhunter2\n")
    (folder / "linked.csv").symlink_to(secret)
    (folder / ".hidden.csv").write_text("hidden\n")
    (folder / "notes.txt").write_text("notes\n")
    http, _ = session(app_url, keys.admin)
    with http:
        got = http.get(f"/dashboard/exports/{name}")
    assert got.status_code == 404, got.text
    assert "hunter2" not in got.text
