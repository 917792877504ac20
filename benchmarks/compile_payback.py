#!/usr/bin/env python3
"""Does torch.compile pay back its compile time within one run of a study?

For each selected step, at a preset's resolution, batch and width: eager training img/s,
the first compiled iteration's wall time (= compile time; inductor's on-disk cache is
switched off so that every model compiles from scratch, as in a fresh run), compiled
training img/s, and how many seconds of training the compile time costs against what it
saves over one run of the preset (its epochs x batches per epoch).

    python benchmarks/compile_payback.py                         # steps 0, 8, 15, cpu preset
    python benchmarks/compile_payback.py --steps 0-15 --iters 20
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TORCHINDUCTOR_FORCE_DISABLE_CACHES", "1")  # before torch is imported

import pandas as pd  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from throughput import cpu_description, median_seconds, runner_dtype, train_fn  # noqa: E402

from convnext_roadmap.config.load import load_study  # noqa: E402
from convnext_roadmap.data.registry import describe  # noqa: E402
from convnext_steps import build_model, resolve_steps  # noqa: E402
from convnext_steps.cpu_kernels import use_cpu_kernels  # noqa: E402


def measure(
    slug: str, compiled: bool, batch: int, resolution: int, width: float, in_chans: int, iters: int
) -> tuple[float, float]:
    """(seconds of the first iteration, median seconds of the next `iters`)."""
    torch.manual_seed(0)
    model = use_cpu_kernels(build_model(slug, num_classes=10, in_chans=in_chans, width_mult=width))
    model = model.to(memory_format=torch.channels_last)
    if compiled:
        torch._dynamo.reset()
        model.compile()  # in place: state_dict keys unchanged
    x = torch.randn(batch, in_chans, resolution, resolution).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    step = train_fn(model, x, y, runner_dtype(), "fused")  # the runner's precision on this CPU
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    return first, median_seconds(step, 1, iters)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", default="0,8,15")
    p.add_argument("--preset", default="cpu", help="resolution, batch, width, epochs from here")
    p.add_argument("--iters", type=int, default=10, help="timed iterations after the first")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "compile_payback.csv")
    args = p.parse_args()
    cfg = load_study(args.preset)[0].train
    data = describe(cfg)
    in_chans = data.in_chans
    batches_per_run = data.train_images // cfg.batch_size * cfg.epochs
    print(
        f"torch {torch.__version__}, {cpu_description()}, {runner_dtype()}; preset {args.preset}: "
        f"{cfg.resolution}px, batch {cfg.batch_size}, width {cfg.width_mult}, "
        f"{batches_per_run} training batches per run"
    )
    rows = []
    for step in resolve_steps(args.steps):
        shape = (cfg.batch_size, cfg.resolution, cfg.width_mult, in_chans, args.iters)
        _, eager = measure(step.slug, False, *shape)
        compile_s, compiled = measure(step.slug, True, *shape)
        saved_per_batch = eager - compiled
        run_eager = eager * batches_per_run
        run_compiled = compile_s + compiled * batches_per_run
        rows.append(
            {
                "step": step.slug,
                "eager_img_s": cfg.batch_size / eager,
                "compiled_img_s": cfg.batch_size / compiled,
                "compile_s": compile_s,
                "run_eager_s": run_eager,
                "run_compiled_s": run_compiled,
                "break_even_batches": compile_s / saved_per_batch if saved_per_batch > 0 else float("inf"),
                "dtype": runner_dtype(),
                "torch_version": torch.__version__,
                "cpu": cpu_description(),
            }
        )
        print(
            f"{step.index:2d} {step.slug:20s} eager {rows[-1]['eager_img_s']:6.0f} img/s, compiled "
            f"{rows[-1]['compiled_img_s']:6.0f} img/s after {compile_s:5.1f} s of compiling; one run: "
            f"eager {run_eager:5.0f} s, compiled {run_compiled:5.0f} s",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out, index=False)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
