import os
import signal
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True, scope="session")
def _sigint_as_in_a_terminal() -> None:
    """A suite started in the background (`nohup make test &`) inherits SIGINT ignored, which the
    runner rightly keeps ignored, and so would every runner the tests start and signal. The
    suite runs as in a terminal: Python's default SIGINT handler here, the default disposition
    in every child (exec resets a handler). tests/faults/test_signals.py tests the ignored case."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _own_pointwise_cache(tmp_path_factory) -> None:
    """The suite's own conv-or-matmul choices (convnext_steps/autotune.py), not the user's
    ~/.cache; the runner subprocesses of the tests inherit it."""
    from convnext_steps import autotune

    os.environ[autotune.CACHE_ENV] = str(tmp_path_factory.mktemp("autotune") / "pointwise.json")


@pytest.fixture(scope="session")
def tiny_reference(tmp_path_factory):
    """The uninterrupted run of robust_helpers' tiny study (in-process, no figures): the record
    every interrupted and resumed run must match bit for bit."""
    from robust_helpers import main_args, no_figures, records, tiny_study

    import runner

    tmp = tmp_path_factory.mktemp("tiny_reference")
    with pytest.MonkeyPatch.context() as mp:
        no_figures(mp)
        assert runner.main(main_args(tiny_study(tmp), tmp / "out")) == 0
    record = records(tmp / "out")["patchify_stem__seed0"]
    record["_metrics_csv"] = str(next((tmp / "out" / "tiny" / record["log_dir"]).rglob("metrics.csv")))
    record["_out"] = str(tmp / "out")
    return record
