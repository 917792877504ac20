"""Image-folder runs resume exactly, as in-memory ones: a seeded sampler (order a function of
(seed, epoch), position saved in checkpoints), per-sample augmentation seeded from (seed,
epoch, index) whatever the worker, each DDP rank its own shard; train_subset and hflip are
honoured, crop_padding is refused for image folders."""

import signal
import subprocess
import sys

import pytest
import torch
from PIL import Image
from robust_helpers import ROOT, main_args, no_figures, records, run_study, same_numbers

import runner

STUDY = """\
preset: smoke
name: tiny
steps: patchify_stem
train:
  dataset: imagefolder
  data_dir: {data}
  resolution: 32
  train_subset: 48
  batch_size: 6
  epochs: 2
  checkpoint_every_s: 1
  drop_path_rate: 0.1
  mixup_alpha: 0.8
  randaugment_ops: 2
  random_erasing: 0.25
  num_workers: {workers}
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """3 classes x 20 PNGs of 40x40 in train/, 3 x 6 in val/: each class a colour, plus noise."""
    root = tmp_path_factory.mktemp("images")
    generator = torch.Generator().manual_seed(0)
    for split, count in (("train", 20), ("val", 6)):
        for label in range(3):
            (root / split / f"class{label}").mkdir(parents=True)
            for i in range(count):
                pixels = torch.rand(40, 40, 3, generator=generator) * 128
                pixels[..., label] += 127
                Image.fromarray(pixels.to(torch.uint8).numpy()).save(root / split / f"class{label}" / f"{i}.png")
    return root


def study(tmp_path, folder, workers: int):
    path = tmp_path / "tiny.yaml"
    path.write_text(STUDY.format(data=folder, workers=workers))
    return path


@pytest.fixture(scope="module")
def folder_reference(folder, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("folder_reference")
    with pytest.MonkeyPatch.context() as mp:
        no_figures(mp)
        assert runner.main(main_args(study(tmp, folder, workers=0), tmp / "out")) == 0
    return records(tmp / "out")["patchify_stem__seed0"]


def interrupt(config, out, at: str, sig: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "crash_driver.py"),
            "--at",
            at,
            "--signal",
            sig,
            "--",
            "--config",
            str(config),
            "--out",
            str(out),
            "--plots",
            str(out / "plots"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_interrupted_mid_epoch_twice_resumes_to_the_same_numbers_with_workers(folder, folder_reference, tmp_path):
    """SIGTERM in the middle of epoch 1, resumed with 2 workers and killed (-9) further on,
    resumed again: the numbers of the uninterrupted run without workers (before: each resume
    restarted the epoch in another order)."""
    config, out = study(tmp_path, folder, workers=2), tmp_path / "out"
    assert folder_reference["train_images"] == 48, "train_subset is honoured"
    stopped = interrupt(config, out, "batch:1:2", "SIGTERM")
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    state = torch.load(next((out / "tiny" / "checkpoints").rglob("last.ckpt")), weights_only=False)
    assert state["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 1, "consumed": 3}]
    killed = interrupt(config, out, "batch:1:5", "SIGKILL")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    result = run_study(config, out)
    assert result.returncode == 0 and "(resuming)" in result.stdout, result.stderr[-2000:]
    assert same_numbers(records(out)["patchify_stem__seed0"], folder_reference)


def test_sampler_order_is_a_function_of_seed_and_epoch_and_resumes_mid_epoch():
    from convnext_roadmap.data.image_folder import ResumableSampler

    full = list(ResumableSampler(50, 4, seed=3))
    assert sorted(i for i, _ in full) == list(range(50)) and full == list(ResumableSampler(50, 4, seed=3))
    resumed = ResumableSampler(50, 4, seed=3)
    resumed.load_state_dict({"epoch": 0, "consumed": 5})
    assert list(resumed) == full[20:]
    resumed.set_epoch(1)
    second = list(resumed)
    ended = ResumableSampler(50, 4, seed=3)
    ended.load_state_dict({"epoch": 0, "consumed": 12})  # an end-of-epoch checkpoint
    assert list(ended) == second, "the next epoch, even before set_epoch (workers draw early)"
    assert len(second) == 50 and second != full and {e for _, e in second} == {1}
    shards = [list(ResumableSampler(50, 4, seed=3, shard=(r, 2))) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 25 and not {i for i, _ in shards[0]} & {i for i, _ in shards[1]}


def test_augmentation_is_a_function_of_seed_epoch_and_index():
    from torchvision.transforms import v2

    from convnext_roadmap.data.image_folder import SeededSamples

    images = [(torch.rand(3, 40, 40), 0) for _ in range(4)]
    samples = SeededSamples(images, v2.Compose([v2.RandomResizedCrop(32), v2.RandomHorizontalFlip()]), seed=1)
    torch.manual_seed(123)
    first = samples[(2, 0)][0]
    state = torch.get_rng_state()
    torch.rand(7)  # another worker, another history
    assert torch.equal(samples[(2, 0)][0], first)
    assert not torch.equal(samples[(2, 1)][0], first), "another epoch, another crop"
    torch.set_rng_state(state)
    samples[(3, 0)]
    assert torch.equal(torch.get_rng_state(), state), "the caller's RNG is left alone"


def test_hflip_off_is_honoured(folder):
    from convnext_roadmap.config.schema import TrainConfig
    from convnext_roadmap.data.image_folder import ImageFolderDataModule

    flips = [
        type(op).__name__
        for op in ImageFolderDataModule(
            TrainConfig(dataset="imagefolder", data_dir=str(folder), hflip=False), 0
        ).train_transform.transforms
    ]
    assert "RandomHorizontalFlip" not in flips and "RandomResizedCrop" in flips


def test_crop_padding_is_refused_for_image_folders(folder):
    from convnext_roadmap.config.load import load_study
    from convnext_roadmap.errors import ConfigError

    train = {"dataset": "imagefolder", "data_dir": str(folder)}
    load_study("smoke", None, {"train": train})  # the default: nothing to refuse
    with pytest.raises(ConfigError, match="crop_padding=2 applies to in-memory data sets only"):
        load_study("smoke", None, {"train": {**train, "crop_padding": 2}})
    assert load_study("cpu", None, {"train": {**train, "crop_padding": None}})[0].train.crop_padding is None, (
        "the default preset's crop_padding=2 is undone by null, as the message says"
    )


def broken_copy(folder, tmp_path, breakage: str):
    import shutil

    root = tmp_path / "images"
    shutil.copytree(folder, root)
    if breakage == "val lacks a class":
        shutil.rmtree(root / "val" / "class1")
    elif breakage == "train lacks a class":
        shutil.rmtree(root / "train" / "class2")
    elif breakage == "empty class":
        for path in (root / "val" / "class0").iterdir():
            path.unlink()
    elif breakage == "truncated png":
        path = root / "train" / "class1" / "7.png"
        path.write_bytes(path.read_bytes()[:300])
    elif breakage == "not an image":
        (root / "train" / "class0" / "notes.png").write_text("not a picture")
    return root


@pytest.mark.parametrize(
    "breakage,words",
    [
        ("val lacks a class", ["val lacks class folder(s) class1", "matched by name"]),
        ("train lacks a class", ["train lacks class folder(s) class2"]),
        ("empty class", ["class0 holds no image file"]),
        ("truncated png", ["7.png is not a readable image", "truncated"]),
        ("not an image", ["notes.png is not a readable image"]),
    ],
)
def test_a_broken_image_folder_is_a_one_line_error_before_training(folder, tmp_path, breakage, words):
    from cli import assert_one_line_error, run_cli

    root = broken_copy(folder, tmp_path, breakage)
    config = tmp_path / "tiny.yaml"
    config.write_text(STUDY.format(data=root, workers=0))
    result = run_cli(
        "--config",
        str(config),
        "--out",
        str(tmp_path / "out"),
        "--plots",
        str(tmp_path / "plots"),
        env={"XDG_CACHE_HOME": str(tmp_path / "cache")},
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert_one_line_error(result, *words)
    assert not (tmp_path / "out" / "tiny" / "runs").exists() or not any((tmp_path / "out" / "tiny" / "runs").iterdir())


def test_val_labels_follow_train_class_names(folder):
    """Labels are numbered by train/'s class names in both splits."""
    from convnext_roadmap.config.schema import TrainConfig
    from convnext_roadmap.data.image_folder import ImageFolderDataModule

    module = ImageFolderDataModule(TrainConfig(dataset="imagefolder", data_dir=str(folder)), 0)
    train, val = module.train_set.dataset, module.val_set.dataset
    assert train.class_to_idx == val.class_to_idx == {"class0": 0, "class1": 1, "class2": 2}
