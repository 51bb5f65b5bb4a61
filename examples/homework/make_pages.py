"""Walk through the seeds' homework with cnncalc: one Markdown page per seed file.

Every command below runs for real and its output is pasted into the page, so a
student can follow along in a terminal. Where a seed's worked solution is
wrong, the page says so and why.

    python examples/homework/make_pages.py           # (re)write seed002.md, seed003.md, ...
    python examples/homework/make_pages.py --check   # exit 1 if a page is out of date
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from cnncalc.cli import main as cnncalc_main

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Step:
    text: str  # Markdown: the question and what to look at
    command: str = ""  # a cnncalc command line, run and pasted
    note: str = ""  # where the seed's solution goes wrong, and why


def run(command: str) -> tuple[int, str]:
    """Run ``cnncalc ...`` in this process; return its exit status and what it printed."""
    args = shlex.split(command)
    assert args[0] == "cnncalc", command
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cnncalc_main(args[1:])
        except SystemExit as exc:
            code = exc.code or 0
    text = out.getvalue() + err.getvalue()
    return code, "\n".join(line.rstrip() for line in text.splitlines())


def page(title: str, source: str, steps: list[Step]) -> str:
    lines = [f"# {title}", "",
             f"Worked with cnncalc from `../shared/seeds/{source}`. Each block is a real "
             "command and its real output; regenerate with "
             "`python examples/homework/make_pages.py`.", ""]
    for step in steps:
        lines += [step.text, ""]
        if step.command:
            code, output = run(step.command)
            status = "" if code == 0 else f"   # exits {code}"
            lines += ["```", f"$ {step.command}{status}", output, "```", ""]
        if step.note:
            lines += [f"> **Where the seed's solution goes wrong.** {step.note}", ""]
    return "\n".join(lines).rstrip() + "\n"


SEED002 = [
    Step("## Q1. Two 3×3 convolutions on a 64×64×128 input\n\n"
         "Padding 1, no bias; the first convolution has stride 2. (a) parameters, (b) "
         "multiply-adds, (c) the memory change. `--layout hwc` reads the input as "
         "H×W×C, as the problem writes it.",
         "cnncalc params --input 64x64x128 --layout hwc --no-bias "
         "--layers 'conv(256,k=3,s=2,p=1), conv(512,k=3,p=1)' --show-work",
         "The seed writes the first output size as (63−3+2)/2+1 = 32. The input is 64 wide, "
         "and the formula needs a floor: ⌊(64+2−3)/2⌋+1 = ⌊31.5⌋+1 = 32. For (c) it says the "
         "second stage \"increases to 50 percent\". 32×32×256 → 32×32×512 doubles the stored "
         "activations, which is +100%. Overall, input to output, the change is 0%, as the "
         "seed concludes."),
    Step("## Q2 (a)–(b). Batch normalization of a 3×4 mini-batch\n\n"
         "Rows are the 3 units, columns the m = 4 examples; ε = 0.",
         "cnncalc norm --kind batch '[[12,14,14,12],[0,10,10,0],[-5,5,5,-5]]' "
         "--gamma 1,1,1 --beta 0,-10,10 --eps 0 --show-work"),
    Step("## Q2 (c)–(d). Training versus testing\n\n"
         "The shapes of the statistics, and what batch norm does in inference. The running "
         "statistics make an example's output independent of its test batch.",
         "cnncalc norm --kind batch --shape NxC",
         "The seed describes the test-time mean as the plain mean of the batch means. PyTorch "
         "keeps an exponential moving average (momentum 0.1) of the means and of the "
         "*unbiased* variances. The conclusion in (d) holds only in inference mode "
         "(`model.eval()`)."),
    Step("## Q3. Convolution as a matrix, and its backward pass\n\n"
         "A 1-D input of length 4 with 2 channels, kernel 3, 2 output channels, no padding. "
         "(a) Ỹ = A X̃, (b) B = Aᵀ, (c) the backward pass as a convolution. cnncalc verifies "
         "(c) itself, entry by entry.",
         "cnncalc matrix --length 4 --in-channels 2 --out-channels 2 --kernel 3 --backward",
         "In (c) the seed flips the first kernel but leaves the second unflipped: "
         "[w₁²¹ w₂²¹ w₃²¹; w₁²² w₂²² w₃²²]. From the definition, ∂L/∂x₂₁ = w₁²¹·∂L/∂y₁₁ + "
         "w₁²²·∂L/∂y₂₁, so w₁ must sit at the last tap: [w₃²¹ w₂²¹ w₁²¹; w₃²² w₂²² w₁²²]. In "
         "(a) the seed labels the rows of Ỹ y₁₁, y₁₂, y₁₃, y₁₄; they are y₁₁, y₁₂, y₂₁, y₂₂."),
    Step("## Q4. LeNet for CIFAR-10: what it costs\n\n"
         "The coding problem trains this network (see the training examples). Here is its cost "
         "on a 3×32×32 image.",
         "cnncalc params --model lenet5 --input 3x32x32"),
]

SEED003 = [
    Step("## Problem 2 (a). [3, 2, 1] ⋆ [4, 6, 3, 9]\n\n"
         "x slides over fixed y. In general x ⋆ y ≠ y ⋆ x; instead x ⋆ y = reverse(y ⋆ x).",
         "cnncalc correlate 3,2,1 4,6,3,9 --show-work"),
    Step("## Problem 2 (b). w ⋆ x = C_w x\n\nC_w is 6×4.",
         "cnncalc correlate w1,w2,w3 x1,x2,x3,x4 --matrix"),
    Step("## Problem 2 (c). The Jacobian ∂(w ⋆ x)/∂w = C_x\n\n"
         "w ⋆ x is linear in w, so it can be written w ⋆ x = C_x w; its Jacobian is C_x.",
         "cnncalc correlate w1,w2,w3 x1,x2,x3,x4 --jacobian"),
    Step("The same matrix, seen as a convolution layer's weight Jacobian: one channel in and "
         "out, kernel 3, padding 2 (the full correlation).",
         "cnncalc matrix --length 4 --kernel 3 --padding 2 --jacobian"),
    Step("## Problem 3. The normalization zoo on an H×W×C×N = 50×50×64×64 tensor\n\n"
         "Which slices share one mean and variance. Torch's layout is N×C×H×W.",
         "cnncalc norm --shape 64x64x50x50"),
    Step("Why is there an ε in the denominator? With ε = 0, a slice whose values are all "
         "equal has σ² = 0, and ẑ = 0/0:",
         "cnncalc norm --kind batch '[[1,1,1],[0,2,4]]' --eps 0"),
    Step("With the default ε = 10⁻⁵ the same data normalizes, and the constant slice becomes 0:",
         "cnncalc norm --kind batch '[[1,1,1],[0,2,4]]'"),
    Step("## Problem 4. Transfer learning: what freezing saves\n\n"
         "The problem asks whether to freeze all, some or none of a pretrained network's "
         "convolutional layers. cnncalc does not choose, but it prices each choice. Here is "
         "a pretrained ResNet-18 on 224×224 x-rays (grey, repeated to 3 channels), batch 32, "
         "trained with Adam, with every conv and batch norm frozen, so only the classifier "
         "trains. `--freeze 0-40` would instead fine-tune from the middle of the third stage, "
         "and dropping `--freeze` trains everything. The `freezing saves` line is the "
         "difference from training everything.",
         "cnncalc params --model resnet18 --batch 32 --optimizer adam --freeze conv,bn "
         "--format markdown"),
]

SEED004 = [
    Step("## Q1. The derivative of tanh, and the gradient of a tanh perceptron",
         "cnncalc derive 'tanh(x)' --show-work"),
    Step("The gradient of one squared-error term (tanh(wᵀx) − y)² with respect to w; "
         "∇E_in(w) averages these terms over the examples.",
         "cnncalc derive '(tanh(w1*x1 + w2*x2) - y)**2' --wrt w1,w2"),
    Step("## Q2. Forward and backward pass of a 2-2-1-1 tanh network\n\n"
         "x = 2, y = 1, identity output, e = (x⁽³⁾ − y)². Bias weights are in row 0.",
         "cnncalc backprop --weights '[[0.1,0.2],[0.3,0.4]]' --weights '[[0.2],[1],[-3]]' "
         "--weights '[[1],[2]]' --x 2 --y 1 --activation tanh --output identity",
         "The seed rounds as it goes. It rounds x⁽²⁾ to −0.9 before squaring: θ'(s⁽²⁾) = "
         "1 − 0.9² = 0.19, where 1 − 0.901546² = 0.187215. So its δ⁽²⁾ = −1.368 should be "
         "−1.350266. It writes θ'(s⁽¹⁾) = [0.64, 0.43], where 1 − tanh²(1) = 0.419974. So its "
         "δ⁽¹⁾ = [−0.87, 1.76] should be [−0.857067, 1.701231], and its gradients inherit both "
         "slips. The values above are right to the 15 digits shown; the tests check them "
         "against torch autograd."),
    Step("## Q3. Standard versus bottleneck residual block\n\nThe standard block, on "
         "32×56×56, with biased convolutions as in the seed:",
         "cnncalc params --input 32x56x56 "
         "--layers 'residual(conv(32,k=3,p=1), bn, relu, conv(32,k=3,p=1), bn)'"),
    Step("The bottleneck block, on 128×56×56:",
         "cnncalc params --input 128x56x56 --layers 'residual(conv(32,k=1), bn, relu, "
         "conv(32,k=3,p=1), bn, relu, conv(128,k=1), bn)'"),
    Step("## Q4. The shapes of batch-norm statistics\n\n(a) After a fully connected layer "
         "(N×C):",
         "cnncalc norm --kind batch --shape NxC"),
    Step("(b) After a convolution. In PyTorch's N×C×H×W the statistics are 1×C×1×1; the "
         "seed's N×H×W×C layout gives 1×1×1×C for the same C values.",
         "cnncalc norm --kind batch --shape NxCxHxW"),
    Step("## Q5. Convolution as a matrix (the same problem as seed 002 Q3)",
         "cnncalc matrix --length 4 --in-channels 2 --out-channels 2 --kernel 3 --backward "
         "--show-work",
         "The seed's A has a wrong second row: it shows w¹² and w²², where the row that computes "
         "y₁₂ must hold w¹¹ and w²¹. Its B and its flipped kernels in (c) are right."),
]

PAGES = {
    "seed002.md": ("Seed 002: COM S 573 Homework 5", "002_a4ecf2d2404f0d81.txt", SEED002),
    "seed003.md": ("Seed 003: CSCI 5527 Homework 3", "003_41ec7421a7538872.txt", SEED003),
    "seed004.md": ("Seed 004: CSCE 636 Assignment 2", "004_b7a2873f8f354012.txt", SEED004),
}


def build() -> dict[str, str]:
    return {name: page(*spec) for name, spec in PAGES.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the pages on disk instead of writing them")
    args = parser.parse_args()
    pages = build()
    stale = [n for n, text in pages.items()
             if not (HERE / n).exists() or (HERE / n).read_text(encoding="utf-8") != text]
    if args.check:
        for name in stale:
            print(f"{name} is out of date: run python examples/homework/make_pages.py")
        return 1 if stale else 0
    for name, text in pages.items():
        tmp = HERE / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(HERE / name)  # atomic: a reader never sees half a page
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
