"""Two-process DDP on gloo (CPU): the decisions every rank must take together (a run's lock, a
NaN loss, a stop), per-rank random numbers, and validation shards of unequal sizes. Without
the agreements each case hung in the next collective: these tests have a timeout for that."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# 4 runs: resnet50's lock held by a live process of this host, stage_ratio's by a process of
# another host, patchify_stem diverges on rank 1 only, convnext_t trains. 513 validation images
# on 2 ranks: 257 and 256, which in batches of 256 were 2 and 1 batches.
STUDY = """\
preset: smoke
name: ddp
steps: [resnet50, stage_ratio, patchify_stem, convnext_t]
train:
  synthetic_train_size: 256
  synthetic_val_size: 513
  batch_size: 64
  epochs: 1
  mixup_alpha: 0.8
  drop_path_rate: 0.1
"""


def run_ddp(tmp_path: Path, env: dict[str, str], timeout: int = 420) -> subprocess.CompletedProcess:
    config = tmp_path / "ddp.yaml"
    config.write_text(STUDY)
    out = tmp_path / "out"
    command = [
        sys.executable,
        str(ROOT / "tests" / "ddp_driver.py"),
        "--config",
        str(config),
        "--out",
        str(out),
        "--plots",
        str(tmp_path / "plots"),
        "--devices",
        "2",
        "--strategy",
        "ddp",
        "--no-report",
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment, cwd=tmp_path)


def read_trace(folder: Path, rank: int) -> list[dict]:
    return [json.loads(line) for line in (folder / f"rank{rank}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def ddp_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    locks = tmp / "out" / "ddp" / "locks"
    locks.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # a live runner of this host
    try:
        (locks / "resnet50__seed0.lock").write_text(f"{socket.gethostname()} {holder.pid} livetoken")
        (locks / "stage_ratio__seed0.lock").write_text("another-host.example 4242 hosttoken")
        trace = tmp / "trace"
        trace.mkdir()
        result = run_ddp(tmp, {"DDP_NAN_STEP": "patchify_stem", "DDP_TRACE": str(trace)})
    finally:
        holder.kill()
        holder.wait()
    records = {
        json.loads(p.read_text())["step"]: json.loads(p.read_text())
        for p in (tmp / "out" / "ddp" / "runs").glob("*.json")
    }
    return result, records, locks, trace


@pytest.mark.slow  # one 2-process study of 4 runs for these four tests: ~30 s
def test_a_lock_rank_0_cannot_take_is_skipped_by_every_rank(ddp_study):
    result, records, locks, _ = ddp_study
    output = result.stdout + result.stderr[-3000:]
    assert result.returncode == 1, output  # 1: the diverged run; no hang, no other failure
    for name in ("resnet50__seed0", "stage_ratio__seed0"):
        assert result.stdout.count(f"skipped: another runner holds {name}'s lock") == 1, output
    assert "resnet50" not in records and "stage_ratio" not in records
    assert (locks / "stage_ratio__seed0.lock").read_text() == "another-host.example 4242 hosttoken"
    assert records["convnext_t"]["status"] == "done" and records["convnext_t"]["world_size"] == 2


@pytest.mark.slow  # one 2-process study of 4 runs for these four tests: ~30 s
def test_a_nan_on_one_rank_fails_the_run_on_every_rank(ddp_study):
    result, records, _, _ = ddp_study
    assert records["patchify_stem"]["status"] == "failed", result.stdout
    assert "NaN" in records["patchify_stem"]["failure"]
    assert result.stdout.count("FAILED:") == 1
    assert "1 run(s) failed (patchify_stem__seed0)" in result.stderr
    assert records["convnext_t"]["status"] == "done"  # the study went on, every rank with it


@pytest.mark.slow  # one 2-process study of 4 runs for these four tests: ~30 s
def test_each_rank_draws_its_own_random_numbers_and_rank_0_those_of_one_process(ddp_study):
    from convnext_roadmap.data.seeding import derive_seed

    _, _, _, trace = ddp_study
    seeds = {}
    for rank in (0, 1):
        entries = read_trace(trace, rank)
        seeds[rank] = {
            (e["where"], tuple(e["parts"][:4])): e
            for e in entries
            if e["where"] in ("loader", "reseed") and len(e["parts"]) >= 4
        }
        assert seeds[rank]
    for (where, parts), entry in seeds[0].items():
        assert entry["parts"] == list(parts) and entry["value"] == derive_seed(*parts)  # as one process
        other = seeds[1][(where, parts)]
        assert other["parts"] == [*parts, 1] and other["value"] != entry["value"], where
    assert {where for where, _ in seeds[0]} == {"loader", "reseed"}


@pytest.mark.slow  # one 2-process study of 4 runs for these four tests: ~30 s
def test_uneven_validation_shards_get_the_same_number_of_batches(ddp_study):
    _, records, _, trace = ddp_study
    sizes = {
        rank: [e["size"] for e in read_trace(trace, rank) if e["where"] == "val_batch" and e["step"] == "convnext_t"]
        for rank in (0, 1)
    }
    assert len(sizes[0]) == len(sizes[1]) == 2, sizes  # 257 + 256 images, 2 batches each
    assert sum(sizes[0]) + sum(sizes[1]) == 513, sizes  # every image once
    assert records["convnext_t"]["val_images"] == 513


def test_even_shards_for_any_size():
    """The validation shards of the in-memory path and of image folders (EvenShardBatches):
    every image once, in the same number of batches on every rank."""
    import torch

    from convnext_roadmap.data.image_folder import EvenShardBatches
    from convnext_roadmap.data.in_memory import InMemoryBatches

    for size in (2, 3, 256, 257, 513, 1025):
        for world in (2, 3, 8):
            if size < world:
                continue
            for batch in (2, 256):
                images = torch.zeros(size, 1, 4, 4, dtype=torch.uint8)
                labels = torch.arange(size)
                loaders = [
                    InMemoryBatches(
                        images,
                        labels,
                        batch,
                        train=False,
                        seed=0,
                        resolution=4,
                        mean=torch.zeros(1),
                        std=torch.ones(1),
                        shard=(rank, world),
                    )
                    for rank in range(world)
                ]
                counts = {len(list(loader)) for loader in loaders}
                assert len(counts) == 1 and counts == {len(loaders[0])}, (size, world, batch)
                seen = sorted(int(x) for loader in loaders for _, y in loader for x in y)
                assert seen == list(range(size)), (size, world, batch)
                samplers = [EvenShardBatches(size, (rank, world), batch) for rank in range(world)]
                assert len({len(s) for s in samplers}) == 1
                assert sorted(i for s in samplers for b in s for i in b) == list(range(size))
                assert all(len(b) <= batch for s in samplers for b in s)


def test_a_lock_of_an_earlier_incarnation_of_this_slurm_job_is_stale(tmp_path, monkeypatch):
    """A requeued job that lands on other hosts takes over the lock its previous incarnation
    left (the same SLURM_JOB_ID, a lower SLURM_RESTART_COUNT); another job's lock of another
    host, or one of this incarnation, is never taken over."""
    from convnext_roadmap.store import locks

    lock = tmp_path / "run.lock"
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    lock.write_text("node-a 4242 tok slurm:777.0")  # this job, before its requeue, on another node
    assert locks.stale_lock(lock) is not None
    with locks.run_lock(lock) as acquired:
        assert acquired and lock.read_text().endswith(" slurm:777.1")
    for other in ("node-a 4242 tok slurm:778.0", "node-a 4242 tok slurm:777.1", "node-a 4242 tok"):
        lock.write_text(other)
        assert locks.stale_lock(lock) is None, other
        with locks.run_lock(lock) as acquired:
            assert not acquired
    monkeypatch.delenv("SLURM_JOB_ID")
    lock.write_text("node-a 4242 tok slurm:777.0")
    assert locks.stale_lock(lock) is None  # not in a SLURM job: another host's lock is held
