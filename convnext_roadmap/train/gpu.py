"""What a run on a GPU needs that a CPU run does not: a CUDA build that can use the node's
GPUs (or an error), what `devices: auto` means, cuDNN autotuning and TF32 matmuls, and
torch.compile kept compiled over the runs of one process.

Nothing here acts on a CPU run: the CPU default's numbers do not depend on this module.
docs/gpu.md says what of it a CPU can test and what only a GPU can.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config.schema import TrainConfig

CUDA_ACCELERATORS = ("auto", "gpu", "cuda")


def nvidia_gpu_present() -> bool:
    """Does this node have an NVIDIA GPU and driver, whatever torch makes of it?"""
    return Path("/proc/driver/nvidia/version").exists() or bool(glob.glob("/dev/nvidia[0-9]*"))


def cuda_problem() -> str | None:
    """Why torch cannot use this node's NVIDIA GPUs (a CPU-only build, a driver too old for
    the CUDA build, no device visible), or None: no NVIDIA GPU here, or CUDA works."""
    if not nvidia_gpu_present():
        return None
    import torch

    if torch.version.cuda is None:
        return f"torch {torch.__version__} is built without CUDA"
    try:
        torch.cuda.init()  # raises with the reason the CUDA runtime gives (torch.cuda.is_available() only warns)
    except Exception as error:  # noqa: BLE001 - RuntimeError, AssertionError, torch's own: all mean unusable
        text = str(error).strip().splitlines()
        return text[0] if text else type(error).__name__
    if torch.cuda.device_count() == 0:
        return "torch sees no CUDA device (CUDA_VISIBLE_DEVICES?)"
    return None


def check_accelerator(cfg: TrainConfig) -> None:
    """With `accelerator: auto` (or gpu/cuda) on a node that has NVIDIA GPUs, a CUDA build that
    cannot use them is a one-line error: Lightning would train on the CPU after one warning."""
    if cfg.accelerator not in CUDA_ACCELERATORS:
        return
    problem = cuda_problem()
    if problem:
        import torch

        raise ConfigError(
            f"this node has an NVIDIA GPU, but torch {torch.__version__} (CUDA {torch.version.cuda}) "
            f"cannot use it: {problem}; install the torch build for this driver, or set "
            "train.accelerator=cpu (--set train.accelerator=cpu) to train on the CPU on purpose"
        )


def uses_cuda(cfg: TrainConfig) -> bool:
    """Will Lightning put this run on CUDA devices?"""
    import torch

    return cfg.accelerator in CUDA_ACCELERATORS and torch.cuda.is_available()


def auto_devices(accelerator: str) -> int:
    """What Lightning's `devices: auto` (and -1) take per node: every CUDA device where the
    accelerator is CUDA, else one (the CPU accelerator's auto)."""
    import torch

    if accelerator in CUDA_ACCELERATORS and torch.cuda.is_available():
        return max(torch.cuda.device_count(), 1)
    return 1


def gpu_trainer_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """Trainer settings of a CUDA run: cuDNN picks the fastest convolution algorithm per shape
    (`benchmark`: the shapes are fixed, so once per shape). None on the CPU."""
    return {"benchmark": True} if uses_cuda(cfg) else {}


def prepare_gpu_run(cfg: TrainConfig) -> None:
    """Process settings of a CUDA run: fp32 matmuls on TF32 tensor cores ("high"; bf16 and fp16
    runs do most of their matmuls in those types anyway). Nothing on the CPU."""
    if uses_cuda(cfg):
        import torch

        torch.set_float32_matmul_precision("high")


# ---------------------------------------------------------------------------------- compile


def start_compiled_run() -> dict[str, float]:
    """Before a compiled run's model is built: forget the graphs of earlier runs of this
    process. Dynamo keeps them, guarded on the network's code, and each run's steps add their
    own (train, eval, last partial batch): at the third or fourth run the network's forward hit
    torch._dynamo.config.recompile_limit (8) and every later run of the process trained eagerly,
    without a word (tests/test_gpu_path.py shows it with the eager backend). A new run
    compiles its own graphs anyway (a new model). Returns the counters to compare with after."""
    import torch

    torch._dynamo.reset()
    return _compile_counters()


def _compile_counters() -> dict[str, float]:
    from torch._dynamo.utils import counters

    limit = sum(n for text, n in counters["unimplemented"].items() if "recompile limit" in text.lower())
    return {"graphs": counters["stats"]["unique_graphs"], "limit": limit}


def compiled_state(before: dict[str, float]) -> dict[str, Any]:
    """What dynamo did during a compiled run: graphs compiled, and whether a code object hit
    its recompile limit (then some of the run trained eagerly)."""
    after = _compile_counters()
    graphs = int(after["graphs"] - before["graphs"])
    limit_hit = after["limit"] > before["limit"]
    return {"compiled": graphs > 0 and not limit_hit, "compiled_graphs": graphs, "recompile_limit_hit": limit_hit}
