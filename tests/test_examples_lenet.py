"""examples/lenet.py on tiny settings: exact resume, the three engines, CLI errors.

Each run uses a few hundred digits and one or two epochs. Exactness is checked on
the checkpoints themselves: the weights and Adam state after 2 straight epochs must
equal, bit for bit, those after 1 epoch and a resumed second.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import signal
import subprocess
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


def test_resume_past_the_requested_epochs_exits_2(tmp_path, capsys):
    assert run(*TINY, "--epochs", 1, "--out", tmp_path) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run(*TINY, "--epochs", 1, "--resume", "--out", tmp_path)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already at epoch 1" in err and "--epochs 2" in err


def test_checkpoint_that_is_not_an_npz_is_refused(tmp_path, capsys):
    (tmp_path / "checkpoint.npz").write_text("epoch 3\nweights: see elsewhere\n")
    with pytest.raises(SystemExit) as exit_info:
        run(*TINY, "--resume", "--out", tmp_path)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an .npz checkpoint" in err and "pickle" not in err


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        lenet.main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    shown = [a for a in lenet.make_parser()._actions
             if lenet.argparse.SUPPRESS not in (a.help, a.default)
             and a.default not in (None, False)]
    assert {a.dest for a in shown} >= {"engine", "epochs", "batch_size", "lr", "out", "threads"}
    for action in shown:
        assert f"default: {action.default}" in text or (
            action.dest == "threads" and f"every core, {action.default} here" in text), action


def test_ctrl_c_saves_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    """Ctrl-C in epoch 2: status 130, one line naming the checkpoint of epoch 1 and a
    command that resumes from it (which then runs)."""
    steps = {"n": 0}
    real_step = lenet.KernelsEngine.train_step

    def step(self, x, y):
        steps["n"] += 1
        if steps["n"] == 10:  # 200 images in batches of 32: 7 steps an epoch
            raise KeyboardInterrupt
        return real_step(self, x, y)

    monkeypatch.setattr(lenet.KernelsEngine, "train_step", step)
    assert run(*TINY, "--epochs", 3, "--out", tmp_path) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "interrupted in epoch 2" in err and str(tmp_path / "checkpoint.npz") in err
    from kernels import nn
    assert nn.load_meta(tmp_path / "checkpoint.npz")["epoch"] == 1
    command = shlex.split(err.split("continue with: ")[1])
    assert command[:3] == ["python", "examples/lenet.py", "--resume"]
    assert run(*command[2:], "--threads", 1) == 0
    assert "epochs 2..3" in " ".join(capsys.readouterr().out.split())


def test_ctrl_c_before_training(tmp_path, capsys, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(lenet, "load_data", interrupted)
    assert run(*TINY, "--out", tmp_path) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted outside an epoch" in err


def test_ctrl_c_in_a_real_process(tmp_path):
    """SIGINT to ``python examples/lenet.py``: no traceback, status 130."""
    proc = subprocess.Popen([sys.executable, "-u", str(ROOT / "examples/lenet.py"), *TINY,
                             "--epochs", "1000", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("epoch   1"):
                break
        else:  # (the run ended with no epoch line to interrupt after: say what it printed)
            pytest.fail(f"no epoch line; status {proc.wait()}; it printed {seen[-4:]!r}")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "lenet.py: interrupted in epoch" in err


def test_progress_bar_shows_from_the_first_batch(tmp_path, monkeypatch):
    """On a terminal the bar is up while the first batch runs (a first run compiles the
    kernels there), and then shows images/s and the time left."""
    import io
    import time

    from rich.console import Console

    screen = io.StringIO()
    during_first = []
    real_step = lenet.KernelsEngine.train_step

    def step(self, x, y):
        time.sleep(0.15)  # rich redraws 10 times a second
        if not during_first:
            time.sleep(0.35)
            during_first.append(screen.getvalue())
        return real_step(self, x, y)

    monkeypatch.setattr(lenet.KernelsEngine, "train_step", step)
    args = lenet.parse_args([*TINY, "--epochs", "1", "--out", str(tmp_path)])
    lenet.train(args, Console(file=screen, force_terminal=True, color_system=None, width=120))
    assert "epoch 1/1" in during_first[0] and "0/200" in during_first[0]
    assert re.search(r"\d+/200 +[\d,]+ images/s +\d+:\d\d:\d\d", screen.getvalue())


def test_ctrl_c_in_the_first_epoch_or_while_saving(tmp_path, capsys, monkeypatch):
    from kernels import nn

    real_save, saves = nn.save, []

    def save(*args, **kwargs):
        saves.append(kwargs["epoch"])
        if len(saves) == 2:
            raise KeyboardInterrupt  # during the write of epoch 2's checkpoint
        real_save(*args, **kwargs)

    monkeypatch.setattr(nn, "save", save)
    assert run(*TINY, "--epochs", 3, "--out", tmp_path / "a") == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkpoint after epoch 1 is in" in err
    meta = nn.load_meta(tmp_path / "a" / "checkpoint.npz")
    assert meta["epoch"] == 1 and len(meta["history"]["loss"]) == 1

    def step(self, x, y):
        raise KeyboardInterrupt

    monkeypatch.setattr(lenet.KernelsEngine, "train_step", step)
    assert run(*TINY, "--epochs", 3, "--out", tmp_path / "b") == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing saved" in err
    assert not (tmp_path / "b" / "checkpoint.npz").exists()
