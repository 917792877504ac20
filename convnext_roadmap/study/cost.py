"""What a study costs before it runs: multiply-adds to train each run."""

from __future__ import annotations

from convnext_steps.complexity import forward_gmacs

from ..config.schema import StudyConfig
from ..data.registry import describe
from ..train.run import Run


def training_gmacs(study: StudyConfig, run: Run) -> float:
    """Multiply-adds of training one run: 3x forward (forward + backward) per image."""
    cfg = run.train
    data = describe(cfg)
    forward = forward_gmacs(run.step, cfg.resolution, cfg.width_mult, data.num_classes, data.in_chans)
    return 3 * forward * data.train_images * cfg.epochs
