"""Every architecture of the ResNet-50 -> ConvNeXt-T roadmap, as one configurable network.

    >>> from convnext_steps import list_steps, build_model
    >>> [s.slug for s in list_steps()][:3]
    ['resnet50', 'stage_ratio', 'patchify_stem']
    >>> model = build_model("kernel_7", num_classes=10, width_mult=0.25)
"""

from __future__ import annotations

from dataclasses import replace

from .network import LayerNorm2d, NetSpec, RoadmapNet
from .roadmap import STEPS, Step
from .torchvision_weights import load_torchvision_weights

__all__ = ["NetSpec", "RoadmapNet", "LayerNorm2d", "Step", "list_steps", "get_step",
           "resolve_steps", "build_model", "scaled_spec", "load_torchvision_weights"]


def list_steps() -> list[Step]:
    """The 16 steps in the paper's order (Figure 2 top to bottom, Table 10)."""
    return list(STEPS)


def get_step(key: str | int) -> Step:
    """A step by slug, index or its paper label (case-insensitive)."""
    text = str(key).strip()
    if text.isdigit() and int(text) < len(STEPS):
        return STEPS[int(text)]
    for step in STEPS:
        if text.lower() in (step.slug, step.label.lower()):
            return step
    raise KeyError(f"unknown step {key!r}; known: 0-{len(STEPS) - 1} or "
                   + ", ".join(s.slug for s in STEPS))


def resolve_steps(selection: str) -> list[Step]:
    """`all`, or a comma list of slugs, indices and index ranges like `0-5`, in roadmap order."""
    if selection.strip().lower() == "all":
        return list(STEPS)
    chosen: set[int] = set()
    for part in filter(None, (p.strip() for p in selection.split(","))):
        lo, sep, hi = part.partition("-")
        if sep and lo.isdigit() and hi.isdigit():
            if int(lo) > int(hi):
                raise KeyError(f"empty step range {part!r}")
            chosen.update(get_step(i).index for i in range(int(lo), int(hi) + 1))
        else:
            chosen.add(get_step(part).index)
    if not chosen:
        raise KeyError(f"no step selected by {selection!r}")
    return [STEPS[i] for i in sorted(chosen)]


def scaled_spec(spec: NetSpec, width_mult: float = 1.0) -> NetSpec:
    """The spec with its base width scaled and rounded to a multiple of 8 (at least 8)."""
    if width_mult <= 0:
        raise ValueError(f"width_mult must be > 0, got {width_mult}")
    width = max(8, int(round(spec.base_width * width_mult / 8)) * 8)
    return replace(spec, base_width=width)


def build_model(slug: str | int, num_classes: int = 1000, in_chans: int = 3,
                width_mult: float = 1.0, drop_path_rate: float = 0.0,
                layer_scale_init: float | None = None) -> RoadmapNet:
    """Build one step. `layer_scale_init=None` keeps the step's own (1e-6 at ConvNeXt-T,
    none before); a number sets it for any step; 0 switches it off."""
    spec = scaled_spec(get_step(slug).spec, width_mult)
    spec = replace(spec, drop_path_rate=drop_path_rate)
    if layer_scale_init is not None:
        spec = replace(spec, layer_scale_init=layer_scale_init or None)
    return RoadmapNet(spec, num_classes=num_classes, in_chans=in_chans)
