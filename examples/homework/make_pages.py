"""Walk through three courses' homework with cnncalc: one Markdown page per homework set.

Every command below runs for real and its output is pasted into the page, so a
student can follow along in a terminal. Where the published worked solution is
wrong, the page says so and why.

    python examples/homework/make_pages.py           # (re)write the pages
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
    note: str = ""  # where the published solution goes wrong, and why


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


def page(title: str, course: str, steps: list[Step]) -> str:
    lines = [f"# {title}", "",
             f"{course}. Each section states a problem and works it with cnncalc; each "
             "block is a real command and its real output (regenerate the page with "
             "`python examples/homework/make_pages.py`). Where the solution published with "
             "the homework is wrong, the page says so and why.", ""]
    for step in steps:
        lines += [step.text, ""]
        if step.command:
            code, output = run(step.command)
            status = "" if code == 0 else f"   # exits {code}"
            lines += ["```", f"$ {step.command}{status}", output, "```", ""]
        if step.note:
            lines += [f"> **Where the published solution goes wrong.** {step.note}", ""]
    return "\n".join(lines).rstrip() + "\n"


CONVOLUTIONAL_NETWORKS = [
    Step("## Problem 1. Two 3×3 convolutions on a 64×64×128 input\n\n"
         "**The problem.** A block of two 3×3 convolutions, 256 then 512 filters, the first "
         "with stride 2, takes a 64×64×128 (H×W×C) input; each pads by 1 on every side and "
         "has no bias. (a) How many parameters does the block have? (b) How many "
         "multiply-adds does it do? (c) By what percentage does the memory that stores its "
         "input and output features change? `--layout hwc` reads the input as H×W×C, as the "
         "problem writes it.",
         "cnncalc params --input 64x64x128 --layout hwc --no-bias "
         "--layers 'conv(256,k=3,s=2,p=1), conv(512,k=3,p=1)' --show-work",
         "The published solution writes the first output size as (63−3+2)/2+1 = 32. The "
         "input is 64 wide, and the formula needs a floor: ⌊(64+2−3)/2⌋+1 = ⌊31.5⌋+1 = 32. For "
         "(c) it says the "
         "second stage \"increases to 50 percent\". 32×32×256 → 32×32×512 doubles the stored "
         "activations, which is +100%. Overall, input to output, the change is 0%, as the "
         "published solution concludes."),
    Step("## Problem 2 (a)–(b). Batch normalization of a 3×4 mini-batch\n\n"
         "**The problem.** A batch-norm layer follows a fully connected layer of 3 units and "
         "receives a mini-batch of m = 4 examples: the matrix below, whose rows are the "
         "units and whose columns are the examples. With ε = 0, (a) compute ẑ, and (b) "
         "compute z̃ for γ = (1, 1, 1) and β = (0, −10, 10).",
         "cnncalc norm --kind batch '[[12,14,14,12],[0,10,10,0],[-5,5,5,-5]]' "
         "--gamma 1,1,1 --beta 0,-10,10 --eps 0 --show-work"),
    Step("## Problem 2 (c)–(d). Training versus testing\n\n"
         "**The problem.** (c) How does batch normalization compute differently in training "
         "and in testing? (d) How does the batch size at test time affect the results? The "
         "shapes of the statistics, and what batch norm does in inference. The running "
         "statistics make an example's output independent of its test batch.",
         "cnncalc norm --kind batch --shape NxC",
         "The published solution describes the test-time mean as the plain mean of the "
         "batch means. PyTorch keeps an exponential moving average (momentum 0.1) of the means "
         "and of the "
         "*unbiased* variances. The conclusion in (d) holds only in inference mode "
         "(`model.eval()`)."),
    Step("## Problem 3. Convolution as a matrix, and its backward pass\n\n"
         "**The problem.** A 1-D input X of 2 channels and length 4 is convolved with "
         "kernels of size 3 into 2 output channels, with no padding and no bias. (a) Write "
         "the convolution as a fully connected layer Ỹ = A X̃, with X and Y flattened "
         "channel by channel. (b) Write the backward pass ∂L/∂X̃ = B ∂L/∂Ỹ. (c) Is the "
         "backward pass a convolution too, and with which kernels? cnncalc verifies (c) "
         "itself, entry by entry.",
         "cnncalc matrix --length 4 --in-channels 2 --out-channels 2 --kernel 3 --backward",
         "In (c) the published solution flips the first kernel but leaves the second unflipped: "
         "[w₁²¹ w₂²¹ w₃²¹; w₁²² w₂²² w₃²²]. From the definition, ∂L/∂x₂₁ = w₁²¹·∂L/∂y₁₁ + "
         "w₁²²·∂L/∂y₂₁, so w₁ must sit at the last tap: [w₃²¹ w₂²¹ w₁²¹; w₃²² w₂²² w₁²²]. In "
         "(a) it labels the rows of Ỹ y₁₁, y₁₂, y₁₃, y₁₄; they are y₁₁, y₁₂, y₂₁, y₂₂."),
    Step("## Problem 4. LeNet for CIFAR-10: what it costs\n\n"
         "**The problem.** Implement LeNet-5 (two 5×5 convolutions, each with ReLU and max "
         "pooling, then fully connected layers of 120, 84 and 10 units) in PyTorch and train "
         "it on CIFAR-10. `python examples/lenet.py` trains it ([the examples]"
         "(../../docs/examples.md#lenet)). Here is its cost on a 3×32×32 image.",
         "cnncalc params --model lenet5 --input 3x32x32"),
]

CORRELATION_NORMALIZATION = [
    Step("## Problem 1. Stochastic optimizers on MNIST\n\n"
         "**The problem.** Train a shallow network on MNIST with Adagrad, RMSprop and Adam, "
         "written by hand, and compare them with torch.optim's. It is a coding problem: "
         "`python examples/optimizers.py` works it ([the "
         "examples](../../docs/examples.md#optimizers))."),
    Step("## Problem 2 (a). [3, 2, 1] ⋆ [4, 6, 3, 9]\n\n"
         "**The problem.** Compute [3, 2, 1] ⋆ [4, 6, 3, 9], where x ⋆ y slides x over a "
         "fixed y. Is x ⋆ y = y ⋆ x in general, and if not, how are they related? They are "
         "not: x ⋆ y = reverse(y ⋆ x).",
         "cnncalc correlate 3,2,1 4,6,3,9 --show-work"),
    Step("## Problem 2 (b). w ⋆ x = C_w x\n\n**The problem.** Write w ⋆ x, for w of "
         "length 3 and x of length 4, as a matrix product C_w x. C_w is 6×4.",
         "cnncalc correlate w1,w2,w3 x1,x2,x3,x4 --matrix"),
    Step("## Problem 2 (c). The Jacobian ∂(w ⋆ x)/∂w = C_x\n\n"
         "**The problem.** Find the Jacobian of w ⋆ x with respect to w. w ⋆ x is linear in w, "
         "so it can be written w ⋆ x = C_x w; its Jacobian is C_x.",
         "cnncalc correlate w1,w2,w3 x1,x2,x3,x4 --jacobian"),
    Step("The same matrix, seen as a convolution layer's weight Jacobian: one channel in and "
         "out, kernel 3, padding 2 (the full correlation).",
         "cnncalc matrix --length 4 --kernel 3 --padding 2 --jacobian"),
    Step("## Problem 2 (d)–(g). Correlation in two dimensions\n\n"
         "**The problem.** Implement 2-D correlation and check it against scipy, compute the "
         "gradient magnitude of an image, find a template in a noisy image, and write a "
         "multichannel correlation as a convolution layer. These are coding problems: "
         "`python examples/correlation.py` works them ([the examples]"
         "(../../docs/examples.md#correlation-and-template-matching))."),
    Step("## Problem 3. The normalization zoo on an H×W×C×N = 50×50×64×64 tensor\n\n"
         "**The problem.** Batch, layer, instance and group norm each compute a mean and a "
         "variance over different slices of the tensor: which? Why is there an ε in the "
         "denominator? The coding part, each norm against torch's, is `python "
         "examples/norm_zoo.py` ([the examples](../../docs/examples.md#the-normalization-zoo)). "
         "Here: which "
         "slices share one mean and variance. Torch's layout is N×C×H×W.",
         "cnncalc norm --shape 64x64x50x50"),
    Step("Why is there an ε in the denominator? With ε = 0, a slice whose values are all "
         "equal has σ² = 0, and ẑ = 0/0:",
         "cnncalc norm --kind batch '[[1,1,1],[0,2,4]]' --eps 0"),
    Step("With the default ε = 10⁻⁵ the same data normalizes, and the constant slice becomes 0:",
         "cnncalc norm --kind batch '[[1,1,1],[0,2,4]]'"),
    Step("## Problem 4. Transfer learning: what freezing saves\n\n"
         "**The problem.** Should one freeze all, some or none of a pretrained network's "
         "convolutional layers when fine-tuning it? cnncalc does not choose, but it prices "
         "each choice. Here is "
         "a pretrained ResNet-18 on 224×224 x-rays (grey, repeated to 3 channels), batch 32, "
         "trained with Adam, with every conv and batch norm frozen, so only the classifier "
         "trains. `--freeze 0-40` would instead fine-tune from the middle of the third stage, "
         "and dropping `--freeze` trains everything. The `freezing saves` line is the "
         "difference from training everything.",
         "cnncalc params --model resnet18 --batch 32 --optimizer adam --freeze conv,bn "
         "--format markdown"),
]

BACKPROPAGATION = [
    Step("## Problem 1. The derivative of tanh, and the gradient of a tanh perceptron\n\n"
         "**The problem.** Show that d tanh(x)/dx = 1 − tanh²(x), and find the gradient of "
         "E_in(w) = (1/N) Σₙ (tanh(wᵀxₙ) − yₙ)².",
         "cnncalc derive 'tanh(x)' --show-work"),
    Step("The gradient of one squared-error term (tanh(wᵀx) − y)² with respect to w; "
         "∇E_in(w) averages these terms over the examples.",
         "cnncalc derive '(tanh(w1*x1 + w2*x2) - y)**2' --wrt w1,w2"),
    Step("## Problem 2. Forward and backward pass of a 2-2-1-1 tanh network\n\n"
         "**The problem.** For the weights below, compute every signal s⁽ˡ⁾ and output "
         "x⁽ˡ⁾ of the forward pass, every sensitivity δ⁽ˡ⁾ of the backward pass, and the "
         "gradients ∂e/∂W⁽ˡ⁾. x = 2, y = 1, identity output, e = (x⁽³⁾ − y)². Bias weights are "
         "in row 0.",
         "cnncalc backprop --weights '[[0.1,0.2],[0.3,0.4]]' --weights '[[0.2],[1],[-3]]' "
         "--weights '[[1],[2]]' --x 2 --y 1 --activation tanh --output identity",
         "The published solution rounds as it goes. It rounds x⁽²⁾ to −0.9 before "
         "squaring: θ'(s⁽²⁾) = 1 − 0.9² = 0.19, where 1 − 0.901546² = 0.187215. So its δ⁽²⁾ = "
         "−1.368 should be "
         "−1.350266. It writes θ'(s⁽¹⁾) = [0.64, 0.43], where 1 − tanh²(1) = 0.419974. So its "
         "δ⁽¹⁾ = [−0.87, 1.76] should be [−0.857067, 1.701231], and its gradients inherit both "
         "slips. The values above are right to the 15 digits shown; the tests check them "
         "against torch autograd."),
    Step("## Problem 3. Standard versus bottleneck residual block\n\n"
         "**The problem.** Count the parameters and multiply-adds of a standard residual "
         "block (two 3×3 convolutions of 32 channels, each followed by batch norm) and of a "
         "bottleneck block (1×1 down to 32 channels, 3×3, 1×1 up to 128), and compare them. "
         "The standard block, on 32×56×56, with biased convolutions as the problem has them:",
         "cnncalc params --input 32x56x56 "
         "--layers 'residual(conv(32,k=3,p=1), bn, relu, conv(32,k=3,p=1), bn)'"),
    Step("The bottleneck block, on 128×56×56:",
         "cnncalc params --input 128x56x56 --layers 'residual(conv(32,k=1), bn, relu, "
         "conv(32,k=3,p=1), bn, relu, conv(128,k=1), bn)'"),
    Step("## Problem 4. The shapes of batch-norm statistics\n\n**The problem.** What "
         "shapes do batch norm's mean and variance have? (a) After a fully connected layer "
         "(N×C):",
         "cnncalc norm --kind batch --shape NxC"),
    Step("(b) After a convolution. In PyTorch's N×C×H×W the statistics are 1×C×1×1; the "
         "problem's N×H×W×C layout gives 1×1×1×C for the same C values.",
         "cnncalc norm --kind batch --shape NxCxHxW"),
    Step("## Problem 5. Convolution as a matrix\n\n**The problem.** The same as the "
         "convolutional-networks homework, problem 3: a 1-D convolution of 2 channels of "
         "length 4 into 2 channels, kernel 3, as a matrix A, its transpose B for the "
         "backward pass, and the backward pass as a convolution.",
         "cnncalc matrix --length 4 --in-channels 2 --out-channels 2 --kernel 3 --backward "
         "--show-work",
         "The published solution's A has a wrong second row: it shows w¹² and w²², where "
         "the row that computes y₁₂ must hold w¹¹ and w²¹. Its B and its flipped kernels in (c) "
         "are right."),
]

PAGES = {
    "convolutional-networks.md": (
        "The convolutional-networks homework",
        "COM S 573 (Machine Learning), Homework 5: the cost of a convolution block, batch "
        "normalization, the backward pass of a convolution written as a matrix, and LeNet-5 "
        "for CIFAR-10", CONVOLUTIONAL_NETWORKS),
    "correlation-and-normalization.md": (
        "The correlation and normalization homework",
        "CSCI 5527 (Deep Learning), Homework Set 3: stochastic optimizers, cross-correlation "
        "and template matching, the normalization zoo, and transfer learning",
        CORRELATION_NORMALIZATION),
    "backpropagation.md": (
        "The backpropagation homework",
        "CSCE 636 (Deep Learning), Assignment 2: the derivative of tanh, backpropagation "
        "through a small tanh network, standard versus bottleneck residual blocks, the "
        "shapes of batch-norm statistics, and convolution as a matrix", BACKPROPAGATION),
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
