"""Smoke tests of examples/correlation.py, norm_zoo.py and optimizers.py, with tiny settings.

Each example compares ours with scipy or torch itself; here we check that it runs,
writes its plots, reports agreement, and refuses bad arguments with one line and
status 2. The scripts run in-process through ``main(argv)`` (fast), plus once as a
subprocess to check the ``python examples/x.py`` entry point.
"""

from __future__ import annotations

import importlib.util
import runpy
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def example(name: str):
    """Import examples/<name>.py as a module (examples/ is not a package)."""
    path = ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


def one_line_error(capsys, main, argv) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and err.count("\n") == 1, err
    return err


# --------------------------------------------------------------------------- correlation

def test_correlation(tmp_path):
    pytest.importorskip("skimage")
    result = example("correlation").main(["--cases", "3", "--max-size", "40",
                                          "--downsample", "4", "--out", str(tmp_path)])
    assert is_png(tmp_path / "gradient.png") and is_png(tmp_path / "template.png")
    assert len(result["cases"]) == 3
    assert all(c["max_abs_diff"] < 1e-10 for c in result["cases"])
    g = result["gradient"]
    assert g["max_abs_diff_scipy"] < 1e-9 and g["interior_diff_doc"] < 1e-9
    assert g["border_diff_doc"] > 1  # zero fill vs symm differ on the border only
    t = result["template"]
    assert t["found"] == t["found_scipy"]
    assert max(abs(a - b) for a, b in zip(t["found"], t["truth"])) <= 2  # noise may shift it
    assert t["max_abs_diff"] < 1e-9 * t["peak"]
    m = result["multichannel"]
    assert m["shape"] == m["expected_shape"] == (52, 52)
    assert m["diff_torch"] < 1e-10 and m["diff_conv2d"] < 1e-10


def test_correlation_full_equals_padded_conv():
    """The claim behind (g): conv2d with padding h-1 is the full correlation."""
    torch = pytest.importorskip("torch")
    import scipy.signal

    rng = np.random.default_rng(0)
    y, x = rng.standard_normal((3, 9, 7)), rng.standard_normal((3, 4, 3))
    full = sum(scipy.signal.correlate2d(y[d], x[d], "full") for d in range(3))
    conv = torch.nn.functional.conv2d(torch.from_numpy(y[None]), torch.from_numpy(x[None]),
                                      padding=(3, 2))[0, 0].numpy()
    np.testing.assert_allclose(conv, full, atol=1e-12)


def test_correlation_bad_arguments(capsys):
    main = example("correlation").main
    assert "--cases" in one_line_error(capsys, main, ["--cases", "0"])
    one_line_error(capsys, main, ["--max-size", "big"])
    one_line_error(capsys, main, ["--nope"])


# --------------------------------------------------------------------------- norm zoo

def test_norm_zoo(tmp_path):
    torch = pytest.importorskip("torch")
    module = example("norm_zoo")
    result = module.main(["--shape", "4x8x6x5", "--groups", "4", "--out", str(tmp_path)])
    assert is_png(tmp_path / "norm_zoo.png")
    assert [r["norm"] for r in result["rows"]] == ["batch", "layer", "instance", "group(4)"]
    for row in result["rows"]:
        for key in (0.0, 1e-5, "ours_vs_f64", "torch_vs_f64"):
            assert row[key] < 1e-6, (row["norm"], key, row[key])
    assert result["demo"][0.0]["ours_nan"] and result["demo"][0.0]["torch_nan"]
    assert result["demo"][1e-5]["ours_first"] == 0.0 == result["demo"][1e-5]["torch_first"]
    # the seed's formula (3), checked on its own
    x = torch.randn(3, 4).numpy()
    y = x + 1e-3
    expected = np.linalg.norm(x - y) / max(np.linalg.norm(x), np.linalg.norm(y))
    assert module.relative_difference(x, y) == pytest.approx(expected, rel=1e-6)


def test_norm_zoo_definition_matches_torch():
    torch = pytest.importorskip("torch")
    module = example("norm_zoo")
    x = np.random.default_rng(2).random((3, 6, 4, 5))
    t = torch.from_numpy(x)
    F = torch.nn.functional
    np.testing.assert_allclose(module.definition(x, (2, 3, 4), 1e-5, 3),
                               F.group_norm(t, 3, eps=1e-5).numpy(), atol=1e-10)
    np.testing.assert_allclose(module.definition(x, (0, 2, 3), 1e-5),
                               F.batch_norm(t, None, None, training=True, eps=1e-5).numpy(),
                               atol=1e-10)


def test_norm_zoo_script_and_bad_arguments(tmp_path):
    script = str(ROOT / "examples" / "norm_zoo.py")
    ok = subprocess.run([sys.executable, script, "--shape", "2x4x3x3", "--groups", "2",
                         "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                        timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "relative difference" in ok.stdout and is_png(tmp_path / "norm_zoo.png")
    for bad in (["--groups", "3"], ["--shape", "2x4x3"], ["--shape", "1x4x1x1"]):
        run = subprocess.run([sys.executable, script, *bad, "--out", str(tmp_path)],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert run.returncode == 2 and run.stderr.startswith("Error: "), run.stderr
        assert run.stderr.count("\n") == 1 and not run.stdout


# --------------------------------------------------------------------------- optimizers

def check_optimizer_runs(result, epochs: int):
    runs = result["runs"]
    assert set(runs) == {f"{k} {i}" for k in ("Adagrad", "RMSprop", "Adam")
                         for i in ("ours", "torch")}
    for kind in ("Adagrad", "RMSprop", "Adam"):
        ours, ref = runs[f"{kind} ours"], runs[f"{kind} torch"]
        assert len(ours["objective"]) == epochs + 1
        assert ours["objective"][0] == ref["objective"][0]  # the same initial weights
        np.testing.assert_allclose(ours["objective"], ref["objective"], rtol=1e-4)
        assert 0 <= ours["accuracy"] <= 1
        assert result["max_param_diff_epoch1"][kind] < 1e-5


def test_optimizers_digits(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    result = example("optimizers").main(["--epochs", "3", "--limit", "400", "--hidden", "32",
                                         "--batch-size", "16", "--out", str(tmp_path)])
    assert is_png(tmp_path / "optimizers.png")
    check_optimizer_runs(result, 3)
    for kind in ("Adagrad", "RMSprop", "Adam"):
        curve = result["runs"][f"{kind} ours"]["objective"]
        assert curve[-1] < curve[0]  # it learns
        assert result["runs"][f"{kind} ours"]["accuracy"] > 0.2  # twice chance
    assert "98% test is for MNIST" in capsys.readouterr().out


def idx(arr: np.ndarray) -> bytes:
    """The IDX layout: 0, 0, type 0x08 (ubyte), rank, big-endian dims, data."""
    return struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) \
        + arr.astype(np.uint8).tobytes()


def test_optimizers_mnist_files(tmp_path, capsys):
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 96), ("t10k", 32)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 40, (n, 28, 28))
        images[np.arange(n), 2 * labels + 3, :] = 255  # a learnable stripe per class
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(idx(images))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(idx(labels))
    result = example("optimizers").main(["--dataset", "mnist", "--data-dir", str(tmp_path),
                                         "--epochs", "2", "--hidden", "16",
                                         "--out", str(tmp_path / "out")])
    check_optimizer_runs(result, 2)
    assert "98% test" in capsys.readouterr().out


def test_optimizers_bad_arguments(capsys, tmp_path):
    main = example("optimizers").main
    assert "--data-dir" in one_line_error(capsys, main, ["--dataset", "mnist"])
    one_line_error(capsys, main, ["--dataset", "cifar10"])
    one_line_error(capsys, main, ["--epochs", "-1"])
    one_line_error(capsys, main, ["--data-dir", str(tmp_path)])  # digits take none
    err = one_line_error(capsys, main, ["--dataset", "mnist", "--data-dir", str(tmp_path)])
    assert "train-images-idx3-ubyte" in err


# --------------------------------------------------------------------------- all three

# name -> (a function the run calls early, its --help phrases for defaults given in words)
EXAMPLES = {"correlation": ("random_cases", ()),
            "norm_zoo": ("compare", ()),
            "optimizers": ("train", ("default 20 (digits)", "default 128 for digits"))}


@pytest.mark.parametrize("name", EXAMPLES)
def test_ctrl_c_is_one_line_and_status_130(name, tmp_path, capsys, monkeypatch):
    module = example(name)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, EXAMPLES[name][0], interrupted)
    argv = {"correlation": ["--downsample", "8"],
            "norm_zoo": ["--shape", "2x4x3x3", "--groups", "2"],
            "optimizers": ["--limit", "64"]}[name]
    with pytest.raises(SystemExit) as info:
        module.main([*argv, "--out", str(tmp_path)])
    assert info.value.code == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{name}.py: interrupted" in err and "Traceback" not in err


@pytest.mark.parametrize("name", EXAMPLES)
def test_help_shows_every_default(name, capsys):
    module = example(name)
    with pytest.raises(SystemExit) as info:
        module.parse_args(["--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    parser_defaults = vars(module.parse_args([]))
    for phrase in EXAMPLES[name][1]:
        assert phrase in text
    for dest, value in parser_defaults.items():
        if dest in ("epochs", "hidden") and name == "optimizers":
            continue  # per data set: the phrases above
        if value is None:
            continue
        shown = "x".join(map(str, value)) if isinstance(value, tuple) else str(value)
        assert f"default: {shown})" in text, dest


# ------------------------------------------------------------------ long arguments, clipped

LONG = "x" * 3000


@pytest.mark.parametrize("name, argv", [
    ("correlation", ["--cases", LONG]),
    ("norm_zoo", ["--shape", LONG]),
    ("optimizers", ["--dataset", "mnist", "--data-dir", f"/nonexistent/{LONG}"]),
    ("lenet", ["--engine", LONG]),
    ("lenet", ["--dataset", "mnist", "--data-dir", f"/nonexistent/{LONG}"]),
])
def test_a_long_argument_is_clipped_in_the_error(name, argv, capsys):
    main = runpy.run_path(str(ROOT / "examples" / f"{name}.py"), run_name=f"clip_{name}")["main"]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 250, err[:300]
    assert "xxxxxxxxxx…xxxxxxxxxxx" in err  # the start and the end of the value, cut between
