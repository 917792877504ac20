"""Every architecture of the ResNet-50 -> ConvNeXt-T roadmap, as one configurable network.

    >>> from convnext_steps import list_steps, build_model
    >>> [s.slug for s in list_steps()][:3]
    ['resnet50', 'stage_ratio', 'patchify_stem']
    >>> model = build_model("kernel_7", num_classes=10, width_mult=0.25)

A step of your own is a parent and a change:

    >>> from convnext_steps import derive_step, get_step, register_step
    >>> bn = register_step(derive_step(get_step("convnext_t"), "convnext_t_bn", {"norm": "batch"}))
    >>> model = build_model("convnext_t_bn", num_classes=10)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields, replace
from typing import Any

from torch import nn

from .network import LayerNorm2d, RoadmapNet
from .readings import READINGS, apply_readings
from .spec import NetSpec
from .step import Step, StepError, derive_step
from .swin import SWIN_B, SWIN_T, SwinSpec
from .tables import RESNET200_STEPS, STEPS
from .torchvision_weights import load_torchvision_weights

__all__ = [
    "NetSpec",
    "RoadmapNet",
    "LayerNorm2d",
    "Step",
    "StepError",
    "list_steps",
    "list_roadmaps",
    "get_step",
    "resolve_steps",
    "derive_step",
    "register_step",
    "builtin_slugs",
    "build_model",
    "scaled_spec",
    "load_torchvision_weights",
    "DEFAULT_ROADMAP",
    "READINGS",
    "apply_readings",
    "SwinSpec",
    "spec_dict",
    "step_from_spec",
]

DEFAULT_ROADMAP = "resnet50"
ROADMAPS: dict[str, list[Step]] = {"resnet50": STEPS, "resnet200": RESNET200_STEPS}
REFERENCES: dict[str, Step] = {s.slug: s for s in (SWIN_T, SWIN_B)}  # beside a roadmap, not steps of it
_REGISTERED: dict[str, Step] = {}  # steps a user registered from Python


def list_roadmaps() -> list[str]:
    return list(ROADMAPS)


def list_steps(roadmap: str = DEFAULT_ROADMAP) -> list[Step]:
    """The steps of a built-in roadmap in the paper's order (Figure 2 top to bottom)."""
    if roadmap not in ROADMAPS:
        raise KeyError(f"unknown roadmap {roadmap!r}; known: {', '.join(ROADMAPS)}")
    return list(ROADMAPS[roadmap])


def _builtin() -> dict[str, Step]:
    steps = {s.slug: s for roadmap in ROADMAPS.values() for s in roadmap}
    return steps | REFERENCES


def builtin_slugs() -> set[str]:
    """Slugs of every built-in step and reference model (a defined step may not reuse one)."""
    return set(_builtin())


def register_step(step: Step) -> Step:
    """Make a derived step known to `get_step` and `build_model` by its slug."""
    if step.slug in _builtin():
        raise StepError(f"step slug {step.slug!r} is a built-in step; choose another")
    _REGISTERED[step.slug] = step
    return step


def get_step(key: str | int | Step, roadmap: str = DEFAULT_ROADMAP, extra: Mapping[str, Step] | None = None) -> Step:
    """A step by slug (any roadmap, a reference model, a registered or an `extra` step), or
    by index or paper label within `roadmap` (case-insensitive)."""
    if isinstance(key, Step):
        return key
    text = str(key).strip()
    steps = list_steps(roadmap)
    if text.isdigit():
        if int(text) < len(steps):
            return steps[int(text)]
    else:
        known = {**_builtin(), **_REGISTERED, **(extra or {})}
        if text in known:
            return known[text]
        for step in steps:
            if text.lower() == step.label.lower():
                return step
    raise KeyError(
        f"unknown step {key!r}; known: 0-{len(steps) - 1} or "
        + ", ".join(s.slug for s in steps)
        + "".join(f", {slug}" for slug in {**REFERENCES, **_REGISTERED, **(extra or {})})
    )


def resolve_steps(
    selection: str | int | Sequence[str | int], roadmap: str = DEFAULT_ROADMAP, extra: Mapping[str, Step] | None = None
) -> list[Step]:
    """`all`, an index, or slugs / indices / ranges like `0-5` (a comma string or a list), in
    the order given; a step named twice counts once."""
    items = [selection] if isinstance(selection, (str, int)) else list(selection)
    if len(items) == 1 and str(items[0]).strip().lower() == "all":
        return list_steps(roadmap)
    chosen: dict[str, Step] = {}
    for item in items:
        parts = [item] if isinstance(item, int) else [p.strip() for p in str(item).split(",") if p.strip()]
        for part in parts:
            lo, sep, hi = str(part).partition("-")
            if sep and lo.isdigit() and hi.isdigit():
                if int(lo) > int(hi):
                    raise KeyError(f"empty step range {part!r}")
                for i in range(int(lo), int(hi) + 1):
                    step = get_step(i, roadmap, extra)
                    chosen.setdefault(step.slug, step)
            else:
                step = get_step(part, roadmap, extra)
                chosen.setdefault(step.slug, step)
    if not chosen:
        raise KeyError(f"no step selected by {selection!r}; give 'all', slugs, indices or ranges like 0-5")
    return list(chosen.values())


def scaled_spec(spec: NetSpec, width_mult: float = 1.0) -> NetSpec:
    """The spec with its base width scaled and rounded to a multiple of 8 (at least 8); at
    width 1 the spec's own (ResNet-200's roadmap has 84)."""
    if width_mult <= 0:
        raise ValueError(f"width_mult must be > 0, got {width_mult}")
    if width_mult == 1:
        return spec
    width = max(8, int(round(spec.base_width * width_mult / 8)) * 8)
    return replace(spec, base_width=width)


def build_model(
    step: str | int | Step,
    num_classes: int = 1000,
    in_chans: int = 3,
    width_mult: float = 1.0,
    drop_path_rate: float = 0.0,
    layer_scale_init: float | None = None,
) -> nn.Module:
    """Build one step, in plain PyTorch layers (`cpu_kernels.use_cpu_kernels` swaps in the
    runner's faster CPU kernels). `layer_scale_init=None` keeps the step's own (1e-6 at
    ConvNeXt-T, none before); a number sets it for any step; 0 switches it off."""
    step = get_step(step)
    if not isinstance(step.spec, NetSpec):  # a reference model builds itself
        return step.spec.build(
            num_classes=num_classes, in_chans=in_chans, width_mult=width_mult, drop_path_rate=drop_path_rate
        )
    spec = scaled_spec(step.spec, width_mult)
    if layer_scale_init is not None:
        spec = replace(spec, layer_scale_init=layer_scale_init or None)
    return RoadmapNet(spec, num_classes=num_classes, in_chans=in_chans, drop_path_rate=drop_path_rate)


def spec_dict(step: Step) -> dict[str, Any] | None:
    """A step's NetSpec as plain values (JSON, YAML, hyperparameters); None for a reference
    model (Swin), which its slug rebuilds."""
    return asdict(step.spec) if isinstance(step.spec, NetSpec) else None


def step_from_spec(slug: str, spec: Mapping[str, Any] | None) -> Step:
    """The step of a saved run: the built-in or registered step of that slug when its spec is
    the saved one, else a step rebuilt from the saved spec (a step a study defined)."""
    if spec is None:
        return get_step(slug)
    known_fields = {f.name for f in fields(NetSpec)}  # a record's spec may hold retired fields (drop_path_rate)
    saved = NetSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k in known_fields})
    try:
        known = get_step(slug)
        if known.spec == saved:
            return known
    except KeyError:
        pass
    return Step(slug=slug, label=slug, phase="defined", parent=None, change="rebuilt from its saved spec", spec=saved)
