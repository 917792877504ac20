"""Counting on the meta device."""

import pytest
import torch

from convnext_steps import build_model, list_steps
from convnext_steps.complexity import count_macs, count_params

R50 = list_steps()


def meta_model(step, **kwargs):
    with torch.device("meta"):
        return build_model(step, **kwargs)


# Every step (every kind of layer).
@pytest.mark.parametrize("slug", [s.slug for s in R50])
def test_a_meta_build_counts_as_a_cpu_build(slug):
    cpu, meta = build_model(slug), meta_model(slug)
    assert (count_params(meta), count_macs(meta)) == (count_params(cpu), count_macs(cpu))
