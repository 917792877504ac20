"""Driving runner.py as a user does: a subprocess, and the one-line error it must print."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """runner.py with these arguments; `env` adds to (or overrides) the environment."""
    return subprocess.run(
        [sys.executable, str(ROOT / "runner.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def run_main(capsys, *args: str) -> subprocess.CompletedProcess:
    """runner.main in this process, its result shaped like run_cli's: for the many error cases,
    which through a subprocess cost ~5 s of imports each (test_missing_config_file and the
    definition errors of test_studies keep the subprocess path covered)."""
    import runner

    code = runner.main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
