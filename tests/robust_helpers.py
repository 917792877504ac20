"""Shared by the robustness tests and the campaign scripts: a tiny study that trains in a
second or two, in-process or as the user runs it, and ways to interrupt it at a chosen batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# 16 batches an epoch, 2 epochs, a checkpoint every second and at each epoch end; drop path
# and Mixup so that every random draw must be restored exactly for a resumed run to match.
# The benchmarks' kill and signal campaigns use it too (benchmarks/kill_campaign.py, signal_windows.py).
TINY = """\
preset: smoke
name: {name}
steps: {steps}
seeds: {seeds}
train:
  synthetic_train_size: {train_size}
  synthetic_val_size: {val_size}
  batch_size: {batch_size}
  epochs: 2
  checkpoint_every_s: 1
  drop_path_rate: 0.1
  mixup_alpha: 0.8
"""


def tiny_study(
    folder: Path,
    steps: str = "patchify_stem",
    seeds: str = "[0]",
    train_size: int = 256,
    name: str = "tiny",
    val_size: int = 64,
    batch_size: int = 16,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(
        TINY.format(
            name=name, steps=steps, seeds=seeds, train_size=train_size, val_size=val_size, batch_size=batch_size
        )
    )
    return path


def cli(config: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "runner.py"),
        "--config",
        str(config),
        "--out",
        str(out),
        "--plots",
        str(out / "plots"),
        *extra,
    ]


def run_study(
    config: Path, out: Path, *extra: str, timeout: int = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(cli(config, out, *extra), capture_output=True, text=True, timeout=timeout, env=environment)


def main_args(config: Path, out: Path, *extra: str) -> list[str]:
    """runner.main's arguments for an in-process run (no figures: they cost seconds)."""
    return ["--config", str(config), "--out", str(out), "--plots", str(out / "plots"), *extra]


def records_by_run(out: Path, study: str = "tiny") -> dict[str, list[dict]]:
    """Every record of the study's runs/ by run name (step and seed), as parsed JSON."""
    found: dict[str, list[dict]] = {}
    for path in sorted((out / study / "runs").glob("*.json")):
        record = json.loads(path.read_text())
        found.setdefault(f"{record['step']}__seed{record['seed']}", []).append(record)
    return found


def records(out: Path, study: str = "tiny") -> dict[str, dict]:
    """The study's records by run name; a run with two records fails (a duplicate)."""
    found = records_by_run(out, study)
    for name, rs in found.items():
        assert len(rs) == 1, f"two records of {name}"
    return {name: rs[0] for name, rs in found.items()}


NUMBERS = ("top1", "top5", "val_loss")


def same_numbers(a: dict, b: dict) -> bool:
    """Identical results: the same config and bit-identical top-1, top-5 and loss."""
    return a["config_hash"] == b["config_hash"] and all(a[k] == b[k] and a[k] is not None for k in NUMBERS)


def signal_at(monkeypatch, sig: int, epoch: int, batch: int) -> None:
    """Send `sig` to this process once training has finished batch `batch` of epoch `epoch`
    (before the runner's own callbacks look at that batch)."""
    from convnext_roadmap.train.callbacks import DeterministicResume

    original = DeterministicResume.on_train_batch_end
    sent = []

    def patched(self, trainer, module, outputs, batch_data, batch_idx):
        original(self, trainer, module, outputs, batch_data, batch_idx)
        if not sent and trainer.current_epoch == epoch and batch_idx == batch:
            sent.append(True)
            os.kill(os.getpid(), sig)

    monkeypatch.setattr(DeterministicResume, "on_train_batch_end", patched)


def no_figures(monkeypatch) -> None:
    """In-process runs skip drawing figures (seconds each; tested elsewhere)."""
    import convnext_roadmap.report

    monkeypatch.setattr(convnext_roadmap.report, "draw_figures", lambda *args, **kwargs: [])
