#!/usr/bin/env python3
"""How far does a rounding-level change move a run of the default study?

Why: `SameConv` (and earlier a matmul form of the 1x1 convs) computes the same function as
nn.Conv2d, only with different floating-point rounding; yet when it landed, steps 3-11 of
the default study moved by up to 2 top-1 points. This script trains one step four times on
the same data, in the same batch order, from the same initial weights:

  fast    the runner's model (with its CPU kernels);
  repeat  the same again: a control that the run is deterministic (must not differ at all);
  plain   the same model with plain nn.Conv2d (`use_plain_kernels`): different rounding;
  nudged  the runner's model with one weight moved by one float32 ulp: a control, a change
          far below anything a user could care about.

It prints, per variant, how the train loss and the weights drift from `fast` over the run
and the final top-1. If `nudged` drifts as far as `plain`, the gap is chaos (sensitivity of
training to rounding), not a difference between the convolutions, and a gap of that size
between two steps of the study is noise; the study's seed spread already measures it.

    python benchmarks/rounding_sensitivity.py [--step kernel_11] [--seed 0] [--preset cpu] [--precision 32-true]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytorch_lightning as pl
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from convnext_roadmap.config.load import load_study  # noqa: E402
from convnext_roadmap.data.loading import make_datamodule  # noqa: E402
from convnext_roadmap.train.callbacks import DeterministicResume  # noqa: E402
from convnext_roadmap.train.module import RoadmapClassifier  # noqa: E402
from convnext_roadmap.train.precision import resolve_precision  # noqa: E402
from convnext_roadmap.train.run import quiet_lightning  # noqa: E402
from convnext_steps.cpu_kernels import use_plain_kernels  # noqa: E402


class LossTrace(pl.Callback):
    """The train loss of every batch (a host sync per batch: fine here, not in the runner)."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.losses.append(float(outputs["loss"]))


def nudge_one_weight(model: torch.nn.Module) -> None:
    """Move the first weight of the first conv to the next float32 value."""
    weight = next(p for name, p in model.named_parameters() if name.endswith("weight") and p.dim() == 4)
    with torch.no_grad():
        weight[0, 0, 0, 0] = torch.nextafter(weight[0, 0, 0, 0], torch.tensor(float("inf")))


VARIANTS = {
    "fast": lambda model: None,
    "repeat": lambda model: None,
    "plain": use_plain_kernels,
    "nudged": nudge_one_weight,
}


def train(variant: str, step: str, preset: str, seed: int, precision: str | None) -> dict[str, Any]:
    cfg = load_study(preset)[0].train
    cfg.precision = precision or cfg.precision
    pl.seed_everything(seed, workers=True, verbose=False)
    datamodule = make_datamodule(cfg, seed)
    module = RoadmapClassifier(step, cfg, datamodule.num_classes, datamodule.in_chans)
    VARIANTS[variant](module.model)
    trace = LossTrace()
    trainer = pl.Trainer(
        max_epochs=cfg.epochs,
        precision=resolve_precision(cfg.precision, "cpu"),
        logger=False,
        callbacks=[DeterministicResume(seed), trace],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        val_check_interval=1.0 / cfg.val_checks_per_epoch,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(module, datamodule=datamodule)
    weights = torch.cat([p.detach().flatten() for p in module.model.parameters()])
    return {"losses": trace.losses, "weights": weights, "top1": float(trainer.callback_metrics["val_top1"])}


def first_step_beyond(diffs: list[float], threshold: float) -> int | None:
    return next((i for i, d in enumerate(diffs) if d > threshold), None)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--step", default="kernel_11", help="step slug (default: kernel_11)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="cpu")
    p.add_argument(
        "--precision",
        default=None,
        help="override the preset's precision, e.g. 32-true (under bf16 autocast 'plain' "
        "also computes its depthwise convs in bf16, a different function, not only "
        "other rounding)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "rounding_sensitivity.csv")
    args = p.parse_args()
    quiet_lightning()
    runs = {name: train(name, args.step, args.preset, args.seed, args.precision) for name in VARIANTS}
    ref = runs["fast"]
    rows = []
    for name, run in runs.items():
        diffs = [abs(a - b) for a, b in zip(run["losses"], ref["losses"], strict=True)]
        rows.append(
            {
                "step": args.step,
                "seed": args.seed,
                "preset": args.preset,
                "variant": name,
                "precision": resolve_precision(args.precision or load_study(args.preset)[0].train.precision, "cpu"),
                "top1": run["top1"],
                "top1_minus_fast": run["top1"] - ref["top1"],
                "batches": len(run["losses"]),
                "first_batch_loss_diff_gt_1e-4": first_step_beyond(diffs, 1e-4),
                "first_batch_loss_diff_gt_1e-2": first_step_beyond(diffs, 1e-2),
                "first_loss_diff": diffs[0] if diffs else 0.0,  # batch 0, before any update
                "max_loss_diff_first_10": max(diffs[:10], default=0.0),
                "mean_loss_diff_last_100": sum(diffs[-100:]) / max(1, len(diffs[-100:])),
                "final_weight_rel_diff": float((run["weights"] - ref["weights"]).norm() / ref["weights"].norm()),
            }
        )
    df = pd.DataFrame(rows)
    print(df.to_string(index=False))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
