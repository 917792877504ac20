"""One run trained with Lightning's Trainer: its callbacks, loggers and checkpoints put
together, resumed from its last checkpoint when there is one, and its record built."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import platform
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.callbacks import EMAWeightAveraging
from pytorch_lightning.profilers import SimpleProfiler

from convnext_steps import Step, autotune, spec_dict
from convnext_steps.complexity import count_macs, count_params, gmacs_at_224

from .. import signals
from ..config.schema import StudyConfig, TrainConfig
from ..data.loading import make_datamodule
from ..errors import ConfigError
from ..signals import RunInterrupted
from ..store.record import Record
from ..store.records import git_state
from .callbacks import POINTWISE_KEY, DeterministicResume, ProgressLine, Throughput, thread_warning
from .checkpoints import AtomicCheckpointIO, EpochEndCheckpoint, GracefulStop, PatientModelCheckpoint, resume_point
from .csv_log import CurveKeeper, ResumableCSVLogger, checkpoint_rows
from .gpu import compiled_state, gpu_trainer_kwargs, prepare_gpu_run, start_compiled_run, uses_cuda
from .module import RoadmapClassifier
from .precision import cpu_model, resolve_precision
from .ranks import process_rank, world_size_of
from .trackers import finish_loggers, learning_rate_monitor, log_every_n_steps, make_loggers
from .weights import load_pretrained, save_weights, weights_path


@dataclass
class Run:
    step: Step
    seed: int
    name: str
    hash: str
    record_path: Path
    checkpoint_dir: Path
    state: str  # "done", "failed", "resume" (checkpoint there), "reuse" (another record holds it), "todo"
    train: TrainConfig  # the step's recipe: the study's, with the step's own keys over it, fitted to the budget
    budget: int  # epochs
    key: str = ""  # the run's identity without its step's name (study/reuse.py)
    reuse_from: Record | None = None  # the finished record of the same run, when state is "reuse"


def train_run(
    study: StudyConfig, preset: str, run: Run, dirs: dict[str, Path], progress_bar: bool, profile: bool = False
) -> Record:
    cfg = run.train
    started = time.time()
    pl.seed_everything(run.seed, workers=True, verbose=False)
    datamodule = make_datamodule(cfg, run.seed)
    # last.ckpt, else previous.ckpt; one that cannot be loaded is set aside (a warning)
    resume, saved = resume_point(run.checkpoint_dir, owner=process_rank() == 0)
    # one CPU process per run: under DDP Lightning sets each rank's threads inside fit
    single_cpu = world_size_of(study) == 1 and cfg.accelerator in ("auto", "cpu") and not torch.cuda.is_available()
    warning = thread_warning(saved, run.name) if single_cpu else None
    if warning and process_rank() == 0:
        print(warning, file=sys.stderr, flush=True)
    if saved is not None and hasattr(datamodule, "resume_loader_state"):
        datamodule.resume_loader_state = saved_loader_state(saved)
    keep_rows = checkpoint_rows(saved)  # of the CSV log, when resuming
    # the 1x1 convs' choices so far; a checkpoint from before they were noted: conv throughout
    pointwise = {} if saved is None else saved.get(POINTWISE_KEY)
    del saved  # Lightning loads it again; do not hold two copies during training
    trainer_kwargs: dict[str, Any] = {
        "accelerator": cfg.accelerator,
        "devices": cfg.devices,
        "num_nodes": cfg.num_nodes,
        "strategy": cfg.strategy,
        **gpu_trainer_kwargs(cfg),
    }  # cuDNN autotuning on CUDA; nothing on the CPU
    if cfg.accumulate_grad_batches != 1:
        trainer_kwargs["accumulate_grad_batches"] = cfg.accumulate_grad_batches
    prepare_gpu_run(cfg)  # TF32 matmuls on CUDA; nothing on the CPU
    if hasattr(datamodule, "prefetch"):
        datamodule.prefetch = uses_cuda(cfg)  # in-memory batches pinned and prepared a step ahead
    stopper = GracefulStop(run.checkpoint_dir / "last.ckpt", run.name)
    throughput = Throughput()
    callbacks: list[pl.Callback] = [
        CurveKeeper(),
        DeterministicResume(run.seed),
        throughput,
        stopper,
        PatientModelCheckpoint(
            dirpath=run.checkpoint_dir,
            save_last=True,
            save_top_k=0,
            train_time_interval=dt.timedelta(seconds=cfg.checkpoint_every_s),
            enable_version_counter=False,
        ),  # always last.ckpt, never last-v1.ckpt
        EpochEndCheckpoint(run.checkpoint_dir / "last.ckpt"),
    ]
    if cfg.ema_decay:
        callbacks.append(EMAWeightAveraging(decay=cfg.ema_decay))
    csv_logger = ResumableCSVLogger(dirs["logs"], name=run.name, version=run.hash[:8], keep=keep_rows)
    loggers = make_loggers(
        csv_logger,
        study.logger,
        dirs["logs"],
        study.name,
        run.name,
        run.hash[:8],
        tags={"step": run.step.slug, "seed": run.seed, "config_hash": run.hash},
    )
    logger = loggers[0]  # CSV: the report reads its metrics.csv
    callbacks.append(learning_rate_monitor())
    if not sys.stderr.isatty():  # no progress bar: one line per validation check
        callbacks.append(ProgressLine(run.step.index, run.step.slug, run.seed, throughput))
    trainer_kwargs["plugins"] = [AtomicCheckpointIO()]  # checkpoints are never half-written
    if SLURMEnvironment.detect():
        # Pre-emption is ours to handle (checkpoint at a batch boundary, exit 130); the job
        # script requeues. Lightning's own requeue would race with it.
        trainer_kwargs["plugins"].append(SLURMEnvironment(auto_requeue=False))
    profiler = SimpleProfiler() if profile else None
    trainer = pl.Trainer(
        max_epochs=cfg.epochs,
        precision=resolve_precision(cfg.precision, cfg.accelerator),
        logger=loggers,
        profiler=profiler,
        callbacks=callbacks,
        val_check_interval=1.0 / cfg.val_checks_per_epoch,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        log_every_n_steps=log_every_n_steps(datamodule.num_train, cfg.batch_size, world_size_of(study)),
        num_sanity_val_steps=0,
        deterministic=False,
        use_distributed_sampler=False,  # the loaders shard by rank themselves (exact resume)
        **trainer_kwargs,
    )
    if trainer.world_size != world_size_of(study):
        # the run's hash and its lr scaling hold the planned world size: training on another is another run
        raise ConfigError(
            f"train.devices={cfg.devices!r} x num_nodes={cfg.num_nodes} made Lightning start "
            f"{trainer.world_size} process(es), where the study planned {world_size_of(study)}: "
            "give the number of devices (--devices N)"
        )
    compile_counters = start_compiled_run() if cfg.compile else None  # before the model: dynamo forgets old runs
    module = RoadmapClassifier(
        run.step, cfg, datamodule.num_classes, datamodule.in_chans, world_size=trainer.world_size
    )
    autotune.use_choices(module.model, pointwise)
    if cfg.pretrained and resume is None:
        load_pretrained(module.model, run.step.slug, datamodule.in_chans)
    try:
        with signals_as_interruption(run):
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume) if resume else None)
            if trainer.interrupted:
                raise RunInterrupted(signals.received() or "interrupted", f"{run.name} was interrupted")
            if cfg.curve_val_images is not None:
                # The curve's checks saw part of the validation set: the run's numbers come from
                # all of it, after the last optimizer step (the curve's last point).
                trainer.validate(module, dataloaders=datamodule.final_val_dataloader(), verbose=False)
            elif "val_top1" not in trainer.callback_metrics:
                # Resumed from a checkpoint that had finished training (killed before its record
                # was written): fit has nothing left to do, so validate the restored weights once
                # more. Its curve already holds this validation (logged before that checkpoint).
                trainer.loggers = []
                trainer.validate(module, datamodule=datamodule, verbose=False)
    finally:
        finish_loggers(loggers)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    model = module.model
    weights = weights_path(dirs["base"], run.name, run.hash)
    if trainer.is_global_zero:
        save_weights(weights, model)
    record = run_record(
        study,
        preset,
        run,
        status="done",
        **{
            "top1": metrics.get("val_top1"),
            "top5": metrics.get("val_top5"),
            "val_loss": metrics.get("val_loss"),
            "params": count_params(model),
            "gmacs_train_res": count_macs(model, cfg.resolution, datamodule.in_chans) / 1e9,
            "gmacs_224": gmacs_at_224(run.step),
            "train_throughput": throughput.train_img_s,
            "eval_throughput": throughput.eval_img_s,
            "wall_time_s": time.time() - started,
            "validation_s": throughput.val_total_seconds,
            "epochs": trainer.current_epoch,
            "train_images": datamodule.num_train,
            "val_images": datamodule.num_val,
            "world_size": trainer.world_size,
            "precision": str(trainer.precision),
            "log_dir": os.path.relpath(logger.log_dir, dirs["base"]),
            "weights": os.path.relpath(weights, dirs["base"]),
            "num_classes": datamodule.num_classes,
            "in_chans": datamodule.in_chans,
            "spec": spec_dict(run.step),
            "pointwise": autotune.choices_of(model),  # each measured conv-or-matmul choice (none under bf16)
        },
    )
    if profiler is not None:
        record.time_split = time_split(profiler, record.wall_time_s)
    if compile_counters is not None:
        state = compiled_state(compile_counters)
        record.compiled, record.compiled_graphs = state["compiled"], state["compiled_graphs"]
        if state["recompile_limit_hit"] and trainer.is_global_zero:
            print(
                f"warning: {run.name}: torch.compile hit dynamo's recompile limit; part of the run trained "
                "eagerly (its img/s is not a compiled run's)",
                file=sys.stderr,
                flush=True,
            )
    return record


@contextlib.contextmanager
def signals_as_interruption(run: Run) -> Any:
    """Lightning ends a fit hit by SIGTERM with a SystemExit (SIGTERMException, exit code 0) and
    one hit by KeyboardInterrupt (Ctrl-C twice) with sys.exit(1): both are interruptions."""
    try:
        yield
    except (SystemExit, KeyboardInterrupt):
        if signals.received():
            raise RunInterrupted(signals.received(), f"{run.name} keeps its last checkpoint") from None
        raise


def time_split(profiler: SimpleProfiler, wall_s: float) -> dict[str, float]:
    """A run's wall time as model compute (Lightning's optimizer_step: forward, loss, backward,
    AdamW; and validation_step), data (fetching batches, augmentation included) and the rest:
    framework, metrics, checkpoints, model building, multiply-add counts, the record. Exact on
    CPU, where every op is synchronous; on a GPU, compute not yet synchronised is counted
    wherever the host next waits for it."""
    durations = profiler.recorded_durations

    def total(suffix: str) -> float:
        return sum(sum(times) for action, times in durations.items() if action.endswith(suffix))

    model_s = total(".optimizer_step") + total(".validation_step")
    data_s = total(".train_dataloader_next") + total(".val_next")
    return {"model_s": model_s, "data_s": data_s, "framework_s": wall_s - model_s - data_s}


def saved_loader_state(state: dict[str, Any]) -> dict[str, int] | None:
    """The in-memory loader's position (epoch, batches consumed) stored in a checkpoint."""
    loaders = state.get("loops", {}).get("fit_loop", {}).get("state_dict", {}).get("combined_loader") or [None]
    return loaders[0]


def run_record(study: StudyConfig, preset: str, run: Run, **fields: Any) -> Record:
    """The record of a run: who it is (step, seed, budget, recipe, machine) and `fields`."""
    commit, dirty = git_state()
    return Record(**_identity(study, preset, run), git_commit=commit, git_dirty=dirty, **fields)


def failed_record(
    study: StudyConfig, preset: str, run: Run, failure: str, epoch: int | None, wall_time_s: float
) -> Record:
    return run_record(study, preset, run, status="failed", failure=failure, failed_epoch=epoch, wall_time_s=wall_time_s)


def _identity(study: StudyConfig, preset: str, run: Run) -> dict[str, Any]:
    cfg = run.train
    return {
        "study": study.name,
        "preset": preset,
        "step": run.step.slug,
        "step_index": run.step.index,
        "label": run.step.label,
        "phase": run.step.phase,
        "parent": run.step.parent,
        "seed": run.seed,
        "budget_epochs": run.budget,
        "config_hash": run.hash,
        "config": asdict(cfg),
        "dataset": cfg.dataset,
        "resolution": cfg.resolution,
        "width_mult": cfg.width_mult,
        "threads": torch.get_num_threads(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "pytorch_lightning": pl.__version__,
        },
        "device": (
            torch.cuda.get_device_name()
            if torch.cuda.is_available()
            else f"cpu ({cpu_model()}, {os.cpu_count()} threads)"
        ),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def quiet_lightning() -> None:
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LightningModule.*eval mode.*")
    warnings.filterwarnings("ignore", category=UserWarning, module="pytorch_lightning")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*Experiment logs directory.*")
