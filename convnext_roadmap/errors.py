"""The failures a user can fix. Each message says what to do; the command line prints it as
one `error:` line and exits 2 (runner.py), never a traceback."""

from __future__ import annotations

import errno
import os
from pathlib import Path


class ConfigError(ValueError):
    """A study, preset, command-line value or request that cannot be run as given."""


class DataError(RuntimeError):
    """Data that cannot be found or read; the message says where we looked and what to do."""


class CorruptRecordError(ValueError):
    """A record or manifest that cannot be read; the message names the file and what to do."""


class OutputError(OSError):
    """A results or figures folder that cannot be written: the message names the folder and
    the cause (not a folder, no permission, disk full)."""


def os_error_message(error: OSError) -> str:
    """One line for a failed file operation, by its cause, naming the file."""
    where = f" ({error.filename})" if error.filename else ""
    code = error.errno
    if code == errno.ENOSPC or code == getattr(errno, "EDQUOT", None):
        return (
            f"the disk is full{where}: free space (or choose another --out), then run the same command again; "
            "finished records are whole"
        )
    if code in (errno.EACCES, errno.EPERM):
        return f"no permission to write{where}: fix its permissions, or choose another --out / --plots"
    if code == errno.EROFS:
        return f"read-only file system{where}: choose another --out / --plots"
    if code in (errno.ENOTDIR, errno.EEXIST):
        return f"a path is a file where a folder must be{where}: move the file away, or choose another folder"
    return f"{error.strerror or error}{where}; check the path and run the same command again"


def check_output_folder(path: Path, flag: str) -> None:
    """A folder the runner will write into: refused before anything trains if it is a file, or
    cannot be created or written."""
    path = Path(path)
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(
                    errno.ENOTDIR,
                    f"{flag} {path}: {parent} is a file, not a folder; move it away or give {flag} another folder",
                )
            if not os.access(parent, os.W_OK | os.X_OK):
                raise OutputError(
                    errno.EACCES,
                    f"{flag} {path}: no permission to write in {parent}; fix its "
                    f"permissions or give {flag} another folder",
                )
            return
