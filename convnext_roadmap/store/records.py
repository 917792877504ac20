"""Reading and writing a study's records, and knowing which of them are the study's current
config (its manifest, study.json, names them)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..errors import CorruptRecordError
from .files import atomic_write_text
from .manifest import read_manifest
from .record import Record

REPO_DIR = Path(__file__).resolve().parents[2]


def write_record(path: Path, record: Record) -> None:
    problem = record.check()
    if problem:  # never write a record that a reader would have to reject
        raise ValueError(f"refusing to write run record {Path(path).name}: {problem}")
    atomic_write_text(path, record.to_json())


def read_record(path: Path) -> Record:
    """A parsed record (an unreadable file is a CorruptRecordError that says what to do)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CorruptRecordError(
            f"run record {path} is unreadable ({reason}); move it away or delete it "
            "and re-run the same command to redo that run"
        ) from None
    return Record.from_json(text, Path(path))


def load_records(study_dir: Path) -> list[Record]:
    """Every record in a study's runs/ folder, of any config, sorted by file name. Temporary
    files of atomic writes are skipped; an unreadable record stops the caller (a silently
    dropped seed would change the means without notice)."""
    runs = Path(study_dir) / "runs"
    if not runs.is_dir():
        return []
    return [read_record(p) for p in sorted(runs.glob("*.json")) if not p.name.startswith(".")]


def current_records(study_dir: Path) -> tuple[list[Record], dict | None, int]:
    """The records of the study's current config (those the manifest names; every record if
    there is no manifest), the manifest, and how many records of other configs are kept."""
    records = load_records(study_dir)
    manifest = read_manifest(study_dir)
    if manifest is None:
        return records, None, 0
    current = {(r["step"], r["seed"], r["config_hash"]) for r in manifest["runs"]}
    mine = [r for r in records if (r.step, r.seed, r.config_hash) in current]
    return mine, manifest, len(records) - len(mine)


def git_state() -> tuple[str, bool]:
    """The commit the code ran at and whether the work tree had uncommitted changes, the
    repository's results/ and plots/ left out: a study rewriting its own committed records
    does not make the code that trains it dirty."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_DIR, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = (
            subprocess.run(
                [
                    "git",
                    "status",
                    "--porcelain",
                    "--untracked-files=no",
                    "--",
                    ".",
                    ":(exclude)results",
                    ":(exclude)plots",
                ],
                cwd=REPO_DIR,
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout.strip()
            != ""
        )
        return commit, dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", True
