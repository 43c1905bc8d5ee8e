"""Deleting old files from a directory without ever following a symbolic link.

Contract: only regular files whose mtime is before the cut-off and whose name matches the
pattern are deleted; directories are never deleted; a symbolic link (to a file or a
directory) is neither followed nor deleted. The walk works relative to the directory it
has open (``dir_fd``), opens a subdirectory only without following a link, and goes back up
only to the directory it came from (checked by identity), so a directory swapped for a link
or moved away while the walk runs cannot lead it elsewhere; a tree of any depth is walked. A file that is gone by the time it is deleted (another
run, anyone) is skipped without error: two runs at once, or one after the other, are safe.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


@dataclass
class Deleted:
    """What a sweep deleted: how many files and how many bytes they held."""

    files: int = 0
    bytes: int = 0


def open_directory(path: str | os.PathLike[str], dir_fd: int | None = None) -> int:
    """A file descriptor of the directory at ``path``; refused (OSError) if it is a link."""
    return os.open(path, _DIRECTORY_FLAGS, dir_fd=dir_fd)


def sweep(
    directory: str | os.PathLike[str],
    cutoff: float,
    *,
    matches: Callable[[str], bool],
    recursive: bool = False,
    on_file: Callable[[Deleted], None] | None = None,
) -> Deleted:
    """Delete the files under ``directory`` last written before ``cutoff`` (a POSIX time)
    whose name ``matches``; into subdirectories if ``recursive``. ``on_file`` is called
    after each deletion with the running totals.

    The walk is depth-first with one directory open at a time, however deep the tree (no
    recursion, no descriptor per level): the way down is a stack of each level's identity
    and the subdirectories it has left to visit; the way up opens ``..`` and checks it is
    the directory it came from. A directory moved elsewhere while it was walked ends the
    walk there (what was deleted so far stays deleted; the next run does the rest)."""
    done = Deleted()
    fd = open_directory(directory)
    try:
        below = _sweep_files(fd, cutoff, matches, recursive, done, on_file)
        pending: list[tuple[os.stat_result, list[str]]] = [(os.fstat(fd), below)]
        while pending:
            _, subdirectories = pending[-1]
            if subdirectories:
                try:
                    child = open_directory(subdirectories.pop(), dir_fd=fd)
                except OSError:
                    continue  # gone, or swapped for a link since the stat: not followed
                fd, child = child, fd
                os.close(child)
                below = _sweep_files(fd, cutoff, matches, recursive, done, on_file)
                pending.append((os.fstat(fd), below))
                continue
            pending.pop()
            if not pending:
                break
            parent = open_directory("..", dir_fd=fd)
            fd, parent = parent, fd
            os.close(parent)
            if not _same_file(os.fstat(fd), pending[-1][0]):
                break  # moved while walked: ".." is no longer the way back
    finally:
        os.close(fd)
    return done


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _sweep_files(
    fd: int,
    cutoff: float,
    matches: Callable[[str], bool],
    recursive: bool,
    done: Deleted,
    on_file: Callable[[Deleted], None] | None,
) -> list[str]:
    """Delete the matching old files directly in the directory ``fd``; the names of its
    subdirectories, when ``recursive``, to visit next."""
    with os.scandir(fd) as entries:
        names = [entry.name for entry in entries]
    subdirectories: list[str] = []
    for name in names:
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(info.st_mode):
            if recursive:
                subdirectories.append(name)
            continue
        if not stat.S_ISREG(info.st_mode) or info.st_mtime >= cutoff or not matches(name):
            continue
        with contextlib.suppress(FileNotFoundError):
            # Unlinking a name never touches what a link points to: if the file was swapped
            # for a link since the stat, the link goes, its target stays.
            os.unlink(name, dir_fd=fd)
            done.files += 1
            done.bytes += info.st_size
            if on_file is not None:
                on_file(done)
    subdirectories.reverse()  # popped from the end: visited in the order listed
    return subdirectories


def pattern_matcher(pattern: str) -> Callable[[str], bool]:
    """A shell-style pattern (``*.log``) on a file's name, case-sensitively."""
    return lambda name: fnmatch.fnmatchcase(name, pattern)
