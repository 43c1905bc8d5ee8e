"""conveyor.contrib.export_files: the names an export may have and serve, its settings."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conveyor.contrib.export_files import (
    ExportSettings,
    file_name,
    find,
    is_export_name,
    list_files,
    media_type,
)
from conveyor.errors import ConfigurationError

AT = datetime(2026, 12, 7, 20, 14, 55, tzinfo=UTC)


@pytest.mark.parametrize(
    ("requested", "fmt", "gzip", "expected"),
    [
        (None, "csv", False, "orders-812-20261207T201455Z.csv"),
        (None, "jsonl", True, "orders-812-20261207T201455Z.jsonl.gz"),
        ("report", "csv", False, "report.csv"),
        ("report.csv", "csv", True, "report.csv.gz"),
        ("report.CSV", "jsonl", False, "report.jsonl"),
        ("../../etc/passwd", "csv", False, "etc_passwd.csv"),
        ("/abs/path/x.jsonl.gz", "jsonl", True, "abs_path_x.jsonl.gz"),
        (".hidden", "csv", False, "hidden.csv"),
        ("a..b", "csv", False, "a.b.csv"),
        ("naïve café ✓", "csv", False, "na_ve_caf.csv"),
        ("x\x00y", "csv", False, "x_y.csv"),
        ("...", "csv", False, "export.csv"),
        ("", "csv", False, "export.csv"),
        ("a" * 500, "csv", False, "a" * 150 + ".csv"),
    ],
)
def test_file_names_are_made_safe(requested: str | None, fmt: str, gzip: bool, expected: str) -> None:
    name = file_name(fmt, gzip, requested=requested, base="orders", job_id=812, at=AT)
    assert name == expected
    assert is_export_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        ".csv",
        ".x.csv",
        "a/b.csv",
        "a\\b.csv",
        "a\x00.csv",
        "../a.csv",
        "a..csv",
        "x.txt",
        "csv",
        "x.csv.part",
    ],
)
def test_what_is_not_an_export_name(name: str) -> None:
    assert not is_export_name(name)


def test_media_types_by_extension() -> None:
    assert media_type("a.csv") == "text/csv"
    assert media_type("a.jsonl") == "application/x-ndjson"
    assert media_type("a.csv.gz") == media_type("a.jsonl.gz") == "application/gzip"


def test_find_serves_only_fresh_regular_files_in_the_directory(tmp_path: Path) -> None:
    settings = ExportSettings(directory=tmp_path, retention=timedelta(days=1))
    (tmp_path / "fresh.csv").write_text("a\n")
    (tmp_path / "old.csv").write_text("a\n")
    two_days_ago = datetime.now(UTC).timestamp() - 2 * 86400
    os.utime(tmp_path / "old.csv", (two_days_ago, two_days_ago))
    (tmp_path / "link.csv").symlink_to(tmp_path / "fresh.csv")
    (tmp_path / "dir.csv").mkdir()

    found = find(settings, "fresh.csv")
    assert found is not None
    assert found.size == 2
    assert found.expires_at == found.written_at + timedelta(days=1)
    for name in ("old.csv", "link.csv", "dir.csv", "missing.csv", "../fresh.csv"):
        assert find(settings, name) is None, name
    assert find(settings, "old.csv", now=datetime.now(UTC) - timedelta(days=3)) is not None
    assert [f.name for f in list_files(settings)] == ["fresh.csv"]
    assert list_files(ExportSettings(directory=tmp_path / "none")) == []


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CONVEYOR_EXPORTS_DIR", str(tmp_path))
    monkeypatch.setenv("CONVEYOR_EXPORTS_RETENTION", "36h")
    monkeypatch.setenv("CONVEYOR_EXPORTS_STATEMENT_TIMEOUT", "90")
    monkeypatch.setenv("CONVEYOR_EXPORTS_RELATIONS", "reports.*, public.daily_sales")
    settings = ExportSettings.from_env()
    assert settings.directory == tmp_path
    assert settings.retention == timedelta(hours=36)
    assert settings.statement_timeout == 90
    assert settings.allows_relation("reports", "anything")
    assert settings.allows_relation("public", "daily_sales")
    assert not settings.allows_relation("public", "users")

    monkeypatch.setenv("CONVEYOR_EXPORTS_RETENTION", "a week")
    with pytest.raises(ConfigurationError, match="CONVEYOR_EXPORTS_RETENTION"):
        ExportSettings.from_env()
    with pytest.raises(ConfigurationError, match="must not be negative"):
        ExportSettings(retention=timedelta(seconds=-1))


def test_defaults() -> None:
    settings = ExportSettings()
    assert settings.directory == Path(".conveyor/exports")
    assert settings.retention == timedelta(days=7)
    assert settings.relations == ()
    assert not settings.allows_relation("public", "users")


def test_configure_takes_settings_or_fields_and_none_goes_back_to_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from conveyor.contrib import export_files

    monkeypatch.setenv("CONVEYOR_EXPORTS_DIR", str(tmp_path / "env"))
    try:
        whole = ExportSettings(directory=tmp_path / "whole")
        assert export_files.configure(whole) is whole
        assert export_files.current_settings() is whole
        changed = export_files.configure(retention=timedelta(hours=1))
        assert (changed.directory, changed.retention) == (tmp_path / "env", timedelta(hours=1))
        with pytest.raises(ConfigurationError, match="not both"):
            export_files.configure(whole, retention=timedelta(hours=1))
        with pytest.raises(ConfigurationError, match="takes ExportSettings"):
            export_files.configure("nope")  # type: ignore[arg-type]
    finally:
        export_files.configure(None)
    assert export_files.current().directory == tmp_path / "env"
