"""Never lose a run: kill -9 and signals, concurrent runners, shards."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from robust_helpers import cli, tiny_study
from robust_helpers import records as robust_records

ROOT = Path(__file__).resolve().parents[2]


# Enough batches (256) that a run is interrupted mid-way and checkpoints every second.
def study_file(tmp_path: Path, steps: str = "patchify_stem", train_size: int = 4096) -> Path:
    return tiny_study(tmp_path, steps, train_size=train_size, name="robust", val_size=256, batch_size=32)


def records(out: Path) -> dict[str, dict]:
    return robust_records(out, "robust")


def wait_for_checkpoint(out: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if list((out / "robust" / "checkpoints").glob("*/last.ckpt")):
            time.sleep(1.5)  # let training go on past the checkpoint
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)
    raise AssertionError("no checkpoint appeared")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run."""
    tmp = tmp_path_factory.mktemp("reference")
    config = study_file(tmp)
    result = subprocess.run(cli(config, tmp / "out"), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return records(tmp / "out")["patchify_stem__seed0"]


def same_result(a: dict, b: dict) -> None:
    assert a["config_hash"] == b["config_hash"]
    assert a["top1"] == pytest.approx(b["top1"], abs=1e-6)
    assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)


@pytest.mark.slow
def test_kill_9_then_same_command_resumes_to_identical_result(reference, tmp_path):
    config, out = study_file(tmp_path), tmp_path / "out"
    process = subprocess.Popen(cli(config, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_checkpoint(out, process)
    process.kill()
    process.wait()
    assert records(out) == {}, "a killed run leaves no record"
    result = subprocess.run(cli(config, out), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(resuming)" in result.stdout
    found = records(out)
    assert list(found) == ["patchify_stem__seed0"]
    same_result(found["patchify_stem__seed0"], reference)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.slow
def test_signal_saves_a_checkpoint_and_says_how_to_resume(reference, tmp_path, sig):
    config, out = study_file(tmp_path), tmp_path / "out"
    process = subprocess.Popen(cli(config, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_checkpoint(out, process)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "run the same command again to resume" in stderr
    assert records(out) == {}
    assert not list(out.rglob("*.tmp")), "nothing half-written"
    result = subprocess.run(cli(config, out), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    same_result(records(out)["patchify_stem__seed0"], reference)


@pytest.mark.slow
def test_two_runners_on_one_study_never_run_the_same_run(tmp_path):
    config, out = study_file(tmp_path, steps="0-3"), tmp_path / "out"
    first = subprocess.Popen(cli(config, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(cli(config, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = [p.communicate(timeout=900) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    # "  done:" lines, with or without a "[job k/n]" prefix (--jobs auto may split a runner)
    trained = [line for stdout, _ in outputs for line in stdout.splitlines() if "  done:" in line]
    assert len(trained) == 4, outputs
    assert len(records(out)) == 4
    assert not list((out / "robust" / "locks").glob("*.lock")), "locks are released"


@pytest.mark.slow
def test_shards_split_the_study_and_together_complete_it(tmp_path):
    config, out = study_file(tmp_path, steps="0-2", train_size=512), tmp_path / "out"  # no interruption here
    for shard in ("0/2", "1/2"):
        result = subprocess.run(
            cli(config, out, "--shard", shard, "--epochs", "1"), capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(records(out)) == ["patchify_stem__seed0", "resnet50__seed0", "stage_ratio__seed0"]
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "runner.py"),
            "plot",
            "--study",
            "robust",
            "--out",
            str(out),
            "--plots",
            str(out / "plots"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (out / "plots" / "robust" / "roadmap.png").exists()


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    """One run on two processes through Lightning's DDP (gloo on CPU): one record, written once."""
    config, out = study_file(tmp_path, steps="patchify_stem"), tmp_path / "out"
    result = subprocess.run(
        cli(config, out, "--devices", "2", "--strategy", "ddp", "--epochs", "1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    found = records(out)
    assert list(found) == ["patchify_stem__seed0"]
    assert found["patchify_stem__seed0"]["world_size"] == 2
    assert result.stdout.count("  done:") == 1
