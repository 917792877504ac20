"""Finding a study's run records: the one place `evaluate`, `load_run` and `compare` ask.

A study keeps one record per (step, seed, config hash) in `results/<study>/runs/`; its
manifest (`study.json`) names the runs of its current config, and only those count here, as
in the study's own tables (roadmap.records.current_records).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convnext_steps import get_step

from .config import ConfigError
from .records import current_records


def study_records(study_dir: Path) -> list[dict[str, Any]]:
    """The finished (status done) records of a study's current config, by step index and seed."""
    if not (Path(study_dir) / "runs").is_dir():
        raise ConfigError(f"no study with records in {study_dir} (no runs/ folder); check --out and the "
                          "study name, or train it first")
    records, _, _ = current_records(Path(study_dir))
    done = [r for r in records if r.get("status") == "done"]
    return sorted(done, key=lambda r: (r.get("step_index", 10**6), r["step"], r.get("seed", 0)))


def find_record(study_dir: Path, step: str | int, seed: int) -> dict[str, Any]:
    """The finished record of one run of the study's current config; a ConfigError that says
    what exists if there is none."""
    runs = Path(study_dir) / "runs"
    records, manifest, _ = current_records(Path(study_dir)) if runs.is_dir() else ([], None, 0)
    if str(step) in {r["step"] for r in records}:  # a slug, a step the study defined included
        slug = str(step)
    else:  # an index or a label of the study's roadmap; KeyError for an unknown step
        roadmap = ((manifest or {}).get("config") or {}).get("roadmap") or "resnet50"
        slug = get_step(step, roadmap).slug
    mine = [r for r in records if r["step"] == slug and r.get("seed") == seed]
    if not mine:
        have = sorted(f"{r['step']} seed {r['seed']}" for r in records)
        raise ConfigError(f"no record of {slug} seed {seed} in {runs}"
                          + (f"; the study's runs are: {', '.join(have)}" if have else "; train it first"))
    done = [r for r in mine if r.get("status") == "done"]
    if not done:
        raise ConfigError(f"{mine[0].get('_path', runs)} records a {mine[0].get('status')} run "
                          f"({mine[0].get('failure') or mine[0].get('problem')}); it has no trained weights; "
                          "rerun the study (with --retry-failed for a failed run)")
    # Without a manifest (records written by hand) several configs may be there: the newest.
    return max(done, key=lambda r: str(r.get("finished_at", "")))
