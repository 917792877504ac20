"""The roadmap as a table, before anything is trained."""

from __future__ import annotations

import pandas as pd
import torch

from convnext_steps import DEFAULT_ROADMAP, build_model, list_steps
from convnext_steps.complexity import count_macs, count_params


def roadmap_table(roadmap: str = DEFAULT_ROADMAP) -> pd.DataFrame:
    """One row per step; each model is built on the meta device (no memory, no compute:
    parameters and multiply-adds are the same as on the CPU, a test checks)."""
    rows = []
    for step in list_steps(roadmap):
        with torch.device("meta"):
            model = build_model(step.slug)
        rows.append(
            {
                "#": step.index,
                "slug": step.slug,
                "label": step.label,
                "phase": step.phase,
                "parent": step.parent or "-",
                "params_M": round(count_params(model) / 1e6, 2),
                "GMACs@224": round(count_macs(model) / 1e9, 2),
                "paper_GFLOPs": step.paper_gmacs,
                "paper_top1": step.paper_top1,
                "change": step.change,
            }
        )
    return pd.DataFrame(rows)
