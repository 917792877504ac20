"""Finding a study's run records: the one place `evaluate`, `load_run` and `compare` ask.

A study keeps one record per (step, seed, budget, config hash) in `results/<study>/runs/`;
its manifest (`study.json`) names the runs of its current config, and only those count here,
as in the study's own tables (records.current_records).
"""

from __future__ import annotations

from pathlib import Path

from convnext_steps import get_step

from ..errors import ConfigError
from .record import Record
from .records import current_records


def study_records(study_dir: Path) -> list[Record]:
    """The finished records of a study's current config, by step index, step, budget and seed."""
    if not (Path(study_dir) / "runs").is_dir():
        raise ConfigError(
            f"no study with records in {study_dir} (no runs/ folder); check --out and the study name, or train it first"
        )
    records, _, _ = current_records(Path(study_dir))
    done = [r for r in records if r.done]
    return sorted(done, key=lambda r: (r.step_index is None, r.step_index or 0, r.step, r.budget, r.seed))


def find_record(study_dir: Path, step: str | int, seed: int, budget: int | None = None) -> Record:
    """The finished record of one run of the study's current config (of `budget` epochs, when
    the study has several); a ConfigError that says what exists if there is none."""
    runs = Path(study_dir) / "runs"
    records, manifest, _ = current_records(Path(study_dir)) if runs.is_dir() else ([], None, 0)
    if str(step) in {r.step for r in records}:  # a slug, a step the study defined included
        slug = str(step)
    else:  # an index or a label of the study's roadmap; KeyError for an unknown step
        roadmap = ((manifest or {}).get("config") or {}).get("roadmap") or "resnet50"
        slug = get_step(step, roadmap).slug
    mine = [r for r in records if r.step == slug and r.seed == seed]
    budgets = sorted({r.budget for r in mine})
    if budget is not None:
        mine = [r for r in mine if r.budget == budget]
    elif len(budgets) > 1:
        raise ConfigError(
            f"{slug} seed {seed} was trained for {', '.join(map(str, budgets))} epochs; say which with --budget"
        )
    if not mine:
        have = sorted(f"{r.step} seed {r.seed}" + (f" {r.budget} ep" if budget is not None else "") for r in records)
        raise ConfigError(
            f"no record of {slug} seed {seed}"
            + (f" at {budget} epochs" if budget is not None else "")
            + f" in {runs}"
            + (f"; the study's runs are: {', '.join(have)}" if have else "; train it first")
        )
    done = [r for r in mine if r.done]
    if not done:
        raise ConfigError(
            f"{mine[0].path or runs} records a {mine[0].status} run "
            f"({mine[0].failure or mine[0].problem}); it has no trained weights; "
            "rerun the study (with --retry-failed for a failed run)"
        )
    # Without a manifest (records written by hand) several configs may be there: the newest.
    return max(done, key=lambda r: str(r.finished_at or ""))
