"""benchmarks/gpu_check.py --dry-run on the CPU (CI): it says what it would run, and the
studies it would run are valid commands (each planned here with --dry-run)."""

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # three runner processes: ~30 s on a busy 2-core machine
def test_gpu_check_dry_run_prints_its_plan_and_its_studies_plan(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("  ")}
    assert {"precision", "smoke_1gpu", "ddp_2gpu", "throughput_224", "CSV:"} <= set(lines), result.stdout
    assert "bf16-mixed" in lines["smoke_1gpu"] and "train.compile=true" in lines["smoke_1gpu"]
    for check in ("smoke_1gpu", "ddp_2gpu"):
        command = shlex.split(lines[check].split(None, 1)[1].split("with 2: ")[-1])
        command = [
            *command[: command.index("--out")],
            "--out",
            str(tmp_path / check),
            "--plots",
            str(tmp_path),
            "--dry-run",
        ]
        planned = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert planned.returncode == 0, (check, planned.stderr)
        assert " 2 run(s) - 2 todo" in planned.stdout, planned.stdout
    assert not list(Path("/tmp").glob("gpu_check_XXXX")), "a dry run makes no folder"
