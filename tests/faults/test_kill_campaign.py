"""A reduced random kill -9 campaign (benchmarks/kill_campaign.py runs 30+ trials): a study
killed at random moments and rerun each time until it finishes ends with exactly the records
of an uninterrupted run, none null, duplicated or missing."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from kill_campaign import campaign  # noqa: E402


@pytest.mark.slow
def test_random_kill_9_campaign_three_trials(tmp_path):
    # One job (--jobs 1): three processes started per attempt would triple the test's time;
    # test_signals.py kills a runner of --jobs 2.
    # Reduced to fit the suite: one kill a trial, after half the study's wall time at least
    # (past start-up), no tables or figures.
    rows = campaign(
        trials=3,
        seed=7,
        out=tmp_path / "campaign",
        steps="patchify_stem",
        seeds=1,
        train_size=512,
        verbose=False,
        runner_args=("--jobs", "1", "--no-report"),
        min_delay_fraction=0.5,
        max_kills=1,
    )
    assert sum(row["kills"] for row in rows) >= 1, rows  # (a kill drawn after a quick run never lands)
    for row in rows:
        assert row["finished"] and row["failures"] == 0, row
        assert (row["identical"], row["different"], row["null"], row["duplicated"], row["missing"]) == (
            1,
            0,
            0,
            0,
            0,
        ), row
        for name in row["temporary_names"].split():  # a write cut by a kill: hidden, ignored
            assert Path(name).name.startswith("."), name
            assert subprocess.run(["git", "check-ignore", "-q", f"results/x/{name}"], cwd=ROOT).returncode == 0, name
