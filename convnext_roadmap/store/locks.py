"""One lock file per run, so that two runners on one study (or shards on a shared filesystem)
never train the same run twice.

A lock is created whole, with its owner in it ("host pid token"): the owner is written to a
temporary file that is then hard-linked to the lock's name, which fails if the lock exists
(atomic, and safe on NFS, where O_EXCL was not always). A lock whose owner is a dead process
on this host is stale and taken over; a lock of another host never is (its processes cannot
be seen from here), except one of an earlier incarnation of this same SLURM job (a requeue:
the owner names its job id and restart count). An empty or unreadable lock file (a full disk, a writer of an older
version killed half-way) is stale once it is older than LOCK_GRACE_S.

Taking over is atomic: only the process holding the lock's breaker (`<lock>.break`, created
the same way) may remove a stale lock, and it removes the very file it judged stale; then
every contender races for the new lock, which exactly one wins (benchmarks/lock_race.py races
processes for one stale lock; benchmarks/results/lock_race.txt).

Why not `filelock` (store/files.py uses it for short critical sections): these locks outlive
the process that holds the run for minutes to days, must name their owner so that a dead one's
can be taken over, and must work on NFS, where flock is not always honoured across hosts.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# An empty or unreadable lock younger than this may be being written right now (and clocks of
# hosts sharing a filesystem differ by seconds).
LOCK_GRACE_S = 30.0
# A breaker is held for a few file operations; one older than this was left by a killed process.
BREAKER_STALE_S = 30.0


def _mode() -> int:
    """0666 less the umask, as every file of a study (store/files.py); computed here because
    benchmarks/lock_race.py loads this module alone, by its path."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _owner() -> str:
    job = _slurm_incarnation()
    tag = f" slurm:{job[0]}.{job[1]}" if job else ""
    return f"{socket.gethostname()} {os.getpid()} {uuid.uuid4().hex[:12]}{tag}"


def _slurm_incarnation() -> tuple[str, int] | None:
    """(job id, restart count) of this process's SLURM job: a requeued job keeps its id and
    counts one more restart (SLURM_RESTART_COUNT)."""
    job = os.environ.get("SLURM_JOB_ID", "")
    restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
    return (job, int(restarts) if restarts.isdigit() else 0) if job else None


def _requeued_away(parts: list[str]) -> bool:
    """A lock taken by an earlier incarnation of this very SLURM job (the same job id, fewer
    restarts): that incarnation ended when the job was requeued, on whichever host it ran.
    Without this, a requeued multi-node job that landed on other hosts found its own lock of
    another host, never stale, and skipped the run for ever."""
    mine = _slurm_incarnation()
    tag = next((part for part in parts[3:] if part.startswith("slurm:")), None)
    if mine is None or tag is None:
        return False
    job, _, restarts = tag[len("slurm:") :].rpartition(".")
    return job == mine[0] and restarts.isdigit() and int(restarts) < mine[1]


def _create(path: Path, content: str) -> bool:
    """Create `path` holding `content`, atomically; False if it exists."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _mode())  # readable by every runner of a shared study (mkstemp: 0600)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links: exclusive create, then write
            return _create_exclusive(path, content)
        # NFS may report a link that succeeded as failed (a retransmitted request): the link
        # count says what happened.
        return os.stat(tmp).st_nlink == 2
    finally:
        Path(tmp).unlink(missing_ok=True)


def _create_exclusive(path: Path, content: str) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)  # the umask applies
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    return True


def _identity(stat: os.stat_result) -> tuple[int, int, int]:
    return stat.st_dev, stat.st_ino, stat.st_mtime_ns


def stale_lock(path: Path) -> tuple[int, int, int] | None:
    """The identity of the lock file if it is stale (None if it is held, or gone)."""
    try:
        stat = os.stat(path)
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        text = ""
    parts = text.split()
    if len(parts) >= 2 and parts[1].isdigit():
        if _requeued_away(parts):
            return _identity(stat)
        if parts[0] != socket.gethostname():
            return None  # we cannot see the other host's processes
        try:
            os.kill(int(parts[1]), 0)
        except ProcessLookupError:
            return _identity(stat)
        except (PermissionError, OverflowError):
            return None  # alive (another user's process), or a pid no process can have
        return None
    # Empty or unreadable: stale once it is older than the grace period.
    return _identity(stat) if time.time() - stat.st_mtime > LOCK_GRACE_S else None


def _break(path: Path, seen: tuple[int, int, int], owner: str) -> bool:
    """Remove the stale lock `seen` under the breaker. False if another process is breaking it."""
    breaker = path.with_name(path.name + ".break")
    if not _create(breaker, owner):
        try:
            if time.time() - os.stat(breaker).st_mtime > BREAKER_STALE_S:
                breaker.unlink(missing_ok=True)  # its owner was killed in the middle
        except FileNotFoundError:
            pass
        return False
    try:
        try:
            if _identity(os.stat(path)) == seen:
                path.unlink()
        except FileNotFoundError:
            pass
        return True
    finally:
        breaker.unlink(missing_ok=True)


def acquire(path: Path, owner: str) -> bool:
    for _ in range(3):
        if _create(path, owner):
            return True
        seen = stale_lock(path)
        if seen is None:
            if path.exists():
                return False  # held by a live runner, or one we cannot see
            continue  # released meanwhile: try again
        if not _break(path, seen, owner):
            return False  # another runner is taking it over, and will train the run
    return False


def release(path: Path, owner: str) -> None:
    try:
        if path.read_text() == owner:
            path.unlink(missing_ok=True)
    except (OSError, UnicodeDecodeError):
        pass


@contextmanager
def run_lock(path: Path) -> Iterator[bool]:
    """Yields True if this process holds the run's lock (released on exit), False if another
    live process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    owner = _owner()
    if not acquire(path, owner):
        yield False
        return
    try:
        yield True
    finally:
        release(path, owner)
