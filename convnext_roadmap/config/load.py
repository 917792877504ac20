"""A whole study from its layers: a preset (`ablations/<name>.yaml`, itself possibly layered
over another with `preset:`), a user's YAML, and the command line's overrides, in that order;
then typed and checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convnext_steps import Step, get_step

from ..errors import ConfigError
from .budget import check_budgets, fit_to_budget, study_budgets
from .define import defined_steps, run_train_config, study_steps
from .identity import result_relevant
from .schema import StudyConfig, from_dict, merge
from .yaml_io import read_yaml

ABLATIONS_DIR = Path(__file__).resolve().parents[2] / "ablations"


def list_presets() -> list[str]:
    return sorted(p.stem for p in ABLATIONS_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    path = ABLATIONS_DIR / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(list_presets())}")
    return path


def _preset_layers(name: str, seen: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """A preset's YAML and, first, those of the presets it is layered over (its `preset:`)."""
    if name in seen:
        raise ConfigError(f"preset {name!r} is layered over itself: {' -> '.join((*seen, name))}")
    data = read_yaml(preset_path(name))
    base = data.pop("preset", None)
    if base is None:
        return [data]
    if not isinstance(base, str):
        raise ConfigError(f"{preset_path(name)}: preset must be a name, one of {', '.join(list_presets())}")
    return _preset_layers(base, (*seen, name)) + [data]


def load_study(
    preset: str, config_file: Path | None = None, overrides: dict[str, Any] | None = None
) -> tuple[StudyConfig, str]:
    """The resolved study and the preset it was layered on. A YAML file (a user's, or a
    preset that is itself a question over another, like ablations/leave_one_out.yaml) names
    its base with `preset:`; command-line overrides come last."""
    layers: list[dict[str, Any]] = []
    if config_file is not None:
        user = read_yaml(config_file)
        preset = user.pop("preset", preset)
        if not isinstance(preset, str):
            raise ConfigError(f"{config_file}: preset must be a name, one of {', '.join(list_presets())}")
        layers.append(user)
    data: dict[str, Any] = {}
    for layer in _preset_layers(preset) + layers + [overrides or {}]:
        data = merge(data, layer)
    check_budgets(data.get("budgets"))  # before typing: a fraction gets its own message
    study = from_dict(StudyConfig, data)
    check_study(study)
    return study, preset


def check_study(study: StudyConfig) -> None:
    """Every field, then every step: it resolves, builds, and has a valid recipe at every budget."""
    study.check()
    check_budgets(study.budgets)
    defined = defined_steps(study)
    for step in study_steps(study):
        check_changes_something(study, step, defined)
        if study.budgets and "epochs" in step.train:
            raise ConfigError(
                f"define[{step.slug}].train.epochs: a study with budgets trains every step for "
                "each budget; leave epochs out of the step's recipe"
            )
        for budget in study_budgets(study):
            fit_to_budget(run_train_config(study, step), budget).check()


def check_changes_something(study: StudyConfig, step: Step, defined: dict[str, Step]) -> None:
    """A defined step must differ from its parent once the study's recipe and the command
    line's overrides are applied: a recipe-only step whose keys the study's recipe already has
    would train its parent's run again under another name."""
    if step.slug not in defined or step.changed_fields:
        return
    parent = defined.get(step.parent) or get_step(step.parent, study.roadmap)
    if step.spec != parent.spec:
        return
    mine, theirs = result_relevant(run_train_config(study, step)), result_relevant(run_train_config(study, parent))
    if mine == theirs:
        keys = ", ".join(f"train.{k}" for k in sorted(step.train))
        raise ConfigError(
            f"define[{step.slug}]: changes nothing against its parent {parent.slug!r}: its recipe "
            f"({keys}) is what the study's recipe already trains with (a --set or preset sets the same "
            "values); change it, or drop the step"
        )
