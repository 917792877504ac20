"""SIGINT, SIGTERM and SIGUSR1 end a study the same way wherever they arrive: from the runner's
first line to its last record, a stop signal only raises a flag, and the runner stops at the
next safe point (a batch boundary in training, with a checkpoint; between runs; after the
record being written), then exits 130 saying how to resume. A record or checkpoint being
written is never cut short by the first signal, and no signal is lost.

A second SIGINT (Ctrl-C pressed again) raises KeyboardInterrupt at once, for a runner stuck
where there is no safe point (a download); checkpoints and records are written atomically,
so even that leaves nothing half-written.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


class RunInterrupted(Exception):
    """A stop signal arrived; `detail` says what was kept (a checkpoint, the records)."""

    def __init__(self, signal_name: str, detail: str) -> None:
        super().__init__(signal_name)
        self.signal_name, self.detail = signal_name, detail

    def __str__(self) -> str:
        return self.signal_name


_received: list[str] = []
_previous: dict[int, Any] = {}
_ignored: set[int] = set()  # ignored by whoever started us (nohup, a background job): left ignored
_children: list[int] = []  # DDP processes this one started (Lightning's launcher, rank 0)


def _handler(signum: int, frame: Any) -> None:
    name = signal.Signals(signum).name
    if _received and signum == signal.SIGINT:
        raise KeyboardInterrupt  # Ctrl-C twice: the user insists
    if not _received:
        _received.append(name)
        if signum != signal.SIGINT:  # Ctrl-C already reaches the whole process group
            for pid in _children:
                try:
                    os.kill(pid, signum)
                except OSError:
                    pass


def install() -> None:
    """Take over the stop signals for this process (main thread only; idempotent). A signal
    the parent set to be ignored stays ignored, as Python leaves an ignored SIGINT alone: a
    shell starts background jobs with SIGINT ignored, so that Ctrl-C in the terminal spares
    them."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in STOP_SIGNALS:
        current = signal.getsignal(sig)
        if current is signal.SIG_IGN and sig not in _previous:
            _ignored.add(sig)
        elif current is not _handler:
            _previous.setdefault(sig, current)
            signal.signal(sig, _handler)


def reassert() -> None:
    """Lightning installs its own SIGTERM handler for the length of a fit (it ends the fit
    with a SystemExit and no checkpoint): put ours back on top."""
    if _previous and threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            wanted = signal.SIG_IGN if sig in _ignored else _handler
            if signal.getsignal(sig) is not wanted:
                signal.signal(sig, wanted)


def uninstall() -> None:
    """Give the signals back (the runner's last act; tests call the runner in-process)."""
    if threading.current_thread() is threading.main_thread():
        for sig, previous in _previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
    _previous.clear()
    _ignored.clear()
    _received.clear()
    _children.clear()


def received() -> str | None:
    """The first stop signal this process received, if any."""
    return _received[0] if _received else None


def check(detail: str) -> None:
    """A safe point: stop here if a signal has arrived."""
    if _received:
        raise RunInterrupted(_received[0], detail)


def forward_to(pids: list[int]) -> None:
    """Send later stop signals on to these processes (the DDP ranks this process started)."""
    _children[:] = [pid for pid in pids if pid not in (None, os.getpid())]


__all__ = ["RunInterrupted", "install", "uninstall", "reassert", "received", "check", "forward_to", "STOP_SIGNALS"]
