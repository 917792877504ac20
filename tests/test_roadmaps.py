"""The ResNet-200 roadmap (Table 11), the NetSpec knobs beyond the roadmap (patch size, GRN,
init, conv bias), the readings, the Swin reference models and `--list`."""

import csv
import itertools
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torchvision
from test_architectures import _randomise
from torchvision.models.resnet import Bottleneck, ResNet

import runner
from convnext_steps import (
    READINGS,
    REFERENCES,
    NetSpec,
    StepError,
    apply_readings,
    build_model,
    derive_step,
    get_step,
    list_steps,
    load_torchvision_weights,
)
from convnext_steps.complexity import count_macs, count_params
from convnext_steps.network import GRN, LAYER_SCALE_INIT, RoadmapNet

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "paper_roadmap.csv"
R50, R200 = list_steps(), list_steps(roadmap="resnet200")
# Parameters of the 16 ResNet-50 roadmap steps at width 1, as before the knobs below existed.
R50_PARAMS = [
    25_557_032,
    28_628_520,
    28_622_120,
    15_722_600,
    33_760_936,
    25_851_400,
    25_625_416,
    25_720_648,
    25_863_496,
    26_053_960,
    26_292_040,
    25_863_496,
    25_863_496,
    25_830_376,
    25_837_672,
    28_589_128,
]


def meta_model(step, **kwargs):
    with torch.device("meta"):
        return build_model(step, **kwargs)


# --- the ResNet-200 roadmap ------------------------------------------------------------------


def test_resnet200_roadmap_has_the_structure_of_the_resnet50_one():
    assert [s.slug for s in list_steps()] == [s.slug for s in R50], "resnet50 stays the default"
    slugs = [s.slug for s in R200]
    assert len(set(slugs)) == 16 and not set(slugs) & {s.slug for s in R50}
    index_200, index_50 = {s.slug: s.index for s in R200}, {s.slug: s.index for s in R50}
    for ours, theirs in zip(R200, R50, strict=True):
        assert (ours.index, ours.phase, ours.sweep, ours.roadmap) == (
            theirs.index,
            theirs.phase,
            theirs.sweep,
            "resnet200",
        )
        assert index_200.get(ours.parent) == index_50.get(theirs.parent)
        assert ours.label == theirs.label or ours.index in (0, 4, 15)
        assert ours.paper_top1_std is None, "Table 11 gives no std"
    assert R200[0].spec == NetSpec(stage_depths=(3, 24, 36, 3))
    assert R200[1].spec.stage_depths == (3, 3, 27, 3) and R200[1].spec.base_width == 84
    assert R200[4].spec.base_width == 128
    assert get_step("convnext_b").roadmap == "resnet200" and get_step(15, roadmap="resnet200").slug == "convnext_b"


@pytest.mark.parametrize("step", R200[1:], ids=lambda s: s.slug)
def test_resnet200_steps_are_their_parent_plus_the_named_change(step):
    assert step.changed_fields
    assert step.spec.diff(get_step(step.parent).spec) == set(step.changed_fields)
    assert step.change and "\n" not in step.change


@pytest.mark.parametrize("step", R200, ids=lambda s: s.slug)
def test_resnet200_multiply_adds_match_table11(step):
    gmacs = count_macs(meta_model(step.slug)) / 1e9  # the meta build counts as the CPU one (test below)
    assert abs(gmacs - step.paper_gmacs) <= 0.02, f"{gmacs:.3f} GMACs"


@pytest.mark.skipif(not REFERENCE.exists(), reason="shared/reference not beside the repo")
def test_resnet200_rows_hold_table11_as_in_the_reference_csv():
    rows = list(csv.DictReader(REFERENCE.open()))
    assert len(rows) == len(R200) and not any("resnet200_top1_std" in k for k in rows[0])
    for row, step in zip(rows, R200, strict=True):
        assert float(row["resnet200_top1"]) == step.paper_top1
        assert float(row["resnet200_gflops"]) == step.paper_gmacs
        assert (R200[int(row["parent"])].slug if row["parent"] else None) == step.parent
        gmacs = count_macs(meta_model(step.slug)) / 1e9
        assert abs(gmacs - float(row["resnet200_gflops"])) <= 0.02


def _same_outputs(theirs, ours, resolution=224):
    _randomise(theirs)
    load_torchvision_weights(ours, theirs.state_dict())
    theirs.eval(), ours.eval()
    x = torch.randn(2, 3, resolution, resolution)
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert expected.abs().max() > 1.0, "the randomised model must produce non-trivial outputs"
    assert (expected - got).abs().max().item() <= 1e-4


def test_resnet200_is_the_plain_bottleneck_resnet_with_64_67m_parameters():
    """torchvision has no resnet200 builder; its ResNet class with (3,24,36,3) is the check."""
    ours, theirs = build_model("resnet200"), ResNet(Bottleneck, [3, 24, 36, 3])
    assert count_params(ours) == count_params(theirs) == 64_673_832
    _same_outputs(theirs, ours, resolution=64)


@pytest.mark.slow
def test_convnext_b_is_torchvisions_convnext_base():
    ours, theirs = build_model("convnext_b"), torchvision.models.convnext_base()
    assert count_params(ours) == count_params(theirs) == 88_591_464
    _same_outputs(theirs, ours)


# Every ResNet-50 step (every kind of layer) and both ends of the ResNet-200 roadmap (big ones).
@pytest.mark.parametrize(
    "slug", [s.slug for s in R50] + ["resnet200", "r200_stage_ratio", "convnext_b"] + list(REFERENCES)
)
def test_a_meta_build_counts_as_a_cpu_build(slug):
    cpu, meta = build_model(slug), meta_model(slug)
    assert (count_params(meta), count_macs(meta)) == (count_params(cpu), count_macs(cpu))


def test_list_prints_the_resnet200_roadmap_with_computed_and_paper_gmacs(capsys):
    assert runner.main(["--list", "--roadmap", "resnet200"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "GMACs@224" in lines[0] and "paper_GFLOPs" in lines[0] and len(lines) == 17
    assert "resnet200" in lines[1] and "64.67" in lines[1] and "15.01" in lines[1]
    assert "convnext_b" in lines[16] and "88.59" in lines[16] and "15.35" in lines[16]
    assert runner.main(["--list", "--roadmap", "nope"]) == 2
    assert "unknown roadmap" in capsys.readouterr().err


# --- NetSpec knobs beyond the roadmap --------------------------------------------------------


def test_the_knobs_change_no_step_of_the_resnet50_roadmap():
    assert [count_params(meta_model(s.slug)) for s in R50] == R50_PARAMS
    defaults = NetSpec()
    assert (defaults.patch_size, defaults.grn, defaults.init, defaults.conv_bias) == (
        4,
        False,
        "trunc_normal",
        "unless_batchnorm",
    )


@pytest.mark.parametrize("bad", [0, -4, 2.0, True, "4"])
def test_patch_size_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match="patch_size"):
        NetSpec(patch_size=bad)


@pytest.mark.parametrize("patch", [1, 2, 3, 4])
def test_patch_size_is_the_stems_kernel_and_stride(patch):
    step = get_step("convnext_t")
    if patch != 4:
        step = derive_step(step, f"convnext_t_p{patch}", {"patch_size": patch})
    model = build_model(step, num_classes=10, in_chans=1, width_mult=0.25)
    stem = model.stem[0]
    assert stem.kernel_size == (patch, patch) and stem.stride == (patch, patch) and stem.padding == (0, 0)
    assert model.stem(torch.randn(2, 1, 36, 36)).shape[-1] == 36 // patch
    out = model(torch.randn(2, 1, 32, 32))
    out.logsumexp(1).mean().backward()
    assert out.shape == (2, 10) and all(p.grad is not None for p in model.parameters())


def test_a_resnet_stem_on_convnext_t():
    step = derive_step(get_step("convnext_t"), "convnext_t_resnet_stem", {"stem": "resnet"})
    model = build_model(step, num_classes=10, in_chans=1, width_mult=0.25, drop_path_rate=0.1)
    out = model(torch.randn(2, 1, 32, 32))
    out.logsumexp(1).mean().backward()
    assert out.shape == (2, 10) and all(torch.isfinite(p.grad).all() for p in model.parameters())
    # At 224: ConvNeXt-T's multiply-adds with the 4x4/4 conv (56x56 map) swapped for a 7x7/2 conv
    # (112x112 map); the max-pool brings stage 1 to the same 56x56.
    patchify, resnet = 56 * 56 * 96 * 3 * 4 * 4, 112 * 112 * 96 * 3 * 7 * 7
    expected = count_macs(meta_model("convnext_t")) - patchify + resnet
    assert count_macs(meta_model(step)) == expected  # 4.62 G


def test_grn_is_convnext_v2s_formula_and_the_identity_at_init():
    torch.manual_seed(0)
    grn, x = GRN(8), torch.randn(2, 8, 5, 5)
    assert torch.equal(grn(x), x)
    with torch.no_grad():
        grn.gamma.normal_(), grn.beta.normal_()
    nhwc = x.permute(0, 2, 3, 1)  # ConvNeXt V2's own code, channels last
    gx = torch.norm(nhwc, p=2, dim=(1, 2), keepdim=True)
    nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
    gamma, beta = grn.gamma.reshape(1, 1, 1, 8), grn.beta.reshape(1, 1, 1, 8)
    expected = (gamma * (nhwc * nx) + beta + nhwc).permute(0, 3, 1, 2)
    torch.testing.assert_close(grn(x), expected)


def test_grn_in_the_block_after_the_expanding_conv_and_its_activation():
    step = derive_step(get_step("convnext_t"), "convnext_v2_t", {"grn": True})
    ours, plain = build_model(step), build_model("convnext_t")
    widths = [(96, 3), (192, 3), (384, 9), (768, 3)]
    assert count_params(ours) - count_params(plain) == sum(2 * 4 * c * d for c, d in widths) == 52_992
    block = ours.stages[0][0].branch
    assert [type(m).__name__ for m in block] == ["Conv2d", "LayerNorm2d", "Conv2d", "GELU", "GRN", "Conv2d"]
    assert block[0].groups == 96 and block[0].kernel_size == (7, 7), "the depthwise 7x7 first"
    _randomise(plain)
    grn = {p for m in ours.modules() if isinstance(m, GRN) for p in m.parameters()}
    with torch.no_grad():  # every other parameter copied, in order; GRN keeps its zero init
        for mine, theirs in zip([p for p in ours.parameters() if p not in grn], plain.parameters(), strict=True):
            mine.copy_(theirs)
    ours.eval(), plain.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), plain(x), rtol=0, atol=0)
    with pytest.raises(StepError, match="grn"):
        derive_step(get_step("stage_ratio"), "bottleneck_grn", {"grn": True})


def test_init_trunc_normal_or_pytorchs_default():
    ours = build_model("convnext_t")
    theirs = RoadmapNet(replace(get_step("convnext_t").spec, init="pytorch_default"))
    pointwise = [m for m in ours.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1)]
    assert all(m.bias.abs().max() == 0 for m in pointwise)
    assert pointwise[0].weight.std().item() == pytest.approx(0.02, rel=0.05)
    default = [m for m in theirs.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1)][0]
    bound = default.weight[0].numel() ** -0.5  # kaiming-uniform(a=sqrt(5)) and its uniform bias
    assert default.weight.abs().max() <= bound and default.weight.std().item() == pytest.approx(
        bound / 3**0.5, rel=0.05
    )
    assert default.bias.abs().max() > 0
    assert count_params(ours) == count_params(theirs)


def test_conv_bias_authors_drops_the_1x1_and_shortcut_biases_before_separate_downsampling():
    deltas = [
        count_params(meta_model(s)) - count_params(meta_model(apply_readings(s, {"conv_bias": "authors"}))) for s in R50
    ]
    assert deltas == [0] * 13 + [33_120, 33_120 + 1_344, 0]
    stage = [(3, 128), (3, 256), (27, 512), (3, 1024)]  # ResNet-200's: same rule, its widths
    r200 = [
        count_params(meta_model(s)) - count_params(meta_model(apply_readings(s, {"conv_bias": "authors"})))
        for s in R200
    ]
    pointwise, shortcut = sum(5 * c * d for d, c in stage), sum(c for _, c in stage[1:])
    assert r200 == [0] * 13 + [pointwise, pointwise + shortcut, 0] and pointwise == 90_240


# --- readings --------------------------------------------------------------------------------


def test_readings_registry_lists_the_default_first():
    assert READINGS == {
        "init": ("trunc_normal", "pytorch_default"),
        "conv_bias": ("unless_batchnorm", "authors"),
        "layer_scale": ("last_step", "every_step"),
    }
    step = get_step("convnext_t")
    assert apply_readings(step, {name: values[0] for name, values in READINGS.items()}) == step
    for bad in ({"nope": "x"}, {"init": "xavier"}):
        with pytest.raises(StepError) as error:
            apply_readings(step, bad)
        assert ("trunc_normal, pytorch_default" in str(error.value)) == ("init" in bad)
        assert ("init, conv_bias, layer_scale" in str(error.value)) == ("nope" in bad)


@pytest.mark.parametrize("values", list(itertools.product(*READINGS.values())), ids="-".join)
def test_under_every_reading_each_step_is_its_parent_plus_its_change(values):
    readings = dict(zip(READINGS, values, strict=True))
    for step in R50 + R200:
        read = apply_readings(step, readings)
        assert read.spec.init == readings["init"] and read.spec.conv_bias == readings["conv_bias"]
        if readings["layer_scale"] == "every_step":
            assert read.spec.layer_scale_init == LAYER_SCALE_INIT
        if step.parent:
            parent = apply_readings(get_step(step.parent), readings)
            assert read.spec.diff(parent.spec) == set(read.changed_fields) != set()
    for reference in REFERENCES.values():
        assert apply_readings(reference, readings) is reference


def test_layer_scale_every_step():
    read = apply_readings(get_step("convnext_t"), {"layer_scale": "every_step"})
    assert read.changed_fields == {"separate_downsampling"}
    mine = derive_step(get_step("layer_norm"), "ls_01", {"layer_scale_init": 0.1})
    assert apply_readings(mine, {"layer_scale": "every_step"}).spec.layer_scale_init == 0.1, "its own value"
    model = build_model(apply_readings(get_step("resnet50"), {"layer_scale": "every_step"}))
    assert count_params(model) == R50_PARAMS[0] + sum(4 * 64 * 2**i * d for i, d in enumerate((3, 4, 6, 3)))


# --- Swin reference models -------------------------------------------------------------------


@pytest.mark.parametrize(
    "slug,factory,params,roadmap,top1,gflops",
    [
        ("swin_t", torchvision.models.swin_t, 28_288_354, "resnet50", 81.3, 4.5),
        ("swin_b", torchvision.models.swin_b, 87_768_224, "resnet200", 83.5, 15.4),
    ],
)
@pytest.mark.slow
def test_swin_is_torchvisions(slug, factory, params, roadmap, top1, gflops):
    step = REFERENCES[slug]
    assert (step.reference, step.parent, step.roadmap, step.paper_top1, step.paper_gmacs) == (
        True,
        None,
        roadmap,
        top1,
        gflops,
    )
    theirs, ours = factory(), build_model(slug)
    assert count_params(theirs) == count_params(ours) == params
    _randomise(theirs)
    ours.load_state_dict(theirs.state_dict())
    theirs.eval(), ours.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert expected.abs().max() > 1.0 and torch.equal(expected, got)
    # torch's flop counter counts the convs and matmuls (attention included), halved: 4.49 and 15.43 G
    assert abs(count_macs(meta_model(slug)) / 1e9 - gflops) <= 0.05


@pytest.mark.parametrize("slug", ["swin_t", "swin_b"])
@pytest.mark.parametrize("width_mult", [0.125, 0.25, 0.5, 0.75])
def test_swin_scales_embed_dim_to_a_multiple_of_the_heads(slug, width_mult):
    spec = REFERENCES[slug].spec
    dim = spec.scaled_embed_dim(width_mult)
    assert dim % spec.num_heads[0] == 0 and abs(dim - spec.embed_dim * width_mult) <= spec.num_heads[0] / 2 + 1e-9
    model = meta_model(slug, num_classes=10, width_mult=width_mult)
    assert model.features[0][0].out_channels == dim and model.head.in_features == 8 * dim


def test_swin_small_image_one_channel_forward_and_backward():
    model = build_model("swin_t", num_classes=10, in_chans=1, width_mult=0.25, drop_path_rate=0.1)
    assert model.features[0][0].in_channels == 1 and model.features[0][0].out_channels == 24
    out = model(torch.randn(2, 1, 32, 32))
    out.logsumexp(1).mean().backward()
    assert out.shape == (2, 10) and all(
        p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad
    )
