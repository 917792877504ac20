"""Conv or matmul for a 1x1 convolution on the CPU: chosen by measurement on the machine that
runs it, once per shape, and kept on disk (as cuDNN's benchmark mode chooses its algorithms).

Why: a 1x1 conv is a matrix product over channels. PyTorch runs nn.Conv2d's with oneDNN and a
matmul (torchvision's ConvNeXt uses nn.Linear) with the BLAS, MKL on x86, and which of the two
is faster depends on the CPU, not on the shape alone (benchmarks/results/pointwise.csv and
docs/speed.md hold machines where each side wins), so the runner measures
(`python benchmarks/pointwise.py` prints both).

What is measured: for one key (the CPU, torch's version, the thread count, dtype, training or
not, memory layout and shape), both implementations on random inputs of that shape (at most
MEASURE_MAX_ELEMENTS of input: a slice of a larger batch), forward and, when training,
backward, taking turns. The matmul is taken when it is at least MATMUL_MARGIN faster; a near
tie stays a conv, PyTorch's own path. Both compute the same function (to rounding) with the
same parameters. `$CONVNEXT_ROADMAP_POINTWISE=conv` (or `matmul`) pins one path, unmeasured:
the same bits on every machine of one thread count. The time spent measuring is counted
(`measuring_seconds`) so that a run's img/s can leave it out.

Where it is kept: a JSON file (`$CONVNEXT_ROADMAP_CACHE`, else
`~/.cache/convnext-roadmap/pointwise.json` or under `$XDG_CACHE_HOME`), read and written under
an flock, where the first writer wins: jobs and DDP ranks on one machine agree, and later runs
on the machine make the same choices, so that a run stays a function of its seed on one
machine and thread count.
Each PointwiseConv keeps the choices it made (`choices_of`); a run's record lists them and its
checkpoint carries them, so a resume or a re-evaluation makes the same ones even when the cache
file is gone (`use_choices`); a checkpoint or record from before these choices (none noted)
is pinned to the conv, which is what it trained with.

Under CPU bf16 autocast nothing is measured: there both paths are oneDNN's, a per-op timing
ties, and whole models decide (cpu_kernels.PointwiseConv takes the matmul on small maps by
rule; benchmarks/pointwise.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from filelock import FileLock

CONV, MATMUL = "conv", "matmul"
CACHE_ENV = "CONVNEXT_ROADMAP_CACHE"
PIN_ENV = "CONVNEXT_ROADMAP_POINTWISE"  # auto (measure), conv or matmul
_MEMORY: dict[str, str] = {}  # this process's view of the file
_OFF = [0]  # > 0 inside `off()`
_SPENT = [0.0]  # seconds this process has spent measuring
# Seconds of timing per implementation and round, and rounds (taking turns): a fraction of a
# second per key at the default study's shapes, a few seconds at 224 px; once per machine.
MIN_RUN_TIME, ROUNDS = 0.03, 3
# A 1x1 conv of fewer multiply-adds than this (tens of microseconds) is a conv, unmeasured:
# measuring would cost more than either choice could save (the default study's smallest, stage
# 4 at batch 256, has 37M; tests' toy batches have less).
MEASURE_FROM_MACS = 2**20
# The matmul must be this much faster to be taken (a 1.05x speed-up): on a machine whose speed
# drifts by minutes, a near tie would otherwise be a coin flip that then stays fixed.
MATMUL_MARGIN = 0.05
# Inputs larger than this many elements (64 MB in fp32) are measured on a slice of the batch:
# the measurement's tensors come on top of a run's live activations.
MEASURE_MAX_ELEMENTS = 2**24


def cache_path() -> Path:
    """$CONVNEXT_ROADMAP_CACHE, else pointwise.json in the runner's cache folder (where
    roadmap.datasets downloads data sets: $XDG_CACHE_HOME or ~/.cache, then convnext-roadmap)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "convnext-roadmap" / "pointwise.json"


def machine() -> str:
    """What a choice holds for: the CPU model and its ISA (torch's dispatch level), and torch."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return f"{name} | {torch.backends.cpu.get_cpu_capability()} | torch {torch.__version__}"


def key_of(x: torch.Tensor, c_out: int, bias: bool, training: bool) -> str:
    n, c_in, h, w = x.shape
    layout = "nhwc" if x.is_contiguous(memory_format=torch.channels_last) else "nchw"
    dtype = str(x.dtype).removeprefix("torch.")
    return (
        f"{dtype} {'train' if training else 'eval'} {layout} {torch.get_num_threads()}t "
        f"{n}x{c_in}x{h}x{w}->{c_out}{' +bias' if bias else ''}"
    )


def conv1x1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return F.conv2d(x, weight, bias)


def matmul1x1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The 1x1 conv as a matrix product over channels, keeping x's memory layout: on the NHWC
    view of a channels_last tensor, a linear layer; on an NCHW tensor, weight @ (C, H*W) per image."""
    if x.is_contiguous(memory_format=torch.channels_last):
        return F.linear(x.permute(0, 2, 3, 1), weight.flatten(1), bias).permute(0, 3, 1, 2)
    n, _, h, w = x.shape
    y = torch.matmul(weight.flatten(1), x.flatten(2))
    if bias is not None:
        y = y + bias[:, None]
    return y.view(n, -1, h, w)


IMPLEMENTATIONS: dict[str, Callable[..., torch.Tensor]] = {CONV: conv1x1, MATMUL: matmul1x1}


def measure(x: torch.Tensor, c_out: int, bias: bool, training: bool) -> dict[str, float]:
    """Median seconds of each implementation on random tensors shaped and laid out as (x,
    weight, bias), the implementations taking turns; the best median of ROUNDS rounds. Draws
    from its own generator: the global RNG, which a run's drop path uses, is left alone."""
    gen = torch.Generator().manual_seed(0)
    nhwc = x.is_contiguous(memory_format=torch.channels_last)
    n, c, h, w = x.shape
    n = max(1, min(n, MEASURE_MAX_ELEMENTS // (c * h * w)))
    inputs = torch.randn(n, c, h, w, generator=gen, dtype=x.dtype).to(
        memory_format=torch.channels_last if nhwc else torch.contiguous_format
    )
    weight = torch.randn(c_out, c, 1, 1, generator=gen, dtype=x.dtype)
    b = torch.randn(c_out, generator=gen, dtype=x.dtype) if bias else None
    for tensor in (inputs, weight, b) if training else ():
        if tensor is not None:
            tensor.requires_grad_()
    timer_class = _timer_class()
    best = {name: float("inf") for name in IMPLEMENTATIONS}
    with torch.autocast("cpu", enabled=False), torch.set_grad_enabled(training):
        calls = {name: _call(fn, inputs, weight, b, training) for name, fn in IMPLEMENTATIONS.items()}
        for _ in range(ROUNDS):
            for name, call in calls.items():
                timer = timer_class("call()", globals={"call": call}, num_threads=torch.get_num_threads())
                best[name] = min(best[name], timer.blocked_autorange(min_run_time=MIN_RUN_TIME).median)
    return best


def _timer_class() -> type:
    """torch.utils.benchmark.Timer, imported when first needed: the import brings in
    torch.utils.cpp_extension, which logs "No CUDA runtime is found" on a CUDA build without a GPU."""
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        from torch.utils.benchmark import Timer
    finally:
        log.setLevel(level)
    return Timer


def faster(seconds: dict[str, float]) -> str:
    """The matmul if it is MATMUL_MARGIN faster than the conv, else the conv."""
    return MATMUL if seconds[MATMUL] * (1 + MATMUL_MARGIN) < seconds[CONV] else CONV


def _call(
    fn: Callable[..., torch.Tensor], x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, training: bool
) -> Callable[[], object]:
    if not training:
        return lambda: fn(x, weight, bias)

    def forward_backward() -> None:
        y = fn(x, weight, bias)
        y.backward(torch.ones_like(y))  # ones_like keeps y's strides, as a real gradient has them
        x.grad = weight.grad = None
        if bias is not None:
            bias.grad = None

    return forward_backward


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside the cache file (filelock); a file system without locks goes on
    unlocked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path.with_name(path.name + ".lock"), mode=_mode())
    try:
        lock.acquire()
    except OSError:
        yield
        return
    try:
        yield
    finally:
        lock.release()


def _mode() -> int:
    """0666 less the umask: the cache is shared by every user's runs on the machine."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _read(path: Path) -> dict[str, dict[str, dict]]:
    """{machine: {key: {"choice": ..., "seconds": {...}}}}; entries that are not so are left out
    (a damaged file is measured again and rewritten)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # none yet, or unreadable
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        here: {
            key: entry
            for key, entry in known.items()
            if isinstance(entry, dict) and entry.get("choice") in IMPLEMENTATIONS
        }
        for here, known in data.items()
        if isinstance(known, dict)
    }


def _write(path: Path, data: dict[str, dict[str, dict]]) -> None:
    """Atomically (a temporary file renamed over it): a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _mode())
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextlib.contextmanager
def off() -> Iterator[None]:
    """Inside: 1x1 convs are plain convs, nothing is measured or noted (counting multiply-adds:
    a measurement under a FlopCounterMode would be counted)."""
    _OFF[0] += 1
    try:
        yield
    finally:
        _OFF[0] -= 1


def active(x: torch.Tensor, c_out: int) -> bool:
    """Whether a 1x1 conv of x to c_out channels is chosen (else: a conv, nothing noted)."""
    return not _OFF[0] and x.numel() * c_out >= MEASURE_FROM_MACS


def measuring_seconds() -> float:
    """Seconds this process has spent measuring so far (Throughput leaves them out)."""
    return _SPENT[0]


def _measured(x: torch.Tensor, c_out: int, bias: bool, training: bool) -> dict:
    started = time.perf_counter()
    seconds = measure(x, c_out, bias, training)
    _SPENT[0] += time.perf_counter() - started
    return {"choice": faster(seconds), "seconds": {k: round(v, 7) for k, v in seconds.items()}}


def choose(x: torch.Tensor, c_out: int, bias: bool, training: bool) -> tuple[str, str]:
    """(key, choice) for a 1x1 conv of x to c_out channels: the pinned one ($CONVNEXT_ROADMAP_POINTWISE),
    else this process's, else the cache file's, else measured now and written there (first
    writer wins)."""
    key = key_of(x, c_out, bias, training)
    pinned = os.environ.get(PIN_ENV, "auto")
    if pinned in IMPLEMENTATIONS:
        return key, pinned
    if key in _MEMORY:
        return key, _MEMORY[key]
    path, here = cache_path(), machine()
    try:
        with _locked(path):
            data = _read(path)
            known = data.setdefault(here, {})
            if key not in known:
                known[key] = _measured(x, c_out, bias, training)
                _MEMORY[key] = known[key]["choice"]
                _write(path, data)
            _MEMORY.update({k: entry["choice"] for k, entry in known.items()})
    except OSError:  # no writable cache (a read-only home, a full disk): what it holds, else this process's
        if key not in _MEMORY:
            entry = _read(path).get(here, {}).get(key) or _measured(x, c_out, bias, training)
            _MEMORY[key] = entry["choice"]
    return key, _MEMORY[key]


def choices_of(model: torch.nn.Module) -> dict[str, str]:
    """Every choice the model's 1x1 convs have made, key -> conv or matmul."""
    made: dict[str, str] = {}
    for module in model.modules():
        if hasattr(module, "pointwise_pinned"):  # a PointwiseConv (use_plain_kernels removes it), as in use_choices
            made.update(module.pointwise_choices)
    return dict(sorted(made.items()))


def use_choices(model: torch.nn.Module, choices: dict[str, str] | None) -> None:
    """Make the model's 1x1 convs take these choices for these keys (a checkpoint's or a
    record's), whatever the cache file says now; other keys are chosen as usual. None: a
    checkpoint or record from before the choices were noted, when every 1x1 conv was a conv:
    pinned to the conv for every key."""
    for module in model.modules():
        if hasattr(module, "pointwise_pinned"):
            module.pointwise_choices = {k: v for k, v in (choices or {}).items() if v in IMPLEMENTATIONS}
            module.pointwise_pinned = CONV if choices is None else None
