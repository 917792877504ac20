"""Every bad input is one line, `error: ...`, exit 2 (config) or 1 (environment), no traceback."""

import gzip
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from robust_helpers import ROOT

import runner

FASHION = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def yaml_file(text: str | bytes):
    def make(tmp: Path) -> list[str]:
        path = tmp / "study.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return ["--config", str(path)]

    return make


def corrupt_deflate(tmp: Path) -> list[str]:
    """Gzip files whose header is fine and whose deflate stream is not."""
    data = tmp / "fmnist"
    data.mkdir()
    for name in FASHION:
        good = gzip.compress(b"\x00\x00\x08\x03" + bytes(4000))
        (data / name).write_bytes(good[:10] + bytes(b ^ 0x5A for b in good[10:40]) + good[40:])
    return ["--preset", "cpu", "--steps", "0", "--data-dir", str(data)]


def corrupt_record(tmp: Path) -> list[str]:
    runs = tmp / "out" / "mine" / "runs"
    runs.mkdir(parents=True)
    (runs / "resnet50__seed0__0123abcd.json").write_text('{"study": "mine", "step": ')
    return ["plot", "--study", "mine"]


CASES = {
    "width nan": (["--preset", "smoke", "--width-mult", "nan"], ["train.width_mult must be a finite number"]),
    "width inf": (["--preset", "smoke", "--width-mult", "inf"], ["train.width_mult must be a finite number"]),
    "seed 2**32": (["--preset", "smoke", "--seed", str(2**32)], ["below 2**32"]),
    "seed -1": (["--preset", "smoke", "--seed", "-1"], ["non-negative"]),
    "lr nan": (yaml_file("preset: smoke\nname: mine\ntrain:\n  lr: .nan\n"), ["train.lr must be a finite number"]),
    "precision banana": (
        yaml_file("preset: smoke\nname: mine\ntrain:\n  precision: banana\n"),
        ["train.precision: 'banana' is unknown", "bf16-mixed"],
    ),
    "betas [0.9, 2]": (yaml_file("preset: smoke\nname: mine\ntrain:\n  betas: [0.9, 2]\n"), ["betas", "[0, 1)"]),
    "devices abc": (["--preset", "smoke", "--devices", "abc"], ["train.devices: 'abc'"]),
    "strategy bogus": (["--preset", "smoke", "--strategy", "bogus"], ["train.strategy: 'bogus' is unknown", "ddp"]),
    "non-UTF-8 YAML": (yaml_file(b"name: caf\xe9\n"), ["not UTF-8"]),
    "corrupt deflate stream": (corrupt_deflate, ["corrupt", "train-images-idx3-ubyte.gz"]),
    "--steps ''": (["--preset", "smoke", "--steps", ""], ["--steps '' names no step"]),
    "--shard 3/2": (["--preset", "smoke", "--shard", "3/2"], ["--shard '3/2'"]),
    "--shard x": (["--preset", "smoke", "--shard", "x"], ["--shard 'x'"]),
    "--seeds 0": (["--preset", "smoke", "--seeds", "0"], ["--seeds must be >= 1"]),
    "--config a folder": (lambda tmp: ["--config", str(tmp)], ["is a directory"]),
    "name .": (yaml_file("preset: smoke\nname: .\n"), ["name: '.' must be a plain name"]),
    "name ..": (yaml_file("preset: smoke\nname: ..\n"), ["name: '..' must be a plain name"]),
    "name a/b": (yaml_file("preset: smoke\nname: a/b\n"), ["name: 'a/b' must be a plain name"]),
    "plot --study ..": (["plot", "--study", ".."], ["--study: '..' must be a plain name"]),
    "plot a corrupt record": (corrupt_record, ["resnet50__seed0__0123abcd.json", "delete"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, capsys):
    args, words = CASES[case]
    args = args(tmp_path) if callable(args) else args
    code = runner.main([*args, "--dry-run", "--out", str(tmp_path / "out"), "--plots", str(tmp_path / "plots")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0], lines[0]
    print(f"{case}: {lines[0]}")  # the message, for the record (pytest -s)


def test_an_interrupted_plot_leaves_no_temporary_file(tiny_reference, tmp_path, monkeypatch, capsys):
    from matplotlib.figure import Figure

    out = tmp_path / "out"
    shutil.copytree(tiny_reference["_out"], out)
    real_savefig = Figure.savefig

    def savefig(self, path, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the figure is written
        return real_savefig(self, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    assert runner.main(["plot", "--study", "tiny", "--out", str(out), "--plots", str(tmp_path / "plots")]) == 130
    assert "interrupted (SIGTERM)" in capsys.readouterr().err
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    ignored = subprocess.run(["git", "check-ignore", "-q", "plots/cpu/.roadmap.123.tmp.png"], cwd=ROOT)
    assert ignored.returncode == 0, ".gitignore covers the temporary files of figures"
