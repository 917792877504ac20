"""runner.main with hooks that let a test look inside a 2-process DDP study. Lightning's
launcher starts rank 1 by running this same script with the same arguments, so every rank
has the hooks:

- DDP_NAN_STEP=<slug>: rank 1 finds its training loss NaN at its first batch of that step's run
  (rank 0 finds nothing);
- DDP_TRACE=<folder>: each rank appends to <folder>/rank<r>.jsonl every seed derived for its
  batches (the loader's crops and flips, the per-batch reseed of Mixup and drop path) and the
  size of every validation batch it evaluates.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _trace(entry: dict) -> None:
    folder = os.environ.get("DDP_TRACE")
    if folder:
        with open(Path(folder) / f"rank{_rank()}.jsonl", "a") as handle:
            handle.write(json.dumps(entry) + "\n")


def install_hooks() -> None:
    import torch

    from convnext_roadmap.data import in_memory
    from convnext_roadmap.train import callbacks, module

    def traced(where: str, original):
        def derive(*parts: int) -> int:
            value = original(*parts)
            _trace({"where": where, "parts": list(parts), "value": value})
            return value

        return derive

    in_memory.derive_seed = traced("loader", in_memory.derive_seed)
    callbacks.derive_seed = traced("reseed", callbacks.derive_seed)

    nan_step = os.environ.get("DDP_NAN_STEP")
    training_step = module.RoadmapClassifier.training_step
    validation_step = module.RoadmapClassifier.validation_step

    def poisoned(self, batch, batch_idx):
        loss = training_step(self, batch, batch_idx)
        if nan_step and self.hparams["step"] == nan_step and self.trainer.global_rank == 1 and batch_idx == 0:
            # what rank 1 sees of a NaN loss (its flag); the loss returned stays finite, so that no
            # NaN gradient reaches rank 0 through the all-reduce: only rank 1 knows
            self._nonfinite = self._nonfinite | ~torch.isfinite(loss.detach() * torch.tensor(float("nan")))
        return loss

    def counted(self, batch, batch_idx):
        _trace({"where": "val_batch", "step": self.hparams["step"], "size": len(batch[1])})
        return validation_step(self, batch, batch_idx)

    module.RoadmapClassifier.training_step = poisoned
    module.RoadmapClassifier.validation_step = counted


if __name__ == "__main__":
    install_hooks()
    import runner

    sys.exit(runner.main())
