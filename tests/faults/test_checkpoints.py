"""Checkpoints are never half-written; one that cannot be loaded is set aside and the run
restarts from the previous checkpoint or from scratch, to the numbers of an uninterrupted run."""

import signal

import pytest
import torch
from robust_helpers import main_args, no_figures, records, same_numbers, signal_at, tiny_study

import runner
from convnext_roadmap.train.checkpoints import PREVIOUS, AtomicCheckpointIO, resume_point


def test_a_failed_write_leaves_the_old_checkpoint_whole(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, path)
    real_save = torch.save

    def dies_half_way(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # a kill in the middle of the write

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(path, weights_only=False) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"], "no temporary file is left"
    io.save_checkpoint({"step": 3}, path)
    assert torch.load(path, weights_only=False) == {"step": 3}
    assert torch.load(tmp_path / PREVIOUS, weights_only=False) == {"step": 1}, "the replaced one is kept"


@pytest.mark.parametrize("damage", ["last truncated", "last empty, previous truncated"])
def test_an_unloadable_checkpoint_is_set_aside_and_the_run_still_ends_identical(
    tiny_reference, tmp_path, monkeypatch, capsys, damage
):
    """The issue's reproduction: SIGINT a run, truncate its checkpoint, run again (before: a
    traceback on every rerun)."""
    config, out = tiny_study(tmp_path), tmp_path / "out"
    no_figures(monkeypatch)
    signal_at(monkeypatch, signal.SIGINT, epoch=1, batch=5)
    assert runner.main(main_args(config, out)) == 130
    (folder,) = (out / "tiny" / "checkpoints").iterdir()
    last, previous = folder / "last.ckpt", folder / PREVIOUS
    assert previous.exists(), "the end-of-epoch checkpoint is kept as the previous one"
    if damage == "last truncated":
        with open(last, "r+b") as handle:
            handle.truncate(last.stat().st_size // 2)
    else:
        last.write_bytes(b"")
        with open(previous, "r+b") as handle:
            handle.truncate(2000)
    capsys.readouterr()
    assert runner.main(main_args(config, out)) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: checkpoint")]
    assert len(warnings) == (1 if damage == "last truncated" else 2), warnings
    assert "set aside as last.ckpt.corrupt-" in warnings[0]
    assert "resuming from previous.ckpt" in warnings[0] or damage != "last truncated"
    assert len(list(folder.glob("*.corrupt-*"))) == len(warnings)
    found = records(out)
    assert same_numbers(found["patchify_stem__seed0"], tiny_reference)


def test_resume_point_never_loads_a_half_written_file(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / ".last.ckpt.abc.tmp").write_bytes(b"half")
    (folder / "last.ckpt").write_bytes(b"")
    assert resume_point(folder) == (None, None)
    assert [p.name for p in folder.iterdir()][0].startswith("last.ckpt.corrupt-")
    assert len(list(folder.iterdir())) == 1, "temporaries of killed writes are removed"


def test_resuming_on_another_thread_count_says_the_bits_will_differ(tmp_path, monkeypatch, capsys):
    """Stopped under --jobs 1 (every core), resumed under the default (one thread per run for
    small models): a one-line warning that the numbers are not those of an uninterrupted run."""
    if torch.get_num_threads() < 2:
        pytest.skip("needs 2 threads")
    config, out = tiny_study(tmp_path), tmp_path / "out"
    no_figures(monkeypatch)
    signal_at(monkeypatch, signal.SIGTERM, epoch=0, batch=3)
    assert runner.main(main_args(config, out, "--jobs", "1")) == 130
    monkeypatch.undo()
    no_figures(monkeypatch)
    capsys.readouterr()
    assert runner.main(main_args(config, out)) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "thread" in line]
    assert (
        len(warnings) == 1
        and warnings[0].startswith("warning: patchify_stem__seed0")
        and f"trained on {torch.get_num_threads()} CPU thread(s) and resumes on 1" in warnings[0]
    ), warnings
