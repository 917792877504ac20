"""A study's plan: every (step, seed, budget) run, its config hash, and what is left to do
for it (done, failed, resume from a checkpoint, todo)."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from convnext_steps import Step

from ..config.budget import fit_to_budget, study_budgets
from ..config.define import run_train_config, study_steps
from ..config.identity import config_hash, non_default, result_relevant
from ..config.schema import StudyConfig, TrainConfig
from ..data.registry import describe, fingerprint
from ..errors import ConfigError
from ..store.manifest import step_entry, write_manifest
from ..store.record import RECORD_VERSION, record_filename, run_name
from ..store.records import load_records, read_record
from ..train.checkpoints import has_checkpoint
from ..train.precision import resolve_precision
from ..train.ranks import world_size_of
from ..train.run import Run


def study_dirs(out_dir: Path, study: StudyConfig) -> dict[str, Path]:
    base = out_dir / study.name
    return {
        "base": base,
        "runs": base / "runs",
        "checkpoints": base / "checkpoints",
        "logs": base / "logs",
        "locks": base / "locks",
    }


def run_payload(train: TrainConfig, step: Step, seed: int, world_size: int, data: str) -> dict[str, Any]:
    """Everything that determines a run's numbers: the step's spec, its own recipe, the seed;
    its hash identifies the run's record. `data` is the data set's fingerprint (where the
    data lives is not part of it)."""
    return {
        "record_version": RECORD_VERSION,
        "step": step.slug,
        "spec": non_default(step.spec),
        "seed": seed,
        "train": result_relevant(train),
        "world_size": world_size,
        "data": data,
        # what `precision: auto` means on this machine: fp32 and bf16 runs are different runs
        "precision": resolve_precision(train.precision, train.accelerator),
    }


def check_trainable(study: StudyConfig) -> None:
    """A run that would train zero optimizer steps is a config error, not a record."""
    images = describe(study.train).train_images
    for step in study_steps(study):
        batch = run_train_config(study, step).batch_size
        if images // (batch * world_size_of(study)) == 0:
            raise ConfigError(
                f"train.batch_size={batch} (x {world_size_of(study)} device(s)) is larger than the "
                f"training set ({images} images): not one optimizer step per epoch; lower batch_size"
            )


@dataclass(frozen=True)
class PlannedRun:
    """One (step, seed, budget) of a study: its recipe, its config hash, and its key: the hash of
    the same payload without the step's slug (the same run under another name has it too)."""

    step: Step
    seed: int
    budget: int
    train: TrainConfig
    hash: str
    key: str


def study_runs(study: StudyConfig) -> list[PlannedRun]:
    """Every (step, seed, budget) of the study, budget by budget (smallest first), then in the
    study's order of steps and seeds, with the run's recipe and config hash."""
    world_size, data = world_size_of(study), fingerprint(study.train)
    runs = []
    for budget in study_budgets(study):
        for step in study_steps(study):
            train = fit_to_budget(run_train_config(study, step), budget)
            for seed in study.seeds:
                payload = run_payload(train, step, seed, world_size, data)
                key = config_hash({k: v for k, v in payload.items() if k != "step"})
                runs.append(PlannedRun(step, seed, budget, train, config_hash(payload), key))
    return runs


def planned_name(study: StudyConfig, planned: PlannedRun) -> str:
    """A run's name (records, checkpoints, logs, locks): step and seed, and the budget in a
    study that lists budgets."""
    return run_name(planned.step.slug, planned.seed, planned.budget if study.budgets else None)


def plan_runs(study: StudyConfig, out_dir: Path, shard: tuple[int, int] = (0, 1)) -> list[Run]:
    """This shard's runs and what is left to do for each. A record of the same config is
    done or failed; a "done" record without its numbers is trained again (and said so)."""
    dirs = study_dirs(out_dir, study)
    runs = []
    for i, planned in enumerate(study_runs(study)):
        if i % shard[1] != shard[0]:
            continue
        step, seed, train, digest = planned.step, planned.seed, planned.train, planned.hash
        name = planned_name(study, planned)
        record_path = dirs["runs"] / record_filename(name, digest)
        checkpoint_dir = dirs["checkpoints"] / f"{name}__{digest[:8]}"
        state = "todo"
        if record_path.exists():
            record = read_record(record_path)
            if record.status == "incomplete":
                print(
                    f"note: {record_path} is not a finished run ({record.problem}); training it again", file=sys.stderr
                )
            else:
                state = record.status
        if state == "todo" and has_checkpoint(checkpoint_dir):
            state = "resume"
        runs.append(
            Run(step, seed, name, digest, record_path, checkpoint_dir, state, train, planned.budget, planned.key)
        )
    return runs


def write_study_manifest(study: StudyConfig, preset: str, out_dir: Path) -> None:
    """Record the study's current config and runs (study.json): tables and figures use the
    records of these runs only."""
    write_manifest(
        study_dirs(out_dir, study)["base"],
        {
            "study": study.name,
            "preset": preset,
            "config": asdict(study),
            "steps": [step_entry(step) for step in study_steps(study)],
            "budgets": study_budgets(study),
            "runs": [
                {"step": p.step.slug, "seed": p.seed, "budget_epochs": p.budget, "config_hash": p.hash}
                for p in study_runs(study)
            ],
        },
    )


def other_config_records(study: StudyConfig, out_dir: Path) -> int:
    """How many records in the study's runs/ belong to other configs (kept, never shown)."""
    current = {(p.step.slug, p.seed, p.hash) for p in study_runs(study)}
    return sum((r.step, r.seed, r.config_hash) not in current for r in load_records(study_dirs(out_dir, study)["base"]))
