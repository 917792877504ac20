"""A reduced random kill -9 campaign (benchmarks/kill_campaign.py runs 30+ trials): a study
killed at random moments and rerun each time until it finishes ends with exactly the records
of an uninterrupted run, none null, duplicated or missing."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from kill_campaign import campaign  # noqa: E402


def test_random_kill_9_campaign_three_trials(tmp_path):
    # One job (--jobs 1): three processes started per attempt would triple the test's time;
    # test_signals.py kills a runner of --jobs 2.
    rows = campaign(trials=3, seed=7, out=tmp_path / "campaign", steps="patchify_stem", seeds=2, train_size=512,
                    verbose=False, runner_args=("--jobs", "1"))
    assert sum(row["kills"] for row in rows) >= 3, rows
    for row in rows:
        assert row["finished"] and row["failures"] == 0, row
        assert (row["identical"], row["different"], row["null"], row["duplicated"], row["missing"]) == (2, 0, 0, 0, 0), row
        assert row["temporaries"] == 0, row
