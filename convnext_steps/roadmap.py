"""The roadmap of "A ConvNet for the 2020s" (Liu et al., CVPR 2022), Figure 2 as a table.

Each row is one step: its parent and the one change that turns the parent into it.
The kernel sizes 5/7/9/11 are a sweep, all branching from "move up d. conv" (kernel 3);
the chain continues from kernel 7.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .network import NetSpec


@dataclass(frozen=True)
class Step:
    index: int
    slug: str
    label: str  # as printed in the paper's Figure 2
    phase: str
    parent: str | None
    change: str  # one line: what differs from the parent
    spec: NetSpec
    changed_fields: frozenset[str] = field(default_factory=frozenset)
    # The paper's ImageNet-1K figures (Table 10: mean and std of 3 seeds; GFLOPs = GMACs at 224).
    paper_top1: float = 0.0
    paper_top1_std: float = 0.0
    paper_gmacs: float = 0.0


# (slug, Figure 2 label, phase, parent slug, change, the NetSpec fields the change sets)
_ROADMAP: list[tuple[str, str, str, str | None, str, dict[str, Any]]] = [
    ("resnet50", "ResNet-50", "baseline", None,
     "torchvision's ResNet-50, trained with the modern recipe", {}),
    ("stage_ratio", "stage ratio", "macro design", "resnet50",
     "blocks per stage (3,4,6,3) -> (3,3,9,3), compute ratio 1:1:3:1 as Swin-T",
     {"stage_depths": (3, 3, 9, 3)}),
    ("patchify_stem", '"patchify" stem', "macro design", "stage_ratio",
     "stem 7x7/2 conv + BN + ReLU + 3x3/2 max-pool -> one 4x4/4 conv",
     {"stem": "patchify"}),
    ("depthwise_conv", "depth conv", "ResNeXt-ify", "patchify_stem",
     "the bottleneck's 3x3 conv becomes depthwise (groups = channels)",
     {"depthwise": True}),
    ("width_96", "width 64->96", "ResNeXt-ify", "depthwise_conv",
     "base width 64 -> 96, the stage widths of Swin-T",
     {"base_width": 96}),
    ("inverted_bottleneck", "inverting dims", "inverted bottleneck", "width_96",
     "bottleneck 1x1 4C->C, d3x3 C, 1x1 C->4C -> inverted 1x1 C->4C, d3x3 4C, 1x1 4C->C",
     {"block": "inverted"}),
    ("move_up_dwconv", "move up d. conv", "large kernel", "inverted_bottleneck",
     "the depthwise conv moves to the front of the block: d3x3 C, 1x1 C->4C, 1x1 4C->C",
     {"block": "dw_first"}),
    ("kernel_5", "kernel size 5", "large kernel", "move_up_dwconv",
     "depthwise kernel 3 -> 5 (sweep branch)", {"kernel_size": 5}),
    ("kernel_7", "kernel size 7", "large kernel", "move_up_dwconv",
     "depthwise kernel 3 -> 7 (the size adopted; the chain continues here)", {"kernel_size": 7}),
    ("kernel_9", "kernel size 9", "large kernel", "move_up_dwconv",
     "depthwise kernel 3 -> 9 (sweep branch)", {"kernel_size": 9}),
    ("kernel_11", "kernel size 11", "large kernel", "move_up_dwconv",
     "depthwise kernel 3 -> 11 (sweep branch)", {"kernel_size": 11}),
    ("gelu", "ReLU -> GELU", "micro design", "kernel_7",
     "every ReLU becomes GELU", {"activation": "gelu"}),
    ("fewer_activations", "fewer activations", "micro design", "gelu",
     "one GELU per block, between the two 1x1 convs (none after the residual add)",
     {"block_activations": "one"}),
    ("fewer_norms", "fewer norms", "micro design", "fewer_activations",
     "one norm per block, after the depthwise conv", {"block_norms": "one"}),
    ("layer_norm", "BN -> LN", "micro design", "fewer_norms",
     "BatchNorm -> LayerNorm over channels, everywhere", {"norm": "layer"}),
    ("convnext_t", "sep. d.s. conv (ConvNeXt-T)", "micro design", "layer_norm",
     "separate LN + 2x2/2 conv downsampling between stages, LN after the stem and after "
     "pooling; layer scale 1e-6 as in the released ConvNeXt-T",
     {"separate_downsampling": True, "layer_scale_init": 1e-6}),
]


# Table 10 (ResNet-50 regime): top-1 mean, std, GFLOPs. The BN -> LN row prints 4.46 GFLOPs,
# a typo: Figure 2 prints 4.2 and swapping a norm changes no conv, so 4.15 is used.
_PAPER_TABLE10 = [
    (78.82, 0.07, 4.09), (79.36, 0.07, 4.53), (79.51, 0.18, 4.42), (78.28, 0.08, 2.35),
    (80.50, 0.02, 5.27), (80.64, 0.03, 4.64), (79.92, 0.08, 4.07), (80.35, 0.08, 4.10),
    (80.57, 0.14, 4.15), (80.57, 0.06, 4.21), (80.47, 0.11, 4.29), (80.62, 0.14, 4.15),
    (81.27, 0.06, 4.15), (81.41, 0.09, 4.15), (81.47, 0.09, 4.15), (81.97, 0.06, 4.49),
]


def _build_steps() -> list[Step]:
    steps: list[Step] = []
    by_slug: dict[str, Step] = {}
    for index, (slug, label, phase, parent, change, changes) in enumerate(_ROADMAP):
        spec = replace(by_slug[parent].spec, **changes) if parent else NetSpec()
        step = Step(index, slug, label, phase, parent, change, spec, frozenset(changes),
                    *_PAPER_TABLE10[index])
        steps.append(step)
        by_slug[slug] = step
    return steps


STEPS: list[Step] = _build_steps()
