"""The roadmaps of "A ConvNet for the 2020s" (Liu et al., CVPR 2022), Figure 2 as tables.

Each row is one step: its parent, the one change that turns the parent into it, and the
paper's numbers for it (ImageNet-1K top-1 mean and std over 3 seeds, GFLOPs = GMACs at 224;
Table 10 for ResNet-50 -> ConvNeXt-T, Table 11 for ResNet-200 -> ConvNeXt-B, which gives no
std). The kernel sizes 5/7/9/11 are a sweep, all branching from "move up d. conv" (kernel
3); the chain continues from kernel 7.

Readings of what the paper leaves open (`readings.py`); why each default, one line each:
- init "trunc_normal": Table 5 (trunc. normal, std 0.02) at every step, so init never differs between steps.
- conv_bias "unless_batchnorm": BN cancels a bias, nothing else does; "authors" follows the authors' code.
- layer_scale "last_step": step 15 stays the released ConvNeXt-T; "every_step" is Appendix A.1 + Table 5's reading.
The authors' published training flags set none of these.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple

from .spec import LAYER_SCALE_INIT, NetSpec
from .step import Step


class Row(NamedTuple):
    slug: str
    label: str  # as printed in the paper's Figure 2
    phase: str
    parent: str | None
    change: str
    fields: dict[str, Any]  # the NetSpec fields the change sets
    paper: tuple[float, float | None, float]  # top-1 mean, top-1 std (None: not given), GFLOPs
    sweep: bool = False


# Table 10 prints 4.46 GFLOPs for BN -> LN, a typo: Figure 2 prints 4.2 and swapping a norm
# changes no conv, so 4.15 is used.
RESNET50_ROWS: list[Row] = [
    Row(
        "resnet50",
        "ResNet-50",
        "baseline",
        None,
        "torchvision's ResNet-50, trained with the modern recipe",
        {},
        (78.82, 0.07, 4.09),
    ),
    Row(
        "stage_ratio",
        "stage ratio",
        "macro design",
        "resnet50",
        "blocks per stage (3,4,6,3) -> (3,3,9,3), compute ratio 1:1:3:1 as Swin-T",
        {"stage_depths": (3, 3, 9, 3)},
        (79.36, 0.07, 4.53),
    ),
    Row(
        "patchify_stem",
        '"patchify" stem',
        "macro design",
        "stage_ratio",
        "stem 7x7/2 conv + BN + ReLU + 3x3/2 max-pool -> one 4x4/4 conv",
        {"stem": "patchify"},
        (79.51, 0.18, 4.42),
    ),
    Row(
        "depthwise_conv",
        "depth conv",
        "ResNeXt-ify",
        "patchify_stem",
        "the bottleneck's 3x3 conv becomes depthwise (groups = channels)",
        {"depthwise": True},
        (78.28, 0.08, 2.35),
    ),
    Row(
        "width_96",
        "width 64->96",
        "ResNeXt-ify",
        "depthwise_conv",
        "base width 64 -> 96, the stage widths of Swin-T",
        {"base_width": 96},
        (80.50, 0.02, 5.27),
    ),
    Row(
        "inverted_bottleneck",
        "inverting dims",
        "inverted bottleneck",
        "width_96",
        "bottleneck 1x1 4C->C, d3x3 C, 1x1 C->4C -> inverted 1x1 C->4C, d3x3 4C, 1x1 4C->C",
        {"block": "inverted"},
        (80.64, 0.03, 4.64),
    ),
    Row(
        "move_up_dwconv",
        "move up d. conv",
        "large kernel",
        "inverted_bottleneck",
        "the depthwise conv moves to the front of the block: d3x3 C, 1x1 C->4C, 1x1 4C->C",
        {"block": "dw_first"},
        (79.92, 0.08, 4.07),
    ),
    Row(
        "kernel_5",
        "kernel size 5",
        "large kernel",
        "move_up_dwconv",
        "depthwise kernel 3 -> 5 (sweep branch)",
        {"kernel_size": 5},
        (80.35, 0.08, 4.10),
        sweep=True,
    ),
    Row(
        "kernel_7",
        "kernel size 7",
        "large kernel",
        "move_up_dwconv",
        "depthwise kernel 3 -> 7 (the size adopted; the chain continues here)",
        {"kernel_size": 7},
        (80.57, 0.14, 4.15),
    ),
    Row(
        "kernel_9",
        "kernel size 9",
        "large kernel",
        "move_up_dwconv",
        "depthwise kernel 3 -> 9 (sweep branch)",
        {"kernel_size": 9},
        (80.57, 0.06, 4.21),
        sweep=True,
    ),
    Row(
        "kernel_11",
        "kernel size 11",
        "large kernel",
        "move_up_dwconv",
        "depthwise kernel 3 -> 11 (sweep branch)",
        {"kernel_size": 11},
        (80.47, 0.11, 4.29),
        sweep=True,
    ),
    Row(
        "gelu",
        "ReLU -> GELU",
        "micro design",
        "kernel_7",
        "every ReLU becomes GELU",
        {"activation": "gelu"},
        (80.62, 0.14, 4.15),
    ),
    Row(
        "fewer_activations",
        "fewer activations",
        "micro design",
        "gelu",
        "one GELU per block, between the two 1x1 convs (none after the residual add)",
        {"block_activations": "one"},
        (81.27, 0.06, 4.15),
    ),
    Row(
        "fewer_norms",
        "fewer norms",
        "micro design",
        "fewer_activations",
        "one norm per block, after the depthwise conv",
        {"block_norms": "one"},
        (81.41, 0.09, 4.15),
    ),
    Row(
        "layer_norm",
        "BN -> LN",
        "micro design",
        "fewer_norms",
        "BatchNorm -> LayerNorm over channels, everywhere",
        {"norm": "layer"},
        (81.47, 0.09, 4.15),
    ),
    Row(
        "convnext_t",
        "sep. d.s. conv (ConvNeXt-T)",
        "micro design",
        "layer_norm",
        "separate LN + 2x2/2 conv downsampling between stages, LN after the stem and after "
        "pooling; layer scale 1e-6 as in the released ConvNeXt-T",
        {"separate_downsampling": True, "layer_scale_init": LAYER_SCALE_INIT},
        (81.97, 0.06, 4.49),
    ),
]

CHANGE = {row.slug: row.change for row in RESNET50_ROWS}  # one change, one wording

# Appendix C, Table 11: the same changes from ResNet-200 to ConvNeXt-B. The paper gives the
# widths only through the multiply-adds; base width 84 at "stage ratio" and 128 at "width"
# reproduce every row of Table 11 within 0.01 GMACs.
RESNET200_ROWS: list[Row] = [
    Row(
        "resnet200",
        "ResNet-200",
        "baseline",
        None,
        "ResNet-200 (bottleneck, blocks per stage (3,24,36,3)), trained with the modern recipe",
        {},
        (81.14, None, 15.01),
    ),
    Row(
        "r200_stage_ratio",
        "stage ratio",
        "macro design",
        "resnet200",
        "blocks per stage (3,24,36,3) -> (3,3,27,3), base width 64 -> 84",
        {"stage_depths": (3, 3, 27, 3), "base_width": 84},
        (81.33, None, 14.52),
    ),
    Row(
        "r200_patchify_stem",
        '"patchify" stem',
        "macro design",
        "r200_stage_ratio",
        CHANGE["patchify_stem"],
        {"stem": "patchify"},
        (81.59, None, 14.38),
    ),
    Row(
        "r200_depthwise_conv",
        "depth conv",
        "ResNeXt-ify",
        "r200_patchify_stem",
        CHANGE["depthwise_conv"],
        {"depthwise": True},
        (80.54, None, 7.23),
    ),
    Row(
        "r200_width_128",
        "width 84->128",
        "ResNeXt-ify",
        "r200_depthwise_conv",
        "base width 84 -> 128, the stage widths of Swin-B",
        {"base_width": 128},
        (81.85, None, 16.76),
    ),
    Row(
        "r200_inverted_bottleneck",
        "inverting dims",
        "inverted bottleneck",
        "r200_width_128",
        CHANGE["inverted_bottleneck"],
        {"block": "inverted"},
        (82.64, None, 15.68),
    ),
    Row(
        "r200_move_up_dwconv",
        "move up d. conv",
        "large kernel",
        "r200_inverted_bottleneck",
        CHANGE["move_up_dwconv"],
        {"block": "dw_first"},
        (82.04, None, 14.63),
    ),
    Row(
        "r200_kernel_5",
        "kernel size 5",
        "large kernel",
        "r200_move_up_dwconv",
        CHANGE["kernel_5"],
        {"kernel_size": 5},
        (82.32, None, 14.70),
        sweep=True,
    ),
    Row(
        "r200_kernel_7",
        "kernel size 7",
        "large kernel",
        "r200_move_up_dwconv",
        CHANGE["kernel_7"],
        {"kernel_size": 7},
        (82.30, None, 14.81),
    ),
    Row(
        "r200_kernel_9",
        "kernel size 9",
        "large kernel",
        "r200_move_up_dwconv",
        CHANGE["kernel_9"],
        {"kernel_size": 9},
        (82.27, None, 14.95),
        sweep=True,
    ),
    Row(
        "r200_kernel_11",
        "kernel size 11",
        "large kernel",
        "r200_move_up_dwconv",
        CHANGE["kernel_11"],
        {"kernel_size": 11},
        (82.18, None, 15.13),
        sweep=True,
    ),
    Row(
        "r200_gelu",
        "ReLU -> GELU",
        "micro design",
        "r200_kernel_7",
        CHANGE["gelu"],
        {"activation": "gelu"},
        (82.19, None, 14.81),
    ),
    Row(
        "r200_fewer_activations",
        "fewer activations",
        "micro design",
        "r200_gelu",
        CHANGE["fewer_activations"],
        {"block_activations": "one"},
        (82.71, None, 14.81),
    ),
    Row(
        "r200_fewer_norms",
        "fewer norms",
        "micro design",
        "r200_fewer_activations",
        CHANGE["fewer_norms"],
        {"block_norms": "one"},
        (83.17, None, 14.81),
    ),
    Row(
        "r200_layer_norm",
        "BN -> LN",
        "micro design",
        "r200_fewer_norms",
        CHANGE["layer_norm"],
        {"norm": "layer"},
        (83.35, None, 14.81),
    ),
    Row(
        "convnext_b",
        "sep. d.s. conv (ConvNeXt-B)",
        "micro design",
        "r200_layer_norm",
        "separate LN + 2x2/2 conv downsampling between stages, LN after the stem and after "
        "pooling; layer scale 1e-6 as in the released ConvNeXt-B",
        {"separate_downsampling": True, "layer_scale_init": LAYER_SCALE_INIT},
        (83.60, None, 15.35),
    ),
]


def build_roadmap(name: str, rows: list[Row], base: NetSpec) -> list[Step]:
    """The steps of a roadmap: each row's spec is its parent's with the row's fields set."""
    steps: list[Step] = []
    by_slug: dict[str, Step] = {}
    for index, row in enumerate(rows):
        spec = replace(by_slug[row.parent].spec, **row.fields) if row.parent else base
        top1, std, gflops = row.paper
        step = Step(
            slug=row.slug,
            label=row.label,
            phase=row.phase,
            parent=row.parent,
            change=row.change,
            spec=spec,
            changed_fields=frozenset(row.fields),
            index=index,
            roadmap=name,
            sweep=row.sweep,
            paper_top1=top1,
            paper_top1_std=std,
            paper_gmacs=gflops,
        )
        steps.append(step)
        by_slug[row.slug] = step
    return steps


STEPS: list[Step] = build_roadmap("resnet50", RESNET50_ROWS, NetSpec())
RESNET200_STEPS: list[Step] = build_roadmap("resnet200", RESNET200_ROWS, NetSpec(stage_depths=(3, 24, 36, 3)))
