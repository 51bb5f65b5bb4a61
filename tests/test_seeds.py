"""The seeds' network problems, solved by cnncalc and checked by first principles.

Expected values are derived here from the problem statements with plain Python
integer arithmetic (floor division for output sizes), not copied from cnncalc.
"""

from __future__ import annotations

import json

import pytest
from cli_helpers import run_ok as run

import cnncalc


def out_size(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


# -- seed 002, Q1: two 3x3 convs, padding 1, on a 64x64x128 input (H x W x C) ------------

SEED002_Q1 = "conv(256, k=3, s=2, p=1), conv(512, k=3, p=1)"


@pytest.fixture(scope="module")
def q1():
    return cnncalc.analyze(SEED002_Q1, input="64x64x128", layout="hwc", bias=False)


def test_seed002_q1a_params(q1):
    expected = 3 * 3 * 128 * 256 + 3 * 3 * 256 * 512
    assert int(q1.total["params"]) == expected == 1_474_560


def test_seed002_q1b_output_size_and_macs(q1):
    # The worked solution writes (63-3+2)/2+1 = 32: the input is 64 wide, and the size
    # formula needs a floor: floor((64 + 2 - 3)/2) + 1 = floor(31.5) + 1 = 32.
    h1 = out_size(64, 3, 2, 1)
    h2 = out_size(h1, 3, 1, 1)
    assert (h1, h2) == (32, 32)
    assert q1.layers[0].output_shape == (h1, h1, 256)  # H x W x C, as asked
    assert q1.layers[1].output_shape == (h2, h2, 512)
    expected = [3 * 3 * 128 * 256 * h1 * h1, 3 * 3 * 256 * 512 * h2 * h2]
    assert [int(r.macs) for r in q1.layers] == expected
    assert int(q1.total["macs"]) == sum(expected) == 1_509_949_440


def test_seed002_q1c_memory_change(q1):
    # Stage 1 halves the stored activations; stage 2 doubles them (+100%, not "+50%" as the
    # worked solution says); overall the block's output is as large as its input (0%).
    sizes = [64 * 64 * 128, 32 * 32 * 256, 32 * 32 * 512]
    per_stage = [100 * (b - a) / a for a, b in zip(sizes, sizes[1:])]
    assert per_stage == [-50.0, 100.0]
    assert [float(r.memory_change) for r in q1.layers] == per_stage
    assert q1.memory_change == 100 * (sizes[-1] - sizes[0]) // sizes[0] == 0


def test_seed002_q1_show_work_on_the_cli(capsys):
    out = run(["params", "--input", "64x64x128", "--layout", "hwc", "--no-bias",
               "--layers", SEED002_Q1, "--show-work"], capsys)
    assert "⌊(64 - 1·(3 - 1) + 2·1 - 1)/2⌋ + 1 = 32" in out
    assert "128·256·3·3 = 294,912" in out
    assert "-50%" in out and "+100%" in out
    assert "network, input → output" in out


def test_seed002_q1_json_in_hwc(capsys):
    doc = json.loads(run(["params", "--input", "64x64x128", "--layout", "hwc", "--no-bias",
                          "--layers", SEED002_Q1, "--format", "json"], capsys))
    assert doc["input_shape"] == [64, 64, 128]
    assert [r["output_shape"] for r in doc["layers"]] == [[32, 32, 256], [32, 32, 512]]
    assert [r["memory_change"] for r in doc["layers"]] == [-50, 100]
    assert doc["total"]["memory_change"] == 0


# -- seed 004, Q3: standard vs bottleneck residual block ---------------------------------

def test_seed004_q3_standard_block():
    conv = 3 * 3 * 32 * 32 + 32
    bn = 2 * 32
    a = cnncalc.analyze("residual(conv(32,k=3,p=1), bn, relu, conv(32,k=3,p=1), bn)",
                        input="32x56x56")
    assert int(a.total["params"]) == 2 * (conv + bn) == 18_624
    assert a.output_shape == (32, 56, 56)
    assert not any("shortcut" in r.name for r in a.layers)  # identity shortcut


def test_seed004_q3_bottleneck_block():
    expected = ((1 * 1 * 128 * 32 + 32) + 2 * 32 + (3 * 3 * 32 * 32 + 32) + 2 * 32
                + (1 * 1 * 32 * 128 + 128) + 2 * 128)
    a = cnncalc.analyze("residual(conv(32,k=1), bn, relu, conv(32,k=3,p=1), bn, relu, "
                        "conv(128,k=1), bn)", input="128x56x56")
    assert int(a.total["params"]) == expected == 17_984


def test_seed004_blocks_in_the_zoo():
    assert int(cnncalc.analyze(model="standard_block").total["params"]) == 18_624
    assert int(cnncalc.analyze(model="bottleneck_block").total["params"]) == 17_984
    q1 = cnncalc.analyze(model="two_conv_block")
    assert int(q1.total["params"]) == 3 * 3 * 128 * 256 + 3 * 3 * 256 * 512


@pytest.mark.parametrize("former, name", [("seed002_block", "two_conv_block"),
                                          ("seed004_standard", "standard_block"),
                                          ("seed004_bottleneck", "bottleneck_block")])
def test_the_blocks_former_names_still_work(former, name):
    from cnncalc.zoo import get
    assert get(former) is get(name)


def test_seed002_lenet_in_the_zoo():
    """Seed 002 problem 4's LeNet on CIFAR-10 (3x32x32), counted by hand."""
    c1 = 5 * 5 * 3 * 6 + 6
    c2 = 5 * 5 * 6 * 16 + 16
    fcs = (16 * 5 * 5 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    a = cnncalc.analyze(model="lenet5", input="3x32x32")
    assert int(a.total["params"]) == c1 + c2 + fcs
    assert int(a.layers[0].macs) == 5 * 5 * 3 * 6 * 28 * 28
