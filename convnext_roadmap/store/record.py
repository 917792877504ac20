"""The record of one run: one JSON file per (step, seed, budget, config), written once, never
edited. Every writer, reader and the report go through `Record`.

`results/<study>/runs/<run name>__<hash8>.json` is the record of an experiment; every table
and figure is derived from these files. Records of earlier versions of this code (fewer
fields) read as they are: a field they lack is None, and keys this version does not know are
kept in `extra` and written back unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import CorruptRecordError

# Bumped when a record's meaning changes, or a default of TrainConfig or NetSpec changes what
# it trains (a run's hash holds only the values that differ from the defaults): a record of
# another version is another run.
RECORD_VERSION = 2
STATUSES = ("done", "failed")
CHANCE_MARGIN = 2.0  # top-1 points from 100 / classes within which a run did not learn


@dataclass
class Record:
    """One run. Required: study, step, seed, config_hash, status ("done" or "failed"); a
    "done" record also has finite top1, top5 and val_loss. Everything else may be None in a
    record of an older version."""

    study: str
    step: str
    seed: int
    config_hash: str
    status: str
    # what ran
    preset: str | None = None
    step_index: int | None = None
    label: str | None = None
    phase: str | None = None
    parent: str | None = None
    budget_epochs: int | None = None  # None: a record from before budgets (its config's epochs)
    config: dict[str, Any] | None = None  # the whole TrainConfig of the run
    spec: dict[str, Any] | None = None  # the step's NetSpec (None: a reference model, or an old record)
    dataset: str | None = None
    resolution: int | None = None
    width_mult: float | None = None
    num_classes: int | None = None
    in_chans: int | None = None
    # how it ended
    failure: str | None = None
    failed_epoch: int | None = None
    top1: float | None = None
    top5: float | None = None
    val_loss: float | None = None
    epochs: int | None = None  # epochs trained
    train_images: int | None = None
    val_images: int | None = None
    # what it cost
    params: int | None = None
    gmacs_train_res: float | None = None
    gmacs_224: float | None = None
    train_throughput: float | None = None
    eval_throughput: float | None = None
    wall_time_s: float | None = None
    validation_s: float | None = None
    time_split: dict[str, float] | None = None  # --profile only
    # where and with what
    threads: int | None = None
    world_size: int | None = None
    precision: str | None = None
    device: str | None = None
    versions: dict[str, str] | None = None
    pointwise: dict[str, str] | None = None  # each 1x1 conv's conv-or-matmul choice (fp32 CPU runs)
    # compile runs only (None: not compiled): whether dynamo kept the network compiled the whole
    # run (no recompile limit hit), and how many graphs it compiled
    compiled: bool | None = None
    compiled_graphs: int | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    finished_at: str | None = None
    log_dir: str | None = None  # relative to the study folder
    weights: str | None = None  # relative to the study folder
    reused_from: str | None = None  # the record this one was copied from (another study of the same results)
    # keys of other versions of this code, kept as they are
    extra: dict[str, Any] = field(default_factory=dict)
    # not written: where the record was read from, and why a "done" record is not done
    path: Path | None = field(default=None, compare=False)
    problem: str | None = field(default=None, compare=False)

    @property
    def done(self) -> bool:
        return self.status == "done"

    @property
    def budget(self) -> int:
        """Epochs the run was given: its budget, else its recipe's epochs."""
        if self.budget_epochs is not None:
            return int(self.budget_epochs)
        return int((self.config or {}).get("epochs") or self.epochs or 1)

    def at_chance(self, num_classes: int | None = None) -> bool:
        """A finished run whose top-1 ends within CHANCE_MARGIN points of chance (100 / classes):
        it did not learn. `num_classes` for a record from before records kept them."""
        classes = self.num_classes or num_classes
        return self.done and bool(classes) and abs(float(self.top1) - 100.0 / classes) <= CHANCE_MARGIN

    def config_value(self, key: str, default: Any = None) -> Any:
        return (self.config or {}).get(key, default)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_WRITTEN}
        data.update(self.extra)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path | None = None) -> Record:
        """A record from parsed JSON; unknown keys go to `extra`. A CorruptRecordError if it is
        not a run record at all; a "done" record without its numbers gets status "incomplete"
        (it is trained again and the report leaves it out)."""
        missing = [k for k in REQUIRED if k not in data]
        if missing:
            raise CorruptRecordError(
                f"run record {path} is not a run record (no {', '.join(missing)}); move it "
                "away or delete it and re-run the same command to redo that run"
            )
        known = {k: v for k, v in data.items() if k in _FIELDS}
        record = cls(
            **known, extra={k: v for k, v in data.items() if k not in _FIELDS and k not in _NOT_WRITTEN}, path=path
        )
        problem = record.check()
        if problem:
            record.status, record.problem = "incomplete", problem
        return record

    @classmethod
    def from_json(cls, text: str, path: Path | None = None) -> Record:
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except ValueError as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise CorruptRecordError(
                f"run record {path} is unreadable ({reason}); move it away or delete it "
                "and re-run the same command to redo that run"
            ) from None
        return cls.from_dict(data, path)

    def check(self) -> str | None:
        """Why this record cannot count as what its status says, or None."""
        if self.status == "done":
            absent = [k for k in DONE_NUMBERS if not _finite(getattr(self, k))]
            if absent:
                return f"status 'done' without {', '.join(absent)}"
            return None
        if self.status not in STATUSES:
            return f"unknown status {self.status!r}"
        return None

    def replace(self, **changes: Any) -> Record:
        return dataclasses.replace(self, **changes)


REQUIRED = ("study", "step", "seed", "config_hash", "status")
DONE_NUMBERS = ("top1", "top5", "val_loss")  # a "done" record without them is not done
_NOT_WRITTEN = ("path", "problem", "extra", "_path")
_FIELDS = {f.name for f in fields(Record)} - set(_NOT_WRITTEN)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def run_name(slug: str, seed: int, budget: int | None = None) -> str:
    """`<step>__seed<k>`, and `__<b>ep` for a run of a study that lists budgets."""
    return f"{slug}__seed{seed}" + (f"__{budget}ep" if budget is not None else "")


def record_filename(name: str, config_hash: str) -> str:
    """Records are keyed by their config hash: a changed config writes a new record and
    never overwrites one of another config."""
    return f"{name}__{config_hash[:8]}.json"
