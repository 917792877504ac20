"""1x1 convs on the CPU: conv or matmul, chosen by measurement once per machine and shape, kept
in a cache file (first writer wins), listed in records and carried by checkpoints."""

import json
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from robust_helpers import ROOT, main_args, no_figures, records, same_numbers, signal_at, tiny_study

import runner
from convnext_steps import autotune, build_model
from convnext_steps.complexity import count_macs
from convnext_steps.cpu_kernels import PointwiseConv, use_cpu_kernels


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache file of this test's own, and no choices remembered by this process."""
    path = tmp_path / "pointwise.json"
    monkeypatch.setenv(autotune.CACHE_ENV, str(path))
    monkeypatch.setattr(autotune, "_MEMORY", {})
    return path


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format], ids=["nhwc", "nchw"])
@pytest.mark.parametrize("bias", [True, False])
def test_both_implementations_are_the_conv(layout, bias):
    """The same function, gradients included, and the input's memory layout kept."""
    weight = torch.randn(48, 32, 1, 1, requires_grad=True)
    b = torch.randn(48, requires_grad=True) if bias else None
    x = torch.randn(4, 32, 5, 6).to(memory_format=layout).requires_grad_()
    results = []
    for fn in autotune.IMPLEMENTATIONS.values():
        y = fn(x, weight, b)
        assert y.is_contiguous(memory_format=layout)
        y.backward(torch.ones_like(y) * torch.arange(48.0).view(1, 48, 1, 1))
        grads = [t.grad.clone() for t in (x, weight, b) if t is not None]
        for t in (x, weight, b):
            if t is not None:
                t.grad = None
        results.append((y.detach(), grads))
    (y1, g1), (y2, g2) = results
    torch.testing.assert_close(y2, y1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y1, F.conv2d(x, weight, b).detach(), rtol=1e-5, atol=1e-5)
    for a, c in zip(g1, g2, strict=True):
        torch.testing.assert_close(c, a, rtol=1e-4, atol=1e-4)


def test_a_choice_is_measured_once_written_and_leaves_the_random_stream_alone(cache, monkeypatch):
    measured, real = [], autotune.measure
    monkeypatch.setattr(autotune, "measure", lambda *a: measured.append(a) or real(*a))
    conv = PointwiseConv(64, 256, 1)
    x = torch.randn(32, 64, 8, 8).to(memory_format=torch.channels_last)
    state = torch.get_rng_state()
    y = conv(x)  # fp32, training: measured now
    assert torch.equal(torch.get_rng_state(), state), "the measurement drew from the global RNG"
    ((key, choice),) = conv.pointwise_choices.items()
    assert key == autotune.key_of(x, 256, True, True) and key.startswith("float32 train nhwc")
    (entry,) = json.loads(cache.read_text())[autotune.machine()].values()
    assert entry["choice"] == choice and set(entry["seconds"]) == {"conv", "matmul"}
    torch.testing.assert_close(y, F.conv2d(x, conv.weight, conv.bias), rtol=1e-5, atol=1e-5)

    monkeypatch.setattr(autotune, "_MEMORY", {})  # as a new process: the file answers
    other = PointwiseConv(64, 256, 1)
    other(x)
    assert other.pointwise_choices == {key: choice} and len(measured) == 1
    with torch.no_grad():  # evaluation is a key of its own
        other(x)
    assert len(measured) == 2 and len(json.loads(cache.read_text())[autotune.machine()]) == 2


def test_the_cache_decides_over_a_new_measurement_and_a_checkpoint_over_the_cache(cache, monkeypatch):
    """First writer wins; `use_choices` (a checkpoint's or a record's) wins over the file."""
    x = torch.randn(32, 64, 8, 8).to(memory_format=torch.channels_last)
    key = autotune.key_of(x, 256, True, True)
    cache.write_text(json.dumps({autotune.machine(): {key: {"choice": "matmul", "seconds": {}}}}))
    monkeypatch.setattr(autotune, "measure", lambda *a: {"conv": 0.0, "matmul": 1.0})
    calls = []
    real = dict(autotune.IMPLEMENTATIONS)
    for name, fn in real.items():
        monkeypatch.setitem(autotune.IMPLEMENTATIONS, name, lambda *a, _n=name, _f=fn: calls.append(_n) or _f(*a))
    conv = PointwiseConv(64, 256, 1)
    conv(x)
    assert calls == ["matmul"] and conv.pointwise_choices == {key: "matmul"}
    autotune.use_choices(conv, {key: "conv"})
    conv(x)
    assert calls == ["matmul", "conv"]


def test_small_bf16_pinned_and_counting_paths_measure_nothing(cache, monkeypatch):
    def never(*args):
        raise AssertionError("measured")

    monkeypatch.setattr(autotune, "measure", never)
    conv = PointwiseConv(16, 64, 1)
    conv(torch.randn(2, 16, 8, 8))  # 131k multiply-adds: below MEASURE_FROM_MACS
    x = torch.randn(32, 64, 8, 8).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the measured rule: a matmul, no measurement
        PointwiseConv(64, 256, 1)(x)
    monkeypatch.setenv(autotune.PIN_ENV, "conv")  # pinned by the user
    pinned = PointwiseConv(64, 256, 1)
    pinned(x)
    assert list(pinned.pointwise_choices.values()) == ["conv"]
    monkeypatch.delenv(autotune.PIN_ENV)
    monkeypatch.setattr(autotune, "MEASURE_FROM_MACS", 0)  # every 1x1 conv would be measured...
    model = build_model("convnext_t", num_classes=10, in_chans=1, width_mult=0.25)
    with torch.device("meta"):
        on_meta = build_model("convnext_t", num_classes=10, in_chans=1, width_mult=0.25)
    assert count_macs(model, 64, 1) == count_macs(on_meta, 64, 1)  # ...but not while counting
    assert autotune.choices_of(model) == {} and not cache.exists()


def test_a_near_tie_stays_a_conv():
    assert autotune.faster({"conv": 1.0, "matmul": 0.96}) == "conv"
    assert autotune.faster({"conv": 1.0, "matmul": 0.90}) == "matmul"
    assert autotune.faster({"conv": 0.5, "matmul": 1.0}) == "conv"


@pytest.mark.parametrize("step", ["resnet50", "convnext_t"])
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format], ids=["nhwc", "nchw"])
def test_a_whole_model_on_the_matmul_path_is_the_plain_model(step, layout, cache, monkeypatch):
    """Every 1x1 conv of the model a matmul: the outputs and gradients of plain nn.Conv2d's."""
    import copy

    from convnext_steps.cpu_kernels import use_plain_kernels

    monkeypatch.setattr(autotune, "MEASURE_FROM_MACS", 0)
    monkeypatch.setenv(autotune.PIN_ENV, "matmul")
    fast = use_cpu_kernels(build_model(step, num_classes=10, in_chans=1, width_mult=0.25, layer_scale_init=0.5))
    fast = fast.to(memory_format=layout)
    plain = use_plain_kernels(copy.deepcopy(fast))
    x = torch.randn(4, 1, 32, 32).to(memory_format=layout)
    results = []
    for model in (fast, plain):
        out = model(x)
        out.logsumexp(1).mean().backward()
        results.append((out, {n: p.grad for n, p in model.named_parameters()}))
    chosen = autotune.choices_of(fast)
    assert chosen and set(chosen.values()) == {"matmul"} and autotune.choices_of(plain) == {}
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-4, atol=1e-5)
    for name, grad in results[1][1].items():  # rounding, amplified by batch norm over 4 images: relative to the norm
        assert (results[0][1][name] - grad).norm() <= 1e-3 * grad.norm() + 1e-6, name


def test_a_patch_stem_is_a_plain_conv():
    """A 1x1 patch stem (patch_size 1) sees 1 or 3 channels: a plain conv, whose output layout
    does not depend on a choice."""
    from convnext_steps import derive_step, get_step

    model = build_model(
        derive_step(get_step("convnext_t"), "p1", {"patch_size": 1}), num_classes=10, in_chans=1, width_mult=0.125
    )
    assert type(model.stem[0]) is torch.nn.Conv2d


def test_a_record_from_before_the_choices_is_pinned_to_the_conv(cache, monkeypatch):
    """A checkpoint or record without choices (trained when every 1x1 conv was a conv), or a
    compiled run's: evaluated and resumed on the conv, whatever the machine measures now."""
    from convnext_roadmap.store.record import Record
    from convnext_roadmap.train.weights import trained_choices

    monkeypatch.setattr(autotune, "measure", lambda *a: {"conv": 1.0, "matmul": 0.0})

    def record(**fields) -> Record:
        return Record.from_dict(
            {"study": "s", "step": "x", "seed": 0, "config_hash": "h", "status": "failed", **fields}
        )

    assert trained_choices(record(config={})) is None
    assert trained_choices(record(config={"compile": True}, pointwise={"k": "matmul"})) is None
    assert trained_choices(record(config={}, pointwise={"k": "matmul"})) == {"k": "matmul"}
    x = torch.randn(32, 64, 8, 8).to(memory_format=torch.channels_last)
    old, new = PointwiseConv(64, 256, 1), PointwiseConv(64, 256, 1)
    autotune.use_choices(old, None)
    old(x), new(x)
    assert list(old.pointwise_choices.values()) == ["conv"] and list(new.pointwise_choices.values()) == ["matmul"]


def test_an_unwritable_cache_still_chooses(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv(autotune.CACHE_ENV, str(blocker / "pointwise.json"))  # its folder is a file
    monkeypatch.setattr(autotune, "_MEMORY", {})
    x = torch.randn(32, 64, 8, 8).to(memory_format=torch.channels_last)
    key, choice = autotune.choose(x, 256, True, True)
    assert choice in autotune.IMPLEMENTATIONS and autotune.choose(x, 256, True, True) == (key, choice)


@pytest.mark.slow
def test_concurrent_processes_agree_and_only_one_measures(cache):
    """Two jobs meeting a new shape at once: one measures, the other waits and takes its choice.
    The test holds the cache's lock until both are at it, so that they do meet."""
    import fcntl

    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(ROOT)!r})
        from convnext_steps import autotune
        real, measured = autotune.measure, []
        autotune.measure = lambda *a: measured.append(1) or real(*a)
        x = torch.randn(64, 96, 8, 8).to(memory_format=torch.channels_last)
        print("ready", flush=True)
        print(autotune.choose(x, 384, True, True)[1], len(measured))
    """)
    env = {"CONVNEXT_ROADMAP_CACHE": str(cache), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    with open(cache.with_name(cache.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        procs = [
            subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
            for _ in range(2)
        ]
        assert [p.stdout.readline().strip() for p in procs] == ["ready", "ready"]
    outs = [p.communicate(timeout=300)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0][0] == outs[1][0] and sorted(int(o[1]) for o in outs) == [0, 1], outs
    saved = json.loads(cache.read_text())
    assert list(saved) == [autotune.machine()] and len(saved[autotune.machine()]) == 1


@pytest.mark.slow
def test_an_fp32_run_records_its_choices_and_resumes_with_them(tmp_path, cache, monkeypatch):
    """Stopped mid-run, the cache file deleted and the machine now measuring the other way: the
    resumed run takes its checkpoint's choices and ends with the uninterrupted run's numbers."""
    monkeypatch.setattr(autotune, "MEASURE_FROM_MACS", 0)  # the tiny study's convs are all small
    no_figures(monkeypatch)
    config, fp32 = tiny_study(tmp_path), ("--set", "train.precision=32-true")
    assert runner.main(main_args(config, tmp_path / "reference", *fp32)) == 0
    reference = records(tmp_path / "reference")["patchify_stem__seed0"]
    chosen = reference["pointwise"]
    assert any(" train " in k for k in chosen) and any(" eval " in k for k in chosen), chosen

    out = tmp_path / "out"
    monkeypatch.setattr(autotune, "_MEMORY", {})
    signal_at(monkeypatch, signal.SIGINT, epoch=1, batch=5)
    assert runner.main(main_args(config, out, *fp32)) == 130  # (signal_at sends once)
    cache.unlink()
    monkeypatch.setattr(autotune, "_MEMORY", {})

    def the_other_way(x, c_out, bias, training):
        before = chosen.get(autotune.key_of(x, c_out, bias, training), "conv")
        return {before: 1.0, ("matmul" if before == "conv" else "conv"): 0.0}

    monkeypatch.setattr(autotune, "measure", the_other_way)
    assert runner.main(main_args(config, out, *fp32)) == 0
    resumed = records(out)["patchify_stem__seed0"]
    assert resumed["pointwise"] == chosen
    assert same_numbers(resumed, reference)
