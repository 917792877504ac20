"""A study's steps: built-in ones by slug, index or range, and the steps a study defines
itself (`define:` in its YAML), each a parent, a change and optionally a recipe of its own.

    define:
      - slug: convnext_t_bn
        parent: convnext_t
        label: "ConvNeXt-T, BN instead of LN"
        change: {norm: batch}
        train: {lr: 2.0e-3}     # optional: this step's recipe differs
"""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from convnext_steps import (
    Step,
    StepError,
    apply_readings,
    builtin_slugs,
    derive_step,
    get_step,
    list_roadmaps,
    resolve_steps,
)
from convnext_steps.step import check_buildable

from ..errors import ConfigError
from .schema import TrainConfig, from_dict, merge

if TYPE_CHECKING:
    from .schema import StudyConfig

DEFINE_KEYS = ("slug", "parent", "label", "change", "train", "sweep", "phase", "description")
# A step's own recipe may change how it is trained, not what it is trained on or where.
NOT_PER_STEP = (
    "dataset",
    "data_dir",
    "resolution",
    "train_subset",
    "val_subset",
    "synthetic_train_size",
    "synthetic_val_size",
    "devices",
    "num_nodes",
    "strategy",
    "accelerator",
)
SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def _definition(entry: Any, position: int) -> dict[str, Any]:
    where = f"define[{position}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping with keys {', '.join(DEFINE_KEYS)}")
    unknown = sorted(set(entry) - set(DEFINE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(DEFINE_KEYS)}")
    for key in ("slug", "parent"):
        if not isinstance(entry.get(key), (str, int)) or isinstance(entry.get(key), bool):
            raise ConfigError(f"{where}: needs a `{key}` (a step slug)")
    slug = str(entry["slug"])
    if not SLUG.match(slug):
        raise ConfigError(f"{where}: slug {slug!r} must be lower-case letters, digits, - and _")
    if slug in builtin_slugs():
        raise ConfigError(f"{where}: slug {slug!r} is a built-in step; choose another name")
    for key, kind in (
        ("change", dict),
        ("train", dict),
        ("sweep", bool),
        ("label", str),
        ("phase", str),
        ("description", str),
    ):
        if key in entry and not isinstance(entry[key], kind):
            raise ConfigError(f"{where}.{key}: expected a {kind.__name__}, got {entry[key]!r}")
    not_here = sorted(set(entry.get("train", {})) & set(NOT_PER_STEP))
    if not_here:
        raise ConfigError(
            f"{where}.train: {', '.join(not_here)} cannot differ between steps of one study; "
            f"a step's recipe may set any train key except {', '.join(NOT_PER_STEP)}"
        )
    unknown_train = sorted(set(entry.get("train", {})) - set(TrainConfig.__dataclass_fields__))
    if unknown_train:
        raise ConfigError(
            f"{where}.train: unknown key(s) {', '.join(unknown_train)}; allowed: "
            + ", ".join(k for k in TrainConfig.__dataclass_fields__ if k not in NOT_PER_STEP)
        )
    return entry


def defined_steps(study: StudyConfig) -> dict[str, Step]:
    """The study's own steps by slug, each derived from its parent (built-in or defined, in
    any order of definition). Every problem is a one-line ConfigError."""
    entries = {}
    for position, raw in enumerate(study.define):
        entry = _definition(raw, position)
        if str(entry["slug"]) in entries:
            raise ConfigError(f"define: slug {entry['slug']!r} is defined twice")
        entries[str(entry["slug"])] = entry
    steps: dict[str, Step] = {}

    def build(slug: str, chain: tuple[str, ...]) -> Step:
        if slug in steps:
            return steps[slug]
        entry = entries[slug]
        parent_key = str(entry["parent"])
        if parent_key in chain or parent_key == slug:
            raise ConfigError(
                f"define: step {slug!r} has a cyclic parent chain: " + " -> ".join((*chain, slug, parent_key))
            )
        if parent_key in entries:
            parent = build(parent_key, (*chain, slug))
        else:
            try:
                parent = get_step(parent_key, study.roadmap)
            except KeyError as error:
                raise ConfigError(
                    f"define: step {slug!r} has an unknown parent {parent_key!r}: {error.args[0]}; "
                    f"or one of the defined steps: {', '.join(entries)}"
                ) from None
        try:
            step = derive_step(
                parent,
                slug,
                entry.get("change", {}),
                label=entry.get("label"),
                phase=entry.get("phase", "defined"),
                train=entry.get("train", {}),
                sweep=entry.get("sweep", False),
                description=entry.get("description"),
            )
            check_buildable(step.spec, slug, study.train.resolution)  # at the study's image size too
        except StepError as error:
            raise ConfigError(f"define: {error}") from None
        steps[slug] = step
        return step

    for slug in entries:
        build(slug, ())
    return steps


def study_steps(study: StudyConfig) -> list[Step]:
    """The steps a study trains, in its order, under the study's readings. `all` is the
    roadmap's steps, followed by the steps the study defines."""
    if study.roadmap not in list_roadmaps():
        raise ConfigError(f"roadmap: {study.roadmap!r} is unknown; allowed: {', '.join(list_roadmaps())}")
    defined = defined_steps(study)
    selection = study.steps
    if isinstance(selection, bool) or (isinstance(selection, (str, list)) and not selection):
        raise ConfigError(
            "steps: give 'all', an index, or slugs / indices / ranges like 0-5 (a list or a comma string)"
        )
    try:
        steps = resolve_steps(selection, study.roadmap, defined)
    except KeyError as error:
        raise ConfigError(f"steps: {error.args[0]}") from None
    if isinstance(selection, str) and selection.strip().lower() == "all":
        steps += [s for s in defined.values() if s.slug not in {t.slug for t in steps}]
    try:
        return [apply_readings(step, study.readings) for step in steps]
    except StepError as error:
        raise ConfigError(f"readings: {error}") from None


def run_train_config(study: StudyConfig, step: Any) -> TrainConfig:
    """The recipe one step trains with: the study's, with the step's own `train:` keys over it."""
    if not step.train:
        return study.train
    return from_dict(TrainConfig, merge(asdict(study.train), dict(step.train)), f"define[{step.slug}].train.")
