"""Export files on disk: their settings, names, kinds and expiry; no database.

Contract: every export file lives directly in one directory (``ExportSettings.directory``),
under a name of letters, digits, ``_``, ``.`` and ``-`` that ends in ``.csv``, ``.jsonl``,
``.csv.gz`` or ``.jsonl.gz`` and does not start with a dot (files being written are hidden:
``.<name>.<random>.part``). A file expires ``retention`` after it was last written (its
mtime); an expired file is no longer served, and the cleanup task removes it. The export
task (``contrib.exports``), the service layer (``ops.exports``, behind the download
endpoint) and the cleanup all read these rules from here, so they cannot disagree.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..durations import parse_duration
from ..errors import ConfigurationError, InvalidOptionError
from .process_settings import ProcessSettings

DEFAULT_DIRECTORY = Path(".conveyor/exports")
DEFAULT_RETENTION = timedelta(days=7)
DEFAULT_STATEMENT_TIMEOUT = 3600.0  # seconds: an export may read for an hour

# Each kind of file: its extension and the media type it is served with.
MEDIA_TYPES = {
    ".csv": "text/csv",
    ".jsonl": "application/x-ndjson",
    ".csv.gz": "application/gzip",
    ".jsonl.gz": "application/gzip",
}
FORMATS = ("csv", "jsonl")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
PART_SUFFIX = ".part"
MAX_STEM = 150


@dataclass(frozen=True)
class ExportSettings:
    """Where exports are written and for how long they are kept.

    - ``directory``: the folder of the export files (workers write it, the API reads it: on
      one host, or a volume both mount). Relative paths are taken from the process's working
      directory: set an absolute one in production.
    - ``retention``: how long a file is served and kept after it was written.
    - ``statement_timeout``: the export's own ``statement_timeout`` in seconds (0: none); an
      export's COPY may run far longer than the workers' own statements.
    - ``relations``: the tables and views a job may export by name (``relation=``), as
      ``schema.name`` patterns (``*`` matches any part: ``reports.*``). Empty: none; a
      registered export (whose SQL is in code) needs no entry.
    """

    directory: Path = DEFAULT_DIRECTORY
    retention: timedelta = DEFAULT_RETENTION
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT
    relations: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", Path(self.directory))
        if self.retention < timedelta(0):
            raise ConfigurationError("the export retention must not be negative")
        if not self.statement_timeout >= 0:
            raise ConfigurationError("the export statement timeout must not be negative")

    @classmethod
    def from_env(cls) -> ExportSettings:
        """CONVEYOR_EXPORTS_DIR, CONVEYOR_EXPORTS_RETENTION (a duration: ``7d``),
        CONVEYOR_EXPORTS_STATEMENT_TIMEOUT (a duration; a bare number is seconds; 0: none)
        and CONVEYOR_EXPORTS_RELATIONS (comma-separated ``schema.name`` patterns)."""
        env = os.environ
        return cls(
            directory=Path(env.get("CONVEYOR_EXPORTS_DIR") or DEFAULT_DIRECTORY),
            retention=_duration("CONVEYOR_EXPORTS_RETENTION", DEFAULT_RETENTION),
            statement_timeout=_duration(
                "CONVEYOR_EXPORTS_STATEMENT_TIMEOUT", timedelta(seconds=DEFAULT_STATEMENT_TIMEOUT)
            ).total_seconds(),
            relations=tuple(
                part.strip()
                for part in (env.get("CONVEYOR_EXPORTS_RELATIONS") or "").split(",")
                if part.strip()
            ),
        )

    def allows_relation(self, schema: str, name: str) -> bool:
        """Whether ``schema.name`` matches one of ``relations``."""
        return any(fnmatch.fnmatchcase(f"{schema}.{name}", pattern) for pattern in self.relations)

    def expires_at(self, written: float) -> datetime:
        """When a file written at ``written`` (a POSIX time) expires."""
        return datetime.fromtimestamp(written, UTC) + self.retention


def _duration(name: str, default: timedelta) -> timedelta:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return parse_duration(raw, default_unit="s")
    except InvalidOptionError as exc:
        raise ConfigurationError(f"{name}: {exc}") from None


_settings = ProcessSettings(ExportSettings, ExportSettings.from_env)
configure = _settings.configure
current = _settings.current


def extension(fmt: str, gzip: bool) -> str:
    return f".{fmt}.gz" if gzip else f".{fmt}"


def media_type(name: str) -> str:
    """The media type of an export file by its name (its longest known extension)."""
    for ext in sorted(MEDIA_TYPES, key=len, reverse=True):
        if name.endswith(ext):
            return MEDIA_TYPES[ext]
    raise ValueError(f"{name!r} is not an export file name")


def is_export_name(name: str) -> bool:
    """Whether ``name`` can be an export file's: one plain name in the directory (no path,
    no ``..``, no leading dot, no NUL), with an export's extension."""
    return (
        isinstance(name, str)
        and _NAME.fullmatch(name) is not None
        and ".." not in name
        and any(name.endswith(ext) and len(name) > len(ext) for ext in MEDIA_TYPES)
    )


def file_name(fmt: str, gzip: bool, *, requested: str | None, base: str, job_id: int, at: datetime) -> str:
    """The file an export writes: ``requested`` made safe (any path, odd character or
    extension dropped), or ``<base>-<job id>-<UTC time>``; with the format's extension."""
    stem = requested if requested is not None else f"{base}-{job_id}-{at.astimezone(UTC):%Y%m%dT%H%M%SZ}"
    for ext in sorted(MEDIA_TYPES, key=len, reverse=True):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    stem = re.sub(r"\.{2,}", ".", _UNSAFE.sub("_", stem)).strip("._-")[:MAX_STEM].rstrip("._-")
    name = (stem or "export") + extension(fmt, gzip)
    if not is_export_name(name):  # pragma: no cover - the cleaning above makes one
        raise InvalidOptionError(f"cannot make an export file name of {requested!r}")
    return name


@dataclass(frozen=True)
class ExportFile:
    """One export file: its name, path, size, when it was written and when it expires."""

    name: str
    path: Path
    size: int
    written_at: datetime
    expires_at: datetime
    media_type: str
    stat: os.stat_result = field(repr=False, compare=False)


def describe(settings: ExportSettings, name: str, info: os.stat_result) -> ExportFile:
    return ExportFile(
        name=name,
        path=settings.directory / name,
        size=info.st_size,
        written_at=datetime.fromtimestamp(info.st_mtime, UTC),
        expires_at=settings.expires_at(info.st_mtime),
        media_type=media_type(name),
        stat=info,
    )


def find(settings: ExportSettings, name: str, *, now: datetime | None = None) -> ExportFile | None:
    """The export file of that name if it is servable: a valid name, a regular file in the
    directory itself (a symbolic link is never followed), not expired at ``now``."""
    if not is_export_name(name):
        return None
    try:
        info = os.lstat(settings.directory / name)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    found = describe(settings, name, info)
    if found.expires_at <= (now or datetime.now(UTC)):
        return None
    return found


def list_files(settings: ExportSettings, *, now: datetime | None = None) -> list[ExportFile]:
    """The servable export files, newest first (none while the directory does not exist);
    ConfigurationError when it cannot be listed: a file, or not readable by this process."""
    try:
        entries = list(os.scandir(settings.directory))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigurationError(
            f"the exports directory {settings.directory} cannot be listed: {exc.strerror or exc} "
            "(CONVEYOR_EXPORTS_DIR)"
        ) from None
    found = [f for entry in entries if (f := find(settings, entry.name, now=now)) is not None]
    return sorted(found, key=lambda f: (f.written_at, f.name), reverse=True)


current_settings = current  # the name conveyor.contrib.email uses
