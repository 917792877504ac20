"""A study's manifest, `results/<study>/study.json`: its current config, its steps (what
tables and figures need to know of each) and the config hash of each of its runs. Tables and
figures use the records of these hashes only; records of other configs stay in runs/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from convnext_steps import Step

from ..errors import CorruptRecordError
from .files import atomic_write_text

MANIFEST = "study.json"


def step_entry(step: Step) -> dict[str, Any]:
    """What tables and figures need to know of a step, as the manifest keeps it."""
    return {
        "slug": step.slug,
        "label": step.label,
        "phase": step.phase,
        "parent": step.parent,
        "change": step.change,
        "index": step.index,
        "roadmap": step.roadmap,
        "sweep": step.sweep,
        "reference": step.reference,
        "train": dict(step.train),
        "paper_top1": step.paper_top1,
        "paper_top1_std": step.paper_top1_std,
        "paper_gmacs": step.paper_gmacs,
    }


def write_manifest(study_dir: Path, manifest: dict[str, Any]) -> None:
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
        raise CorruptRecordError(
            f"study manifest {path} is unreadable ({error}); delete it and run the study's command again to rewrite it"
        ) from None
