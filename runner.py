#!/usr/bin/env python3
"""Train the steps of the ResNet-50 -> ConvNeXt-T roadmap, record results, draw the figure.

  python runner.py --list                      the 16 steps, their cost and the paper's numbers
  python runner.py --list --roadmap resnet200  the same for ResNet-200 -> ConvNeXt-B
  python runner.py --steps all                 the default study (preset "cpu": Fashion-MNIST)
  python runner.py --steps 0-5,kernel_7 --preset smoke --seeds 2
  python runner.py --config my_study.yaml --dry-run
  python runner.py plot [--study NAME]         tables and figures from results/, no training
  python runner.py evaluate --study NAME --step X --seed K   re-evaluate a run's saved weights
  python runner.py compare STUDY_A STUDY_B     per-step top-1 of studies side by side
  python runner.py --config S.yaml --submit slurm   the study's remaining runs as one job array
  python runner.py status --study NAME [--resubmit] a submitted study's runs and tasks

Records go to results/<study>/runs/, tables to results/<study>/, figures to plots/<study>/.
Running the same command again skips finished runs and resumes interrupted ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from convnext_roadmap import signals  # light: the signal module only

REPO = Path(__file__).resolve().parent
DEFAULT_PRESET = "cpu"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runner.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["train", "plot", "evaluate", "compare", "status"],
        default="train",
        help="train (default); plot: regenerate tables and figures from results/; "
        "evaluate: re-evaluate a run's saved weights; compare: studies side by side; "
        "status: a submitted study's runs and tasks (--submit)",
    )
    parser.add_argument("names", nargs="*", metavar="STUDY", help="with compare: the studies to compare")
    parser.add_argument("--list", action="store_true", help="print the roadmap as a table and exit")
    parser.add_argument(
        "--roadmap", default=None, help="with --list: the roadmap to print (resnet50, the default, or resnet200)"
    )
    parser.add_argument(
        "--steps", help="all | slugs, indices and ranges, e.g. 0-5,kernel_7,15 (default: the study's own)"
    )
    parser.add_argument("--preset", default=None, help=f"a preset in ablations/ (default: {DEFAULT_PRESET})")
    parser.add_argument("--config", type=Path, help="a study YAML of your own, layered over the preset")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, metavar="N", help="run seeds 0..N-1")
    seeds.add_argument("--seed", type=int, metavar="S", help="run the single seed S")
    parser.add_argument("--epochs", type=int, help="override train.epochs")
    parser.add_argument(
        "--budgets",
        metavar="E1,E2,...",
        help="train every (step, seed) once per budget of epochs, e.g. 1,3,10, each with the "
        "recipe's schedule fitted to it (overrides the study's budgets)",
    )
    parser.add_argument("--batch-size", type=int, help="override train.batch_size (per device)")
    parser.add_argument("--data-dir", help="override train.data_dir (where the data set lives)")
    parser.add_argument("--width-mult", type=float, help="override train.width_mult")
    parser.add_argument("--devices", help="Lightning devices (e.g. 1, 8, auto)")
    parser.add_argument("--num-nodes", type=int, help="Lightning num_nodes")
    parser.add_argument("--strategy", help="Lightning strategy (e.g. ddp)")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override any study key, nested keys by dots, the value read as YAML: "
        "--set train.lr=2e-3 --set seeds=[0,1,2] (repeatable; applied last)",
    )
    parser.add_argument(
        "--logger",
        action="append",
        metavar="NAME",
        help="also log to tensorboard, mlflow or wandb, offline, under results/<study>/logs/ "
        "(repeatable; the CSV log is always written)",
    )
    parser.add_argument(
        "--shard",
        help="i/n: run only every n-th (step, seed) run, starting at i (several jobs on one results directory)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "results", help="results directory (default: results/)")
    parser.add_argument("--plots", type=Path, default=REPO / "plots", help="figures directory (default: plots/)")
    parser.add_argument(
        "--study", help="with plot: the study name (default: every study in --out); with evaluate: the study of the run"
    )
    parser.add_argument("--step", help="with evaluate: the run's step (slug or index)")
    parser.add_argument(
        "--budget", type=int, metavar="EPOCHS", help="with evaluate: the run's budget, when its study trained several"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the plan (runs, what is done, cost) and train nothing"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="time where each run's wall time goes (Lightning's SimpleProfiler): model "
        "compute, data, framework; written to each record's time_split",
    )
    parser.add_argument(
        "--resolve",
        type=float,
        nargs="+",
        default=[0.5, 1.0],
        metavar="POINTS",
        help="with --dry-run: how many seeds would resolve a delta of this many top-1 points, from "
        "the study's records so far (default: 0.5 1.0)",
    )
    parser.add_argument("--retry-failed", action="store_true", help="train again runs recorded as failed")
    parser.add_argument(
        "--jobs",
        default="auto",
        help="runs trained at once, the CPU cores split between them (default auto: for CPU studies "
        "of small models one run per core, each on one thread; else 1 run on every core)",
    )
    parser.add_argument(
        "--submit",
        choices=["slurm", "local"],
        help="submit the study's remaining runs as one submitit job array and return: slurm (from "
        "a login node) or local (this machine); the study's cluster: keys say how "
        "(docs/scale.md); needs pip install -e '.[cluster]'",
    )
    parser.add_argument(
        "--resubmit",
        action="store_true",
        help="with status: submit again the runs that no task holds and no record has",
    )
    parser.add_argument("--runs", help=argparse.SUPPRESS)  # an array task's runs: name@hash,...
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)  # a job's share of the cores
    parser.add_argument("--no-report", action="store_true", help=argparse.SUPPRESS)  # a job: the parent reports
    return parser


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    from convnext_roadmap.errors import ConfigError

    study: dict[str, Any] = {}
    train: dict[str, Any] = {}
    if args.steps is not None:
        if not args.steps.strip(" ,"):  # an empty --steps (an unset shell variable) is not "all"
            raise ConfigError(
                f"--steps {args.steps!r} names no step; give all, slugs, indices or ranges, e.g. 0-5,kernel_7"
            )
        study["steps"] = args.steps
    if args.seeds is not None:
        if args.seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
        study["seeds"] = list(range(args.seeds))
    if args.seed is not None:
        study["seeds"] = [args.seed]
    if args.budgets is not None:
        study["budgets"] = parse_budgets(args.budgets)
    for name in ("epochs", "batch_size", "data_dir", "width_mult", "devices", "num_nodes", "strategy"):
        if getattr(args, name) is not None:
            train[name] = getattr(args, name)
    if train:
        study["train"] = train
    if args.logger:
        study["logger"] = list(args.logger)
    from convnext_roadmap.config.overrides import parse_set
    from convnext_roadmap.config.schema import merge

    return merge(study, parse_set(args.set))


def parse_budgets(text: str) -> list[float]:
    """`--budgets 1,3,10` as numbers (convnext_roadmap.config.budget.check_budgets judges them)."""
    from convnext_roadmap.errors import ConfigError

    parts = [part.strip() for part in text.split(",")]
    try:
        return [float(part) if "." in part or "e" in part.lower() else int(part) for part in parts]
    except ValueError:
        raise ConfigError(
            f"--budgets {text!r} must be whole numbers of epochs separated by commas, e.g. 1,3,10"
        ) from None


def parse_shard(text: str | None) -> tuple[int, int]:
    from convnext_roadmap.errors import ConfigError

    if text is None:
        return 0, 1
    try:
        index, count = (int(x) for x in text.split("/"))
        if 0 <= index < count:
            return index, count
    except ValueError:
        pass
    raise ConfigError(f"--shard {text!r} must be i/n with 0 <= i < n, e.g. 0/4")


def print_listing(roadmap: str | None = None) -> None:
    import pandas as pd

    from convnext_roadmap.report.listing import roadmap_table
    from convnext_steps import DEFAULT_ROADMAP

    with pd.option_context("display.width", 250):
        print(roadmap_table(roadmap or DEFAULT_ROADMAP).drop(columns="change").to_string(index=False))


def plot_command(args: argparse.Namespace) -> int:
    from convnext_roadmap.config.schema import check_study_name
    from convnext_roadmap.report import draw_figures, markdown_table, write_tables

    if args.study is not None:
        check_study_name(args.study, "--study")
    studies = [args.study] if args.study else sorted(p.name for p in args.out.glob("*") if (p / "runs").is_dir())
    if not studies:
        raise SystemExit(f"error: no study with records in {args.out}; train one first (python runner.py --steps all)")
    for name in studies:
        study_dir = args.out / name
        if not (study_dir / "runs").is_dir():
            raise SystemExit(f"error: no records in {study_dir / 'runs'}; check --out and --study")
        table = write_tables(study_dir)
        print(f"\n## {name}\n\n{markdown_table(table)}")
        for path in draw_figures(study_dir, args.plots / name):
            print(f"wrote {path}")
        signals.check(f"tables and figures of {name} are drawn")
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    from convnext_roadmap.errors import ConfigError
    from convnext_roadmap.train.evaluate import evaluate_run

    if not args.study or args.step is None:
        raise ConfigError("evaluate needs --study NAME --step STEP [--seed K] (the run to re-evaluate)")
    seed = args.seed if args.seed is not None else 0
    result = evaluate_run(args.out / args.study, args.step, seed, args.budget)
    recorded = result["record_top1"]
    print(
        f"{args.study} {result['step']} seed {seed}: top-1 {result['top1']:.2f}%  top-5 {result['top5']:.2f}%  "
        f"val loss {result['val_loss']:.4f}  ({result['val_images']} images, {result['precision']})"
    )
    if recorded is not None:
        print(
            f"record: top-1 {recorded:.2f}%  top-5 {result['record_top5']:.2f}%  "
            f"(difference {result['top1'] - recorded:+.2f})"
        )
    return 0


def compare_command(args: argparse.Namespace) -> int:
    from convnext_roadmap.report.compare import compare_studies

    compare_studies(args.names, args.out, args.plots)
    return 0


def status_command(args: argparse.Namespace) -> int:
    from convnext_roadmap.study.cluster import status_command as status

    return status(args)


def train_command(args: argparse.Namespace) -> int:
    import torch

    from convnext_roadmap.config.define import study_steps
    from convnext_roadmap.config.load import load_study
    from convnext_roadmap.errors import check_output_folder
    from convnext_roadmap.study.cost import training_gmacs
    from convnext_roadmap.study.execute import execute
    from convnext_roadmap.study.parallel import capped_jobs, cpu_cores, parse_jobs, resolve_jobs, run_jobs
    from convnext_roadmap.study.plan import check_trainable, other_config_records, plan_runs, write_study_manifest
    from convnext_roadmap.study.reuse import mark_reusable, source_name
    from convnext_roadmap.train.ranks import process_rank, world_size_of

    overrides = overrides_from(args)
    shard = parse_shard(args.shard)
    requested_jobs = parse_jobs(args.jobs)  # refused at once, in a dry run too
    check_output_folder(args.out, "--out")
    check_output_folder(args.plots, "--plots")
    study, preset = load_study(args.preset or DEFAULT_PRESET, args.config, overrides)
    from convnext_roadmap.train.trackers import check_installed
    from convnext_roadmap.train.weights import check_pretrained, ensure_torchvision_weights

    check_installed(study.logger)
    check_pretrained(study)
    from convnext_roadmap.train.gpu import check_accelerator

    check_accelerator(study.train)  # a GPU that torch's CUDA build cannot use is an error, not a CPU run
    from convnext_roadmap.train.world import SOLO, start_world

    # DDP: every rank in the process group before anything is decided (train/world.py)
    world = start_world(study) if not (args.dry_run or args.submit) else SOLO
    if study.train.dataset == "imagefolder" and study.train.data_dir:  # every class and file, before any run
        from convnext_roadmap.data.image_folder import check_image_folder_once
        from convnext_roadmap.data.registry import fingerprint, share_fingerprint

        def check_folder() -> str:
            check_image_folder_once(Path(study.train.data_dir).resolve(), fingerprint(study.train))
            return fingerprint(study.train)

        # rank 0 stats the folder's files, the other ranks take its fingerprint (or its error)
        share_fingerprint(study.train, world.decide_on_zero(check_folder))
    check_trainable(study)
    args.out.mkdir(parents=True, exist_ok=True)
    runs = plan_runs(study, args.out, shard=shard)
    mark_reusable(study, args.out, runs)
    if args.runs:  # an array task of --submit: its runs only
        from convnext_roadmap.study.cluster import select_runs

        runs = select_runs(runs, args.runs)
    counts = {state: sum(r.state == state for r in runs) for state in ("done", "reuse", "failed", "resume", "todo")}
    say = print if not args.no_report else (lambda *a, **k: None)  # a job of --jobs: its parent said it
    say(
        f"study {study.name} (preset {preset}): {len(runs)} run(s) - "
        + ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    )
    if requested_jobs and not args.threads and capped_jobs(requested_jobs)[1]:
        say(capped_jobs(requested_jobs)[1])
    others = other_config_records(study, args.out)
    if others and not args.no_report:
        print(
            f"note: {others} record(s) of other configs of study {study.name} are kept in "
            f"{args.out / study.name / 'runs'} and left out of its tables and figures"
        )
    signals.check("nothing was trained yet")
    rank_zero = world.is_zero if world.size > 1 else process_rank() == 0
    if not args.dry_run and rank_zero:
        write_study_manifest(study, preset, args.out)
    if args.submit:  # one job array of the remaining runs (a dry run: how they would be packed)
        from convnext_roadmap.study.cluster import submit_study

        return submit_study(study, preset, runs, args)
    if args.dry_run:
        total = 0.0
        for run in runs:
            gmacs = training_gmacs(study, run) if run.state not in ("done", "reuse") else 0.0
            total += gmacs
            index = "" if run.step.index is None else run.step.index
            budget = f"{run.budget:>3d} ep  " if study.budgets else ""
            print(
                f"  {index:>2} {run.step.slug:20s} seed {run.seed}  {budget}{run.state:6s}  "
                f"{gmacs / 1e3:8.2f} TMACs to train"
                + (f"  (from {source_name(run.reuse_from, args.out)})" if run.reuse_from else "")
            )
        print(f"cost to go: {total / 1e3:.1f} TMACs (3x forward multiply-adds x images x epochs)")
        from convnext_roadmap.report import seed_guidance
        from convnext_roadmap.store.manifest import step_entry
        from convnext_roadmap.store.records import load_records

        records = [r for r in load_records(args.out / study.name) if r.done]  # any config's
        guidance = seed_guidance(records, [step_entry(s) for s in study_steps(study)], args.resolve)
        if guidance:
            print(guidance)
        return 0
    # the ImageNet weights files, or one line saying where to put them, before anything trains
    for slug in dict.fromkeys(r.step.slug for r in runs if r.state != "done" and r.train.pretrained):
        ensure_torchvision_weights(slug)
    todo = [r for r in runs if r.state in ("todo", "resume") or (r.state == "failed" and args.retry_failed)]
    if not todo and any(r.state == "reuse" for r in runs):  # only copies to make: one job
        args.jobs = "1"
    jobs, threads = resolve_jobs(
        args.jobs,
        study,
        study_steps(study),
        len(todo),
        on_gpu=study.train.accelerator in ("gpu", "cuda") or torch.cuda.is_available(),
        world_size=world_size_of(study),
    )
    threads = args.threads or threads  # a job started by run_jobs: its share, set by its parent
    if jobs > 1:
        print(f"{jobs} jobs at once, {threads} thread(s) each", flush=True)
        code = run_jobs(args.argv, jobs, threads)
    else:
        if todo and threads == 1 and not args.threads and cpu_cores() > 1:
            print(
                f"1 job on 1 thread of {cpu_cores()} cores: --jobs auto trains every run of small models on one "
                "thread, so that its record does not depend on what trains beside it (--jobs 1: every core)",
                flush=True,
            )
        before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            code = execute(
                study, preset, runs, args.out, retry_failed=args.retry_failed, profile=args.profile, world=world
            )
        finally:
            torch.set_num_threads(before)  # runner.main called from Python leaves the caller's threads
    if code == 130:  # the jobs were stopped: each said what it kept; the resume line comes last
        raise signals.RunInterrupted(
            signals.received() or "a stop signal",
            "the runs in progress keep their checkpoints, finished runs their records",
        )
    if shard == (0, 1) and rank_zero and not args.no_report:  # shards: `runner.py plot` at the end
        from convnext_roadmap.report import draw_figures, markdown_table, write_tables

        study_dir = args.out / study.name
        table = write_tables(study_dir)
        print(markdown_table(table))
        for path in draw_figures(study_dir, args.plots / study.name):
            print(f"wrote {path}")
        signals.check("every run is recorded and the tables and figures are drawn")
    return code


def main(argv: list[str] | None = None) -> int:
    # From here to the last record a stop signal only raises a flag, honoured at the next safe
    # point (convnext_roadmap/signals.py): before the heavy imports, so no window is left uncovered.
    signals.install()
    try:
        return _main(argv)
    finally:
        signals.uninstall()


def _main(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_intermixed_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)
        if args.list:
            try:
                print_listing(args.roadmap)
            except KeyError as error:
                print(f"error: {error.args[0]}", file=sys.stderr)
                return 2
            return 0
        from convnext_roadmap.errors import ConfigError, CorruptRecordError, DataError, OutputError, os_error_message

        signals.check("nothing was trained yet")
        try:
            if args.names and args.command != "compare":
                raise ConfigError(f"unexpected argument(s) {' '.join(args.names)}: only compare takes study names")
            if args.command == "train" and args.step is not None:  # --step means --steps when training
                if args.steps:
                    raise ConfigError("--step is for evaluate; to train, give --steps")
                args.steps = args.step
            commands = {
                "plot": plot_command,
                "evaluate": evaluate_command,
                "compare": compare_command,
                "train": train_command,
                "status": status_command,
            }
            return commands[args.command](args)
        except (ConfigError, DataError, CorruptRecordError, KeyError) as error:
            message = error.args[0] if isinstance(error, KeyError) else str(error)
            print(f"error: {message}", file=sys.stderr)
            return 2
        except OutputError as error:
            print(f"error: {error.strerror}", file=sys.stderr)
            return 2
        except BrokenPipeError:  # `runner.py ... | head`: the reader has gone, nothing to say
            sys.stderr.close()
            return 0
        except OSError as error:
            print(f"error: {os_error_message(error)}", file=sys.stderr)
            return 1
    except signals.RunInterrupted as stop:
        print(f"interrupted ({stop.signal_name}): {stop.detail}; run the same command again to resume", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(
            f"interrupted ({signals.received() or 'SIGINT'}): stopped at once; checkpoints and records are "
            "written whole or not at all; run the same command again to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
