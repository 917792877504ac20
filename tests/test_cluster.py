"""`--submit slurm|local` and `status` (convnext_roadmap/study/cluster.py): the cluster keys,
the packing, the sbatch script submitit writes (checked with stand-ins for sbatch, srun and
sacct: no cluster here), and the local executor for real: records equal to a plain run's, a
task killed with kill -9 and resubmitted, a task pre-empted with SIGUSR2 and requeued."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli import assert_one_line_error, run_main

from convnext_roadmap.config.cluster import ClusterConfig, time_minutes
from convnext_roadmap.errors import ConfigError

pytest.importorskip("submitit")

ROOT = Path(__file__).resolve().parents[1]
RUNS = ("resnet50__seed0", "convnext_t__seed0")

# Two runs of a few seconds each, a checkpoint every second and at each epoch end; drop path
# and Mixup, so that a resumed run matches only if every random draw is restored.
STUDY = """\
preset: smoke
name: {name}
steps: "0,15"
train:
  epochs: 5
  batch_size: 32
  checkpoint_every_s: 1
  drop_path_rate: 0.1
  mixup_alpha: 0.8
cluster:
  time: "00:10:00"
  overhead_s: {overhead}
"""


def study_file(folder: Path, name: str = "cl", overhead: int = 30) -> Path:
    """overhead 30: both runs in one task; 300: a task each (the budget is 0.8 x 10 min)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(STUDY.format(name=name, overhead=overhead))
    return path


def runner(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "runner.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        cwd=ROOT,
    )


def numbers(out: Path, study: str) -> dict[str, tuple]:
    """Each run's (top1, top5, val_loss, config hash), by run name; one record per run."""
    found: dict[str, tuple] = {}
    for path in sorted((out / study / "runs").glob("*.json")):
        record = json.loads(path.read_text())
        name = path.name.rsplit("__", 1)[0]
        assert name not in found, f"two records of {name}"
        found[name] = (record["top1"], record["top5"], record["val_loss"], record["config_hash"])
    return found


def latest_submission(out: Path, study: str) -> dict:
    from convnext_roadmap.study.cluster import submissions

    return submissions(out, study)[-1]


def wait_for(condition, timeout: float = 240, what: str = "") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def tasks_over(out: Path, study: str) -> bool:
    from convnext_roadmap.study.cluster import submissions, task_states

    return all(s not in ("queued", "running", "unknown") for sub in submissions(out, study) for s in task_states(sub))


@pytest.fixture
def own_tasks(tmp_path):
    """Stops whatever local task processes a test leaves behind (only those it started)."""
    yield
    from convnext_roadmap.study.cluster import _local_alive, submissions

    for study_dir in tmp_path.rglob("cluster"):
        for sub in submissions(study_dir.parent.parent, study_dir.parent.name):
            for task in sub["tasks"]:
                if sub["executor"] == "local" and _local_alive(int(task["job_id"])):
                    os.kill(int(task["job_id"]), signal.SIGTERM)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """The two runs trained by a plain runner, one job on one thread: the records every
    submission must reproduce."""
    out = tmp_path_factory.mktemp("plain") / "out"
    config = study_file(out.parent)
    result = runner(
        "--config",
        str(config),
        "--out",
        str(out),
        "--plots",
        str(out / "plots"),
        "--jobs",
        "1",
        "--threads",
        "1",
        "--no-report",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = numbers(out, "cl")
    assert sorted(found) == sorted(RUNS)
    return found


# ---------------------------------------------------------------- keys and packing


def test_cluster_time_formats():
    assert time_minutes("04:00:00") == 240
    assert time_minutes("1-00:00:00") == 1440
    assert time_minutes("2-12") == 3600
    assert time_minutes("90") == 90
    assert time_minutes("10:30") == 11  # MM:SS, rounded up to whole minutes
    for bad in ("", "4h", "00:00:00", "1:2:3:4"):
        with pytest.raises(ConfigError, match="cluster.time"):
            time_minutes(bad)
    with pytest.raises(ConfigError, match="quoted string"):
        time_minutes(14400)  # what YAML makes of an unquoted 4:00:00


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ({"time": 14400}, ["cluster.time", "quoted"]),
        ({"time": "tomorrow"}, ["cluster.time", "SLURM time"]),
        ({"cpus_per_task": 0}, ["cluster.cpus_per_task", ">= 1"]),
        ({"gpus_per_node": -1}, ["cluster.gpus_per_node"]),
        ({"gmacs_per_s": 0}, ["cluster.gmacs_per_s", "> 0"]),
        ({"pack_fraction": 1.5}, ["cluster.pack_fraction"]),
        ({"signal_delay_s": 600, "time": "00:05:00"}, ["cluster.signal_delay_s", "shorter"]),
        ({"partition": "gpu a100"}, ["cluster.partition", "without spaces"]),
        ({"sbatch": {"array": "0-3"}}, ["cluster.sbatch", "set by --submit"]),
        ({"sbatch": {"mem": "4G"}}, ["cluster.sbatch", "cluster.mem_gb"]),
        ({"sbatch": {"Bad Key": 1}}, ["cluster.sbatch", "not an sbatch option"]),
        ({"sbatch": {"constraint": 1.5}}, ["cluster.sbatch"]),
        ({"nodes": "4"}, ["cluster.nodes", "int"]),
        ({"partitions": "gpu"}, ["unknown key", "cluster.partitions"]),
    ],
)
def test_cluster_keys_are_checked_like_every_other_key(override, words):
    from convnext_roadmap.config.load import load_study

    with pytest.raises(ConfigError) as error:
        load_study("smoke", None, {"cluster": override})
    for word in words:
        assert word in str(error.value)


def test_cluster_keys_load_from_yaml(tmp_path):
    from convnext_roadmap.config.load import load_study

    path = tmp_path / "s.yaml"
    path.write_text(
        'preset: smoke\nname: s\ncluster: {partition: gpu, time: "2-00:00:00", mem_gb: 64,\n'
        '  sbatch: {constraint: a100, exclusive: true}, setup: ["module load cuda"]}\n'
    )
    study, _ = load_study("cpu", path)
    assert study.cluster == ClusterConfig(
        partition="gpu",
        time="2-00:00:00",
        mem_gb=64.0,
        sbatch={"constraint": "a100", "exclusive": True},
        setup=["module load cuda"],
    )


def test_pack_by_cost_within_the_budget():
    from convnext_roadmap.study.cluster import Item, pack

    items = [Item(i, f"r{i}", "h", "todo", 0.0, cost) for i, cost in enumerate([50, 10, 40, 30, 20, 20, 500])]
    tasks = pack(items, budget_s=100)
    assert [[i.name for i in t] for t in tasks if any(i.name == "r6" for i in t)] == [["r6"]]  # too long: alone
    assert sorted(i.name for t in tasks for i in t) == sorted(i.name for i in items)  # each run once
    assert all(sum(i.est_s for i in t) <= 100 for t in tasks if len(t) > 1)
    assert len(tasks) == 3  # 170 s of short runs in two tasks of <= 100 s, and the long one
    assert all([i.order for i in t] == sorted(i.order for i in t) for t in tasks)  # the study's order
    assert pack([], 100) == []
    many = pack([Item(i, f"r{i}", "h", "todo", 0.0, 30) for i in range(300)], budget_s=3600)
    assert len(many) == 3 and {len(t) for t in many} == {100}  # 300 runs of 30 s: 3 allocations, not 300


# ---------------------------------------------------------------- without submitit, without a cluster


def test_submit_without_submitit_is_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    result = run_main(
        capsys,
        "--preset",
        "smoke",
        "--steps",
        "0",
        "--submit",
        "local",
        "--out",
        str(tmp_path / "out"),
        "--plots",
        str(tmp_path / "plots"),
    )
    assert result.returncode == 2
    assert_one_line_error(result, "submitit", "pip install -e '.[cluster]'")


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """sbatch, srun and sacct stand-ins on the PATH: sbatch keeps each script and answers with
    a job id; sacct prints the states a test writes."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(
        '#!/bin/bash\nn=$(ls "$FAKE_SLURM" | grep -c "^script") ; '
        'cp "$1" "$FAKE_SLURM/script$n.sh"\necho "Submitted batch job $((4242 + n))"\n'
    )
    (bin_dir / "srun").write_text("#!/bin/bash\nexit 0\n")
    (bin_dir / "sacct").write_text(
        '#!/bin/bash\necho "JobID|State|NodeList"\ncat "$FAKE_SLURM/sacct.txt" 2>/dev/null\n'
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(tmp_path))
    return tmp_path


def sbatch_lines(script: Path) -> set[str]:
    return {line for line in script.read_text().splitlines() if line.startswith("#SBATCH")}


GPU_STUDY = """\
preset: smoke
name: gpu
steps: "0,15"
seeds: [0, 1]
train: {synthetic_train_size: 4096, devices: "8", num_nodes: 4, strategy: ddp, accelerator: gpu}
cluster:
  partition: gpu
  account: proj42
  qos: high
  time: "02:00:00"
  cpus_per_task: 10
  gpus_per_node: 8
  mem_gb: 480
  nodes: 4
  tasks_per_node: 8
  array_parallelism: 2
  gmacs_per_s: 0.005
  sbatch: {constraint: a100, exclusive: true, mail_type: END}
  setup: ["module load cuda/12.4"]
"""

CPU_STUDY = """\
preset: smoke
name: cpu
seeds: [0, 1, 2]
cluster: {partition: cpu, time: "00:10:00", mem_gb: 3.5, array_parallelism: 4, gmacs_per_s: 0.05, overhead_s: 5}
"""


def test_slurm_script_of_a_gpu_ddp_study(fake_slurm, capsys):
    """A DDP study (4 nodes x 8 GPUs per run) submitted to SLURM: the sbatch script submitit
    writes has every cluster key, the pre-emption signal and the requeue."""
    config = fake_slurm / "gpu.yaml"
    config.write_text(GPU_STUDY)
    out = fake_slurm / "out"
    result = run_main(
        capsys, "--config", str(config), "--submit", "slurm", "--out", str(out), "--plots", str(fake_slurm / "plots")
    )
    assert result.returncode == 0, result.stderr
    assert "submitted study gpu: job 4242 (an array of 4 tasks)" in result.stdout
    assert "4 run(s) in 4 task(s), 1 run(s) per task, at most 2 at once" in result.stdout
    assert "progress: python runner.py status --study gpu" in result.stdout
    script = fake_slurm / "script0.sh"
    lines = sbatch_lines(script)
    sub = latest_submission(out, "gpu")
    for line in (
        "--nodes=4",
        "--ntasks-per-node=8",
        "--gpus-per-node=8",
        "--cpus-per-task=10",
        "--signal=USR2@120",
        "--requeue",
        "--partition=gpu",
        "--account=proj42",
        "--qos=high",
        "--time=120",
        "--mem=480GB",
        "--array=0-3%2",
        "--constraint=a100",
        "--exclusive",
        "--mail-type=END",
        "--job-name=roadmap-gpu",
        f"--output={sub['logs']}/%A_%a/%A_%a_0_log.out",
    ):
        assert f"#SBATCH {line}" in lines, (line, sorted(lines))
    text = script.read_text()
    assert "export OMP_NUM_THREADS=10\nmodule load cuda/12.4\n" in text
    assert "srun --unbuffered" in text and "-m convnext_roadmap.study.cluster" in text
    assert [t["job_id"] for t in sub["tasks"]] == ["4242_0", "4242_1", "4242_2", "4242_3"]


@pytest.mark.slow
def test_slurm_script_of_a_cpu_study_status_and_a_second_submit(fake_slurm, capsys):
    """A CPU study of 48 single-thread runs packed into a few tasks; status from sacct's
    states names a failed task's runs and log; a second --submit while the array is live
    submits only the failed task's runs."""
    config = fake_slurm / "cpu.yaml"
    config.write_text(CPU_STUDY)
    out = fake_slurm / "out"
    args = ("--config", str(config), "--submit", "slurm", "--out", str(out), "--plots", str(fake_slurm / "plots"))
    result = run_main(capsys, *args)
    assert result.returncode == 0, result.stderr
    assert "48 run(s) in 5 task(s), 9-10 run(s) per task, at most 4 at once" in result.stdout
    lines = sbatch_lines(fake_slurm / "script0.sh")
    for line in (
        "--nodes=1",
        "--ntasks-per-node=1",
        "--cpus-per-task=1",
        "--partition=cpu",
        "--mem=3584MB",
        "--time=10",
        "--array=0-4%4",
        "--signal=USR2@120",
        "--requeue",
    ):
        assert f"#SBATCH {line}" in lines, (line, sorted(lines))
    assert not any("gpus" in line or "account" in line for line in lines)
    assert "export OMP_NUM_THREADS=1\n" in (fake_slurm / "script0.sh").read_text()
    sub = latest_submission(out, "cpu")
    assert sum(len(t["runs"]) for t in sub["tasks"]) == 48
    task1 = [r["name"] for r in sub["tasks"][1]["runs"]]

    (fake_slurm / "sacct.txt").write_text(
        "4242_0|RUNNING|n1\n4242_1|FAILED|n2\n4242_1.batch|FAILED|n2\n4242_[2-4%4]|PENDING|None assigned\n"
    )
    result = run_main(capsys, "status", "--study", "cpu", "--out", str(out), "--plots", str(fake_slurm / "plots"))
    assert result.returncode == 0, result.stderr
    assert f"48 run(s) - {48 - len(task1)} queued, {len(task1)} in ended tasks, unrecorded" in result.stdout
    failed = [line for line in result.stdout.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and f"runs {', '.join(task1)};" in failed[0]
    assert f"log: {sub['logs']}/4242_1/4242_1_0_log.err" in failed[0]
    assert "1 running, 3 queued, 1 failed" in result.stdout

    result = run_main(capsys, *args)  # while tasks 0, 2, 3, 4 are live
    assert result.returncode == 0, result.stderr
    assert f"{48 - len(task1)} run(s) left out: unfinished tasks hold them" in result.stdout
    assert "submitted study cpu: job 4243 (1 task)" in result.stdout
    again = latest_submission(out, "cpu")
    assert [r["name"] for t in again["tasks"] for r in t["runs"]] == task1
    assert "#SBATCH --array" not in (fake_slurm / "script1.sh").read_text()  # one task: one job


def test_cluster_keys_must_match_a_ddp_run(fake_slurm, capsys):
    config = fake_slurm / "gpu.yaml"
    config.write_text(GPU_STUDY.replace("tasks_per_node: 8", "tasks_per_node: 4"))
    result = run_main(capsys, "--config", str(config), "--submit", "slurm", "--out", str(fake_slurm / "out"))
    assert_one_line_error(result, "cluster.tasks_per_node: 8")
    result = run_main(
        capsys, "--preset", "smoke", "--set", "cluster.nodes=2", "--submit", "slurm", "--out", str(fake_slurm / "out")
    )
    assert_one_line_error(result, "single-process")
    result = run_main(
        capsys, "--preset", "smoke", "--submit", "local", "--shard", "0/2", "--out", str(fake_slurm / "out")
    )
    assert_one_line_error(result, "--shard")


def test_imagenet_example_script_is_a_ddp_submission(fake_slurm):
    """slurm/imagenet_array.sbatch, a thin example of --submit: the runner arguments it passes
    (a stand-in python records them) make a valid DDP request, and its sbatch script asks for
    4 nodes x 8 tasks x 8 GPUs with the signal and the requeue."""
    import submitit

    import runner
    from convnext_roadmap.config.load import load_study
    from convnext_roadmap.study.cluster import check_request, make_executor

    stub = fake_slurm / "python"
    stub.write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$FAKE_SLURM/args"\n')
    stub.chmod(0o755)
    env = {**os.environ, "PYTHON": str(stub), "IMAGENET": "/data/imagenet", "ACCOUNT": "proj42"}
    subprocess.run(
        ["bash", str(ROOT / "slurm" / "imagenet_array.sbatch"), "--dry-run"], env=env, check=True, timeout=60
    )
    argv = (fake_slurm / "args").read_text().splitlines()
    assert argv[0] == "runner.py" and argv[-3:] == ["--submit", "slurm", "--dry-run"]
    args = runner.build_parser().parse_args(argv[1:])
    study, _ = load_study(args.preset, None, runner.overrides_from(args))
    assert study.train.data_dir == "/data/imagenet" and study.cluster.account == "proj42"
    check_request(study, "slurm")  # 4 x 8 tasks for a run of devices 8 x num_nodes 4
    pool = make_executor(submitit, "slurm", fake_slurm / "logs" / "%j", study, tasks=12, slots=4)
    lines = sbatch_lines_of(pool._make_submission_file_text("python -m task", "uid"))
    for line in (
        "--nodes=4",
        "--ntasks-per-node=8",
        "--gpus-per-node=8",
        "--cpus-per-task=10",
        "--mem=480GB",
        "--time=1440",
        "--partition=gpu",
        "--account=proj42",
        "--signal=USR2@120",
        "--requeue",
    ):
        assert f"#SBATCH {line}" in lines, (line, sorted(lines))


def sbatch_lines_of(text: str) -> set[str]:
    return {line for line in text.splitlines() if line.startswith("#SBATCH")}


def test_submit_dry_run_prints_the_packing(tmp_path, capsys):
    result = run_main(
        capsys,
        "--preset",
        "smoke",
        "--submit",
        "slurm",
        "--dry-run",
        "--set",
        'cluster.time="00:05:00"',
        "--set",
        "cluster.signal_delay_s=60",
        "--out",
        str(tmp_path / "out"),
    )
    assert result.returncode == 0, result.stderr
    assert "dry run: --submit slurm would submit 16 run(s) in 2 task(s), 8 run(s) per task" in result.stdout
    assert not (tmp_path / "out" / "smoke" / "cluster").exists()


# ---------------------------------------------------------------- the local executor, for real


@pytest.mark.slow
def test_local_submission_records_equal_a_plain_run(tmp_path, plain, own_tasks, capsys):
    """Submitted through submitit's LocalExecutor (real processes, one thread per task), the
    records are the plain runner's, bit for bit; the first status that finds everything done
    draws the tables and figures, once."""
    config, out, plots = study_file(tmp_path), tmp_path / "out", tmp_path / "plots"
    result = runner("--config", str(config), "--submit", "local", "--out", str(out), "--plots", str(plots))
    assert result.returncode == 0, result.stderr
    assert "2 run(s) in 1 task(s), 2 run(s) per task" in result.stdout
    assert "submitted study cl: local job(s)" in result.stdout
    wait_for(lambda: tasks_over(out, "cl"), what="the task")
    assert numbers(out, "cl") == plain
    result = runner("status", "--study", "cl", "--out", str(out))  # --plots: the submission's
    assert result.returncode == 0, result.stderr
    assert "study cl: 2 run(s) - 2 done" in result.stdout
    assert "every run is recorded and no task is left" in result.stdout
    assert (plots / "cl" / "roadmap.png").exists() and (out / "cl" / "results.csv").exists()
    result = run_main(capsys, "status", "--study", "cl", "--out", str(out))
    assert "tables and figures were drawn at" in result.stdout and "wrote" not in result.stdout


@pytest.mark.slow
def test_killed_task_is_resubmitted_and_the_study_completes(tmp_path, plain, own_tasks, capsys):
    """kill -9 on a task's process mid-run: status names the failed task, its run and its log;
    a second --submit while the tasks are live submits nothing; status --resubmit trains the
    killed run again, from its checkpoint: one record per run, each the plain run's."""
    config, out = study_file(tmp_path, overhead=300), tmp_path / "out"  # a task per run
    args = ("--config", str(config), "--out", str(out), "--plots", str(tmp_path / "plots"))
    result = runner(*args, "--submit", "local")
    assert result.returncode == 0, result.stderr
    assert "2 run(s) in 2 task(s), 1 run(s) per task" in result.stdout
    sub = latest_submission(out, "cl")
    result = run_main(capsys, *args, "--submit", "local")  # while both tasks are live: nothing new
    assert result.returncode == 0, result.stderr
    assert "nothing to submit" in result.stdout and "submitted" not in result.stdout
    victim = next(t for t in sub["tasks"] if t["runs"][0]["name"] == "resnet50__seed0")
    checkpoint = out / "cl" / "checkpoints" / f"resnet50__seed0__{victim['runs'][0]['hash'][:8]}" / "last.ckpt"
    wait_for(checkpoint.exists, what="the first checkpoint")
    beat = json.loads((Path(sub["dir"]) / "tasks" / f"{victim['index']}.json").read_text())
    os.kill(beat["pid"], signal.SIGKILL)
    assert not list((out / "cl" / "runs").glob("resnet50__*.json")), "the run ended before the kill"
    from convnext_roadmap.study.cluster import _local_alive

    wait_for(lambda: not _local_alive(int(victim["job_id"])), what="the killed task's controller")

    result = run_main(capsys, "status", "--study", "cl", "--out", str(out))
    assert result.returncode == 0, result.stderr
    failed = [line for line in result.stdout.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "runs resnet50__seed0;" in failed[0], result.stdout
    assert str(Path(sub["logs"]) / victim["job_id"] / f"{victim['job_id']}_0_log.err") in failed[0]
    assert "ended without a result (killed" in result.stdout
    result = run_main(capsys, "status", "--study", "cl", "--out", str(out), "--resubmit")
    assert result.returncode == 0, result.stderr
    assert "resubmitting 1 run(s)" in result.stdout and "1 run(s) in 1 task(s)" in result.stdout
    wait_for(lambda: tasks_over(out, "cl"), what="the resubmitted task")
    assert numbers(out, "cl") == plain
    log = "".join(p.read_text() for p in out.glob("cl/cluster/*/logs/*/*_log.out"))
    assert "resnet50 seed 0 (resuming)" in log
    result = run_main(capsys, "status", "--study", "cl", "--out", str(out))
    assert "study cl: 2 run(s) - 2 done" in result.stdout
    assert "its runs are recorded since" in result.stdout


@pytest.mark.slow
def test_preempted_task_checkpoints_and_is_requeued(tmp_path, plain, own_tasks):
    """SIGUSR2 (SLURM's --signal before the time limit, or a pre-emption) on a running task: the
    runner checkpoints at the next batch, submitit's checkpoint() pickles the task again and the
    local controller starts it again; the run resumes and its record is the plain run's."""
    config, out = study_file(tmp_path), tmp_path / "out"
    result = runner("--config", str(config), "--submit", "local", "--out", str(out), "--plots", str(tmp_path / "plots"))
    assert result.returncode == 0, result.stderr
    sub = latest_submission(out, "cl")
    checkpoint = next(
        iter(
            [
                out / "cl" / "checkpoints" / f"resnet50__seed0__{r['hash'][:8]}" / "last.ckpt"
                for t in sub["tasks"]
                for r in t["runs"]
                if r["name"] == "resnet50__seed0"
            ]
        )
    )
    wait_for(checkpoint.exists, what="the first checkpoint")
    beat = json.loads((Path(sub["dir"]) / "tasks" / "0.json").read_text())
    os.kill(beat["pid"], signal.SIGUSR2)
    wait_for(lambda: tasks_over(out, "cl"), what="the requeued task")
    assert numbers(out, "cl") == plain
    task = sub["tasks"][0]
    err = (Path(sub["logs"]) / task["job_id"] / f"{task['job_id']}_0_log.err").read_text()
    assert "SIGUSR2: its runs keep their checkpoints; requeueing" in err and "preempted" in err
    log = (Path(sub["logs"]) / task["job_id"] / f"{task['job_id']}_0_log.out").read_text()
    assert "resnet50 seed 0 (resuming)" in log and "Job completed successfully" in log
