"""A run's lock: stale-lock takeover is atomic (at most one owner), an empty or unreadable
lock is stale after a grace period, another host's lock is never taken over."""

import os
import socket
import sys
import time
from pathlib import Path

import pytest

from convnext_roadmap.store import locks
from convnext_roadmap.store.locks import run_lock

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from lock_race import dead_pid, race  # noqa: E402


@pytest.mark.slow
def test_four_processes_on_a_dead_processs_lock_one_owner_each_time():
    """Before: 2 or more owners in 16-17 of 100 trials (benchmarks/lock_race.py)."""
    counts = race(ROOT / "convnext_roadmap" / "store" / "locks.py", trials=100, processes=4)
    assert counts == {"0": 0, "1": 100, "2+": 0}


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.mark.parametrize("content", ["", "\x00\x00 garbage", "half"])
def test_an_empty_or_unreadable_lock_is_stale_after_the_grace_period(tmp_path, content):
    """Before: an empty lock file (a full disk) was 'held by another runner' forever."""
    lock = tmp_path / "run.lock"
    lock.write_text(content)
    with run_lock(lock) as acquired:
        assert not acquired, "it may be being written right now"
    age(lock, locks.LOCK_GRACE_S + 5)
    with run_lock(lock) as acquired:
        assert acquired
        assert lock.read_text().split()[:2] == [socket.gethostname(), str(os.getpid())]
    assert not lock.exists()


def test_live_and_other_hosts_locks_are_left_alone(tmp_path):
    lock = tmp_path / "run.lock"
    lock.write_text(f"{socket.gethostname()} {os.getppid()}")  # alive
    age(lock, 3600)
    with run_lock(lock) as acquired:
        assert not acquired
    lock.write_text(f"another-host.example {dead_pid()}")  # cannot be seen from here
    age(lock, 3600)
    with run_lock(lock) as acquired:
        assert not acquired
    assert lock.read_text().startswith("another-host.example")


def test_a_dead_processs_lock_is_taken_over_and_a_breaker_left_by_a_kill_expires(tmp_path):
    lock = tmp_path / "run.lock"
    lock.write_text(f"{socket.gethostname()} {dead_pid()}")
    breaker = tmp_path / "run.lock.break"
    breaker.write_text("killed while breaking")
    with run_lock(lock) as acquired:
        assert not acquired, "someone is taking it over"
    age(breaker, locks.BREAKER_STALE_S + 5)
    with run_lock(lock) as acquired:
        assert not acquired  # this attempt clears the old breaker
    with run_lock(lock) as acquired:
        assert acquired
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "no lock, breaker or temporary file left"


def test_a_lock_is_created_whole_and_released_only_by_its_owner(tmp_path):
    lock = tmp_path / "run.lock"
    with run_lock(lock) as acquired:
        assert acquired and len(lock.read_text().split()) == 3
        with run_lock(lock) as again:
            assert not again, "the same process's other runner (a thread, --jobs) waits too"
        assert lock.exists()
    assert not lock.exists()
