"""What identifies a run: the settings that change its numbers, hashed. A record is keyed by
this hash, so a changed recipe is a new run and never overwrites the record of another."""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, fields, is_dataclass
from typing import Any

from .schema import TrainConfig


def config_hash(payload: dict[str, Any]) -> str:
    """A short stable hash of what determines a run's result."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def non_default(instance: Any) -> dict[str, Any]:
    """A dataclass's fields that differ from their defaults. What identifies a run is what
    differs from the defaults, so that a new knob (added with a default that changes
    nothing) keeps every earlier record; changing a default's meaning bumps
    records.RECORD_VERSION instead."""
    values = asdict(instance)
    changed = {}
    for f in fields(instance):
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:  # no default: always part of the identity
            changed[f.name] = values[f.name]
            continue
        default = asdict(default) if is_dataclass(default) else default
        if values[f.name] != (
            list(default) if isinstance(default, tuple) and isinstance(values[f.name], list) else default
        ):
            changed[f.name] = values[f.name]
    return changed


def result_relevant(train: TrainConfig) -> dict[str, Any]:
    """The training settings that change a run's numbers and are not at their default (not
    where data lives, how many loader workers or how often checkpoints are written)."""
    return {k: v for k, v in non_default(train).items() if k not in NOT_IN_HASH}


# Settings that do not change a run's numbers: where data lives, loader workers, how often
# checkpoints are written, the hardware a run is spread over, compilation.
NOT_IN_HASH = frozenset(
    {"data_dir", "num_workers", "checkpoint_every_s", "devices", "num_nodes", "strategy", "accelerator", "compile"}
)
