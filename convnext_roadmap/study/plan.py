"""Plan and run a study: every (step, seed) run, skipped when its record is already there,
resumed from its checkpoint when it was interrupted."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
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
from pytorch_lightning.callbacks import EMAWeightAveraging
from pytorch_lightning.profilers import SimpleProfiler
from lightning_fabric.plugins.environments import SLURMEnvironment

from convnext_steps import Step, autotune, build_model
from convnext_steps.complexity import count_macs, count_params

from . import signals
from .checkpoints import (AtomicCheckpointIO, EpochEndCheckpoint, GracefulStop, PatientModelCheckpoint, drop_previous,
                          has_checkpoint, resume_point)
from .signals import RunInterrupted

from .curves import CurveKeeper, ResumableCSVLogger, checkpoint_rows
from .config import (ConfigError, StudyConfig, TrainConfig, config_hash, fit_to_budget, non_default,
                     result_relevant, run_train_config, study_budgets)
from .data import make_datamodule
from .definitions import study_steps
from .datasets import describe, fingerprint
from .records import (RECORD_VERSION, CorruptRecordError, git_state, load_records, read_record, record_filename,
                      run_lock, run_name, write_manifest, write_record)
from .trackers import ProgressLine, finish_loggers, learning_rate_monitor, log_every_n_steps, make_loggers
from .training import (POINTWISE_KEY, DeterministicResume, DivergedError, RoadmapClassifier, Throughput,
                       thread_warning)
from .weights import load_pretrained, save_weights, spec_of, weights_path


@dataclass
class Run:
    step: Step
    seed: int
    name: str
    hash: str
    record_path: Path
    checkpoint_dir: Path
    state: str  # "done", "failed", "resume" (checkpoint there), "todo"
    train: TrainConfig  # the step's recipe: the study's, with the step's own keys over it, fitted to the budget
    budget: int  # epochs


def study_dirs(out_dir: Path, study: StudyConfig) -> dict[str, Path]:
    base = out_dir / study.name
    return {"base": base, "runs": base / "runs", "checkpoints": base / "checkpoints",
            "logs": base / "logs", "locks": base / "locks"}


def run_payload(train: TrainConfig, step: Step, seed: int, world_size: int, data: str) -> dict[str, Any]:
    """Everything that determines a run's numbers: the step's spec, its own recipe, the seed;
    its hash identifies the run's record. `data` is the data set's fingerprint (where the
    data lives is not part of it)."""
    return {"record_version": RECORD_VERSION, "step": step.slug, "spec": non_default(step.spec), "seed": seed,
            "train": result_relevant(train), "world_size": world_size, "data": data,
            # what `precision: auto` means on this machine: fp32 and bf16 runs are different runs
            "precision": resolve_precision(train.precision, train.accelerator)}


def check_trainable(study: StudyConfig) -> None:
    """A run that would train zero optimizer steps is a config error, not a record."""
    images = describe(study.train).train_images
    for step in study_steps(study):
        batch = run_train_config(study, step).batch_size
        if images // (batch * world_size_of(study)) == 0:
            raise ConfigError(f"train.batch_size={batch} (x {world_size_of(study)} device(s)) is larger than the "
                              f"training set ({images} images): not one optimizer step per epoch; lower batch_size")


@dataclass(frozen=True)
class PlannedRun:
    """One (step, seed, budget) of a study: its recipe and its config hash."""

    step: Step
    seed: int
    budget: int
    train: TrainConfig
    hash: str


def study_runs(study: StudyConfig) -> list[PlannedRun]:
    """Every (step, seed, budget) of the study, budget by budget (smallest first), then in the
    study's order of steps and seeds, with the run's recipe and config hash."""
    world_size, data = world_size_of(study), fingerprint(study.train)
    runs = []
    for budget in study_budgets(study):
        for step in study_steps(study):
            train = fit_to_budget(run_train_config(study, step), budget)
            runs += [PlannedRun(step, seed, budget, train,
                                config_hash(run_payload(train, step, seed, world_size, data)))
                     for seed in study.seeds]
    return runs


def planned_name(study: StudyConfig, planned: PlannedRun) -> str:
    """A run's name (records, checkpoints, logs, locks): step and seed, and the budget in a
    study that lists budgets."""
    return run_name(planned.step.slug, planned.seed, planned.budget if study.budgets else None)


def plan_runs(study: StudyConfig, out_dir: Path, shard: tuple[int, int] = (0, 1)) -> list[Run]:
    """This shard's runs and what is left to do for each. A record of the same config is
    done or failed; a "done" record without its numbers is trained again (and said so)."""
    dirs = study_dirs(out_dir, study)
    runs = []
    for i, planned in enumerate(study_runs(study)):
        if i % shard[1] != shard[0]:
            continue
        step, seed, train, digest = planned.step, planned.seed, planned.train, planned.hash
        name = planned_name(study, planned)
        record_path = dirs["runs"] / record_filename(name, digest)
        checkpoint_dir = dirs["checkpoints"] / f"{name}__{digest[:8]}"
        state = "todo"
        if record_path.exists():
            record = read_record(record_path)
            if record["status"] == "incomplete":
                print(f"note: {record_path} is not a finished run ({record['problem']}); training it again",
                      file=sys.stderr)
            else:
                state = record["status"]
        if state == "todo" and has_checkpoint(checkpoint_dir):
            state = "resume"
        runs.append(Run(step, seed, name, digest, record_path, checkpoint_dir, state, train, planned.budget))
    return runs


def step_metadata(step: Step) -> dict[str, Any]:
    """What tables and figures need to know of a step, kept in the study manifest."""
    return {"slug": step.slug, "label": step.label, "phase": step.phase, "parent": step.parent,
            "change": step.change, "index": step.index, "roadmap": step.roadmap, "sweep": step.sweep,
            "reference": step.reference, "train": dict(step.train), "paper_top1": step.paper_top1,
            "paper_top1_std": step.paper_top1_std, "paper_gmacs": step.paper_gmacs}


def write_study_manifest(study: StudyConfig, preset: str, out_dir: Path) -> None:
    """Record the study's current config and runs (study.json): tables and figures use the
    records of these runs only."""
    write_manifest(study_dirs(out_dir, study)["base"], {
        "study": study.name, "preset": preset, "config": asdict(study),
        "steps": [step_metadata(step) for step in study_steps(study)],
        "budgets": study_budgets(study),
        "runs": [{"step": p.step.slug, "seed": p.seed, "budget_epochs": p.budget, "config_hash": p.hash}
                 for p in study_runs(study)],
    })


def other_config_records(study: StudyConfig, out_dir: Path) -> int:
    """How many records in the study's runs/ belong to other configs (kept, never shown)."""
    current = {(p.step.slug, p.seed, p.hash) for p in study_runs(study)}
    return sum((r["step"], r["seed"], r["config_hash"]) not in current
               for r in load_records(study_dirs(out_dir, study)["base"]))


def training_gmacs(study: StudyConfig, run: Run) -> float:
    """Multiply-adds of training one run: 3x forward (forward + backward) per image."""
    cfg = run.train
    data = describe(cfg)
    forward = forward_gmacs(run.step, cfg.resolution, cfg.width_mult, data.num_classes, data.in_chans)
    return 3 * forward * data.train_images * cfg.epochs


@functools.lru_cache(maxsize=None)
def forward_gmacs(step: Step, resolution: int, width_mult: float, num_classes: int, in_chans: int) -> float:
    """One image's forward multiply-adds, counted on the meta device once per step and shape
    (not per seed: a 56-run dry run built 56 models with real weights)."""
    with torch.device("meta"):
        model = build_model(step, num_classes=num_classes, in_chans=in_chans, width_mult=width_mult)
    return count_macs(model, resolution, in_chans) / 1e9


@functools.lru_cache(maxsize=None)
def gmacs_at_224(step: Step) -> float:
    """The step's multiply-adds in the paper's convention (width 1, 224x224, 1000 classes);
    the same for every seed, so computed once per step."""
    return count_macs(build_model(step)) / 1e9


def _format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """Does this CPU compute bf16 dot products in hardware (AVX-512 BF16 or AMX)? Without
    them bf16 is emulated and slower than fp32; read from /proc/cpuinfo (Linux)."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def resolve_precision(cfg_precision: str, accelerator: str = "auto") -> str:
    """`auto`: bf16 mixed precision where the hardware has it (fp16 on older GPUs), else fp32.
    On the development CPU (AMD EPYC, AVX-512 BF16) bf16 autocast trains every step of the
    default study 1.1-1.5x faster than fp32 (with depthwise convs kept in fp32)."""
    if cfg_precision != "auto":
        return cfg_precision
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        return "bf16-mixed"  # planning a GPU study without a GPU (login node): assume a current GPU
    if torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda"):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"


def train_run(study: StudyConfig, preset: str, run: Run, dirs: dict[str, Path],
              progress_bar: bool, profile: bool = False) -> dict[str, Any]:
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
    trainer_kwargs: dict[str, Any] = {"accelerator": cfg.accelerator, "devices": cfg.devices,
                                      "num_nodes": cfg.num_nodes, "strategy": cfg.strategy}
    stopper = GracefulStop(run.checkpoint_dir / "last.ckpt", run.name)
    throughput = Throughput()
    callbacks: list[pl.Callback] = [
        CurveKeeper(), DeterministicResume(run.seed), throughput, stopper,
        PatientModelCheckpoint(dirpath=run.checkpoint_dir, save_last=True, save_top_k=0,
                        train_time_interval=dt.timedelta(seconds=cfg.checkpoint_every_s),
                        enable_version_counter=False),  # always last.ckpt, never last-v1.ckpt
        EpochEndCheckpoint(run.checkpoint_dir / "last.ckpt"),
    ]
    if cfg.ema_decay:
        callbacks.append(EMAWeightAveraging(decay=cfg.ema_decay))
    csv_logger = ResumableCSVLogger(dirs["logs"], name=run.name, version=run.hash[:8], keep=keep_rows)
    loggers = make_loggers(csv_logger, study.logger, dirs["logs"], study.name, run.name, run.hash[:8],
                           tags={"step": run.step.slug, "seed": run.seed, "config_hash": run.hash})
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
    trainer = pl.Trainer(max_epochs=cfg.epochs, precision=resolve_precision(cfg.precision, cfg.accelerator),
                         logger=loggers, profiler=profiler, callbacks=callbacks,
                         val_check_interval=1.0 / cfg.val_checks_per_epoch,
                         enable_progress_bar=progress_bar, enable_model_summary=False,
                         log_every_n_steps=log_every_n_steps(datamodule.num_train, cfg.batch_size,
                                                             world_size_of(study)),
                         num_sanity_val_steps=0, deterministic=False,
                         use_distributed_sampler=False,  # the loaders shard by rank themselves (exact resume)
                         **trainer_kwargs)
    module = RoadmapClassifier(run.step, cfg, datamodule.num_classes, datamodule.in_chans,
                               world_size=trainer.world_size)
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
    commit, dirty = git_state()
    record = {
        **_identity(study, preset, run),
        "status": "done", "failure": None, "failed_epoch": None,
        "top1": metrics.get("val_top1"), "top5": metrics.get("val_top5"), "val_loss": metrics.get("val_loss"),
        "params": count_params(model),
        "gmacs_train_res": count_macs(model, cfg.resolution, datamodule.in_chans) / 1e9,
        "gmacs_224": gmacs_at_224(run.step),
        "train_throughput": throughput.train_img_s, "eval_throughput": throughput.eval_img_s,
        "wall_time_s": time.time() - started, "validation_s": throughput.val_total_seconds,
        "epochs": trainer.current_epoch,
        "train_images": datamodule.num_train, "val_images": datamodule.num_val,
        "git_commit": commit, "git_dirty": dirty, "world_size": trainer.world_size,
        "precision": str(trainer.precision), "log_dir": os.path.relpath(logger.log_dir, dirs["base"]),
        "weights": os.path.relpath(weights, dirs["base"]), "num_classes": datamodule.num_classes,
        "in_chans": datamodule.in_chans, "spec": spec_of(run.step),
        "pointwise": autotune.choices_of(model),  # each measured conv-or-matmul choice (none under bf16)
    }
    if profiler is not None:
        record["time_split"] = time_split(profiler, record["wall_time_s"])
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


def _identity(study: StudyConfig, preset: str, run: Run) -> dict[str, Any]:
    cfg = run.train
    return {
        "study": study.name, "preset": preset, "step": run.step.slug, "step_index": run.step.index,
        "label": run.step.label, "phase": run.step.phase, "parent": run.step.parent, "seed": run.seed,
        "budget_epochs": run.budget,
        "config_hash": run.hash, "config": asdict(cfg), "dataset": cfg.dataset, "resolution": cfg.resolution,
        "width_mult": cfg.width_mult, "threads": torch.get_num_threads(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "pytorch_lightning": pl.__version__},
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} threads)",
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


def process_rank() -> int:
    """This process's global rank when Lightning's DDP launcher or SLURM's srun started several
    processes (each runs the whole study loop in step; only rank 0 takes locks and writes).
    Rank variables count only in a world of several processes (WORLD_SIZE or SLURM_NTASKS > 1):
    a RANK left in the environment by something else made a single process train every run
    without taking its lock or writing its record."""
    sizes = [int(os.environ[n]) for n in ("WORLD_SIZE", "SLURM_NTASKS") if os.environ.get(n, "").isdigit()]
    if max(sizes, default=1) <= 1:
        return 0
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def world_size_of(study: StudyConfig) -> int:
    """Processes that train one run together, when the config says (devices x num_nodes)."""
    devices = str(study.train.devices)
    per_node = int(devices) if devices.isdigit() else len(devices.split(",")) if "," in devices else 1
    return per_node * study.train.num_nodes


def execute(study: StudyConfig, preset: str, runs: list[Run], out_dir: Path, retry_failed: bool = False,
            profile: bool = False) -> int:
    """Train every run not yet done; returns the exit code (0: all done)."""
    quiet_lightning()
    dirs = study_dirs(out_dir, study)
    todo = [r for r in runs if r.state not in ("done",) and not (r.state == "failed" and not retry_failed)]
    rank_zero = process_rank() == 0
    progress_bar = sys.stderr.isatty() and rank_zero
    job = os.environ.get("ROADMAP_JOB")  # one of several jobs (--jobs): say which
    say = (functools.partial(print, f"[job {job}]") if job else print) if rank_zero else (lambda *a, **k: None)
    started = time.time()
    finished_times: list[float] = []
    failures = [r for r in runs if r.state == "failed" and not retry_failed]
    for i, run in enumerate(todo, 1):
        signals.check(f"{len(finished_times)} run(s) trained and recorded, none in progress")
        elapsed = time.time() - started
        eta = (f"ETA {_format_seconds(sum(finished_times) / len(finished_times) * (len(todo) - i + 1))}"
               if finished_times else "ETA after the first run")
        announce = (f"[run {i}/{len(todo)}] step {'' if run.step.index is None else f'{run.step.index} '}"
                    f"{run.step.slug} seed {run.seed}{' (resuming)' if run.state == 'resume' else ''} | "
                    f"elapsed {_format_seconds(elapsed)} | {eta}")
        lock = run_lock(dirs["locks"] / f"{run.name}.lock") if rank_zero else contextlib.nullcontext(True)
        with lock as acquired:
            if not acquired:
                if not job:  # with --jobs the other jobs hold them: nothing to report
                    say(announce, flush=True)
                    say(f"  skipped: another runner holds {run.name}'s lock", flush=True)
                continue
            say(announce, flush=True)
            if run.record_path.exists() and read_record(run.record_path)["status"] == "done":
                continue  # finished by another runner meanwhile
            run_started = time.time()
            try:
                record = train_run(study, preset, run, dirs, progress_bar, profile)
            except DivergedError as error:
                commit, dirty = git_state()
                record = {**_identity(study, preset, run), "status": "failed", "failure": str(error),
                          "failed_epoch": error.epoch, "top1": None, "top5": None, "val_loss": None,
                          "wall_time_s": time.time() - run_started, "git_commit": commit, "git_dirty": dirty}
                failures.append(run)
                say(f"  FAILED: {error}; recorded in {run.record_path}; the study goes on", flush=True)
            if rank_zero:
                write_record(run.record_path, record)
                drop_previous(run.checkpoint_dir)
            finished_times.append(time.time() - run_started)
            if record["status"] == "done":
                say(f"  done: top-1 {record['top1']:.2f}%  train {record['train_throughput']:.0f} img/s"
                      f"  {_format_seconds(record['wall_time_s'])}", flush=True)
    signals.check(f"{len(finished_times)} run(s) trained and recorded, none in progress")
    say(f"study {study.name}: {len(finished_times)} run(s) trained in {_format_seconds(time.time() - started)}; "
          f"records in {dirs['runs']}", flush=True)
    if failures and rank_zero:
        print(f"error: {len(failures)} run(s) failed ({', '.join(r.name for r in failures)}); see their records; "
              "fix the recipe, then rerun with --retry-failed", file=sys.stderr)
        return 1
    return 0


__all__ = ["Run", "check_trainable", "plan_runs", "study_runs", "write_study_manifest", "other_config_records", "execute", "process_rank", "training_gmacs", "study_dirs", "RunInterrupted", "CorruptRecordError"]
