"""Finding a study's run records: the one place `evaluate`, `load_run` and `compare` ask.

Today a study keeps one record per (step, seed) in `results/<study>/runs/<step>__seed<k>.json`,
the last one written; a record whose config hash differs from the current study's is still
the study's result until it is retrained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convnext_steps import get_step

from .config import ConfigError
from .records import read_record, run_name


def study_records(study_dir: Path) -> list[dict[str, Any]]:
    """The finished (status done) records of a study, by step index and seed."""
    runs = Path(study_dir) / "runs"
    if not runs.is_dir():
        raise ConfigError(f"no study with records in {study_dir} (no runs/ folder); check --out and the "
                          "study name, or train it first")
    records = [read_record(path) for path in sorted(runs.glob("*.json")) if not path.name.startswith(".")]
    done = [r for r in records if r.get("status") == "done"]
    return sorted(done, key=lambda r: (r.get("step_index", 10**6), r["step"], r.get("seed", 0)))


def find_record(study_dir: Path, step: str | int, seed: int) -> dict[str, Any]:
    """The finished record of one run; a ConfigError that says what exists if there is none."""
    slug = get_step(step).slug  # KeyError for an unknown step, naming the known ones
    path = Path(study_dir) / "runs" / f"{run_name(slug, seed)}.json"
    if not path.is_file():
        have = sorted(p.stem for p in (Path(study_dir) / "runs").glob("*.json")) if (Path(study_dir) / "runs").is_dir() else []
        raise ConfigError(f"no record of {slug} seed {seed} in {path.parent}"
                          + (f"; there are: {', '.join(have)}" if have else "; train it first"))
    record = read_record(path)
    if record.get("status") != "done":
        raise ConfigError(f"{path} records a {record.get('status')} run ({record.get('failure')}); "
                          "it has no trained weights; rerun it with --retry-failed")
    return record
