"""Files written whole or not at all, and an exclusive lock on a file: the two ways every
writer of a study (records, tables, figures, checkpoints, weights, CSV logs) touches disk.

A file is written to a temporary file in its own folder, flushed, fsynced and renamed over
the target, so a reader finds the old file or the new one, never half of one; the rename is
made durable by an fsync of the folder. Every file gets the same mode, 0666 less the umask
(0644 usually): mkstemp's 0600 would hide a shared study's files from its other users.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from filelock import FileLock


def umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(
    path: Path, write: Callable[[IO], None], binary: bool = False, before_replace: Callable[[], None] | None = None
) -> None:
    """Write `path` through `write(handle)`: a temporary file in the same folder, fsync, then a
    rename over the target. `before_replace` runs just before the rename (a checkpoint keeps the
    file it replaces there)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text))


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created if needed) for the length of the block, with the
    `filelock` package; where the file system has no locks the block runs unlocked."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, mode=0o666 & ~umask())
    try:
        lock.acquire()
    except OSError:  # no locks on this file system (some NFS mounts): go on unlocked
        yield
        return
    try:
        yield
    finally:
        lock.release()
