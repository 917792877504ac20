"""Swin-T and Swin-B, the Transformers the paper's roadmaps are measured against (Figure 2,
Table 1): torchvision's SwinTransformer, drawn beside a roadmap, never a step of it."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from torchvision.models.swin_transformer import SwinTransformer

from .step import Step


@dataclass(frozen=True)
class SwinSpec:
    """torchvision's SwinTransformer with these hyperparameters (patch 4, MLP ratio 4).

    `build` scales the width as the roadmap's steps are scaled: embed_dim * width_mult,
    rounded to a multiple of num_heads[0] (at least one). Head counts are kept, so stage i's
    embed_dim * 2**i channels divide by its num_heads[0] * 2**i heads. `in_chans` replaces
    the patch-embedding conv's input channels."""

    embed_dim: int
    depths: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int]
    window_size: int = 7

    def scaled_embed_dim(self, width_mult: float) -> int:
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        heads = self.num_heads[0]
        return max(heads, round(self.embed_dim * width_mult / heads) * heads)

    def build(
        self, num_classes: int = 1000, in_chans: int = 3, width_mult: float = 1.0, drop_path_rate: float = 0.0
    ) -> nn.Module:
        model = SwinTransformer(
            patch_size=[4, 4],
            embed_dim=self.scaled_embed_dim(width_mult),
            depths=list(self.depths),
            num_heads=list(self.num_heads),
            window_size=[self.window_size] * 2,
            stochastic_depth_prob=drop_path_rate,
            num_classes=num_classes,
        )
        if in_chans != 3:
            patch = model.features[0][0]
            model.features[0][0] = nn.Conv2d(in_chans, patch.out_channels, patch.kernel_size, patch.stride)
        return model


def _reference(slug: str, label: str, roadmap: str, spec: SwinSpec, top1: float, gflops: float) -> Step:
    return Step(
        slug=slug,
        label=label,
        phase="reference",
        parent=None,
        spec=spec,
        roadmap=roadmap,
        change=f"torchvision's {label}, the Transformer the {roadmap} roadmap is compared with",
        reference=True,
        paper_top1=top1,
        paper_gmacs=gflops,
    )


# The paper's ImageNet-1K top-1 and GFLOPs (Figure 2, Table 1; no std).
SWIN_T = _reference("swin_t", "Swin-T", "resnet50", SwinSpec(96, (2, 2, 6, 2), (3, 6, 12, 24)), 81.3, 4.5)
SWIN_B = _reference("swin_b", "Swin-B", "resnet200", SwinSpec(128, (2, 2, 18, 2), (4, 8, 16, 32)), 83.5, 15.4)
