"""Never train the same run twice: a run whose spec, recipe, seed, data and precision are those
of a finished record of any study in the same results folder is taken from that record.

Two runs are the same when their config payloads (plan.run_payload) agree in everything but
the step's slug: the small_images study's `resnet_stem` is leave_one_out's
`revert_patchify_stem`, and the budget study's 1-epoch runs are the default study's. The
other studies' runs are planned again from their manifests (study.json) on this machine, so
a record trained under another precision or on other data never matches.

A reused run is copied, not linked: its record (with `reused_from` naming the source), its
CSV log and its weights go into the study's own folders, so a study stays whole when it is
copied, moved or cloned without the others.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ..config.schema import StudyConfig, from_dict
from ..errors import ConfigError, CorruptRecordError, DataError
from ..store.files import atomic_write
from ..store.manifest import MANIFEST, read_manifest
from ..store.record import Record
from ..store.records import load_records, write_record
from ..train.run import Run
from .plan import study_dirs, study_runs


def finished_runs_by_key(out_dir: Path) -> dict[str, Record]:
    """Every finished record of every study in `out_dir` whose manifest still plans it, by run
    key. A study whose manifest cannot be planned here (an older config, data that is not on
    this machine) is left out, with a note."""
    found: dict[str, Record] = {}
    for manifest_path in sorted(Path(out_dir).glob(f"*/{MANIFEST}")):
        study_dir = manifest_path.parent
        try:
            manifest = read_manifest(study_dir) or {}
            other = from_dict(StudyConfig, dict(manifest.get("config") or {}))
            keys = {planned.hash: planned.key for planned in study_runs(other)}
            records = load_records(study_dir)
        except (ConfigError, DataError, CorruptRecordError, OSError, TypeError) as error:
            print(
                f"note: runs of {study_dir.name} cannot be reused here ({str(error).splitlines()[0][:120]})",
                file=sys.stderr,
            )
            continue
        for record in records:
            if record.done and not record.reused_from and record.config_hash in keys:
                found.setdefault(keys[record.config_hash], record)
    return found


def mark_reusable(study: StudyConfig, out_dir: Path, runs: list[Run]) -> None:
    """Set `reuse_from` (and state "reuse") on every run still to train that a finished record
    already holds."""
    todo = [run for run in runs if run.state in ("todo", "resume")]
    if not todo:
        return
    finished = finished_runs_by_key(out_dir)
    for run in todo:
        source = finished.get(run.key)
        if source is not None and source.path != run.record_path:
            run.state, run.reuse_from = "reuse", source


def source_name(record: Record, out_dir: Path) -> str:
    """`<study>/runs/<file>`: where a reused record came from, relative to the results folder."""
    return str(Path(record.path).resolve().relative_to(Path(out_dir).resolve())) if record.path else record.study


def copy_reused(study: StudyConfig, preset: str, run: Run, out_dir: Path) -> Record:
    """Write the run's record from its source, with its CSV log and weights copied beside it."""
    source = run.reuse_from
    assert source is not None and source.path is not None
    source_dir = Path(source.path).parents[1]
    dirs = study_dirs(out_dir, study)
    log_dir = dirs["logs"] / run.name / run.hash[:8]
    if source.log_dir and (source_dir / source.log_dir).is_dir():
        if log_dir.exists():
            shutil.rmtree(log_dir)
        shutil.copytree(source_dir / source.log_dir, log_dir)
    weights = None
    if source.weights and (source_dir / source.weights).is_file():
        weights = dirs["base"] / "weights" / f"{run.name}__{run.hash[:8]}.pt"
        data = (source_dir / source.weights).read_bytes()
        atomic_write(weights, lambda handle: handle.write(data), binary=True)
    record = source.replace(
        study=study.name,
        preset=preset,
        step=run.step.slug,
        step_index=run.step.index,
        label=run.step.label,
        phase=run.step.phase,
        parent=run.step.parent,
        budget_epochs=run.budget,
        config_hash=run.hash,
        log_dir=str(log_dir.relative_to(dirs["base"])) if log_dir.is_dir() else None,
        weights=str(weights.relative_to(dirs["base"])) if weights else None,
        reused_from=source_name(source, out_dir),
        path=None,
    )
    write_record(run.record_path, record)
    return record
