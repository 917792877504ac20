"""Curves survive resumption: the CSV log of a resumed run keeps the rows logged before the
interruption (before: Lightning's CSVLogger deleted metrics.csv when the run resumed)."""

import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from robust_helpers import ROOT, main_args, no_figures, records, run_study, same_numbers, signal_at, tiny_study

import runner


def curve(path) -> pd.DataFrame:
    return pd.read_csv(path).sort_values(["step", "epoch"], kind="stable").reset_index(drop=True)


def metrics_csv(out: Path) -> Path:
    (path,) = (out / "tiny" / "logs").rglob("metrics.csv")
    return path


def same_curve(resumed: pd.DataFrame, reference: pd.DataFrame, interrupted_epoch: int) -> None:
    """Every row of the uninterrupted run, once. Lightning does not checkpoint the running
    mean behind train_loss_epoch: the interrupted epoch's one averages the batches after the
    resume only, or is missing if the resume point is its last batch."""

    def without_epoch_loss(frame):
        rows = frame[frame["train_loss_epoch"].isna() | (frame["epoch"] != interrupted_epoch)]
        return rows.reset_index(drop=True)

    pd.testing.assert_frame_equal(without_epoch_loss(resumed), without_epoch_loss(reference))
    assert (
        not resumed[["step", "epoch"]]
        .assign(kind=resumed["val_top1"].notna() * 2 + resumed["train_loss_step"].notna())
        .duplicated()
        .any()
    )


@pytest.mark.slow
def test_kill_9_mid_run_keeps_the_curve(tiny_reference, tmp_path):
    config, out = tiny_study(tmp_path), tmp_path / "out"
    driver = [
        sys.executable,
        str(ROOT / "tests" / "crash_driver.py"),
        "--at",
        "batch:1:6",
        "--signal",
        "SIGKILL",
        "--",
        "--config",
        str(config),
        "--out",
        str(out),
        "--plots",
        str(out / "plots"),
    ]
    killed = subprocess.run(driver, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    before = curve(metrics_csv(out))
    assert before["val_top1"].notna().sum() == 1, "epoch 0's validation was logged before the kill"
    result = run_study(config, out)
    assert result.returncode == 0 and "(resuming)" in result.stdout, result.stderr[-2000:]
    resumed = curve(metrics_csv(out))
    same_curve(resumed, curve(tiny_reference["_metrics_csv"]), interrupted_epoch=1)
    assert same_numbers(records(out)["patchify_stem__seed0"], tiny_reference)


@pytest.mark.parametrize("epoch,batch", [(1, 3), (0, 15)], ids=["logging batch", "last batch of an epoch"])
def test_a_signal_keeps_the_curve(tiny_reference, tmp_path, monkeypatch, epoch, batch):
    """At a batch that logs a row (Lightning logs it after the batch-end checkpoint), and at
    the batch before a validation (the stop waits for it, so its point is kept)."""
    config, out = tiny_study(tmp_path), tmp_path / "out"
    no_figures(monkeypatch)
    signal_at(monkeypatch, signal.SIGTERM, epoch=epoch, batch=batch)
    assert runner.main(main_args(config, out)) == 130
    monkeypatch.undo()
    no_figures(monkeypatch)
    assert runner.main(main_args(config, out)) == 0
    same_curve(curve(metrics_csv(out)), curve(tiny_reference["_metrics_csv"]), interrupted_epoch=epoch)
    assert same_numbers(records(out)["patchify_stem__seed0"], tiny_reference)
