"""Run records: one JSON file per finished (step, seed), written atomically, never edited.

`results/<study>/runs/<step>__seed<k>.json` is the record of an experiment; every table and
figure is derived from these files.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
from contextlib import contextmanager
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .locks import run_lock  # noqa: F401 - the runner's lock per run (roadmap/locks.py)

REPO_DIR = Path(__file__).resolve().parents[1]


# Bumped when a record's meaning changes, or a default of TrainConfig or NetSpec changes
# what it trains (a run's hash holds only the values that differ from the defaults): a
# record of another version is another run.
RECORD_VERSION = 2
# What a "done" record must hold: without these numbers it is not done.
DONE_NUMBERS = ("top1", "top5", "val_loss")
REQUIRED_KEYS = ("study", "step", "seed", "config_hash", "status")
MANIFEST = "study.json"


class CorruptRecordError(ValueError):
    """A record or manifest that cannot be read; the message names the file and what to do."""


def run_name(slug: str, seed: int, budget: int | None = None) -> str:
    """`<step>__seed<k>`, and `__<b>ep` for a run of a study that lists budgets."""
    return f"{slug}__seed{seed}" + (f"__{budget}ep" if budget is not None else "")


def record_filename(name: str, config_hash: str) -> str:
    """Records are keyed by their config hash: a changed config writes a new record and
    never overwrites one of another config."""
    return f"{name}__{config_hash[:8]}.json"


def atomic_write(path: Path, write: Callable[[IO], None], binary: bool = False) -> None:
    """Write through `write(handle)` to a temporary file in the same folder, fsync, then
    rename over the target: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text))


def write_record(path: Path, record: dict[str, Any]) -> None:
    problem = record_problem(record)
    if problem:  # never write a record that a reader would have to reject
        raise ValueError(f"refusing to write run record {path.name}: {problem}")
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def record_problem(record: dict[str, Any]) -> str | None:
    """Why a parsed record cannot count as what its status says, or None."""
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        return f"not a run record (no {', '.join(missing)})"
    if record["status"] == "done":
        absent = [k for k in DONE_NUMBERS if not _finite(record.get(k))]
        if absent:
            return f"status 'done' without {', '.join(absent)}"
    elif record["status"] != "failed":
        return f"unknown status {record['status']!r}"
    return None


def read_record(path: Path) -> dict[str, Any]:
    """A parsed record. An unreadable file is a CorruptRecordError; a "done" record without
    its numbers is returned with status "incomplete" (it counts as not done: the run is
    trained again and the report leaves it out)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CorruptRecordError(f"run record {path} is unreadable ({reason}); move it away or delete it "
                                 "and re-run the same command to redo that run") from None
    problem = record_problem(record)
    if problem and problem.startswith("not a run record"):
        raise CorruptRecordError(f"run record {path} is {problem}; move it away or delete it and re-run the "
                                 "same command to redo that run")
    if problem:
        record = {**record, "status": "incomplete", "problem": problem}
    record["_path"] = str(path)
    return record


def load_records(study_dir: Path) -> list[dict[str, Any]]:
    """Every record in a study's runs/ folder, of any config, sorted by file name. Temporary
    files of atomic writes are skipped; an unreadable record stops the caller (a silently
    dropped seed would change the means without notice)."""
    runs = Path(study_dir) / "runs"
    if not runs.is_dir():
        return []
    return [read_record(p) for p in sorted(runs.glob("*.json")) if not p.name.startswith(".")]


def write_manifest(study_dir: Path, manifest: dict[str, Any]) -> None:
    """study.json: the study's current config, its steps and the hash of each of its runs.
    Tables and figures use the records of these hashes only."""
    atomic_write_text(Path(study_dir) / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")


def read_manifest(study_dir: Path) -> dict[str, Any] | None:
    path = Path(study_dir) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict) or not isinstance(manifest.get("runs"), list):
            raise ValueError("no 'runs' list")
        return manifest
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CorruptRecordError(f"study manifest {path} is unreadable ({error}); delete it and run the "
                                 "study's command again to rewrite it") from None


def current_records(study_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None, int]:
    """The records of the study's current config (those the manifest names; every record if
    there is no manifest), the manifest, and how many records of other configs are kept."""
    records = load_records(study_dir)
    manifest = read_manifest(study_dir)
    if manifest is None:
        return records, None, 0
    current = {(r["step"], r["seed"], r["config_hash"]) for r in manifest["runs"]}
    mine = [r for r in records if (r["step"], r["seed"], r["config_hash"]) in current]
    return mine, manifest, len(records) - len(mine)


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
