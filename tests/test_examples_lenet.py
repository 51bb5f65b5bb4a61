"""examples/lenet.py on tiny settings: exact resume, the three engines, CLI errors.

Each run uses a few hundred digits and one or two epochs. Exactness is checked on
the checkpoints themselves: the weights and Adam state after 2 straight epochs must
equal, bit for bit, those after 1 epoch and a resumed second.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--limit", "200", "--batch-size", "32", "--lr", "0.003", "--threads", "1"]


def _module():
    spec = importlib.util.spec_from_file_location("lenet_example", ROOT / "examples/lenet.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


lenet = _module()


def run(*argv) -> int:
    return lenet.main([str(a) for a in argv])


def arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files if k.startswith(("model/", "optimizer/"))}


@pytest.mark.parametrize("engine", ["kernels", "torch", "torch+kernels"])
def test_resume_continues_exactly(tmp_path, engine, capsys):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run("--engine", engine, *TINY, "--epochs", 2, "--out", straight) == 0
    assert run("--engine", engine, *TINY, "--epochs", 1, "--out", resumed) == 0
    assert run("--engine", engine, *TINY, "--epochs", 2, "--out", resumed, "--resume") == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps lines at 80 columns here
    assert "epochs 2..2" in out and "final test accuracy" in out
    a, b = arrays(straight / "checkpoint.npz"), arrays(resumed / "checkpoint.npz")
    assert a.keys() == b.keys() and any(k.startswith("optimizer/") for k in a)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert (resumed / "lenet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from kernels import nn
    meta = nn.load_meta(resumed / "checkpoint.npz")
    assert meta["epoch"] == 2 and len(meta["history"]["test_acc"]) == 2


def test_engines_agree(tmp_path):
    """Same initial weights, same batches: the engines' losses and accuracies agree
    (kernels.torch's layers and Adam inside torch included)."""
    histories = {}
    for engine in lenet.ENGINES:
        args = lenet.parse_args([*TINY, "--engine", engine, "--epochs", "2",
                                 "--out", str(tmp_path / engine.replace("+", "_"))])
        histories[engine] = lenet.train(args, _quiet())
    ref = histories["torch"]
    for engine, h in histories.items():
        np.testing.assert_allclose(h.loss, ref.loss, rtol=1e-3, err_msg=engine)
        np.testing.assert_allclose(h.test_acc, ref.test_acc, atol=0.011, err_msg=engine)
    assert ref.loss[1] < ref.loss[0]


def _quiet():
    import io

    from rich.console import Console
    return Console(file=io.StringIO())


@pytest.mark.parametrize("dataset,shape", [("mnist", (1, 28, 28)), ("cifar10", (3, 32, 32))])
def test_fallback_to_digits(tmp_path, dataset, shape, capsys):
    assert run("--dataset", dataset, "--limit", 64, "--epochs", 1, "--out", tmp_path) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "falls back to the digits" in out and f"{shape[0]}x{shape[1]}x{shape[2]}" in out
    ckpt = arrays(tmp_path / "checkpoint.npz")
    assert ckpt["model/0.weight"].shape == (6, shape[0], 5, 5)
    assert ckpt["model/7.weight"].shape == (120, 400)  # both sizes reach 16x5x5


def test_benchmark(capsys):
    assert run("--benchmark", "--benchmark-images", 256) == 0
    out = capsys.readouterr().out
    assert out.count("images/s") >= 2 and "kernels / torch:" in out
    assert "3: Conv2d 16x6x5x5" in out and "Adam step" in out  # the per-layer profile


@pytest.mark.parametrize("argv,message", [
    (["--epochs", "0"], "--epochs"),
    (["--engine", "jax"], "--engine"),
    (["--lr", "fast"], "--lr"),
    (["--batch-size", "-3"], "--batch-size"),
    (["--dataset", "digits", "--data-dir", "/tmp"], "--data-dir"),
    (["--no-such-flag"], "unrecognized"),
])
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        lenet.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_run_time_errors_exit_2_with_one_line(tmp_path, capsys):
    """A missing checkpoint, an --out that is a file, unreadable data files, a checkpoint
    that is not this example's, and one made with other settings."""
    from kernels import nn

    (tmp_path / "a-file").write_text("")
    (tmp_path / "other").mkdir()
    nn.save(tmp_path / "other" / "checkpoint.npz", nn.lenet5(rng=np.random.default_rng()))
    cases = [["--resume", "--out", tmp_path / "empty"],
             ["--out", tmp_path / "a-file"],
             ["--dataset", "mnist", "--data-dir", tmp_path / "nothing-here", "--out", tmp_path],
             ["--resume", "--out", tmp_path / "other"]]
    for argv in cases:
        with pytest.raises(SystemExit) as exit_info:
            run(*argv)
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.count("\n") == 1
    assert run(*TINY, "--epochs", 1, "--out", tmp_path / "a") == 0
    with pytest.raises(SystemExit):
        run(*TINY, "--epochs", 2, "--seed", 5, "--resume", "--out", tmp_path / "a")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "seed=0" in err
