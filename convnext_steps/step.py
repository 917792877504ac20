"""A step of a roadmap: a network spec, the step it changes, and what the change is.

Built-in roadmaps (`tables.py`) are lists of `Step`s; a user derives new ones from any
step with `derive_step(parent, slug, change={...})`, from Python or from a study's YAML
`define:` block. A step holds its own paper numbers (None where the paper has none).
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol

from torch import nn

from .network import RoadmapNet
from .spec import NetSpec


class StepError(ValueError):
    """A step that cannot be defined or built; the message says what is allowed."""


class ReferenceSpec(Protocol):
    """The spec of a model drawn beside a roadmap (Swin): it builds itself."""

    def build(
        self, num_classes: int = 1000, in_chans: int = 3, width_mult: float = 1.0, drop_path_rate: float = 0.0
    ) -> nn.Module: ...


@dataclass(frozen=True)
class Step:
    slug: str
    label: str
    phase: str
    parent: str | None
    change: str  # one line: what differs from the parent
    spec: NetSpec | ReferenceSpec  # a reference model's (Swin) builds itself
    changed_fields: frozenset[str] = frozenset()
    index: int | None = None  # position in its built-in roadmap (None: defined by a user)
    roadmap: str | None = None  # the built-in roadmap it belongs to
    sweep: bool = False  # a branch off the main chain (the kernel-size sweep)
    reference: bool = False  # a model drawn beside the roadmap, not a step of it (Swin-T)
    # A recipe of its own: train.* keys that override the study's for this step alone.
    train: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # The paper's ImageNet-1K figures: top-1 mean and std (3 seeds), GFLOPs = GMACs at 224.
    paper_top1: float | None = None
    paper_top1_std: float | None = None
    paper_gmacs: float | None = None


def netspec_fields() -> dict[str, Any]:
    """NetSpec's field names and their annotations."""
    hints = typing.get_type_hints(NetSpec)
    return {f.name: hints[f.name] for f in fields(NetSpec)}


def derive_step(
    parent: Step,
    slug: str,
    change: Mapping[str, Any] | None = None,
    *,
    label: str | None = None,
    phase: str = "defined",
    train: Mapping[str, Any] | None = None,
    sweep: bool = False,
    description: str | None = None,
) -> Step:
    """A new step: `parent`'s spec with the NetSpec fields in `change` set, and optionally a
    recipe of its own (`train`). It must change the architecture, the recipe or both."""
    change = dict(change or {})
    train = dict(train or {})
    if not isinstance(parent.spec, NetSpec):
        raise StepError(f"step {slug!r}: parent {parent.slug!r} is a reference model; derive from a roadmap step")
    allowed = netspec_fields()
    unknown = sorted(set(change) - set(allowed))
    if unknown:
        raise StepError(f"step {slug!r}: unknown NetSpec field(s) {', '.join(unknown)}; allowed: " + ", ".join(allowed))
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in change.items()}
    try:
        spec = replace(parent.spec, **values)
    except (ValueError, TypeError) as error:
        raise StepError(f"step {slug!r}: {error}") from None
    changed = spec.diff(parent.spec)
    if not changed and not train:
        raise StepError(
            f"step {slug!r} changes nothing: give `change` NetSpec fields that differ from "
            f"{parent.slug!r}, or a `train:` block for a recipe-only step"
        )
    check_buildable(spec, slug)
    if description is None:
        parts = [f"{k}: {getattr(parent.spec, k)!r} -> {getattr(spec, k)!r}" for k in sorted(changed)]
        parts += [f"train.{k} = {v!r}" for k, v in sorted(train.items())]
        description = "; ".join(parts)
    return Step(
        slug=slug,
        label=label or slug,
        phase=phase,
        parent=parent.slug,
        change=description,
        spec=spec,
        changed_fields=frozenset(changed),
        sweep=sweep,
        train=train,
    )


def check_buildable(spec: NetSpec, slug: str, resolution: int = 224) -> None:
    """Build the network on the meta device and push an image through it (224x224 unless
    told): a spec the network cannot build fails here, at once, instead of at training time."""
    problem = _build_problem(spec, resolution)
    if problem:
        raise StepError(
            f"step {slug!r}: the network cannot be built with this spec at {resolution}x{resolution} ({problem})"
        )


@functools.cache
def _build_problem(spec: NetSpec, resolution: int) -> str | None:
    """Why the spec cannot be built at this resolution, or None; once per (spec, resolution):
    a study file is checked several times while it is planned."""
    import torch

    try:
        with torch.device("meta"):
            model = RoadmapNet(spec, num_classes=10, in_chans=3)
            model(torch.zeros(2, 3, resolution, resolution))  # 2: BatchNorm needs more than one value
    except (ValueError, RuntimeError, TypeError) as error:
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    return None
