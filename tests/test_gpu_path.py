"""The GPU path, as far as a CPU can show it: precision and devices chosen with mocked CUDA
capabilities and device counts, an unusable CUDA build as a one-line error, torch.compile kept
over the runs of one process (dynamo's eager backend), ConvNeXt's augmentation recipe against
timm's parameters, gradient accumulation, fewer host syncs under DDP, and the image-folder
fingerprint paid once. docs/gpu.md lists what only a GPU can show."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ precision


def mock_gpu(monkeypatch, major: int, count: int = 1) -> None:
    """A CUDA device of compute capability `major` (7: V100/T4, 8: A100) that can emulate bf16."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: SimpleNamespace(major=major, minor=0))
    monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda device: True)  # emulated bf16 works
    monkeypatch.setattr(torch.version, "hip", None)


@pytest.mark.parametrize(("major", "expected"), [(7, "16-mixed"), (8, "bf16-mixed"), (9, "bf16-mixed")])
def test_auto_precision_counts_only_bf16_in_hardware(monkeypatch, major, expected):
    from convnext_roadmap.train.precision import resolve_precision

    mock_gpu(monkeypatch, major)
    assert torch.cuda.is_bf16_supported()  # torch's default counts emulation: a V100 "supports" bf16
    assert resolve_precision("auto") == expected
    assert resolve_precision("auto", "gpu") == expected
    assert resolve_precision("auto", "cpu") in ("32-true", "bf16-mixed")  # the CPU's own choice


# -------------------------------------------------------------------------------- devices


def test_devices_auto_counts_the_gpus_lightning_would_take(monkeypatch):
    from convnext_roadmap.config.load import load_study
    from convnext_roadmap.study.plan import run_payload
    from convnext_roadmap.train.ranks import world_size_of
    from convnext_steps import get_step

    for preset in ("cifar10", "cifar100", "imagenette"):
        study = load_study(preset)[0]
        assert study.train.devices == "1", preset  # one GPU, as the preset says
        mock_gpu(monkeypatch, 8, count=8)
        assert world_size_of(study) == 1, preset
    study = load_study("cifar10", overrides={"train": {"devices": "auto"}})[0]
    assert world_size_of(study) == 8  # every GPU of the node, in the hash and the lr scaling alike
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert world_size_of(study) == 1  # no GPU: Lightning's CPU auto is one device (the CPU default's 1)
    payload = run_payload(study.train, get_step(0), 0, 8, "data")
    assert payload["world_size"] == 8


def test_an_unusable_cuda_build_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    """An NVIDIA GPU on the node, torch's CUDA cannot initialise (here: really, as this machine
    has no driver; on a GPU node, a driver too old for the build): an error, not a CPU run."""
    import runner
    from convnext_roadmap.train import gpu

    monkeypatch.setattr(gpu, "nvidia_gpu_present", lambda: True)
    args = ["--preset", "smoke", "--steps", "0", "--dry-run", "--out", str(tmp_path / "r"), "--plots", str(tmp_path)]
    assert runner.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: this node has an NVIDIA GPU, but torch"), err
    assert "train.accelerator=cpu" in err[0]
    from convnext_roadmap.config.schema import TrainConfig

    gpu.check_accelerator(TrainConfig(accelerator="cpu"))  # the CPU on purpose: no error
    monkeypatch.setattr(gpu, "nvidia_gpu_present", lambda: False)
    gpu.check_accelerator(TrainConfig())  # no GPU on the node: the CPU, as always


def test_gpu_settings_only_on_cuda(monkeypatch):
    from convnext_roadmap.config.schema import TrainConfig
    from convnext_roadmap.train import gpu

    cfg = TrainConfig()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.gpu_trainer_kwargs(cfg) == {}  # the CPU default: Lightning's own benchmark=None
    before = torch.get_float32_matmul_precision()
    gpu.prepare_gpu_run(cfg)
    assert torch.get_float32_matmul_precision() == before
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert gpu.gpu_trainer_kwargs(cfg) == {"benchmark": True}
    assert gpu.gpu_trainer_kwargs(TrainConfig(accelerator="cpu")) == {}
    try:
        gpu.prepare_gpu_run(cfg)
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before)


def test_image_folder_batches_reach_the_network_channels_last():
    from convnext_roadmap.config.schema import TrainConfig
    from convnext_roadmap.train.module import RoadmapClassifier

    module = RoadmapClassifier(0, TrainConfig(width_mult=0.125), 10, 3)
    nchw = [torch.rand(4, 3, 32, 32), torch.arange(4)]  # as a DataLoader collates
    images, labels = module.on_after_batch_transfer(nchw, 0)
    assert images.is_contiguous(memory_format=torch.channels_last) and torch.equal(images, nchw[0])
    ready = (torch.rand(4, 3, 32, 32).contiguous(memory_format=torch.channels_last), torch.arange(4))
    assert module.on_after_batch_transfer(ready, 0)[0] is ready[0]  # in-memory batches: untouched


# -------------------------------------------------------------------------------- compile


def compiled_records(tmp_path: Path, monkeypatch, name: str) -> dict[str, dict]:
    import runner

    original = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: original(self, backend="eager"))
    out = tmp_path / name
    args = [
        "--preset",
        "smoke",
        "--steps",
        "0-4",
        "--set",
        "train.compile=true",
        "--set",
        f"name={name}",
        "--out",
        str(out),
        "--plots",
        str(tmp_path / "plots"),
        "--jobs",
        "1",
        "--threads",
        "1",
        "--no-report",
    ]
    assert runner.main(args) == 0
    return {(r := json.loads(p.read_text()))["step"]: r for p in (out / name / "runs").glob("*.json")}


@pytest.mark.slow
def test_five_compiled_runs_in_one_process_stay_compiled(tmp_path, monkeypatch):
    from convnext_roadmap.train import gpu

    records = compiled_records(tmp_path, monkeypatch, "compiled")
    assert len(records) == 5
    assert all(r["compiled"] is True and r["compiled_graphs"] > 0 for r in records.values()), {
        s: (r["compiled"], r["compiled_graphs"]) for s, r in records.items()
    }
    # without forgetting the earlier runs' graphs, dynamo's recompile limit ends compilation
    monkeypatch.setattr(torch._dynamo, "reset", lambda: None)
    records = compiled_records(tmp_path, monkeypatch, "uncompiled")
    lost = [s for s, r in records.items() if r["compiled"] is False]
    assert lost, {s: (r["compiled"], r["compiled_graphs"]) for s, r in records.items()}
    assert gpu.compiled_state(gpu._compile_counters())["compiled"] is False  # nothing new compiled


# ---------------------------------------------------------------------------- augmentation


def test_timm_randaugment_levels_are_convnexts(monkeypatch):
    """rand-m9-mstd0.5-inc1: magnitude 9 of 10 is 0.9 of each op's maximum (timm's level
    functions), where torchvision's 9 of its 31 bins is 0.3."""
    from torchvision.transforms import v2

    from convnext_roadmap.data import recipe_augment as ra

    monkeypatch.setattr(ra, "_uniform", lambda generator: 0.0)  # never negated
    levels = {name: level(9.0, None)[0] for name, (level, _) in ra.OPS.items() if level is not None}
    assert levels["Rotate"] == pytest.approx(27.0)  # of 30 degrees
    assert levels["ShearX"] == levels["ShearY"] == pytest.approx(0.27)  # of 0.3
    assert levels["TranslateXRel"] == levels["TranslateYRel"] == pytest.approx(0.405)  # of 0.45 of the side
    for name in ("ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing"):
        assert levels[name] == pytest.approx(1.81)  # 1 +- 0.81 (of 0.9)
    assert levels["PosterizeIncreasing"] == 1  # keep 4 - int(3.6) = 1 bit
    assert levels["SolarizeIncreasing"] == 256 - 230  # pixels above 26 inverted
    assert levels["SolarizeAdd"] == 99  # int(0.9 * 110)
    assert len(ra.OPS) == 15  # timm's _RAND_INCREASING_TRANSFORMS (its Cutout is the erasing)
    monkeypatch.setattr(ra, "_uniform", lambda generator: 1.0)  # always negated
    assert ra.OPS["Rotate"][0](9.0, None)[0] == pytest.approx(-27.0)
    assert ra.OPS["ColorIncreasing"][0](9.0, None)[0] == pytest.approx(0.19)
    magnitudes, _ = v2.RandAugment._AUGMENTATION_SPACE["Rotate"]
    assert float(magnitudes(31, 32, 32)[9]) == pytest.approx(9.0)  # torchvision: 9 of 30 degrees, 0.3


def test_timm_randaugment_draws_prob_half_and_magnitude_noise():
    from convnext_roadmap.data.recipe_augment import TimmRandAugment

    augment = TimmRandAugment(2, 9, 0.5)
    generator = torch.Generator().manual_seed(0)
    plans = [augment.draw(generator) for _ in range(4000)]
    ops = [op for plan in plans for op in plan]
    assert all(len(plan) == 2 for plan in plans)
    applied = [m for _, m in ops if m is not None]
    assert abs(len(applied) / len(ops) - 0.5) < 0.02  # each op with probability 0.5
    mean = sum(applied) / len(applied)
    std = math.sqrt(sum((m - mean) ** 2 for m in applied) / len(applied))
    assert abs(mean - 9.0) < 0.05 and abs(std - 0.5) < 0.05 and max(applied) <= 10.0  # N(9, 0.5), clipped at 10
    names = {name for name, _ in ops}
    assert len(names) == 15  # drawn with replacement from all 15
    assert sum(a == b for (a, _), (b, _) in plans) / len(plans) == pytest.approx(1 / 15, abs=0.015)
    fixed = TimmRandAugment(2, 9, 0.0).draw(torch.Generator().manual_seed(0))
    assert all(m in (None, 9.0) for _, m in fixed)  # mstd 0: the magnitude as given


def test_timm_randaugment_is_a_function_of_the_generator_and_takes_pil_and_tensors():
    from convnext_roadmap.data.recipe_augment import TimmRandAugment

    augment = TimmRandAugment(2, 9, 0.5, prob=1.0, interpolation="bicubic")
    assert augment.resample == Image.BICUBIC and augment.fill == (124, 116, 104)
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    first = augment(image, torch.Generator().manual_seed(5))
    again = augment(image, torch.Generator().manual_seed(5))
    assert first.dtype == torch.uint8 and first.shape == image.shape and torch.equal(first, again)
    grey = augment(torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8), torch.Generator().manual_seed(5))
    assert grey.shape == (1, 28, 28)
    pil = augment(Image.fromarray(image.permute(1, 2, 0).numpy()), torch.Generator().manual_seed(5))
    assert torch.equal(torch.from_numpy(__import__("numpy").array(pil)).permute(2, 0, 1), first)


def test_pixel_random_erasing_is_timms_remode_pixel():
    from convnext_roadmap.data.recipe_augment import PixelRandomErasing

    erasing = PixelRandomErasing(0.25, "pixel")
    generator = torch.Generator().manual_seed(0)
    boxes = [erasing.box(224, 224, generator) for _ in range(4000)]
    found = [b for b in boxes if b is not None]
    assert abs(len(found) / len(boxes) - 0.25) < 0.02
    areas = [h * w / 224**2 for _, _, h, w in found]
    aspects = [h / w for _, _, h, w in found]
    assert 0.015 < min(areas) and max(areas) < 1 / 3 + 0.01  # 0.02 to 1/3 of the image
    assert min(aspects) > 0.28 and max(aspects) < 3.6  # log-uniform in [0.3, 1/0.3]
    image = torch.full((3, 64, 64), 7.0)
    PixelRandomErasing(1.0, "pixel")(image, torch.Generator().manual_seed(1))
    erased = image != 7.0
    assert erased.any() and abs(float(image[erased].std()) - 1.0) < 0.2  # N(0, 1) per pixel, not zeros


def test_the_gpu_presets_train_convnexts_augmentation(tmp_path):
    from torchvision.transforms import v2

    from convnext_roadmap.config.load import load_study
    from convnext_roadmap.data.image_folder import ImageFolderDataModule
    from convnext_roadmap.data.in_memory import BatchAugment
    from convnext_roadmap.data.recipe_augment import PixelRandomErasing, TimmRandAugment

    for preset in ("imagenet", "imagenette", "cifar10", "cifar100"):
        cfg = load_study(preset)[0].train
        assert (
            cfg.randaugment_impl,
            cfg.randaugment_ops,
            cfg.randaugment_magnitude,
            cfg.randaugment_magnitude_std,
            cfg.random_erasing,
            cfg.random_erasing_mode,
            cfg.interpolation,
        ) == ("timm", 2, 9, 0.5, 0.25, "pixel", "bicubic"), preset
    for split in ("train", "val"):
        (tmp_path / split / "a").mkdir(parents=True)
        Image.new("RGB", (40, 30), (10, 200, 30)).save(tmp_path / split / "a" / "0.png")
    cfg = load_study("imagenette", overrides={"train": {"data_dir": str(tmp_path)}})[0].train
    module = ImageFolderDataModule(cfg, 0)
    ops = module.train_transform.transforms
    crop = next(op for op in ops if isinstance(op, v2.RandomResizedCrop))
    assert crop.interpolation == v2.InterpolationMode.BICUBIC
    assert any(isinstance(op, TimmRandAugment) for op in ops) and isinstance(ops[-1], PixelRandomErasing)
    image, _ = module.val_set[0]
    assert image.shape == (3, 160, 160)
    cifar = BatchAugment(load_study("cifar10")[0].train)
    assert cifar.timm_randaugment is not None and cifar.pixel_erasing is not None and cifar.randaugment is None


def test_in_memory_augmentation_per_image_when_asked():
    """torchvision's transforms draw one set of parameters per call: per chunk of 16 images by
    default (the CPU studies' records), per image with augment_chunk 1; timm's: per image."""
    from convnext_roadmap.config.schema import TrainConfig
    from convnext_roadmap.data.in_memory import BatchAugment

    images = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8).expand(32, 3, 32, 32).contiguous()

    def distinct(cfg: TrainConfig) -> int:
        torch.manual_seed(0)
        out = BatchAugment(cfg)(images.clone(), torch.Generator().manual_seed(0))
        return len({bytes(image.numpy()) for image in out})

    base = {"crop_padding": None, "hflip": False, "randaugment_ops": 2}
    assert distinct(TrainConfig(**base)) <= 2  # one draw per chunk of 16: at most 2 variants of 32 copies
    assert distinct(TrainConfig(**base, augment_chunk=1)) > 16
    assert distinct(TrainConfig(**base, randaugment_impl="timm", randaugment_magnitude_std=0.5)) > 16


def test_augmentation_keys_are_checked():
    from convnext_roadmap.config.schema import TrainConfig
    from convnext_roadmap.errors import ConfigError

    for bad in (
        {"randaugment_impl": "kornia"},
        {"random_erasing_mode": "rand"},
        {"interpolation": "nearest"},
        {"randaugment_magnitude_std": 0.5},
        {"randaugment_impl": "timm", "randaugment_magnitude": 12},
        {"augment_chunk": 0},
        {"accumulate_grad_batches": 0},
    ):
        with pytest.raises(ConfigError):
            TrainConfig(**bad).check()
    TrainConfig(randaugment_impl="timm", randaugment_magnitude_std=0.5).check()


def test_matches_timm_op_for_op_when_timm_is_there(monkeypatch):
    """Where timm is installed (not a dependency: skipped otherwise), every op at magnitude 9,
    either sign, gives timm's pixels."""
    timm_aa = pytest.importorskip("timm.data.auto_augment")
    import numpy as np

    from convnext_roadmap.data import recipe_augment as ra

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8))
    hparams = {"img_mean": ra.IMAGENET_FILL, "interpolation": Image.BICUBIC, "translate_const": 100}
    ours = ra.TimmRandAugment(2, 9, 0.0, interpolation="bicubic")
    for name in ra.OPS:
        for draw in (0.9, 0.1):  # both negate when the draw is above 0.5
            monkeypatch.setattr(timm_aa.random, "random", lambda draw=draw: draw)
            monkeypatch.setattr(ra, "_uniform", lambda generator, draw=draw: draw)
            theirs = timm_aa.AugmentOp(name, prob=1.0, magnitude=9, hparams=dict(hparams))(image)
            assert np.array_equal(np.asarray(theirs), np.asarray(ours.apply(image, name, 9.0))), (name, draw)


# ---------------------------------------------------------------------- gradient accumulation


def test_accumulation_scales_lr_by_the_effective_batch_and_steps_less(tmp_path):
    from robust_helpers import records

    import runner
    from convnext_roadmap.config.schema import TrainConfig
    from convnext_roadmap.train.module import RoadmapClassifier

    module = RoadmapClassifier(
        0,
        TrainConfig(width_mult=0.125, accumulate_grad_batches=4, batch_size=32, lr_reference_batch=256, lr=1e-3),
        10,
        3,
        world_size=2,
    )
    module.trainer = SimpleNamespace(estimated_stepping_batches=10)
    optimizer = module.configure_optimizers()["optimizer"]
    assert optimizer.defaults["lr"] == pytest.approx(1e-3 * 32 * 2 * 4 / 256)
    out = tmp_path / "out"
    steps, hashes = {}, {}
    for accumulate in (1, 2):
        args = [
            "--preset",
            "smoke",
            "--steps",
            "15",
            "--set",
            f"name=acc{accumulate}",
            "--set",
            f"train.accumulate_grad_batches={accumulate}",
            "--set",
            "train.batch_size=32",
            "--out",
            str(out),
            "--plots",
            str(tmp_path / "p"),
            "--jobs",
            "1",
            "--threads",
            "1",
            "--no-report",
        ]
        assert runner.main(args) == 0
        record = records(out, f"acc{accumulate}")["convnext_t__seed0"]
        assert record["status"] == "done" and record["config"]["accumulate_grad_batches"] == accumulate
        with next((out / f"acc{accumulate}" / record["log_dir"]).rglob("metrics.csv")).open() as handle:
            rows = list(csv.DictReader(handle))
        steps[accumulate] = max(int(row["step"]) for row in rows)
        hashes[accumulate] = record["config_hash"]
    assert steps == {1: 7, 2: 3}  # the last step's index: 256 images in batches of 32 make 8 optimizer steps, 4 of 2
    assert hashes[1] != hashes[2]  # another run: the key enters the hash once set


# --------------------------------------------------------------------------- host syncs


class CountingStrategy:
    def __init__(self) -> None:
        self.reduces = 0
        self.broadcasts = 0

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:  # noqa: A002
        self.reduces += 1
        return decision

    def broadcast(self, obj, src: int = 0):
        self.broadcasts += 1
        return obj


def test_under_ddp_the_stop_agreement_and_checkpoint_clock_sync_every_20_batches(monkeypatch, tmp_path):
    import datetime as dt

    from convnext_roadmap.train import checkpoints

    strategy = CountingStrategy()
    trainer = SimpleNamespace(world_size=2, strategy=strategy)
    assert [checkpoints.agreed(trainer, b) for b in range(100)] == [None] * 100
    assert strategy.reduces == 100 // checkpoints.AGREE_EVERY
    single = SimpleNamespace(world_size=1, strategy=strategy)
    checkpoints.agreed(single, 3)
    assert strategy.reduces == 5  # one process: no collective at all
    calls = []
    monkeypatch.setattr(checkpoints.ModelCheckpoint, "on_train_batch_end", lambda self, *a: calls.append(a[-1]))
    monkeypatch.setattr(checkpoints, "validation_follows", lambda trainer, batch_idx: False)
    monkeypatch.setattr(checkpoints, "at_step_boundary", lambda trainer: True)
    callback = checkpoints.PatientModelCheckpoint(dirpath=tmp_path, train_time_interval=dt.timedelta(seconds=1))
    for b in range(60):
        callback.on_train_batch_end(trainer, None, None, None, b)
    assert calls == [19, 39, 59]
    calls.clear()
    for b in range(5):
        callback.on_train_batch_end(single, None, None, None, b)
    assert calls == [0, 1, 2, 3, 4]  # one process: every batch, as before


# ------------------------------------------------------------------ in-memory prefetching


def test_prefetched_batches_are_the_same_batches():
    """A CUDA run prepares the next in-memory batch in a thread during this one's step (and
    pins it; pinning needs a CUDA driver, so not here): the same batches, bit for bit."""
    from convnext_roadmap.config.schema import TrainConfig
    from convnext_roadmap.data.in_memory import BatchAugment, InMemoryBatches, prefetched

    images = torch.randint(0, 256, (1024, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (1024,))
    cfg = TrainConfig(
        randaugment_ops=2,
        randaugment_impl="timm",
        randaugment_magnitude_std=0.5,
        random_erasing=0.25,
        random_erasing_mode="pixel",
    )
    loader = InMemoryBatches(
        images,
        labels,
        256,
        train=True,
        seed=3,
        resolution=32,
        mean=torch.zeros(3),
        std=torch.ones(3),
        augment=BatchAugment(cfg),
    )
    plain = list(loader)
    ahead = list(prefetched(loader._batch, loader._batches(loader._indices()), 1))  # resumed at batch 1
    assert len(plain) == 4 and len(ahead) == 3
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(plain[1:], ahead, strict=True))


# ------------------------------------------------------------------ image-folder fingerprint


def test_an_image_folder_is_statted_once_per_state(tmp_path, monkeypatch):
    from convnext_roadmap.data import registry

    monkeypatch.setattr(registry, "CACHE_DIR", tmp_path / "cache")
    root = tmp_path / "data"
    for split in ("train", "val"):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            (root / split / name / "0.png").write_bytes(b"x" * 10)
    digests = []
    original = registry._folder_digest
    monkeypatch.setattr(registry, "_folder_digest", lambda r: digests.append(r) or original(r))
    first = registry.folder_fingerprint(root)
    assert registry.folder_fingerprint(root) == first and len(digests) == 1  # the second start: no file stat
    assert first == original(root)  # the same value as statting every file
    (root / "train" / "a" / "1.png").write_bytes(b"y")
    second = registry.folder_fingerprint(root)
    assert second != first and len(digests) == 2  # a new file: a new state, statted again


def test_the_world_of_one_process_decides_alone():
    from convnext_roadmap.errors import DataError
    from convnext_roadmap.train.world import SOLO

    assert SOLO.from_zero(5) == 5 and SOLO.any(True) and not SOLO.any(False)
    assert SOLO.decide_on_zero(lambda: "fp") == "fp"
    with pytest.raises(DataError):
        SOLO.decide_on_zero(lambda: (_ for _ in ()).throw(DataError("bad folder")))


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
