"""The failures a user can fix. Each message says what to do; the command line prints it as
one `error:` line and exits 2 (runner.py), never a traceback."""

from __future__ import annotations


class ConfigError(ValueError):
    """A study, preset, command-line value or request that cannot be run as given."""


class DataError(RuntimeError):
    """Data that cannot be found or read; the message says where we looked and what to do."""


class CorruptRecordError(ValueError):
    """A record or manifest that cannot be read; the message names the file and what to do."""


class OutputError(OSError):
    """A results or figures folder that cannot be written: the message names the folder and
    the cause (not a folder, no permission, disk full)."""
