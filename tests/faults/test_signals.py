"""Signals are honoured everywhere: from the start of a study to its last record, SIGINT,
SIGTERM and SIGUSR1 end in a checkpoint if there is one worth keeping, then exit 130 with the
resume message; the same command then ends with the record of an uninterrupted run.
(benchmarks/signal_windows.py runs every window x every signal, before and after.)"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from robust_helpers import cli, main_args, no_figures, records, same_numbers, tiny_study

import runner

FINAL_STEP = 32  # the tiny study: 16 batches x 2 epochs


def send(sig: int) -> None:
    os.kill(os.getpid(), sig)


def interrupted_then_resumed(config, out, capsys, tiny_reference, expect_trained: bool) -> None:
    assert runner.main(main_args(config, out)) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("interrupted (")]
    assert line.endswith("run the same command again to resume"), line
    for record in records(out).values():  # whatever was written is a finished run
        assert all(record[k] is not None for k in ("top1", "top5", "val_loss")), record
    assert runner.main(main_args(config, out)) == 0
    again = capsys.readouterr().out
    assert ("[run 1/1]" in again) == expect_trained, again
    assert same_numbers(records(out)["patchify_stem__seed0"], tiny_reference)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGUSR1], ids=lambda s: s.name)
def test_signal_during_the_final_checkpoint_write(tiny_reference, tmp_path, monkeypatch, capsys, sig):
    """Before: a signal arriving while the end-of-epoch checkpoint was written was ignored."""
    no_figures(monkeypatch)
    real_save = torch.save

    def save(obj, handle, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("global_step") == FINAL_STEP and not sent:
            sent.append(sig)
            send(sig)  # arrives in the middle of this write
        return real_save(obj, handle, *args, **kwargs)

    sent: list = []
    monkeypatch.setattr(torch, "save", save)
    # The run is complete when the signal is honoured: its record is written, nothing retrained.
    interrupted_then_resumed(tiny_study(tmp_path), tmp_path / "out", capsys, tiny_reference, expect_trained=False)
    assert sent


@pytest.mark.parametrize("window", ["after the final checkpoint", "before the record"])
def test_signal_between_the_final_checkpoint_and_the_record(tiny_reference, tmp_path, monkeypatch, capsys, window):
    from convnext_roadmap.train import checkpoints
    from convnext_roadmap.train import run as study

    no_figures(monkeypatch)
    if window == "after the final checkpoint":
        original = checkpoints.EpochEndCheckpoint.on_train_epoch_end

        def hook(self, trainer, module):
            original(self, trainer, module)
            if trainer.current_epoch == trainer.max_epochs - 1:
                send(signal.SIGTERM)

        monkeypatch.setattr(checkpoints.EpochEndCheckpoint, "on_train_epoch_end", hook)
    else:
        real_git_state = study.git_state  # called after fit, before the record is assembled

        def git_state():
            send(signal.SIGUSR1)
            return real_git_state()

        monkeypatch.setattr(study, "git_state", git_state)
    interrupted_then_resumed(tiny_study(tmp_path), tmp_path / "out", capsys, tiny_reference, expect_trained=False)


def test_signal_while_planning(tiny_reference, tmp_path, monkeypatch, capsys):
    """Before: SIGTERM outside trainer.fit killed the runner (exit 143, no message)."""
    from convnext_roadmap.study import plan as study

    no_figures(monkeypatch)
    real_plan = study.plan_runs

    def plan_runs(*args, **kwargs):
        send(signal.SIGTERM)
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(study, "plan_runs", plan_runs)
    config, out = tiny_study(tmp_path), tmp_path / "out"
    assert runner.main(main_args(config, out)) == 130
    assert "interrupted (SIGTERM): nothing was trained yet; run the same command again" in capsys.readouterr().err
    monkeypatch.setattr(study, "plan_runs", real_plan)
    assert runner.main(main_args(config, out)) == 0
    assert same_numbers(records(out)["patchify_stem__seed0"], tiny_reference)


def test_a_stray_rank_variable_does_not_lose_the_record(tiny_reference, tmp_path, monkeypatch):
    """Before: RANK=1 in the environment trained the run and wrote no record (exit 0)."""
    no_figures(monkeypatch)
    monkeypatch.setenv("RANK", "1")
    out = tmp_path / "out"
    assert runner.main(main_args(tiny_study(tmp_path), out)) == 0
    assert same_numbers(records(out)["patchify_stem__seed0"], tiny_reference)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1], ids=lambda s: s.name)
@pytest.mark.slow
def test_signal_from_outside_before_training(tmp_path, sig):
    """The runner as SLURM meets it: a signal from another process while it starts a run."""
    config, out = tiny_study(tmp_path), tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(cli(config, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and "run(s)" not in process.stdout.readline():
        assert process.poll() is None
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"interrupted ({signal.Signals(sig).name}):" in stderr and "run the same command again to resume" in stderr
    assert records(out) == {}
    assert sys.executable


def test_a_signal_ignored_by_the_parent_stays_ignored():
    """A shell starts background jobs with SIGINT ignored (Ctrl-C in the terminal spares
    them); the runner leaves it so, as Python does, and takes over the other stop signals."""
    from convnext_roadmap import signals

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        signals.install()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signals._handler
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as Lightning might
        signals.reassert()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        signals.uninstall()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signals.uninstall()
        signal.signal(signal.SIGINT, previous)


@pytest.mark.slow
def test_jobs_stop_when_their_runner_is_killed(tmp_path):
    """--jobs 2 and the parent killed with -9: each job checkpoints and exits instead of
    training on in its own session with its run's lock held (a rerun skipped those runs)."""
    from robust_helpers import run_study

    config, out = tiny_study(tmp_path, seeds="[0, 1]", train_size=2048), tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen(
        [*cli(config, out), "--jobs", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "tiny" / "checkpoints").glob("*/last.ckpt"))) < 2:
        assert parent.poll() is None
        time.sleep(0.2)
    jobs = [int(pid) for pid in Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()]
    assert len(jobs) == 2
    parent.kill()
    parent.wait()
    deadline = time.time() + 60
    while time.time() < deadline and any(Path(f"/proc/{pid}").exists() for pid in jobs):
        time.sleep(0.2)
    assert not any(Path(f"/proc/{pid}").exists() for pid in jobs), "the jobs outlived their runner"
    assert not list((out / "tiny" / "locks").glob("*.lock")), "their locks are released"
    result = run_study(config, out, "--jobs", "1")
    assert result.returncode == 0 and result.stdout.count("(resuming)") == 2, result.stdout + result.stderr[-2000:]
    assert sorted(records(out)) == ["patchify_stem__seed0", "patchify_stem__seed1"]
