"""Studies and their training recipes: typed, layered from YAML and checked strictly.

    from convnext_roadmap.config import load_study
    study, preset = load_study("cpu")                       # ablations/cpu.yaml
    study, preset = load_study("cpu", Path("mine.yaml"), {"seeds": [0, 1]})

Modules: schema (the dataclasses), yaml_io (strict YAML), load (presets and layers),
overrides (`--set`), define (a study's own steps and each step's recipe), budget (training
budgets), identity (the config hash of a run).
"""

from __future__ import annotations

from ..errors import ConfigError
from .budget import fit_to_budget, study_budgets
from .define import run_train_config, study_steps
from .load import list_presets, load_study
from .schema import StudyConfig, TrainConfig

__all__ = [
    "ConfigError",
    "StudyConfig",
    "TrainConfig",
    "load_study",
    "list_presets",
    "study_steps",
    "run_train_config",
    "fit_to_budget",
    "study_budgets",
]
