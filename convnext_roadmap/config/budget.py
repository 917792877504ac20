"""Training budgets: a study trains each (step, seed) once per budget of epochs, with the
recipe's schedule fitted to that budget."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .schema import TrainConfig

if TYPE_CHECKING:
    from .schema import StudyConfig


def check_budgets(budgets: Any, where: str = "budgets") -> None:
    """Budgets are a non-empty list of distinct whole numbers of epochs, or null."""
    if budgets is None:
        return
    example = "e.g. [1, 3, 10]"
    if not isinstance(budgets, list) or not budgets:
        raise ConfigError(f"{where}: {budgets!r} must be a non-empty list of epochs, {example}, or null")
    for budget in budgets:
        if isinstance(budget, bool) or not isinstance(budget, (int, float)):
            raise ConfigError(f"{where}: {budget!r} is not a number of epochs; give whole epochs, {example}")
        if budget != int(budget):
            raise ConfigError(f"{where}: {budget!r} is a fraction of an epoch; budgets are whole epochs, {example}")
        if budget < 1:
            raise ConfigError(f"{where}: {budget!r} must be at least 1 epoch, {example}")
    if len(set(budgets)) != len(budgets):
        twice = sorted({b for b in budgets if budgets.count(b) > 1})
        raise ConfigError(f"{where}: {', '.join(map(str, twice))} given twice; list each budget once, {example}")


# A budget other than the recipe's own validates twice per epoch, the checks before the last on this
# many images (TrainConfig.curve_val_images): under 5% of the run's multiply-adds at every budget
# of the default data (10k validation images, 60k training images; docs/budget.md).
BUDGET_VAL_CHECKS_PER_EPOCH = 2
BUDGET_CURVE_VAL_IMAGES = 1000


def fit_to_budget(train: TrainConfig, epochs: int) -> TrainConfig:
    """The recipe fitted to a budget of `epochs`: warmup keeps its share of the run and the
    cosine spans the whole of it (the paper: 20 of 300 epochs), as Budgeted Training (Li et al.
    2019) asks of a schedule. The recipe's own number of epochs returns the recipe unchanged, so
    its runs keep their config hashes."""
    if epochs == train.epochs:
        return train
    return replace(
        train,
        epochs=epochs,
        warmup_epochs=round(train.warmup_epochs * epochs / train.epochs, 9),
        val_checks_per_epoch=BUDGET_VAL_CHECKS_PER_EPOCH,
        curve_val_images=BUDGET_CURVE_VAL_IMAGES,
    )


def study_budgets(study: StudyConfig) -> list[int]:
    """The study's budgets in epochs, smallest first (the recipe's own epochs when none are set)."""
    return sorted(int(b) for b in study.budgets) if study.budgets else [study.train.epochs]
