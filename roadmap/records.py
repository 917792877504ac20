"""Run records: one JSON file per finished (step, seed), written atomically, never edited.

`results/<study>/runs/<step>__seed<k>.json` is the record of an experiment; every table and
figure is derived from these files.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parents[1]


def run_name(slug: str, seed: int) -> str:
    return f"{slug}__seed{seed}"


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the target: a
    reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_record(path: Path, record: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")


class CorruptRecordError(ValueError):
    pass


def read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or "config_hash" not in record or "status" not in record:
            raise ValueError("not a run record")
        return record
    except (OSError, ValueError) as error:
        raise CorruptRecordError(f"run record {path} is unreadable ({error}); move it away or delete it "
                                 "and run the same command again to redo that run") from None


def git_state() -> tuple[str, bool]:
    """The commit the code ran at and whether the work tree had uncommitted changes, the
    repository's results/ and plots/ left out: a study rewriting its own committed records
    does not make the code that trains it dirty."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_DIR, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)results", ":(exclude)plots"], cwd=REPO_DIR,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip() != ""
        return commit, dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", True


@contextmanager
def run_lock(path: Path) -> Iterator[bool]:
    """An exclusive lock file per run, so that two runners on one study (or shards on a shared
    filesystem) never train the same run twice. Yields False if another live process holds it;
    a lock left by a dead process on this host is taken over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _lock_is_stale(path):
                path.unlink(missing_ok=True)
                continue
            yield False
            return
        with os.fdopen(fd, "w") as handle:
            handle.write(me)
        try:
            yield True
        finally:
            if path.exists() and path.read_text() == me:
                path.unlink(missing_ok=True)
        return
    yield False


def _lock_is_stale(path: Path) -> bool:
    try:
        host, pid = path.read_text().split()
    except (OSError, ValueError):
        return False  # being written right now, or unreadable: leave it alone
    if host != socket.gethostname():
        return False  # we cannot see the other host's processes
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
