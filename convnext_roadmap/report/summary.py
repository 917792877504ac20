"""A study's records summarised: one row per step, in the study's order, with the seed
statistics, each step's paired delta against its declared parent, and the paper's numbers
where the step has them. Computed from the run records alone, so it can be rebuilt at any
time and always agrees with them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from convnext_steps import get_step

from ..store.manifest import step_entry
from ..store.record import Record
from ..store.records import current_records
from .stats import paired_delta, seeds_to_resolve

# The columns of results.csv, in order. A fixed list: other tools read the CSV by name.
SUMMARY_COLUMNS: list[str] = [
    "order",
    "step",
    "budget_epochs",
    "step_index",
    "label",
    "phase",
    "parent",
    "sweep",
    "reference",
    "status",
    "n_seeds",
    "n_did_not_learn",
    "top1_mean",
    "top1_std",
    "top5_mean",
    "top5_std",
    "delta_vs_parent",
    "delta_vs_parent_ci_low",
    "delta_vs_parent_ci_high",
    "delta_vs_parent_boot_low",
    "delta_vs_parent_boot_high",
    "prob_improvement_vs_parent",
    "resolved",
    "n_pairs",
    "params_m",
    "width_mult",
    "gmacs_train_res",
    "gmacs_224",
    "train_throughput",
    "eval_throughput",
    "wall_time_s",
    "paper_top1",
    "paper_top1_std",
    "paper_gflops",
    "paper_delta_vs_parent",
]
# The columns of runs.csv: one row per run, for pandas.
RUN_COLUMNS: list[str] = [
    "step",
    "budget_epochs",
    "seed",
    "status",
    "did_not_learn",
    "top1",
    "top5",
    "val_loss",
    "train_throughput",
    "eval_throughput",
    "wall_time_s",
    "params",
    "gmacs_train_res",
    "gmacs_224",
    "width_mult",
    "precision",
    "threads",
    "epochs",
    "config_hash",
    "git_commit",
    "git_dirty",
    "finished_at",
]


def load_records(study_dir: Path) -> list[Record]:
    """The finished and failed run records of the study's current config. An unreadable
    record stops the report (records.CorruptRecordError) instead of silently dropping a
    seed; a "done" record without its numbers is left out."""
    records, _, _ = current_records(Path(study_dir))
    return [r for r in records if r.status in ("done", "failed")]


def study_steps(study_dir: Path, records: list[Record]) -> list[dict[str, Any]]:
    """The study's steps in its order, as the manifest (study.json) has them; without one,
    the steps that have records, in roadmap order."""
    _, manifest, _ = current_records(Path(study_dir))
    if manifest is not None and manifest.get("steps"):
        return list(manifest["steps"])
    steps: dict[str, dict[str, Any]] = {}
    for record in records:
        if record.step in steps:
            continue
        try:
            steps[record.step] = step_entry(get_step(record.step))
        except KeyError:  # a step this code does not know: what its record says
            steps[record.step] = {
                "slug": record.step,
                "label": record.label or record.step,
                "phase": record.phase or "",
                "parent": record.parent,
                "index": record.step_index,
                "sweep": False,
                "reference": False,
            }
    return sorted(steps.values(), key=lambda s: (s.get("index") is None, s.get("index") or 0))


def _number(value: Any) -> float:
    """A number from a record, NaN for null/missing/garbage (a failed run has no top-1)."""
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _mean(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def _std(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) >= 2 else math.nan


def comparison_parent(step: dict[str, Any], steps: list[dict[str, Any]]) -> str | None:
    """The step a row's delta is taken against: its declared parent; for a reference model
    (Swin-T), the study's final step."""
    if step.get("reference"):
        chain = [s["slug"] for s in steps if not s.get("reference")]
        return chain[-1] if chain else None
    return step.get("parent")


def did_not_learn(record: Record) -> bool:
    """A finished run whose top-1 is at chance level (Record.at_chance)."""
    return record.at_chance(None if record.num_classes else _registry_classes(record.dataset))


def _registry_classes(dataset: str | None) -> int | None:
    from ..data.registry import DATASETS  # a record from before records kept num_classes

    info = DATASETS.get(dataset or "")
    return info.num_classes if info else None


def study_budgets(study_dir: Path, records: list[Record]) -> list[int]:
    """The study's budgets in epochs: its manifest's, else those of its records."""
    _, manifest, _ = current_records(Path(study_dir))
    if manifest and manifest.get("budgets"):
        return [int(b) for b in manifest["budgets"]]
    found = sorted({r.budget for r in records})
    if found:
        return found
    return [int(((manifest or {}).get("config") or {}).get("train", {}).get("epochs") or 1)]


def summarize(records: list[Record], steps: list[dict[str, Any]], budgets: list[int] | None = None) -> pd.DataFrame:
    """One row per (budget, step) of the study, budget by budget, steps in the study's order;
    each delta against the parent at the same budget. Without `budgets`, those of the records."""
    budgets = budgets or sorted({r.budget for r in records}) or [1]
    frames = [summarize_budget([r for r in records if r.budget == b], steps, b) for b in budgets]
    return pd.concat(frames, ignore_index=True).astype(frames[0].dtypes.to_dict())


def summarize_budget(records: list[Record], steps: list[dict[str, Any]], budget: int) -> pd.DataFrame:
    """One row per step of the study, in its order; only "done" runs enter the accuracy
    statistics. A step is "failed" if it has records but none finished, "missing" if none."""
    by_step: dict[str, list[Record]] = {}
    for record in records:
        by_step.setdefault(record.step, []).append(record)
    paper = {s["slug"]: s.get("paper_top1") for s in steps}

    def top1_by_seed(slug: str | None) -> dict[int, float]:
        return {r.seed: float(r.top1) for r in by_step.get(slug, []) if r.done}

    rows = []
    for order, step in enumerate(steps):
        slug = step["slug"]
        recs = by_step.get(slug, [])
        done = [r for r in recs if r.done]
        acc = top1_by_seed(slug)
        parent = comparison_parent(step, steps)
        delta = paired_delta(acc, top1_by_seed(parent)) if parent in paper else None
        paper_delta = (
            (paper[slug] - paper[parent])
            if (parent in paper and paper[slug] is not None and paper[parent] is not None)
            else math.nan
        )

        def field(name: str, pool: list[Record]) -> float:
            return _mean([_number(getattr(r, name)) for r in pool])

        rows.append(
            {
                "order": order,
                "step": slug,
                "budget_epochs": budget,
                "step_index": step.get("index"),
                "label": step.get("label", slug),
                "n_did_not_learn": sum(did_not_learn(r) for r in done),
                "phase": step.get("phase", ""),
                "parent": parent,
                "sweep": bool(step.get("sweep")),
                "reference": bool(step.get("reference")),
                "status": "done" if done else ("failed" if recs else "missing"),
                "n_seeds": len(done),
                "top1_mean": _mean(list(acc.values())),
                "top1_std": _std(list(acc.values())),
                "top5_mean": field("top5", done),
                "top5_std": _std([_number(r.top5) for r in done]),
                "delta_vs_parent": delta.mean if delta and delta.n else math.nan,
                "delta_vs_parent_ci_low": delta.ci_low if delta else math.nan,
                "delta_vs_parent_ci_high": delta.ci_high if delta else math.nan,
                "delta_vs_parent_boot_low": delta.boot_low if delta else math.nan,
                "delta_vs_parent_boot_high": delta.boot_high if delta else math.nan,
                "prob_improvement_vs_parent": delta.prob_improvement if delta else math.nan,
                "resolved": delta.resolved if delta else None,
                "n_pairs": delta.n if delta else 0,
                # Architecture numbers do not depend on whether the run finished.
                "params_m": field("params", recs) / 1e6,
                "width_mult": field("width_mult", recs),
                "gmacs_train_res": field("gmacs_train_res", recs),
                "gmacs_224": field("gmacs_224", recs),
                "train_throughput": field("train_throughput", done),
                "eval_throughput": field("eval_throughput", done),
                # What the step cost, failed seeds included (NaN: nothing ran).
                "wall_time_s": float(np.nansum([_number(r.wall_time_s) for r in recs])) if recs else math.nan,
                "paper_top1": _number(step.get("paper_top1")),
                "paper_top1_std": _number(step.get("paper_top1_std")),
                "paper_gflops": _number(step.get("paper_gmacs")),
                "paper_delta_vs_parent": paper_delta,
            }
        )
    frame = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    return frame.astype(
        {
            "order": int,
            "budget_epochs": int,
            "n_seeds": int,
            "n_did_not_learn": int,
            "n_pairs": int,
            "step_index": "Int64",
            "resolved": "boolean",
        }
    )


def summary_line(frame: pd.DataFrame) -> str:
    """'k of n changes resolved; j of them with the paper's sign' over the steps that have a
    parent in the study and at least two paired seeds (reference models left out)."""
    changes = frame[~frame["reference"] & frame["resolved"].notna()]
    resolved = changes[changes["resolved"].fillna(False).astype(bool)]
    with_paper = resolved[resolved["paper_delta_vs_parent"].notna()]
    agree = int((np.sign(with_paper["delta_vs_parent"]) == np.sign(with_paper["paper_delta_vs_parent"])).sum())
    line = f"{len(resolved)} of {len(changes)} changes resolved (95% paired t interval excludes 0)"
    if resolved.empty:
        return line
    if len(with_paper) == len(resolved):
        return line + f"; {agree} of them with the paper's sign"
    if with_paper.empty:
        return line + "; none of them has a paper Δ to compare"
    return line + f"; {agree} of the {len(with_paper)} with a paper Δ {'has' if agree == 1 else 'have'} its sign"


def paired_spreads(records: list[Record], steps: list[dict[str, Any]]) -> list[float]:
    """The standard deviation over seeds of each change's paired difference (child - parent),
    for every step with a parent in the study and at least two shared seeds."""
    top1: dict[tuple[str, int], dict[int, float]] = {}
    for r in records:
        if r.done:
            top1.setdefault((r.step, r.budget), {})[r.seed] = float(r.top1)
    spreads = []
    for budget in sorted({b for _, b in top1}):
        for step in steps:
            child = top1.get((step["slug"], budget), {})
            parent = top1.get((comparison_parent(step, steps) or "", budget), {})
            shared = sorted(set(child) & set(parent))
            if len(shared) >= 2 and not step.get("reference"):
                spreads.append(float(np.std([child[k] - parent[k] for k in shared], ddof=1)))
    return spreads


def seed_guidance(records: list[Record], steps: list[dict[str, Any]], deltas: list[float]) -> str | None:
    """How many seeds would resolve a delta of each given size, from the spread of the
    study's paired differences so far, pooled over changes (the root mean square of their
    standard deviations: unbiased for the variance, where a median of 2-seed estimates would
    be biased low); None without any."""
    spreads = paired_spreads(records, steps)
    if not spreads:
        return None
    sd = float(np.sqrt(np.mean(np.square(spreads))))
    needs = []
    for delta in deltas:
        n = seeds_to_resolve(sd, delta)
        needs.append(f"a Δ of {delta:g} point(s) needs {n if n else 'more than 1000'} seeds")
    seeds = max(len({r.seed for r in records if r.step == s["slug"]}) for s in steps)
    return (
        f"seed guidance: the paired Δ of a change varies over seeds with a standard deviation of {sd:.2f} "
        f"points (pooled over {len(spreads)} changes, up to {seeds} seeds each); to resolve it (95% paired t "
        "interval excluding 0) " + ", ".join(needs)
    )


def runs_table(records: list[Record]) -> pd.DataFrame:
    """One row per run of the current config: the per-seed numbers, for pandas."""
    rows = [
        {
            c: r.budget if c == "budget_epochs" else did_not_learn(r) if c == "did_not_learn" else getattr(r, c)
            for c in RUN_COLUMNS
        }
        for r in records
    ]
    return pd.DataFrame(rows, columns=RUN_COLUMNS)
