"""The roadmap's architectures against the paper (Table 10) and torchvision."""

import copy
import csv
from pathlib import Path

import pytest
import torch
import torchvision

from convnext_steps import build_model, get_step, list_steps, load_torchvision_weights, resolve_steps
from convnext_steps.complexity import count_macs, count_params
from convnext_steps.cpu_kernels import (
    DepthwiseConv,
    PointwiseConv,
    TrimmedKernelConv,
    use_cpu_kernels,
    use_plain_kernels,
)

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "paper_roadmap.csv"
# Table 10 as published; the BN -> LN row's 4.46 is a typo (Figure 2 prints 4.2 and a norm
# swap changes no conv), see shared/reference/README.md.
TABLE10_GFLOPS = [4.09, 4.53, 4.42, 2.35, 5.27, 4.64, 4.07, 4.10, 4.15, 4.21, 4.29, 4.15, 4.15, 4.15, 4.15, 4.49]
assert [s.paper_gmacs for s in list_steps()] == TABLE10_GFLOPS
STEPS = list_steps()


def test_sixteen_steps_in_paper_order_with_parents():
    assert len(STEPS) == 16
    slugs = [s.slug for s in STEPS]
    assert len(set(slugs)) == 16
    assert STEPS[0].parent is None
    for step in STEPS[1:]:
        assert step.parent in slugs[: step.index], "a parent comes before its child"
    assert [get_step(i).parent for i in (7, 8, 9, 10)] == ["move_up_dwconv"] * 4
    assert get_step(11).parent == "kernel_7"


@pytest.mark.skipif(not REFERENCE.exists(), reason="shared/reference not beside the repo")
def test_reference_csv_agrees_with_our_table():
    rows = list(csv.DictReader(REFERENCE.open()))
    assert len(rows) == len(STEPS)
    for row, step in zip(rows, STEPS, strict=True):
        assert float(row["gflops_table10"]) == TABLE10_GFLOPS[step.index] or step.index == 14
        parent = STEPS[int(row["parent"])].slug if row["parent"] else None
        assert parent == step.parent
        assert row["phase"] == step.phase
        assert float(row["imagenet_top1_mean"]) == step.paper_top1
        assert float(row["imagenet_top1_std"]) == step.paper_top1_std


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.slug)
def test_multiply_adds_match_table10(step):
    gmacs = count_macs(build_model(step.slug)) / 1e9
    tolerance = 0.05 if step.slug == "convnext_t" else 0.01
    assert abs(gmacs - TABLE10_GFLOPS[step.index]) <= tolerance, f"{gmacs:.3f} GMACs"


@pytest.mark.parametrize("step", STEPS[1:], ids=lambda s: s.slug)
def test_each_step_is_its_parent_plus_one_named_change(step):
    parent = get_step(step.parent)
    assert step.changed_fields, "a step must change something"
    assert step.spec.diff(parent.spec) == set(step.changed_fields)
    assert step.change and "\n" not in step.change


def _randomise(model: torch.nn.Module) -> None:
    """Every float parameter and buffer random, so no block can hide behind its init
    (layer scale 1e-6, BN running stats 0/1)."""
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if not tensor.dtype.is_floating_point:
                continue
            if "running_var" in name:
                tensor.uniform_(0.5, 2.0)
            else:
                tensor.normal_(0.0, 0.05 if tensor.dim() > 1 else 0.5)


@pytest.mark.parametrize(
    "slug,factory,params",
    [
        ("resnet50", torchvision.models.resnet50, 25_557_032),
        ("convnext_t", torchvision.models.convnext_tiny, 28_589_128),
    ],
)
def test_endpoints_are_torchvision_models(slug, factory, params):
    theirs, ours = factory(), build_model(slug)
    assert count_params(theirs) == count_params(ours) == params
    _randomise(theirs)
    load_torchvision_weights(ours, theirs.state_dict())
    theirs.eval(), ours.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert expected.abs().max() > 1.0, "the randomised model must produce non-trivial outputs"
    assert (expected - got).abs().max().item() <= 1e-4


@pytest.mark.parametrize(
    "slug,factory", [("resnet50", torchvision.models.resnet50), ("convnext_t", torchvision.models.convnext_tiny)]
)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_endpoints_equal_torchvision_on_maps_smaller_than_kernels(slug, factory, memory_format):
    """At 32x32 input the last stages are 2x2 and 1x1, where TrimmedKernelConv leaves out taps."""
    theirs, ours = factory(), build_model(slug)
    _randomise(theirs)
    load_torchvision_weights(ours, theirs.state_dict())
    theirs.eval(), ours.eval()
    x = torch.randn(2, 3, 32, 32).to(memory_format=memory_format)
    with torch.no_grad():
        expected, got = theirs.to(memory_format=memory_format)(x), ours.to(memory_format=memory_format)(x)
    assert expected.abs().max() > 1.0
    assert (expected - got).abs().max().item() <= 1e-4


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.slug)
@pytest.mark.slow
def test_fast_convs_change_no_output_and_no_gradient(step):
    """TrimmedKernelConv against plain nn.Conv2d, whole model, training mode, at 32x32 (maps down to
    1x1, where TrimmedKernelConv leaves taps out) on channels_last input."""
    torch.manual_seed(0)
    plain = build_model(step.slug, num_classes=10, in_chans=1, width_mult=0.25, layer_scale_init=0.5)
    _randomise(plain)
    assert not any(isinstance(m, (TrimmedKernelConv, PointwiseConv)) for m in plain.modules()), (
        "build_model is the plain layers"
    )
    fast = use_cpu_kernels(copy.deepcopy(plain))
    assert any(isinstance(m, TrimmedKernelConv) for m in fast.modules())
    back = use_plain_kernels(copy.deepcopy(fast))
    assert [type(m) for m in back.modules()] == [type(m) for m in plain.modules()], "use_plain_kernels undoes it"
    x = torch.randn(4, 1, 32, 32).to(memory_format=torch.channels_last)
    outputs = []
    for model in (fast, plain):
        model.to(memory_format=torch.channels_last)
        out = model(x)
        out.logsumexp(1).mean().backward()
        outputs.append((out, {n: p.grad for n, p in model.named_parameters()}))
    (out_fast, grads_fast), (out_plain, grads_plain) = outputs
    torch.testing.assert_close(out_fast, out_plain, rtol=1e-4, atol=1e-4)
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads_fast[name], grad, rtol=1e-3, atol=1e-5, msg=name)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 8])
@pytest.mark.parametrize(
    "kind,kernel,groups,stride",
    [
        (TrimmedKernelConv, 3, 1, 1),
        (TrimmedKernelConv, 5, 2, 1),
        (TrimmedKernelConv, 3, 1, 2),
        (DepthwiseConv, 3, 8, 1),
        (DepthwiseConv, 7, 8, 1),
        (DepthwiseConv, 11, 8, 1),
        (DepthwiseConv, 7, 8, 2),
    ],
)
def test_same_conv_equals_conv2d_in_output_and_gradients(size, kind, kernel, groups, stride):
    torch.manual_seed(0)
    reference = torch.nn.Conv2d(8, 8, kernel, stride, padding=kernel // 2, groups=groups)
    ours = kind(8, 8, kernel, stride, padding=kernel // 2, groups=groups)
    ours.load_state_dict(reference.state_dict())
    x1 = torch.randn(4, 8, size, size, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    y1, y2 = reference(x1), ours(x2)
    g = torch.randn_like(y1)
    y1.backward(g), y2.backward(g)
    torch.testing.assert_close(y2, y1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.bias.grad, reference.bias.grad, rtol=1e-5, atol=1e-5)
    reach = min(kernel, 2 * size - 1)
    if reach < kernel and stride == 1:  # the taps that only meet padding get exactly zero gradient
        border = (kernel - reach) // 2
        assert ours.weight.grad[..., :border, :].abs().max() == 0


def test_weights_of_the_wrong_model_are_refused():
    with pytest.raises(ValueError):
        load_torchvision_weights(build_model("convnext_t"), torchvision.models.resnet50().state_dict())


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.slug)
@pytest.mark.parametrize("resolution,width_mult", [(32, 1.0), (32, 0.25), (224, 0.25), (224, 1.0)])
def test_forward_and_backward(step, resolution, width_mult):
    model = build_model(step.slug, num_classes=10, width_mult=width_mult, drop_path_rate=0.1)
    x = torch.randn(2, 3, resolution, resolution)
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_layer_scale_defaults_and_overrides():
    assert count_params(build_model("layer_norm", layer_scale_init=1e-6)) > count_params(build_model("layer_norm"))
    assert count_params(build_model("convnext_t", layer_scale_init=0)) == 28_589_128 - 6_624
    gammas = [p for n, p in build_model("convnext_t").named_parameters() if n.endswith("gamma")]
    assert len(gammas) == 18 and all(g.max().item() == pytest.approx(1e-6) for g in gammas)


def test_step_selection():
    assert [s.index for s in resolve_steps("0-2,kernel_7,15")] == [0, 1, 2, 8, 15]
    assert len(resolve_steps("all")) == 16
    for bad in ("nope", "3-1", "99", ""):
        with pytest.raises(KeyError):
            resolve_steps(bad)


def test_depthwise_convs_stay_fp32_under_cpu_bf16_autocast():
    """bf16 autocast on CPU: depthwise convs train in fp32 (oneDNN's bf16 depthwise backward
    is slow) and evaluate in bf16, dense convs are bf16 as usual; gradients reach the weights."""
    torch.manual_seed(0)
    depthwise = DepthwiseConv(8, 8, 7, padding=3, groups=8)
    strided = DepthwiseConv(8, 8, 3, 2, padding=1, groups=8)
    dense = TrimmedKernelConv(8, 8, 3, padding=1)
    x = torch.randn(2, 8, 5, 5).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, y_strided, z = depthwise(x), strided(x), dense(x)
    assert (y.dtype, y_strided.dtype, z.dtype) == (torch.float32, torch.float32, torch.bfloat16)
    torch.testing.assert_close(y, depthwise(x), rtol=0, atol=0)
    torch.testing.assert_close(y_strided, strided(x), rtol=0, atol=0)
    y.sum().backward()
    assert depthwise.weight.grad is not None and depthwise.weight.grad.abs().sum() > 0
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert depthwise(x).dtype == torch.bfloat16
    large = torch.randn(2, 8, 9, 9).to(memory_format=torch.channels_last)  # > 8x8: stays bf16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert depthwise(large).dtype == torch.bfloat16
    model = use_cpu_kernels(build_model("convnext_t", num_classes=10, in_chans=1, width_mult=0.125))
    assert sum(isinstance(m, DepthwiseConv) for m in model.modules()) == 18


@pytest.mark.parametrize("side", [1, 2, 8, 14])
@pytest.mark.parametrize("bf16", [False, True])
def test_pointwise_conv_equals_conv2d_in_fp32_and_under_bf16_autocast(side, bf16):
    """PointwiseConv is nn.Conv2d's function in fp32 (a conv or a matmul, as measured: see
    test_autotune) and, on maps up to 8x8, a matmul under CPU bf16 autocast (to bf16
    rounding), gradients included, and channels_last strides kept."""
    torch.manual_seed(0)
    reference, ours = torch.nn.Conv2d(32, 48, 1), PointwiseConv(32, 48, 1)
    ours.load_state_dict(reference.state_dict())
    x1 = torch.randn(4, 32, side, side).to(memory_format=torch.channels_last).requires_grad_()
    x2 = x1.detach().clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y1, y2 = reference(x1), ours(x2)
    assert y2.dtype == y1.dtype and y2.is_contiguous(memory_format=torch.channels_last)
    tol = {"rtol": 2e-2, "atol": 2e-2} if bf16 else {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(y2.float(), y1.float(), **tol)
    y1.float().sum().backward(), y2.float().sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, **tol)
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad, rtol=tol["rtol"], atol=10 * tol["atol"])


def test_a_derived_step_differs_from_its_parent_in_its_change_and_builds():
    from convnext_steps import StepError, derive_step, register_step

    parent = get_step("convnext_t")
    step = derive_step(parent, "convnext_t_bn_test", {"norm": "batch"}, label="BN instead of LN")
    assert step.spec.diff(parent.spec) == {"norm"} == set(step.changed_fields)
    assert step.parent == "convnext_t" and step.paper_top1 is None and step.index is None
    register_step(step)
    model = build_model("convnext_t_bn_test", num_classes=10, in_chans=1, width_mult=0.125)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    assert [s.slug for s in resolve_steps([0, "convnext_t_bn_test"])] == ["resnet50", "convnext_t_bn_test"]
    for change in ({"nrm": "batch"}, {"norm": "group"}, {"kernel_size": 7.5}, {}):
        with pytest.raises(StepError):
            derive_step(parent, "bad", change)
    with pytest.raises(StepError):
        register_step(derive_step(parent, "resnet50", {"norm": "batch"}))
    recipe_only = derive_step(parent, "convnext_t_lr", {}, train={"lr": 1e-3})
    assert recipe_only.changed_fields == frozenset() and recipe_only.train == {"lr": 1e-3}
