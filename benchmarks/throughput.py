#!/usr/bin/env python3
"""CPU throughput of the roadmap's steps and of torchvision's ResNet-50 / ConvNeXt-T.

Why: on CPU, how a model is run (memory format, autocast dtype, the data pipeline) changes
its speed by several times, and not always in the expected direction. This script puts
the choices side by side so that the runner's defaults rest on numbers from this machine:

* training (forward + backward + fused AdamW step) and eval (inference_mode) img/s, for
  every selected step, in
  setting a (the default `cpu` preset's resolution, batch and width: 32x32, 256, 0.25;
  10 classes, 1 input channel) and
  setting b (ImageNet-like: 224x224, batch 32, width 1, 1000 classes, 3 input channels),
  for each memory format (contiguous NCHW, channels_last) and dtype (fp32, bf16 autocast);
* our steps 0 and 15 at width 1 against torchvision's resnet50 / convnext_tiny in both
  settings, each pair timed in alternation on the same batch, so that the machine's drift
  over minutes (+-20% on a shared 2-core VM) cancels in the round-by-round ratio;
* the machine's 2048x2048 dense peak (fp32, bf16; best of BLAS matmul and oneDNN 1x1 conv),
  and each row's achieved GFLOP/s as a fraction of the peak of its dtype (training counted
  as 3x the forward's multiply-adds);
* the naive torchvision-style training path (NCHW fp32, DataLoader with per-sample
  transforms) against ours (channels_last, the runner's precision, data in memory,
  batch-level crop + flip).

Times are the median of per-iteration wall times after warm-up iterations. It is a
benchmark, not a test: run it on an otherwise idle machine, numbers vary with load.

    python benchmarks/throughput.py                      # default run (see the printed estimate)
    python benchmarks/throughput.py --steps-b same       # setting b for all 16 steps (long)
    python benchmarks/throughput.py --steps 0,8,15 --settings a --formats channels_last
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import itertools
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision.transforms import v2

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/throughput.py` from anywhere
    sys.path.insert(0, str(ROOT))

from convnext_roadmap.config.load import load_study  # noqa: E402
from convnext_roadmap.data.in_memory import BatchAugment  # noqa: E402
from convnext_roadmap.data.in_memory import InMemoryBatches as RunnerBatches  # noqa: E402
from convnext_roadmap.train.precision import resolve_precision  # noqa: E402
from convnext_steps import build_model, resolve_steps  # noqa: E402
from convnext_steps.complexity import count_macs  # noqa: E402
from convnext_steps.cpu_kernels import use_cpu_kernels, use_plain_kernels  # noqa: E402

FORMATS: dict[str, torch.memory_format] = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
DTYPES = ("fp32", "bf16")
# Our step that has the same architecture as each torchvision model (checked in the tests).
TORCHVISION_TWINS = {"resnet50": "resnet50", "convnext_tiny": "convnext_t"}
ENDPOINT_STEPS = "0,15"
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530
COLUMNS = [
    "model",
    "step_index",
    "setting",
    "resolution",
    "batch",
    "width_mult",
    "in_chans",
    "num_classes",
    "memory_format",
    "dtype",
    "train_img_s",
    "eval_img_s",
    "gmacs_per_img",
    "train_gflops",
    "eval_gflops",
    "train_peak_frac",
    "eval_peak_frac",
    "torch_version",
    "cpu",
    "date",
]


@dataclass(frozen=True)
class Setting:
    """One input/model size at which every model is measured."""

    name: str
    resolution: int
    batch: int
    width_mult: float
    num_classes: int
    in_chans: int
    warmup: int
    iters: int


@dataclass(frozen=True)
class Job:
    """One model in one setting; measured for every selected memory format x dtype."""

    model: str  # our step's slug, or "torchvision.<name>"
    step_index: int | None  # None for torchvision models
    setting: Setting
    width_mult: float
    macs: int = 0  # multiply-adds of one forward pass on one image

    @property
    def is_torchvision(self) -> bool:
        return self.step_index is None


@dataclass(frozen=True)
class Pair:
    """Our step and its torchvision twin, timed in alternation (see `interleaved_seconds`)."""

    ours: Job
    theirs: Job


# ----------------------------------------------------------------------------- models


def _replace_first_conv(model: nn.Module, in_chans: int) -> None:
    """Give a torchvision model an `in_chans`-channel stem (e.g. 1 for Fashion-MNIST), the
    way one adapts it to grey images, so that it does the same work as our steps."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                if child.in_channels != in_chans:
                    setattr(
                        parent,
                        name,
                        nn.Conv2d(
                            in_chans,
                            child.out_channels,
                            child.kernel_size,
                            child.stride,
                            child.padding,
                            child.dilation,
                            child.groups,
                            child.bias is not None,
                        ),
                    )
                return


def make_model(job: Job, drop_path: float, seed: int) -> nn.Module:
    """A freshly initialised fp32 model in contiguous format (same seed: same weights); ours
    with the runner's CPU kernels, as it trains."""
    torch.manual_seed(seed)
    s = job.setting
    if not job.is_torchvision:
        return use_cpu_kernels(
            build_model(
                job.model,
                num_classes=s.num_classes,
                in_chans=s.in_chans,
                width_mult=job.width_mult,
                drop_path_rate=drop_path,
            )
        )
    name = job.model.removeprefix("torchvision.")
    kwargs = {"stochastic_depth_prob": drop_path} if name.startswith("convnext") else {}
    model = getattr(torchvision.models, name)(num_classes=s.num_classes, **kwargs)
    _replace_first_conv(model, s.in_chans)
    return model


# ----------------------------------------------------------------------------- timing


def autocast(dtype: str) -> AbstractContextManager:
    """The runner's `--precision bf16`: forward + loss under CPU bf16 autocast."""
    if dtype == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


def median_seconds(fn: Callable[[], object], warmup: int, iters: int) -> float:
    """Median wall time of `iters` calls after `warmup` calls. CPU ops are synchronous, so
    wall time is the cost; the median ignores the odd preemption by other processes."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_seconds(fns: dict[str, Callable[[], object]], warmup: int, rounds: int) -> dict[str, list[float]]:
    """Wall time of each call of each function, the functions taking turns (ABBA order).
    Why: on a shared 2-core machine the speed drifts by +-20% over minutes, more than the
    differences we look for; in alternation both sides meet the same drift, and the ratio of
    their times round by round cancels it."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return times


def make_optimizer(model: nn.Module, adamw_impl: str) -> torch.optim.Optimizer:
    """AdamW as the runner uses it (`default` = PyTorch's choice: a for-loop on CPU)."""
    kwargs = {"foreach": {"foreach": True}, "fused": {"fused": True}}.get(adamw_impl, {})
    return torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, **kwargs)


def train_step_fn(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    dtype: str,
    batch: Callable[[], tuple[torch.Tensor, torch.Tensor]],
) -> Callable[[], None]:
    """One training iteration exactly as the runner does it; `batch` supplies the data."""

    def step() -> None:
        x, y = batch()
        with autocast(dtype):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def train_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, dtype: str, adamw_impl: str) -> Callable[[], None]:
    """One training iteration on one in-memory batch (the data path is measured separately)."""
    model.train()
    return train_step_fn(model, make_optimizer(model, adamw_impl), dtype, lambda: (x, y))


def eval_fn(model: nn.Module, x: torch.Tensor, dtype: str) -> Callable[[], None]:
    """One eval iteration: inference_mode, forward only (the model is put in eval mode now,
    as `train_fn` puts it in train mode: create each just before timing it)."""
    model.eval()

    def forward() -> None:
        with torch.inference_mode(), autocast(dtype):
            model(x)

    return forward


def to_format(x: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    """`.to`, not `.contiguous`: a 1-channel NCHW tensor already counts as channels_last
    contiguous, so `.contiguous(memory_format=channels_last)` would leave its NCHW strides."""
    return x.to(memory_format=memory_format)


def matmul_peak(dtype: torch.dtype, size: int, reps: int) -> float:
    """GFLOP/s of a size x size x size product, the best of two dense kernels: BLAS's matmul
    (MKL on x86) and oneDNN's 1x1 conv (the same product as a conv over size pixels). Why
    both: on AMD CPUs MKL's fp32 matmul reaches about half of what oneDNN's convs do, so the
    matmul alone understates the machine (training then showed > 100% of "peak")."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(dtype)
    b = torch.randn(size, size, generator=gen).to(dtype)
    image = a.t().reshape(1, size, size, 1).to(memory_format=torch.channels_last)
    weight = b.t().reshape(size, size, 1, 1).contiguous()
    with torch.inference_mode():
        seconds = min(
            median_seconds(lambda: torch.mm(a, b), warmup=2, iters=reps),
            median_seconds(lambda: F.conv2d(image, weight), warmup=2, iters=reps),
        )
    return 2 * size**3 / seconds / 1e9


def runner_dtype() -> str:
    """The dtype the runner trains in on this machine (`precision: auto`)."""
    return "bf16" if resolve_precision("auto", "cpu") == "bf16-mixed" else "fp32"


# ----------------------------------------------------------------------------- data paths


def synthetic_fashion_mnist(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random uint8 images of Fashion-MNIST's shape (N, 1, 28, 28) and 10-class labels."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=gen)
    return images, torch.randint(0, 10, (n,), generator=gen)


class TransformedTensorDataset(TensorDataset):
    """A TensorDataset whose images go through a per-sample transform, as torchvision's
    datasets do: the naive path."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable) -> None:
        super().__init__(images, labels)
        self.transform = transform

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = super().__getitem__(index)
        return self.transform(image), label


def naive_loader(images: torch.Tensor, labels: torch.Tensor, batch: int) -> DataLoader:
    """The torchvision-style pipeline: per-sample v2 transforms, num_workers=0."""
    transform = v2.Compose(
        [
            v2.Pad(2),
            v2.RandomCrop(32, padding=4),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize([FASHION_MNIST_MEAN], [FASHION_MNIST_STD]),
        ]
    )
    return DataLoader(
        TransformedTensorDataset(images, labels, transform),
        batch_size=batch,
        shuffle=True,
        num_workers=0,
        drop_last=True,
    )


def endless(loader: DataLoader) -> Iterator:
    """Batches from epoch after epoch (each reshuffled), so any iteration count works."""
    return itertools.chain.from_iterable(itertools.repeat(loader))


class OurBatches:
    """The runner's own data path (convnext_roadmap.data.in_memory, cpu preset): uint8 images in memory, a batch
    is an index, one batched pad/crop/flip, a normalise and a channels_last copy."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch: int, seed: int) -> None:
        cfg = load_study("cpu")[0].train
        self.loader = RunnerBatches(
            images,
            labels,
            batch,
            train=True,
            seed=seed,
            resolution=cfg.resolution,
            mean=torch.tensor([FASHION_MNIST_MEAN]),
            std=torch.tensor([FASHION_MNIST_STD]),
            augment=BatchAugment(cfg),
            channels_last=cfg.channels_last,
        )
        self.epoch = 0
        self.batches = iter(self.loader)

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            return next(self.batches)
        except StopIteration:  # next epoch, reshuffled
            self.epoch += 1
            self.loader.sampler.set_epoch(self.epoch)
            self.batches = iter(self.loader)
            return next(self.batches)


def measure_naive_vs_ours(
    job: Job, images: torch.Tensor, labels: torch.Tensor, seed: int, drop_path: float, adamw_impl: str
) -> dict[str, float]:
    """Training img/s of one architecture fed and run the naive way and our way. The
    iteration time includes fetching the batch."""
    s = job.setting
    # naive: every conv an nn.Conv2d, contiguous NCHW, fp32, eager
    model = use_plain_kernels(make_model(job, drop_path, seed))
    model.train()
    batches = endless(naive_loader(images, labels, s.batch))
    naive = train_step_fn(model, make_optimizer(model, adamw_impl), "fp32", lambda: next(batches))
    naive_img_s = s.batch / median_seconds(naive, s.warmup, s.iters)

    model = make_model(job, drop_path, seed).to(memory_format=torch.channels_last)
    model.train()
    ours = train_step_fn(
        model, make_optimizer(model, adamw_impl), runner_dtype(), OurBatches(images, labels, s.batch, seed)
    )
    ours_img_s = s.batch / median_seconds(ours, s.warmup, s.iters)
    return {"naive_img_s": naive_img_s, "ours_img_s": ours_img_s, "speedup": ours_img_s / naive_img_s}


def measure_data_paths(images: torch.Tensor, labels: torch.Tensor, batch: int, seed: int) -> dict[str, float]:
    """img/s of the two data paths alone: is the data a bottleneck of either?"""
    loader = naive_loader(images, labels, batch)
    batches = endless(loader)
    naive = batch / median_seconds(lambda: next(batches), warmup=1, iters=max(3, len(loader)))
    ours = batch / median_seconds(OurBatches(images, labels, batch, seed), 2, 20)
    return {"naive_loader_img_s": naive, "ours_batches_img_s": ours}


# ----------------------------------------------------------------------------- planning


def plan_jobs(args: argparse.Namespace, settings: dict[str, Setting]) -> tuple[list[Job], list[Pair]]:
    """Jobs timed alone: setting a's selected steps at the preset width, setting b's --steps-b.
    Pairs timed in alternation: in each setting, our steps 0 / 15 at width 1 and torchvision's
    resnet50 / convnext_tiny (if step 0 / 15 is selected). A step that is also in a pair is
    not timed a second time alone."""
    jobs: list[Job] = []
    pairs: list[Pair] = []
    steps = resolve_steps(args.steps)
    twins = {slug: tv for tv, slug in TORCHVISION_TWINS.items()}
    for name in args.settings:
        setting = settings[name]
        chosen = steps if name == "a" or args.steps_b == "same" else resolve_steps(args.steps_b)
        paired = set()
        if args.torchvision:
            for st in chosen if name == "b" else steps:
                if st.slug in twins:
                    pairs.append(
                        Pair(
                            Job(st.slug, st.index, setting, 1.0),
                            Job(f"torchvision.{twins[st.slug]}", None, setting, 1.0),
                        )
                    )
                    paired.add(st.slug)
        jobs += [
            Job(st.slug, st.index, setting, setting.width_mult)
            for st in chosen
            if not (st.slug in paired and setting.width_mult == 1.0)
        ]
    return jobs, pairs


def with_macs(job: Job, drop_path: float) -> Job:
    s = job.setting
    return replace(job, macs=count_macs(make_model(job, drop_path, 0), s.resolution, s.in_chans))


# Relative cost of a format x dtype against channels_last fp32, and the fraction of the fp32
# matmul peak that a large training / eval iteration reaches, plus a fixed per-iteration cost
# (dispatch, small kernels) at a peak of 120 GFLOP/s: rough fits to a few probes on a 2-core
# AVX-512 Xeon without AMX, where bf16 kernels ran at about half the fp32 speed.
_COST_FACTOR = {
    ("channels_last", "fp32"): 1.0,
    ("channels_last", "bf16"): 1.5,
    ("contiguous", "fp32"): 1.8,
    ("contiguous", "bf16"): 2.2,
}
_EFFICIENCY = {"train": 0.4, "eval": 0.55}
_OVERHEAD_S = {"train": 0.25, "eval": 0.04}


def estimate_seconds(
    macs: int, setting: Setting, memory_format: str, dtype: str, mode: str, peak_gflops: float
) -> float:
    """A rough a-priori duration of one measurement (warm-up + timed iterations), only to
    print a plan and an ETA; the running ETA rescales it by the time actually taken."""
    passes = 3 if mode == "train" else 1
    flops = 2 * macs * passes * setting.batch
    iteration = flops / (_EFFICIENCY[mode] * peak_gflops * 1e9) + _OVERHEAD_S[mode] * 120 / peak_gflops
    return (setting.warmup + setting.iters) * iteration * _COST_FACTOR[memory_format, dtype]


Work = tuple[Job | Pair, str | None, str | None, float]


def plan_work(
    args: argparse.Namespace, jobs: list[Job], pairs: list[Pair], naive_jobs: list[Job], peak_fp32: float
) -> list[Work]:
    """(job or pair, memory format, dtype, estimated seconds) in run order; format None =
    the naive-vs-ours comparison, run after setting a."""
    work: list[Work] = []

    def estimate(job: Job, fmt: str, dtype: str, iters: int) -> float:
        s = replace(job.setting, iters=iters)
        return sum(estimate_seconds(job.macs, s, fmt, dtype, mode, peak_fp32) for mode in ("train", "eval"))

    for name in args.settings:
        for job in (j for j in jobs if j.setting.name == name):
            work += [
                (job, fmt, dtype, estimate(job, fmt, dtype, job.setting.iters))
                for fmt in args.formats
                for dtype in args.dtypes
            ]
        for pair in (p for p in pairs if p.ours.setting.name == name):
            rounds = getattr(args, f"pair_rounds_{name}")
            work += [
                (pair, fmt, dtype, sum(estimate(j, fmt, dtype, rounds) for j in (pair.ours, pair.theirs)))
                for fmt in args.formats
                for dtype in args.dtypes
            ]
        if name == "a":  # both paths train; the naive loader adds ~0.5 ms per image
            work += [
                (
                    job,
                    None,
                    None,
                    sum(estimate_seconds(job.macs, job.setting, fmt, "fp32", "train", peak_fp32) for fmt in FORMATS)
                    + (job.setting.warmup + job.setting.iters) * job.setting.batch * 5e-4,
                )
                for job in naive_jobs
            ]
    return work


def warn_if_busy() -> None:
    """Other processes on the cores lower the numbers; with OpenMP using every core, a single
    busy core can slow every parallel region several times (threads wait for each other)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    cpus = os.cpu_count() or 1
    if load > 0.5:
        print(
            f"warning: load average {load:.1f} on {cpus} cpus before starting: other processes "
            f"compete for the cores, numbers will be low and noisy (if the machine cannot be "
            f"idle, --threads {max(1, cpus - round(load))} avoids oversubscription)"
        )


def fmt_duration(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


# ----------------------------------------------------------------------------- reports


def cpu_description() -> str:
    """CPU model, core count, and the ISA features that decide fp32 vs bf16 speed."""
    name, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name == "unknown CPU":
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    isa = [torch.backends.cpu.get_cpu_capability()]
    isa += sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile"})
    return f"{name}, {os.cpu_count()} cpus, {torch.get_num_threads()} threads, {' '.join(isa)}"


def format_ratios(df: pd.DataFrame) -> pd.DataFrame:
    """Per model and setting: channels_last / contiguous and bf16 / fp32 speed-ups."""
    rows = []
    for (setting, model, width), group in df.groupby(["setting", "model", "width_mult"], sort=False):
        for mode in ("train", "eval"):
            img_s = group.set_index(["memory_format", "dtype"])[f"{mode}_img_s"]

            def ratio(a: tuple[str, str], b: tuple[str, str], img_s: pd.Series = img_s) -> float:
                return img_s[a] / img_s[b] if a in img_s.index and b in img_s.index else math.nan

            rows.append(
                {
                    "setting": setting,
                    "model": model,
                    "width": width,
                    "mode": mode,
                    "cl/contig fp32": ratio(("channels_last", "fp32"), ("contiguous", "fp32")),
                    "cl/contig bf16": ratio(("channels_last", "bf16"), ("contiguous", "bf16")),
                    "bf16/fp32 contig": ratio(("contiguous", "bf16"), ("contiguous", "fp32")),
                    "bf16/fp32 cl": ratio(("channels_last", "bf16"), ("channels_last", "fp32")),
                }
            )
    return pd.DataFrame(rows).dropna(axis=1, how="all")


def pair_row(pair: Pair, fmt: str, dtype: str, times: dict[str, dict[str, list[float]]]) -> dict:
    """One row of the paired comparison: each side's median img/s and, per mode, the
    quartiles of the round-by-round speed ratio ours/torchvision (> 1: ours faster)."""
    row = {
        "setting": pair.ours.setting.name,
        "ours": pair.ours.model,
        "torchvision": pair.theirs.model.removeprefix("torchvision."),
        "memory_format": fmt,
        "dtype": dtype,
    }
    batch = pair.ours.setting.batch
    for mode, by_model in times.items():
        ours, theirs = by_model[pair.ours.model], by_model[pair.theirs.model]
        ratios = [t / o for o, t in zip(ours, theirs, strict=True)]
        q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
        row |= {
            f"{mode}_ours_img_s": batch / statistics.median(ours),
            f"{mode}_tv_img_s": batch / statistics.median(theirs),
            f"{mode}_ratio_median": statistics.median(ratios),
            f"{mode}_ratio_q1": q1,
            f"{mode}_ratio_q3": q3,
            f"{mode}_rounds_ours_faster": sum(r > 1 for r in ratios) / len(ratios),
        }
    return row | {"rounds": len(ratios)}


def ours_vs_torchvision(df: pd.DataFrame) -> pd.DataFrame:
    """Our ResNet-50 / ConvNeXt-T against torchvision's at width 1, each side at its best
    memory format x dtype (from the paired rows' medians)."""
    best = []
    wide = df[df["width_mult"] == 1.0]
    for setting, group in wide.groupby("setting", sort=False):
        for tv_name, slug in TORCHVISION_TWINS.items():
            ours = group[group["model"] == slug].set_index(["memory_format", "dtype"])
            tv = group[group["model"] == f"torchvision.{tv_name}"].set_index(["memory_format", "dtype"])
            if ours.empty or tv.empty:
                continue
            for mode in ("train", "eval"):
                col = f"{mode}_img_s"
                o, t = ours[col].idxmax(), tv[col].idxmax()
                best.append(
                    {
                        "setting": setting,
                        "mode": mode,
                        "ours": slug,
                        "ours best": "/".join(o),
                        "ours img/s": ours.at[o, col],
                        "torchvision": tv_name,
                        "tv best": "/".join(t),
                        "tv img/s": tv.at[t, col],
                        "ours/tv": ours.at[o, col] / tv.at[t, col],
                    }
                )
    return pd.DataFrame(best)


def format_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """The paired rows, one line each, ratios as "median [q1, q3]"."""
    table = pairs[["setting", "ours", "torchvision", "memory_format", "dtype"]].copy()
    for mode in ("train", "eval"):
        table[f"{mode} ours"] = pairs[f"{mode}_ours_img_s"].round(1)
        table[f"{mode} tv"] = pairs[f"{mode}_tv_img_s"].round(1)
        table[f"{mode} ours/tv"] = [
            f"{m:.2f} [{a:.2f}, {b:.2f}]"
            for m, a, b in zip(
                pairs[f"{mode}_ratio_median"], pairs[f"{mode}_ratio_q1"], pairs[f"{mode}_ratio_q3"], strict=True
            )
        ]
    table["rounds"] = pairs["rounds"]
    return table


def results_frame(rows: list[dict], columns: list[str] | None = None) -> pd.DataFrame:
    """Rows as a table; step_index stays an integer column (empty for torchvision models)."""
    return pd.DataFrame(rows, columns=columns).astype({"step_index": "Int64"})


def print_table(title: str, table: pd.DataFrame) -> None:
    print(f"\n== {title}")
    if table.empty:
        print("(nothing measured)")
        return
    with pd.option_context(
        "display.width",
        250,
        "display.max_columns",
        40,
        "display.max_rows",
        1000,
        "display.float_format",
        "{:.3g}".format,
    ):
        print(table.to_string(index=False))


# ----------------------------------------------------------------------------- main


def model_and_batch(job: Job, fmt: str, drop_path: float, seed: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The runner's fast path: model and in-memory input batch both in `fmt`."""
    s = job.setting
    model = make_model(job, drop_path, seed).to(memory_format=FORMATS[fmt])
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(s.batch, s.in_chans, s.resolution, s.resolution, generator=gen)
    y = torch.randint(0, s.num_classes, (s.batch,), generator=gen)
    return model, to_format(x, FORMATS[fmt]), y


def measure_row(
    job: Job,
    fmt: str,
    dtype: str,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    adamw_impl: str,
    peak: dict[str, float],
) -> dict:
    """Train and eval img/s of one model x format x dtype, timed alone."""
    s = job.setting
    train_s = median_seconds(train_fn(model, x, y, dtype, adamw_impl), s.warmup, s.iters)
    eval_s = median_seconds(eval_fn(model, x, dtype), s.warmup, s.iters)
    return row_from_seconds(job, fmt, dtype, train_s, eval_s, peak)


def measure_pair(
    pair: Pair, fmt: str, dtype: str, rounds: int, adamw_impl: str, drop_path: float, seed: int, peak: dict[str, float]
) -> tuple[list[dict], dict]:
    """Both sides of a pair on the same input batch, timed in alternation: a throughput row
    for each (medians) and the pair's ratio row."""
    sides = {job.model: (job, *model_and_batch(job, fmt, drop_path, seed)) for job in (pair.ours, pair.theirs)}
    x, y = sides[pair.ours.model][2:]
    times = {
        "train": interleaved_seconds(
            {name: train_fn(model, x, y, dtype, adamw_impl) for name, (_, model, _, _) in sides.items()},
            pair.ours.setting.warmup,
            rounds,
        ),
        "eval": interleaved_seconds(
            {name: eval_fn(model, x, dtype) for name, (_, model, _, _) in sides.items()},
            pair.ours.setting.warmup,
            rounds,
        ),
    }
    rows = [
        row_from_seconds(
            job, fmt, dtype, statistics.median(times["train"][name]), statistics.median(times["eval"][name]), peak
        )
        for name, (job, *_) in sides.items()
    ]
    return rows, pair_row(pair, fmt, dtype, times)


def row_from_seconds(job: Job, fmt: str, dtype: str, train_s: float, eval_s: float, peak: dict[str, float]) -> dict:
    """A throughput row: img/s and the GFLOP/s they imply."""
    s = job.setting
    train, evaluate = s.batch / train_s, s.batch / eval_s
    gflop = 2 * job.macs / 1e9  # per image, forward; training counts 3 forwards
    return {
        "model": job.model,
        "step_index": job.step_index,
        "setting": s.name,
        "resolution": s.resolution,
        "batch": s.batch,
        "width_mult": job.width_mult,
        "in_chans": s.in_chans,
        "num_classes": s.num_classes,
        "memory_format": fmt,
        "dtype": dtype,
        "train_img_s": train,
        "eval_img_s": evaluate,
        "gmacs_per_img": job.macs / 1e9,
        "train_gflops": 3 * gflop * train,
        "eval_gflops": gflop * evaluate,
        "train_peak_frac": 3 * gflop * train / peak[dtype],
        "eval_peak_frac": gflop * evaluate / peak[dtype],
    }


def csv_list(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    """argparse type: a comma list of values from `allowed`."""

    def parse(text: str) -> list[str]:
        values = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(allowed)}")
        return list(dict.fromkeys(values))

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Setting a defaults: the cpu preset's (32px, batch 256, width 0.25), 10 classes, 1 input channel "
        "(torchvision models keep width 1 and get a 1-channel stem). Setting b defaults: "
        "224px, batch 32, width 1, 1000 classes, 3 channels. The CSV has one row per "
        "model x setting x memory format x dtype; the naive-path comparison goes to "
        "<out>_naive.csv. Training GFLOP/s count 3x the forward's multiply-adds x 2.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--steps", default="all", help="our steps: 'all' or a comma list of slugs, indices and ranges (0-5)")
    p.add_argument(
        "--settings", type=csv_list(("a", "b")), default="a,b", help="which settings to run, comma list of a,b"
    )
    p.add_argument(
        "--steps-b",
        default=ENDPOINT_STEPS,
        help="steps measured in setting b (the costly 224px one): a selection as "
        "--steps, or 'same' for all of --steps (16 steps: ~30 min more on 2 "
        "idle cores). The default 0,15 is what the comparison with torchvision "
        "needs",
    )
    p.add_argument(
        "--formats", type=csv_list(tuple(FORMATS)), default=",".join(FORMATS), help="memory formats, comma list"
    )
    p.add_argument(
        "--dtypes",
        type=csv_list(DTYPES),
        default=",".join(DTYPES),
        help="fp32 and/or bf16 (= CPU bf16 autocast around forward + loss)",
    )
    p.add_argument(
        "--torchvision",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure torchvision's resnet50 and convnext_tiny (width 1), "
        "and in setting a our steps 0 and 15 at width 1 to compare with them",
    )
    p.add_argument(
        "--naive",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="in setting a, compare the naive torchvision-style training path with "
        "ours for each step (1 input channel, synthetic Fashion-MNIST)",
    )
    p.add_argument("--warmup", type=int, help="warm-up iterations in every setting (overrides --warmup-a/-b)")
    p.add_argument(
        "--iters", type=int, help="timed iterations in every setting (overrides --iters-a/-b; not the --pair-rounds)"
    )
    preset = load_study("cpu")[0].train  # setting a = the default study's shapes
    for name, res, batch, width, classes, chans, warmup, iters in (
        ("a", preset.resolution, preset.batch_size, preset.width_mult, 10, 1, 2, 3),
        ("b", 224, 32, 1.0, 1000, 3, 1, 1),
    ):
        p.add_argument(f"--res-{name}", type=int, default=res, help=f"setting {name} resolution")
        p.add_argument(f"--batch-{name}", type=int, default=batch, help=f"setting {name} batch")
        p.add_argument(f"--width-{name}", type=float, default=width, help=f"setting {name} width_mult of our steps")
        p.add_argument(f"--classes-{name}", type=int, default=classes, help=f"setting {name} classes")
        p.add_argument(f"--in-chans-{name}", type=int, default=chans, help=f"setting {name} input channels")
        p.add_argument(f"--warmup-{name}", type=int, default=warmup, help=f"setting {name} warm-up iterations")
        p.add_argument(
            f"--iters-{name}",
            type=int,
            default=iters,
            help=f"setting {name} timed iterations (median reported)"
            + (
                "; one 224px iteration takes seconds, so 1 keeps the default run near 15 min; 2 adds ~4 min"
                if name == "b"
                else ""
            ),
        )
    for name, rounds in (("a", 16), ("b", 6)):
        p.add_argument(
            f"--pair-rounds-{name}",
            type=int,
            default=rounds,
            help=f"setting {name}: rounds of the comparison with torchvision (each "
            "round times one iteration of each side, in alternation)",
        )
    p.add_argument(
        "--drop-path",
        type=float,
        default=0.0,
        help="stochastic depth of our steps and of torchvision's convnext_tiny "
        "(torchvision's own default is 0.1; 0 keeps both equal and cheapest)",
    )
    p.add_argument(
        "--adamw",
        choices=("default", "foreach", "fused"),
        default="fused",
        help="AdamW implementation (fused, as the runner; default = PyTorch's choice, a for-loop on CPU)",
    )
    p.add_argument("--peak-size", type=int, default=2048, help="matmul size for the peak")
    p.add_argument("--peak-reps", type=int, default=5, help="matmuls timed for the peak")
    p.add_argument(
        "--threads", type=int, default=0, help="torch.set_num_threads; 0 keeps PyTorch's default (all cores)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of weights, inputs and crops")
    p.add_argument(
        "--dry-run", action="store_true", help="measure the matmul peak, print the plan with estimated durations, exit"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "throughput.csv",
        help="CSV of all rows (rewritten after each model, so a stopped run keeps what it measured)",
    )
    args = p.parse_args(argv)
    if min(args.batch_a, args.batch_b, args.res_a, args.res_b) < 1:
        p.error("batches and resolutions must be positive")
    for name in ("a", "b"):
        if args.warmup is not None:
            setattr(args, f"warmup_{name}", args.warmup)
        if args.iters is not None:
            setattr(args, f"iters_{name}", args.iters)
        if (
            min(getattr(args, f"iters_{name}"), getattr(args, f"pair_rounds_{name}")) < 1
            or getattr(args, f"warmup_{name}") < 0
        ):
            p.error("need iters >= 1 and warmup >= 0")
    try:
        resolve_steps(args.steps)
        if args.steps_b != "same":
            resolve_steps(args.steps_b)
    except KeyError as err:
        p.error(str(err))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = {
        name: Setting(
            name,
            getattr(args, f"res_{name}"),
            getattr(args, f"batch_{name}"),
            getattr(args, f"width_{name}"),
            getattr(args, f"classes_{name}"),
            getattr(args, f"in_chans_{name}"),
            getattr(args, f"warmup_{name}"),
            getattr(args, f"iters_{name}"),
        )
        for name in ("a", "b")
    }
    meta = {
        "torch_version": torch.__version__,
        "cpu": cpu_description(),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
    }
    print(f"torch {meta['torch_version']}, torchvision {torchvision.__version__}; {meta['cpu']}")
    started = time.perf_counter()

    peak = {
        "fp32": matmul_peak(torch.float32, args.peak_size, args.peak_reps),
        "bf16": matmul_peak(torch.bfloat16, args.peak_size, args.peak_reps),
    }
    print(
        f"dense peak ({args.peak_size}^3, best of matmul and 1x1 conv): fp32 {peak['fp32']:.0f} GFLOP/s, "
        f"bf16 {peak['bf16']:.0f} GFLOP/s"
    )

    planned_jobs, planned_pairs = plan_jobs(args, settings)
    jobs = [with_macs(job, args.drop_path) for job in planned_jobs]
    pairs = [Pair(with_macs(p.ours, args.drop_path), with_macs(p.theirs, args.drop_path)) for p in planned_pairs]
    naive_jobs = (
        [j for j in jobs if j.setting.name == "a" and not j.is_torchvision and j.width_mult == settings["a"].width_mult]
        if args.naive and "a" in args.settings
        else []
    )
    naive_jobs = [replace(j, setting=replace(j.setting, in_chans=1, num_classes=10)) for j in naive_jobs]
    work = plan_work(args, jobs, pairs, naive_jobs, peak["fp32"])
    total_estimate = sum(w[3] for w in work)
    parts: dict[str, float] = {}
    for item, fmt, _, seconds in work:
        setting_name = (item.ours if isinstance(item, Pair) else item).setting.name
        key = (
            f"naive path x{len(naive_jobs)}"
            if fmt is None
            else f"setting {setting_name}{' vs torchvision' if isinstance(item, Pair) else ''}"
        )
        parts[key] = parts.get(key, 0.0) + seconds
    print(
        f"plan: {len(work)} measurements, rough estimate {fmt_duration(total_estimate)} ("
        + ", ".join(f"{k} ~{fmt_duration(v)}" for k, v in parts.items())
        + "); a running ETA follows"
    )
    warn_if_busy()
    if args.dry_run:
        for item, fmt, dtype, seconds in work:
            job = item.ours if isinstance(item, Pair) else item
            name = f"{job.model} vs {item.theirs.model}" if isinstance(item, Pair) else job.model
            print(
                f"  {job.setting.name} {name:26s} w{job.width_mult:<5g} "
                f"{fmt or 'naive-vs-ours':14s} {dtype or '':5s} {job.macs / 1e9:7.3f} GMACs  "
                f"~{fmt_duration(seconds)}"
            )
        return 0

    args.out.parent.mkdir(parents=True, exist_ok=True)
    naive_out = args.out.with_name(f"{args.out.stem}_naive{args.out.suffix or '.csv'}")
    pairs_out = args.out.with_name(f"{args.out.stem}_vs_torchvision{args.out.suffix or '.csv'}")
    rows: list[dict] = []
    pair_rows: list[dict] = []
    naive_rows: list[dict] = []
    data = paths = None
    if naive_jobs:
        a = settings["a"]
        data = synthetic_fashion_mnist(a.batch * max(4, a.warmup + a.iters), args.seed)
        paths = measure_data_paths(*data, a.batch, args.seed)
    inputs: tuple[Job, str, nn.Module, torch.Tensor, torch.Tensor] | None = None
    done_estimate, loop_start = 0.0, time.perf_counter()
    for i, (job, fmt, dtype, estimate) in enumerate(work, 1):
        if isinstance(job, Pair):
            assert fmt is not None and dtype is not None
            inputs = None
            gc.collect()
            rounds = getattr(args, f"pair_rounds_{job.ours.setting.name}")
            side_rows, paired = measure_pair(job, fmt, dtype, rounds, args.adamw, args.drop_path, args.seed, peak)
            rows += [{**r, **meta} for r in side_rows]
            pair_rows.append({**paired, **meta})
            label = (
                f"{job.ours.setting.name} {job.ours.model} vs {job.theirs.model} {fmt} "
                f"{dtype}: ours/tv train {paired['train_ratio_median']:.2f}x, "
                f"eval {paired['eval_ratio_median']:.2f}x"
            )
        elif fmt is None or dtype is None:
            s = job.setting
            assert data is not None and paths is not None
            result = measure_naive_vs_ours(job, *data, args.seed, args.drop_path, args.adamw)
            naive_rows.append(
                {
                    "model": job.model,
                    "step_index": job.step_index,
                    "ours_dtype": runner_dtype(),
                    "resolution": s.resolution,
                    "batch": s.batch,
                    "width_mult": job.width_mult,
                    **result,
                    **paths,
                    **meta,
                }
            )
            label = (
                f"{s.name} {job.model} w{job.width_mult:g} naive-vs-ours: naive "
                f"{result['naive_img_s']:.0f} img/s, ours {result['ours_img_s']:.0f} img/s "
                f"({result['speedup']:.2f}x)"
            )
        else:
            if inputs is None or inputs[:2] != (job, fmt):  # fresh model + batch per job x format
                inputs = None
                gc.collect()
                inputs = (job, fmt, *model_and_batch(job, fmt, args.drop_path, args.seed))
            row = measure_row(job, fmt, dtype, *inputs[2:], args.adamw, peak)
            rows.append({**row, **meta})
            label = (
                f"{job.setting.name} {job.model} w{job.width_mult:g} {fmt} {dtype}: train "
                f"{row['train_img_s']:.0f} img/s, eval {row['eval_img_s']:.0f} img/s"
            )
        done_estimate += estimate
        elapsed = time.perf_counter() - loop_start
        eta = (total_estimate - done_estimate) * elapsed / max(done_estimate, 1e-9)
        print(f"[{i:>3}/{len(work)}] {label}  (elapsed {fmt_duration(elapsed)}, ETA {fmt_duration(eta)})", flush=True)
        if i == len(work) or work[i][0] != job:  # after each model: a stopped run keeps its rows
            results_frame(rows, COLUMNS).to_csv(args.out, index=False)
            if pair_rows:
                pd.DataFrame(pair_rows).to_csv(pairs_out, index=False)
            if naive_rows:
                results_frame(naive_rows).to_csv(naive_out, index=False)
    inputs = None

    df = results_frame(rows, COLUMNS)
    print_table(
        "throughput (img/s; GFLOP/s achieved; peak_frac = of the dtype's matmul peak)",
        df[
            [
                "setting",
                "model",
                "step_index",
                "width_mult",
                "memory_format",
                "dtype",
                "train_img_s",
                "eval_img_s",
                "gmacs_per_img",
                "train_gflops",
                "eval_gflops",
                "train_peak_frac",
                "eval_peak_frac",
            ]
        ],
    )
    if not df.empty:
        print_table("speed-ups: channels_last vs contiguous, bf16 autocast vs fp32", format_ratios(df))
    if pair_rows:
        print_table(
            "ours vs torchvision at width 1, equal memory format and dtype, timed in "
            "alternation (ratio = ours img/s / torchvision img/s per round: median "
            "[quartiles]; > 1 = ours faster)",
            format_pairs(pd.DataFrame(pair_rows)),
        )
        print_table("best of ours vs best of torchvision (over memory format x dtype)", ours_vs_torchvision(df))
        print(f"wrote {pairs_out}")
    if naive_rows and paths is not None:
        naive_df = results_frame(naive_rows)
        print_table(
            "naive path (NCHW fp32, DataLoader + per-sample v2 transforms) vs ours "
            f"(channels_last, {runner_dtype()} as the runner, in-memory batches, batched crop+flip), "
            "training img/s",
            naive_df[["model", "step_index", "width_mult", "naive_img_s", "ours_img_s", "speedup"]],
        )
        print(
            f"data paths alone, batch {settings['a'].batch}: naive DataLoader "
            f"{paths['naive_loader_img_s']:.0f} img/s, ours (index + batched crop/flip) "
            f"{paths['ours_batches_img_s']:.0f} img/s"
        )
        print(f"wrote {naive_out}")
    print(f"\nwrote {args.out} ({len(df)} rows) in {fmt_duration(time.perf_counter() - started)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
