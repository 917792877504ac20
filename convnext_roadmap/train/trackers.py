"""Where a run's metrics go: Lightning's loggers, all offline, under results/<study>/logs/.

The CSV log (`logs/<run>/<hash8>/metrics.csv`) is always written: the report reads it. On
request (`--logger NAME`, repeatable, or `logger: [NAME, ...]` in a study YAML) a run also
writes to
- TensorBoard: event files in `logs/tensorboard/<run>/<hash8>/` (`tensorboard --logdir ...`);
- MLflow: a file store in `logs/mlflow/` (tracking URI `file:<absolute path>`; experiment =
  the study, run name = `<run>__<hash8>`; `mlflow ui --backend-store-uri file:...`);
- Weights & Biases: an offline run in `logs/wandb/wandb/` (`wandb sync` uploads it later).

Every run also logs its learning rate at every logging step (LearningRateMonitor). Which loggers
a study writes to is not part of any run's config hash.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.loggers import Logger

from ..config.schema import LOGGERS
from ..errors import ConfigError
from ..store.files import file_lock
from .ranks import process_rank

# logger -> (the module it needs, the pyproject extra that installs it)
REQUIREMENTS = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "mlflow": ("mlflow", "mlflow"),
    "wandb": ("wandb", "wandb"),
}
LOG_EVERY_N_STEPS = 20


def check_installed(names: list[str]) -> None:
    """A ConfigError naming the extra to install for the first requested logger whose
    package cannot be imported."""
    for name in names:
        if name not in LOGGERS:
            raise ConfigError(f"logger: {name!r} is unknown; allowed: {', '.join(LOGGERS)}")
        if name not in REQUIREMENTS:
            continue
        module, extra = REQUIREMENTS[name]
        try:
            importlib.import_module(module)
        except ImportError:
            raise ConfigError(
                f"logger {name!r} needs the {module} package, which is not installed: pip install -e '.[{extra}]'"
            ) from None


def make_loggers(
    csv_logger: Logger,
    names: list[str],
    logs_dir: Path,
    study: str,
    run_name: str,
    version: str,
    tags: dict[str, Any] | None = None,
) -> list[Logger]:
    """The CSV logger first (the report reads it, and Lightning's `trainer.log_dir` is the
    first logger's), then the requested trackers, in the order given, each once."""
    loggers: list[Logger] = [csv_logger]
    for name in dict.fromkeys(names):
        if name == "tensorboard":
            from pytorch_lightning.loggers import TensorBoardLogger

            loggers.append(
                TensorBoardLogger(logs_dir / "tensorboard", name=run_name, version=version, default_hp_metric=False)
            )
        elif name == "mlflow":
            from pytorch_lightning.loggers import MLFlowLogger

            # MLflow 3 keeps its file store in maintenance mode and refuses it unless asked.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            store = (logs_dir / "mlflow").resolve()
            if process_rank() == 0:  # other ranks log nothing (Lightning's loggers are rank-zero only)
                ensure_mlflow_experiment(store, study)
            loggers.append(
                MLFlowLogger(
                    experiment_name=study,
                    run_name=f"{run_name}__{version}",
                    tracking_uri=f"file:{store}",
                    tags={k: str(v) for k, v in (tags or {}).items()},
                )
            )
        elif name == "wandb":
            from pytorch_lightning.loggers import WandbLogger

            os.environ.setdefault("WANDB_SILENT", "true")
            save_dir = logs_dir / "wandb"
            save_dir.mkdir(parents=True, exist_ok=True)
            wandb_logger = WandbLogger(
                project=study,
                name=f"{run_name}__{version}",
                save_dir=str(save_dir),
                offline=True,
                mode="offline",
                tags=[f"{k}={v}" for k, v in (tags or {}).items()],
            )
            # Lightning passes anonymous=None, which wandb 0.31 answers with a warning per run.
            getattr(wandb_logger, "_wandb_init", {}).pop("anonymous", None)
            loggers.append(wandb_logger)
        elif name != "csv":
            raise ConfigError(f"logger: {name!r} is unknown; allowed: {', '.join(LOGGERS)}")
    return loggers


def ensure_mlflow_experiment(store: Path, study: str) -> None:
    """Create the study's MLflow experiment once, under a lock beside the store: MLflow's file
    store checks and creates without one, so two runners of a study starting together made two
    experiments of one name, each with half the runs."""
    from mlflow.tracking import MlflowClient

    with file_lock(store.parent / ".mlflow.lock"):
        client = MlflowClient(tracking_uri=f"file:{store}")
        if client.get_experiment_by_name(study) is None:
            client.create_experiment(study)


def finish_loggers(loggers: list[Logger]) -> None:
    """End what Lightning leaves open between two runs of one process: a W&B run stays the
    process's current run (the next WandbLogger would log into it) until wandb.finish()."""
    if any(type(logger).__name__ == "WandbLogger" for logger in loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish()


def log_every_n_steps(num_train: int, batch_size: int, world_size: int) -> int:
    """Every 20 optimizer steps, or once per epoch when an epoch has fewer (a smoke run has
    4): otherwise a short run would log no training loss and no learning rate at all."""
    batches = num_train // max(batch_size * world_size, 1)
    return max(1, min(LOG_EVERY_N_STEPS, batches))


def learning_rate_monitor() -> LearningRateMonitor:
    """The learning rate of each parameter group (`lr-AdamW/pg1`: weights with decay,
    `lr-AdamW/pg2`: biases, norms, layer scale) at every logging step."""
    return LearningRateMonitor(logging_interval="step")
