"""The researcher's toolbox, driven as a user drives it: trackers (--logger), --set, saved
weights (evaluate, load_run, load_from_checkpoint), ImageNet starting weights, compare."""

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from cli import assert_one_line_error, run_cli, run_main

ROOT = Path(__file__).resolve().parents[1]


def record_path(study_dir: Path, name: str) -> Path:
    (path,) = (study_dir / "runs").glob(f"{name}__*.json")  # records are keyed by config hash
    return path


def record_of(study_dir: Path, name: str) -> dict:
    return json.loads(record_path(study_dir, name).read_text())


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """Steps 0 and 15 of the smoke study, 2 seeds, logged to TensorBoard and MLflow besides the CSV."""
    out = tmp_path_factory.mktemp("tools")
    result = run_cli(
        "--preset",
        "smoke",
        "--steps",
        "0,15",
        "--seeds",
        "2",
        "--logger",
        "tensorboard",
        "--logger",
        "mlflow",
        "--out",
        str(out / "r"),
        "--plots",
        str(out / "p"),
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return out / "r", result


# ------------------------------------------------------------------------------ trackers


@pytest.mark.slow
def test_trackers_write_tensorboard_events_and_an_mlflow_file_store(tracked):
    out, result = tracked
    study_dir = out / "smoke"
    record = record_of(study_dir, "resnet50__seed0")
    version = record["config_hash"][:8]
    assert (study_dir / record["log_dir"] / "metrics.csv").is_file(), "the CSV log the report reads"
    events = list((study_dir / "logs" / "tensorboard" / "resnet50__seed0" / version).glob("events.out.tfevents.*"))
    assert len(events) == 1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = EventAccumulator(str(events[0].parent)).Reload().Tags()["scalars"]
    assert {"val_top1", "val_top5", "val_loss", "train_loss_step", "lr-AdamW/pg1"} <= set(scalars), scalars
    store = study_dir / "logs" / "mlflow"
    experiments = [p.parent for p in store.glob("*/meta.yaml") if "name: smoke" in p.read_text()]
    assert len(experiments) == 1
    runs = {
        (run / "tags" / "mlflow.runName").read_text(): run
        for run in experiments[0].iterdir()
        if (run / "tags").is_dir()
    }
    run = runs[f"resnet50__seed0__{version}"]
    assert len(runs) == 4
    metrics = {p.relative_to(run / "metrics").as_posix() for p in (run / "metrics").rglob("*") if p.is_file()}
    assert {"val_top1", "val_top5", "val_loss", "lr-AdamW/pg1", "lr-AdamW/pg2"} <= metrics, metrics
    top1 = float((run / "metrics" / "val_top1").read_text().split()[1])
    assert abs(top1 - record["top1"]) < 1e-4
    lr = float((run / "metrics" / "lr-AdamW" / "pg1").read_text().split()[1])
    assert 0 < lr <= 2e-3
    assert (run / "params" / "cfg" / "width_mult").read_text() == "0.125", "hyperparameters are logged"
    # stderr is a pipe here: one progress line per validation check instead of a progress bar
    assert re.search(r"step 0 resnet50 seed 0 \| epoch 1\.00/1 \| top-1 \d+\.\d\d% \| \d+ img/s", result.stdout)


@pytest.mark.slow
def test_logger_choice_is_not_part_of_the_config_hash(tracked, tmp_path):
    out, _ = tracked
    plain = run_cli("--preset", "smoke", "--steps", "0,15", "--dry-run", "--out", str(out))
    assert plain.returncode == 0 and "2 done" in plain.stdout, plain.stdout + plain.stderr
    config = tmp_path / "study.yaml"
    config.write_text("preset: smoke\nsteps: 0,15\nlogger: [tensorboard]\n")
    from_yaml = run_cli("--config", str(config), "--dry-run", "--out", str(out))
    assert from_yaml.returncode == 0 and "2 done" in from_yaml.stdout, from_yaml.stdout + from_yaml.stderr


@pytest.mark.slow
def test_wandb_logs_an_offline_run_under_the_study(tmp_path):
    result = run_cli(
        "--preset",
        "smoke",
        "--steps",
        "0",
        "--logger",
        "wandb",
        "--out",
        str(tmp_path / "r"),
        "--plots",
        str(tmp_path / "p"),
        env={"WANDB_MODE": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((tmp_path / "r" / "smoke" / "logs" / "wandb" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0


@pytest.mark.parametrize(
    "args,words",
    [
        (["--logger", "tb"], ["logger", "'tb'", "csv, tensorboard, mlflow, wandb"]),
        (["--set", "logger=[csv, nope]"], ["'nope'", "tensorboard"]),
    ],
)
def test_unknown_logger_is_one_line(args, words, tmp_path, capsys):
    argv = ("--preset", "smoke", *args, "--dry-run", "--out", str(tmp_path))
    # --logger as a subprocess (what a user sees), --set logger=... in-process (the same main())
    assert_one_line_error(run_cli(*argv) if args[0] == "--logger" else run_main(capsys, *argv), *words)


@pytest.mark.slow
def test_tracker_not_installed_names_the_extra(tmp_path):
    hidden = tmp_path / "hide" / "mlflow"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError(\"No module named 'mlflow'\")\n")
    result = run_cli(
        "--preset",
        "smoke",
        "--steps",
        "0",
        "--logger",
        "mlflow",
        "--out",
        str(tmp_path / "r"),
        env={"PYTHONPATH": str(tmp_path / "hide")},
    )
    assert result.returncode == 2
    assert_one_line_error(result, "mlflow", "pip install -e '.[mlflow]'")
    assert not (tmp_path / "r" / "smoke" / "runs").exists(), "nothing trained"


# ---------------------------------------------------------------------------- --set, YAML


@pytest.mark.slow
def test_set_overrides_any_key_typed_like_yaml(tracked, tmp_path):
    out, _ = tracked
    same = run_cli("--preset", "smoke", "--steps", "0,15", "--set", "train.lr=2e-3", "--dry-run", "--out", str(out))
    assert same.returncode == 0 and "2 done" in same.stdout, same.stdout + same.stderr  # the preset's 2.0e-3
    other = run_cli("--preset", "smoke", "--steps", "0,15", "--set", "train.lr=1e-3", "--dry-run", "--out", str(out))
    assert other.returncode == 0 and "2 todo" in other.stdout, other.stdout + other.stderr
    seeds = run_cli("--preset", "smoke", "--steps", "0,15", "--set", "seeds=[0,1,2]", "--dry-run", "--out", str(out))
    assert "6 run(s)" in seeds.stdout and "4 done" in seeds.stdout and "2 todo" in seeds.stdout, seeds.stdout
    config = tmp_path / "study.yaml"  # YAML 1.1 reads 1e-3 as a string; ours reads a float
    config.write_text("preset: smoke\nsteps: 0,15\ntrain:\n  lr: 2e-3\n  min_lr: 1E-6\n")
    from_yaml = run_cli("--config", str(config), "--dry-run", "--out", str(out))
    assert from_yaml.returncode == 0 and "2 done" in from_yaml.stdout, from_yaml.stdout + from_yaml.stderr

    from convnext_roadmap.config.load import load_study
    from convnext_roadmap.config.overrides import parse_set

    study, _ = load_study(
        "smoke",
        config,
        parse_set(["train.lr=3e-4", "seeds=[2, 3]", "train.val_subset=null", "train.betas=[0.9, 0.95]"]),
    )
    assert study.train.lr == 3e-4 and study.seeds == [2, 3] and study.train.betas == [0.9, 0.95]
    assert study.train.min_lr == 1e-6 and study.train.val_subset is None


@pytest.mark.parametrize(
    "item,words",
    [
        ("train.lrr=1e-3", ["unknown key 'train.lrr'", "lr_reference_batch"]),
        ("train.epochs=three", ["train.epochs", "int"]),
        ("no_equals_sign", ["KEY=VALUE"]),
        ("train..lr=1", ["KEY=VALUE"]),
        ("seeds=[0,", ["not a YAML value"]),
    ],
)
def test_bad_set_is_one_line(item, words, tmp_path, capsys):
    argv = ("--preset", "smoke", "--set", item, "--dry-run", "--out", str(tmp_path))
    # the first as a subprocess (what a user sees), the others in-process (the same main())
    run = run_cli if item == "train.lrr=1e-3" else lambda *a: run_main(capsys, *a)
    assert_one_line_error(run(*argv), *words)


def test_readme_documents_every_train_key():
    """docs/studies.md's table of train.* keys: every TrainConfig field, once, with its true
    default and whether it enters the config hash."""
    from convnext_roadmap.config.identity import NOT_IN_HASH
    from convnext_roadmap.config.schema import TrainConfig
    from convnext_roadmap.config.yaml_io import parse_yaml

    readme = (ROOT / "docs" / "studies.md").read_text()
    rows = re.findall(r"^\| `train\.(\w+)` \| `([^`]*)` \| (yes|no) \| (.+) \|$", readme, re.M)
    names = [name for name, *_ in rows]
    expected = [f.name for f in fields(TrainConfig)]
    assert sorted(names) == sorted(expected), (
        "missing:",
        set(expected) - set(names),
        "not a key:",
        set(names) - set(expected),
    )
    defaults = TrainConfig()
    for name, default, hashed, meaning in rows:
        assert parse_yaml(default) == getattr(defaults, name), (name, default)
        assert (hashed == "yes") == (name not in NOT_IN_HASH), name
        assert meaning.strip(), name


# ------------------------------------------------------------------------- saved weights


@pytest.mark.slow
def test_evaluate_reproduces_the_recorded_top1(tracked):
    out, _ = tracked
    result = run_cli("evaluate", "--study", "smoke", "--step", "convnext_t", "--seed", "0", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    top1 = float(re.search(r"convnext_t seed 0: top-1 ([\d.]+)%", result.stdout).group(1))
    recorded = record_of(out / "smoke", "convnext_t__seed0")["top1"]
    assert abs(top1 - recorded) <= 0.01, result.stdout
    assert "record: top-1" in result.stdout


def test_weights_are_kept_per_config_and_load_run_rebuilds_the_model(tracked):
    from convnext_roadmap.train.module import RoadmapClassifier
    from convnext_roadmap.train.weights import load_run

    out, _ = tracked
    study_dir = out / "smoke"
    record = record_of(study_dir, "resnet50__seed0")
    path = study_dir / record["weights"]
    assert path.name == f"resnet50__seed0__{record['config_hash'][:8]}.pt"
    assert not list(path.parent.glob("*.tmp"))
    saved = torch.load(path, weights_only=True)
    model = load_run(study_dir, 0, 0)
    assert not model.training
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # the checkpoint the run left behind rebuilds the LightningModule on its own
    checkpoint = study_dir / "checkpoints" / f"resnet50__seed0__{record['config_hash'][:8]}" / "last.ckpt"
    module = RoadmapClassifier.load_from_checkpoint(checkpoint, map_location="cpu")
    assert module.cfg.width_mult == record["config"]["width_mult"] and module.hparams["world_size"] == 1
    assert set(module.hparams) == {"step", "spec", "cfg", "num_classes", "in_chans", "world_size"}
    assert all(torch.equal(saved[k], v) for k, v in module.model.state_dict().items())


@pytest.mark.slow
def test_a_step_defined_in_a_study_is_rebuilt_from_its_saved_spec(tmp_path):
    from convnext_roadmap.train.module import RoadmapClassifier
    from convnext_roadmap.train.weights import load_run

    config = tmp_path / "defined.yaml"
    config.write_text(
        "preset: smoke\nname: defined\nsteps: [convnext_t_bn]\ndefine:\n"
        "  - slug: convnext_t_bn\n    parent: convnext_t\n    change: {norm: batch}\n"
    )
    out = tmp_path / "r"
    trained = run_cli("--config", str(config), "--out", str(out), "--plots", str(tmp_path / "p"))
    assert trained.returncode == 0, trained.stderr[-3000:]
    result = run_cli("evaluate", "--study", "defined", "--step", "convnext_t_bn", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    record = record_of(out / "defined", "convnext_t_bn__seed0")
    top1 = float(re.search(r"top-1 ([\d.]+)%", result.stdout).group(1))
    assert abs(top1 - record["top1"]) <= 0.01 and record["spec"]["norm"] == "batch"
    model = load_run(out / "defined", "convnext_t_bn", 0)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    (checkpoint,) = (out / "defined" / "checkpoints").glob("convnext_t_bn__seed0__*/last.ckpt")
    module = RoadmapClassifier.load_from_checkpoint(checkpoint, map_location="cpu")
    assert module.hparams["spec"]["norm"] == "batch"
    assert all(torch.equal(v, module.model.state_dict()[k]) for k, v in model.state_dict().items())


def test_evaluate_errors_are_one_line(tracked, tmp_path, capsys):
    out, _ = tracked
    assert_one_line_error(
        run_main(capsys, "evaluate", "--study", "smoke", "--step", "3", "--out", str(out)),
        "no record of depthwise_conv seed 0",
        "resnet50 seed 0",
    )
    assert_one_line_error(
        run_main(capsys, "evaluate", "--study", "smoke", "--step", "nope", "--out", str(out)), "unknown step"
    )
    assert_one_line_error(
        run_main(capsys, "evaluate", "--study", "nope", "--step", "0", "--out", str(out)), "no record"
    )
    assert_one_line_error(run_main(capsys, "evaluate", "--study", "smoke", "--out", str(out)), "--step")
    copy = tmp_path / "smoke" / "runs"  # a record without its weights
    copy.mkdir(parents=True)
    original = record_path(out / "smoke", "resnet50__seed0")
    (copy / original.name).write_text(original.read_text())
    assert_one_line_error(
        run_main(capsys, "evaluate", "--study", "smoke", "--step", "0", "--out", str(tmp_path)),
        "no saved weights",
        "retrain",
    )


# --------------------------------------------------------------------- ImageNet weights

PRETRAINED = ["--set", "train.pretrained=torchvision", "--width-mult", "1"]
OFFLINE = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}  # refused at once


@pytest.mark.parametrize(
    "args,words",
    [
        (["--steps", "0,1"], ["steps 0 (resnet50) and 15 (convnext_t) only", "stage_ratio"]),
        (["--steps", "0", "--width-mult", "0.5"], ["width_mult 1", "0.5"]),
        (["--steps", "0", "--set", "train.pretrained=imagenet"], ["'imagenet'", "torchvision"]),
    ],
)
@pytest.mark.slow
def test_pretrained_config_errors(args, words, tmp_path):
    result = run_cli(
        "--preset",
        "smoke",
        *PRETRAINED,
        *args,
        "--out",
        str(tmp_path / "r"),
        env={"TORCH_HOME": str(tmp_path / "torch"), **OFFLINE},
    )
    assert_one_line_error(result, *words)


@pytest.mark.slow
def test_pretrained_weights_missing_offline_say_where_to_put_them(tmp_path):
    result = run_cli(
        "--preset",
        "smoke",
        *PRETRAINED,
        "--steps",
        "15",
        "--out",
        str(tmp_path / "r"),
        env={"TORCH_HOME": str(tmp_path / "torch"), **OFFLINE},
    )
    assert result.returncode == 2
    assert_one_line_error(result, str(tmp_path / "torch" / "hub" / "checkpoints" / "convnext_tiny-983f1562.pth"))
    assert not (tmp_path / "r" / "smoke" / "runs").exists(), "nothing trained"


@pytest.mark.slow
def test_pretrained_run_starts_from_a_weights_file_in_torch_home(tmp_path):
    import torchvision

    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(torchvision.models.resnet50().state_dict(), checkpoints / "resnet50-11ad3fa6.pth")
    result = run_cli(
        "--preset",
        "smoke",
        *PRETRAINED,
        "--steps",
        "0",
        "--out",
        str(tmp_path / "r"),
        "--plots",
        str(tmp_path / "p"),
        env={"TORCH_HOME": str(tmp_path / "torch"), **OFFLINE},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = record_of(tmp_path / "r" / "smoke", "resnet50__seed0")
    assert record["config"]["pretrained"] == "torchvision" and record["status"] == "done"
    from convnext_roadmap.config.identity import result_relevant
    from convnext_roadmap.config.load import load_study

    study = load_study("smoke")[0]
    assert "pretrained" not in result_relevant(study.train), "unset, it leaves earlier hashes alone"
    study.train.pretrained = "torchvision"
    assert result_relevant(study.train)["pretrained"] == "torchvision", "set, it is part of the hash"


def test_load_pretrained_sums_the_stem_and_keeps_a_new_head():
    import torchvision

    from convnext_roadmap.train.weights import load_pretrained
    from convnext_steps import build_model

    theirs = torchvision.models.convnext_tiny().state_dict()
    model = build_model("convnext_t", num_classes=10, in_chans=1)
    head = model.fc.weight.detach().clone()
    load_pretrained(model, "convnext_t", in_chans=1, state=theirs)
    ours = model.state_dict()
    assert torch.equal(ours["stem.0.weight"], theirs["features.0.0.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(model.fc.weight, head), "the data set's own classifier"
    assert torch.equal(ours["stem.0.bias"], theirs["features.0.0.bias"])
    x = torch.rand(1, 1, 64, 64)
    reference = torchvision.models.convnext_tiny()
    reference.load_state_dict(theirs)
    reference.classifier[2] = torch.nn.Identity()
    model.fc = torch.nn.Identity()
    with torch.no_grad():  # a grey image is the RGB image (x, x, x) to the summed stem
        assert torch.allclose(model.eval()(x), reference.eval()(x.expand(1, 3, 64, 64)), atol=1e-4)


# ------------------------------------------------------------------------------- compare


@pytest.mark.slow
def test_compare_two_studies_table_csv_figure_and_config_difference(tracked, tmp_path):
    out, _ = tracked
    other = run_cli(
        "--preset",
        "smoke",
        "--steps",
        "0,15",
        "--seeds",
        "2",
        "--set",
        "name=smoke_lr",
        "--set",
        "train.lr=1e-3",
        "--out",
        str(out),
        "--plots",
        str(tmp_path / "p"),
    )
    assert other.returncode == 0, other.stderr[-3000:]
    result = run_cli("compare", "smoke", "smoke_lr", "--out", str(out), "--plots", str(tmp_path / "p"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Warning" not in result.stderr, result.stderr
    import pandas as pd
    from scipy import stats

    table = pd.read_csv(out / "compare_smoke_vs_smoke_lr.csv")
    assert list(table["step"]) == ["resnet50", "convnext_t"]
    assert (table["smoke_n"] == 2).all() and (table["smoke_lr_n"] == 2).all()
    a = [record_of(out / "smoke", f"convnext_t__seed{k}")["top1"] for k in (0, 1)]
    b = [record_of(out / "smoke_lr", f"convnext_t__seed{k}")["top1"] for k in (0, 1)]
    row = table.set_index("step").loc["convnext_t"]
    assert row["smoke_lr_minus_smoke"] == pytest.approx(sum(b) / 2 - sum(a) / 2, abs=1e-3)
    # the same seeds on both sides: paired by seed
    assert row["smoke_lr_minus_smoke_test"] == "paired"
    low, high = stats.ttest_rel(b, a).confidence_interval(0.95)
    assert row["smoke_lr_minus_smoke_ci95_low"] == pytest.approx(low, abs=1e-3)
    assert row["smoke_lr_minus_smoke_ci95_high"] == pytest.approx(high, abs=1e-3)
    assert row["smoke_lr_minus_smoke_p"] == pytest.approx(stats.ttest_rel(b, a).pvalue, abs=1e-4)
    assert re.search(
        r"\| 15 \| convnext_t \| [\d.]+ ± [\d.]+ \(2\) \| [\d.]+ ± [\d.]+ \(2\) \| [+-][\d.]+ \[[+-][\d.]+, "
        r"[+-][\d.]+\] \(paired\) \|",
        result.stdout,
    ), result.stdout
    assert "train.lr: smoke=0.002, smoke_lr=0.001" in result.stdout
    assert "train.lr: smoke=0.002" in (out / "compare_smoke_vs_smoke_lr.md").read_text()
    png = tmp_path / "p" / "compare_smoke_vs_smoke_lr.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_compare_pairs_by_seed_only_when_both_studies_ran_the_same_seeds():
    from helpers import record
    from scipy import stats

    from convnext_roadmap.report.compare import comparison_table

    def runs(values, seeds):
        return [record(step="convnext_t", step_index=15, seed=s, top1=v) for s, v in zip(seeds, values, strict=True)]

    a, b = [80.0, 82.0, 81.0], [80.5, 82.4, 81.7]
    paired = comparison_table({"a": runs(a, [0, 1, 2]), "b": runs(b, [0, 1, 2])}).iloc[0]
    assert paired["b_minus_a_test"] == "paired"
    assert (paired["b_minus_a_ci95_low"], paired["b_minus_a_ci95_high"]) == pytest.approx(
        tuple(stats.ttest_rel(b, a).confidence_interval(0.95))
    )
    # the seeds' own spread cancels: narrower than Welch's on the same numbers
    welch_low, welch_high = stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert paired["b_minus_a_ci95_high"] - paired["b_minus_a_ci95_low"] < welch_high - welch_low
    unpaired = comparison_table({"a": runs(a, [0, 1, 2]), "b": runs(b, [3, 4, 5])}).iloc[0]
    assert unpaired["b_minus_a_test"] == "Welch"
    assert (unpaired["b_minus_a_ci95_low"], unpaired["b_minus_a_ci95_high"]) == pytest.approx((welch_low, welch_high))
    assert unpaired["b_minus_a"] == pytest.approx(sum(b) / 3 - sum(a) / 3)


@pytest.mark.parametrize(
    "names,words",
    [
        (["smoke"], ["two or more studies"]),
        (["smoke", "smoke"], ["named twice"]),
        (["smoke", "nope"], ["nope", "no runs/ folder"]),
    ],
)
def test_compare_errors_are_one_line(tracked, names, words, tmp_path, capsys):
    out, _ = tracked
    assert_one_line_error(run_main(capsys, "compare", *names, "--out", str(out), "--plots", str(tmp_path)), *words)


def test_study_names_belong_to_compare_only(tmp_path):
    assert_one_line_error(run_cli("plot", "smoke", "--out", str(tmp_path)), "only compare takes study names")
