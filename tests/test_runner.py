"""The runner as a user drives it: subprocesses on the smoke preset, bad inputs, failures."""

import json
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from cli import assert_one_line_error, run_cli, run_main

import runner
from convnext_roadmap.config.load import load_study
from convnext_roadmap.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_list_prints_the_roadmap():
    result = run_cli("--list")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines()[1:] if line.strip()]
    assert len(rows) == 16
    assert "resnet50" in rows[0] and "4.09" in rows[0]
    assert "convnext_t" in rows[15] and "4.46" in rows[15]


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory):
    """The whole 16-step study on the smoke preset, as a user runs it."""
    out = tmp_path_factory.mktemp("results")
    plots = tmp_path_factory.mktemp("plots")
    started = time.time()
    result = run_cli("--preset", "smoke", "--steps", "all", "--out", str(out), "--plots", str(plots))
    return out, plots, result, time.time() - started


@pytest.mark.slow
def test_smoke_study_end_to_end(smoke_study):
    out, plots, result, seconds = smoke_study
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    records = sorted((out / "smoke" / "runs").glob("*.json"))
    assert len(records) == 16
    record = json.loads(records[0].read_text())
    for key in (
        "top1",
        "top5",
        "params",
        "gmacs_train_res",
        "gmacs_224",
        "train_throughput",
        "eval_throughput",
        "wall_time_s",
        "config_hash",
        "git_commit",
        "versions",
        "device",
        "dataset",
        "preset",
        "pointwise",
    ):
        assert record[key] is not None, key
    table = pd.read_csv(out / "smoke" / "results.csv")
    assert len(table) == 16 and (table["status"] == "done").all()
    measured = [
        "top1_mean",
        "top5_mean",
        "n_seeds",
        "params_m",
        "gmacs_train_res",
        "gmacs_224",
        "train_throughput",
        "eval_throughput",
        "wall_time_s",
        "paper_top1",
        "paper_gflops",
    ]
    assert table[measured].notna().all().all()
    assert (out / "smoke" / "results.md").exists()
    for name in ("roadmap.png", "roadmap.svg", "accuracy_vs_gmacs.png", "accuracy_vs_throughput.png", "curves.png"):
        assert (plots / "smoke" / name).stat().st_size > 0
    assert "[run 16/16]" in result.stdout and "ETA" in result.stdout


@pytest.mark.slow
def test_second_invocation_trains_nothing(smoke_study):
    out, plots, _, _ = smoke_study
    before = {p: p.stat().st_mtime_ns for p in (out / "smoke" / "runs").glob("*.json")}
    result = run_cli("--preset", "smoke", "--steps", "all", "--out", str(out), "--plots", str(plots))
    assert result.returncode == 0, result.stderr
    assert "16 done" in result.stdout and "[run " not in result.stdout
    assert before == {p: p.stat().st_mtime_ns for p in (out / "smoke" / "runs").glob("*.json")}


def test_dry_run_plans_without_training(smoke_study, tmp_path):
    out, _, _, _ = smoke_study
    result = run_cli("--preset", "smoke", "--steps", "0-2", "--seeds", "2", "--dry-run", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "6 run(s)" in result.stdout and "3 done" in result.stdout and "3 todo" in result.stdout
    assert "TMACs" in result.stdout
    assert not list((out / "smoke" / "runs").glob("resnet50__seed1__*.json"))


@pytest.mark.slow
def test_plot_command_recreates_deleted_figures(smoke_study, tmp_path):
    out, _, _, _ = smoke_study
    plots = tmp_path / "plots"
    result = run_cli("plot", "--study", "smoke", "--out", str(out), "--plots", str(plots))
    assert result.returncode == 0, result.stderr
    assert (plots / "smoke" / "roadmap.png").stat().st_size > 0
    assert "| step" in result.stdout or "|  #" in result.stdout


@pytest.mark.slow
def test_changed_recipe_is_a_new_run(smoke_study):
    out, _, _, _ = smoke_study
    result = run_cli("--preset", "smoke", "--steps", "0", "--epochs", "2", "--dry-run", "--out", str(out))
    assert result.returncode == 0 and "1 todo" in result.stdout
    assert "16 record(s) of other configs" in result.stdout


@pytest.mark.parametrize(
    "args,words",
    [
        (["--steps", "no_such_step"], ["unknown step", "resnet50"]),
        (["--steps", "7-3"], ["empty step range"]),
        (["--preset", "nope"], ["unknown preset", "smoke"]),
        (["--preset", "smoke", "--epochs", "0"], ["epochs", "> 0"]),
        (["--preset", "smoke", "--epochs", "-3"], ["epochs"]),
        (["--preset", "smoke", "--width-mult", "-1"], ["width_mult"]),
        (["--shard", "3/2"], ["--shard"]),
        (["--preset", "smoke", "--batch-size", "100000"], ["batch_size", "256 images"]),
    ],
)
def test_bad_command_lines(args, words, tmp_path, capsys):
    assert_one_line_error(run_main(capsys, *args, "--dry-run", "--out", str(tmp_path)), *words)


@pytest.mark.parametrize(
    "yaml_text,words",
    [
        ("name: mine\ntrain:\n  epoch: 3\n", ["unknown key 'train.epoch'", "epochs"]),
        ("name: mine\nlearning_rate: 3\n", ["unknown key 'learning_rate'", "seeds"]),
        ("name: mine\ntrain:\n  epochs: three\n", ["train.epochs", "int"]),
        ("name: mine\ntrain:\n  dataset: mnist\n", ["dataset", "fashion_mnist"]),
        ("name: mine\nseeds: [0, 0]\n", ["seeds"]),
        ("name: [unclosed\n", ["not valid YAML"]),
        ("- just\n- a list\n", ["mapping"]),
        ("name: mine\ntrain:\n  train_subset: 100\n  batch_size: 256\n", ["batch_size", "100 images"]),
    ],
)
def test_bad_yaml(yaml_text, words, tmp_path, capsys):
    config = tmp_path / "study.yaml"
    config.write_text(yaml_text)
    assert_one_line_error(run_main(capsys, "--config", str(config), "--dry-run", "--out", str(tmp_path)), *words)


def test_missing_config_file(tmp_path):
    assert_one_line_error(run_cli("--config", str(tmp_path / "nope.yaml"), "--dry-run"), "does not exist")


def test_user_study_layers_over_preset(tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("preset: smoke\nname: mine\nsteps: 0-2\ntrain:\n  epochs: 2\n")
    study, preset = load_study("cpu", config)
    assert preset == "smoke" and study.name == "mine" and study.train.epochs == 2
    assert study.train.dataset == "synthetic"  # from the smoke preset
    with pytest.raises(ConfigError):
        load_study("smoke", None, {"train": {"batch_size": 1.5}})


def test_corrupt_data_files_are_reported(tmp_path):
    data = tmp_path / "fmnist"
    data.mkdir()
    for name in (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ):
        (data / name).write_bytes(b"not gzip")
    result = run_cli("--preset", "cpu", "--steps", "0", "--data-dir", str(data), "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "corrupt")


def test_corrupt_record_is_reported_and_left_alone(smoke_study, tmp_path):
    out = tmp_path / "results"
    runs = out / "smoke" / "runs"
    runs.mkdir(parents=True)
    (name,) = [p.name for p in (smoke_study[0] / "smoke" / "runs").glob("resnet50__seed0__*.json")]
    bad = runs / name
    bad.write_text("{ half a record")
    result = run_cli("--preset", "smoke", "--steps", "0", "--out", str(out))
    assert_one_line_error(result, name, "delete")
    assert bad.read_text() == "{ half a record"


@pytest.mark.slow
def test_divergence_is_recorded_and_the_study_goes_on(tmp_path, monkeypatch):
    from convnext_roadmap.train.module import RoadmapClassifier

    original = RoadmapClassifier.forward

    def nan_for_resnet(self, x):
        out = original(self, x)
        return out * float("nan") if self.hparams["step"] == "resnet50" and self.training else out

    monkeypatch.setattr(RoadmapClassifier, "forward", nan_for_resnet)
    code = runner.main(
        ["--preset", "smoke", "--steps", "0,1", "--jobs", "1", "--out", str(tmp_path), "--plots", str(tmp_path / "p")]
    )
    assert code == 1
    (failed_path,) = (tmp_path / "smoke" / "runs").glob("resnet50__seed0__*.json")
    failed = json.loads(failed_path.read_text())
    assert failed["status"] == "failed" and failed["failed_epoch"] == 0 and "NaN" in failed["failure"]
    (done_path,) = (tmp_path / "smoke" / "runs").glob("stage_ratio__seed0__*.json")
    done = json.loads(done_path.read_text())
    assert done["status"] == "done"
    table = pd.read_csv(tmp_path / "smoke" / "results.csv")
    assert table.set_index("step").loc["resnet50", "status"] == "failed"
    # Rerunning keeps the failure (a record of the experiment) and still exits non-zero.
    assert (
        runner.main(
            [
                "--preset",
                "smoke",
                "--steps",
                "0,1",
                "--jobs",
                "1",
                "--out",
                str(tmp_path),
                "--plots",
                str(tmp_path / "p"),
            ]
        )
        == 1
    )


def test_in_memory_batches_are_a_function_of_seed_epoch_and_batch():
    from convnext_roadmap.config.schema import TrainConfig
    from convnext_roadmap.data.in_memory import BatchAugment, InMemoryBatches

    images = torch.randint(0, 256, (100, 1, 28, 28), dtype=torch.uint8)
    labels = torch.arange(100)
    kwargs = dict(
        train=True,
        seed=3,
        resolution=32,
        mean=torch.tensor([0.5]),
        std=torch.tensor([0.5]),
        augment=BatchAugment(TrainConfig(crop_padding=2)),
    )
    full = list(InMemoryBatches(images, labels, 16, **kwargs))
    assert len(full) == 6 and full[0][0].shape == (16, 1, 32, 32)
    resumed = InMemoryBatches(images, labels, 16, **kwargs)
    resumed.load_state_dict({"epoch": 0, "consumed": 4})
    rest = list(resumed)
    assert len(rest) == 2
    for (a, la), (b, lb) in zip(full[4:], rest, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)
    resumed.sampler.set_epoch(1)
    assert len(list(resumed)) == 6, "a new epoch starts from its first batch"


def test_unwritable_results_directory(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    result = run_cli("--preset", "smoke", "--steps", "0", "--out", str(blocker / "results"))
    assert_one_line_error(result, "a_file")
    assert blocker.read_text() == "not a directory"


def test_full_disk_leaves_records_intact(tmp_path, monkeypatch, capsys):
    import errno

    import convnext_roadmap.store.files

    out = tmp_path / "results"
    assert runner.main(["--preset", "smoke", "--steps", "0", "--out", str(out), "--plots", str(tmp_path / "p")]) == 0
    runs = out / "smoke" / "runs"
    before = {p.name: p.read_bytes() for p in runs.iterdir()}

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(convnext_roadmap.store.files.os, "fsync", no_space)
    code = runner.main(["--preset", "smoke", "--steps", "0-1", "--out", str(out), "--plots", str(tmp_path / "p")])
    assert code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "the disk is full" in errors[0] and "free space" in errors[0]
    assert {p.name: p.read_bytes() for p in runs.iterdir()} == before, "nothing written is touched"
    assert not list(out.rglob("*.tmp"))


def test_missing_data_lists_where_it_looked(tmp_path, monkeypatch):
    import convnext_roadmap.data.registry as data

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setattr(data.datasets, "FashionMNIST", offline)
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    with pytest.raises(data.DataError) as error:
        data.load_fashion_mnist(None)
    message = str(error.value)
    assert str(tmp_path / "system") in message
    assert "dataset-fashion-mnist" in message and "--data-dir" in message and "\n" not in message


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_a_named_data_dir_is_used_or_refused_never_replaced(tmp_path, state):
    """--data-dir that does not exist or is empty is an error naming it, even though the
    system copy of Fashion-MNIST is there."""
    mine = tmp_path / "mine"
    if state == "empty":
        mine.mkdir()
    result = run_cli("--preset", "cpu", "--steps", "0", "--data-dir", str(mine), "--out", str(tmp_path / "r"))
    assert_one_line_error(result, str(mine))
    assert result.returncode == 2 and not (tmp_path / "r" / "cpu" / "runs").exists()


def test_auto_precision_is_bf16_only_on_cpus_with_native_bf16(monkeypatch, tmp_path):
    from convnext_roadmap.study import plan
    from convnext_roadmap.train import precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    study = load_study("smoke")[0]
    hashes = {}
    for native, expected in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda native=native: native)
        assert precision.resolve_precision("auto") == expected
        assert precision.resolve_precision("32-true") == "32-true"  # explicit wins
        hashes[native] = plan.plan_runs(study, tmp_path)[0].hash
    # a bf16 run and an fp32 run of the same config are different runs (different records)
    assert hashes[True] != hashes[False]
    # a GPU in the machine does not decide for a run forced onto the CPU, and a GPU study
    # planned where there is no GPU assumes a current one
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert precision.resolve_precision("auto", "cpu") == "32-true"
    assert precision.resolve_precision("auto", "gpu") == "16-mixed"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert precision.resolve_precision("auto", "gpu") == "bf16-mixed"


@pytest.mark.slow
def test_records_say_which_precision_trained_them(tmp_path):
    from convnext_roadmap.train.precision import resolve_precision

    result = run_cli("--preset", "smoke", "--steps", "0", "--out", str(tmp_path / "r"), "--plots", str(tmp_path / "p"))
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(next((tmp_path / "r" / "smoke" / "runs").glob("*.json")).read_text())
    assert record["precision"] == resolve_precision("auto")


def test_git_dirty_ignores_the_study_rewriting_its_own_records(tmp_path, monkeypatch):
    from convnext_roadmap.store import records

    repo = tmp_path / "repo"
    (repo / "results" / "cpu" / "runs").mkdir(parents=True)
    (repo / "plots").mkdir()
    for name in ("code.py", "results/cpu/runs/a.json", "plots/roadmap.svg"):
        (repo / name).write_text("1")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "x"]):
        subprocess.run(git + args, check=True)
    monkeypatch.setattr(records, "REPO_DIR", repo)
    (repo / "results" / "cpu" / "runs" / "a.json").write_text("2")
    (repo / "plots" / "roadmap.svg").write_text("2")
    assert records.git_state()[1] is False
    (repo / "code.py").write_text("2")
    assert records.git_state()[1] is True


def test_compile_knob_compiles_in_place_and_keeps_checkpoint_keys():
    """`train.compile` wraps the network with torch.compile in place (compilation itself is
    lazy: an end-to-end compiled smoke run takes ~75 s on 2 cores, too long for the suite)."""
    from convnext_roadmap.config.schema import TrainConfig
    from convnext_roadmap.study.plan import run_payload
    from convnext_roadmap.train.module import RoadmapClassifier

    plain = RoadmapClassifier("convnext_t", TrainConfig(width_mult=0.125), 10, 1)
    compiled = RoadmapClassifier("convnext_t", TrainConfig(width_mult=0.125, compile=True), 10, 1)
    assert compiled.model._compiled_call_impl is not None and plain.model._compiled_call_impl is None
    assert list(compiled.state_dict()) == list(plain.state_dict())
    from convnext_steps import get_step

    study, step = load_study("smoke")[0], get_step("convnext_t")
    payload = run_payload(study.train, step, 0, 1, "data")
    study.train.compile = True
    assert run_payload(study.train, step, 0, 1, "data") == payload  # an execution detail, not a new run


@pytest.mark.slow
def test_records_are_kept_per_config_and_a_null_done_record_is_trained_again(tmp_path):
    """A changed config writes its own record and keeps the other; changing it back finds the
    first again; a "done" record without numbers is not done."""
    common = ("--preset", "smoke", "--steps", "0", "--out", str(tmp_path), "--plots", str(tmp_path / "p"))
    assert run_cli(*common).returncode == 0
    assert run_cli(*common, "--epochs", "2").returncode == 0
    runs = tmp_path / "smoke" / "runs"
    assert len(list(runs.glob("resnet50__seed0__*.json"))) == 2
    back = run_cli(*common)
    assert back.returncode == 0 and "1 done" in back.stdout and "[run " not in back.stdout
    assert "1 record(s) of other configs" in back.stdout
    table = pd.read_csv(tmp_path / "smoke" / "results.csv")
    assert table.set_index("step").loc["resnet50", "n_seeds"] == 1  # the current config's record only
    manifest = json.loads((tmp_path / "smoke" / "study.json").read_text())
    (current,) = [p for p in runs.glob("*.json") if manifest["runs"][0]["config_hash"][:8] in p.name]
    record = json.loads(current.read_text())
    current.write_text(json.dumps({**record, "top1": None}))
    again = run_cli(*common)
    assert again.returncode == 0, again.stderr
    assert "not a finished run" in again.stderr and "[run 1/1]" in again.stdout
    assert json.loads(current.read_text())["top1"] == pytest.approx(record["top1"])
