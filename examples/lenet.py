"""Train the convolutional-networks homework's LeNet-5 (problem 4) with our kernels, with
PyTorch, or with both.

    python examples/lenet.py                                   # kernels engine, digits
    python examples/lenet.py --engine torch
    python examples/lenet.py --engine torch+kernels --dataset mnist --data-dir ~/data/mnist
    python examples/lenet.py --epochs 20 --resume              # continue from --out
    python examples/lenet.py --benchmark                       # kernels vs torch, images/s

Engines: ``kernels`` is :mod:`kernels.nn` with :class:`kernels.optim.Adam` (no torch);
``torch`` is plain ``torch.nn`` with ``torch.optim.Adam``; ``torch+kernels`` is the same
torch model with its conv and pooling layers and its optimizer from
:mod:`kernels.torch`. Every engine starts from the same weights (drawn by
:func:`kernels.nn.lenet5` from ``--seed``) and sees the batches in the same order,
which depends only on the seed and the epoch, so a run stopped after any epoch and
resumed from its checkpoint (``--out``/checkpoint.npz, written atomically after every
epoch) ends with exactly the weights of an uninterrupted run.

Data comes from :mod:`kernels.datasets`. Without ``--data-dir``, mnist and cifar10 fall
back to scikit-learn's digits, resized to the network's input (1x28x28 and 3x32x32).
Writes ``lenet.png`` (loss and accuracy per epoch) and the checkpoint into ``--out``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from dataclasses import dataclass, field

import numpy as np

ENGINES = ("kernels", "torch", "torch+kernels")
DATASETS = ("digits", "mnist", "cifar10")
# the network's input for each data set: (channels, image size)
INPUTS = {"digits": (1, 28), "mnist": (1, 28), "cifar10": (3, 32)}
EVAL_BATCH = 1000
CHECKPOINT = "checkpoint.npz"
PLOT = "lenet.png"
# the settings a resumed run must share with the checkpoint it continues
RESUME_KEYS = ("engine", "dataset", "seed", "batch_size", "lr", "lr_decay", "limit")


class Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with every option's default, except the empty ones (flags, None)."""

    def _get_help_string(self, action):
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message):
        fail(message)


def fail(message: str):
    from cnncalc.cli import clip  # a value thousands of characters long is cut short
    print(f"lenet.py: error: {clip(str(message))}", file=sys.stderr)
    raise SystemExit(2)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def make_parser() -> Parser:
    p = Parser(prog="lenet.py", description="Train LeNet-5 (the convolutional-networks homework, "
               "problem 4) with our kernels, PyTorch, or PyTorch with our kernels inside.",
               formatter_class=Defaults)
    p.add_argument("--engine", choices=ENGINES, default="kernels", help="what trains the net")
    p.add_argument("--dataset", choices=DATASETS, default="digits", help="the images")
    p.add_argument("--data-dir", help="folder with the MNIST or CIFAR-10 files; without it "
                   "mnist and cifar10 fall back to the digits")
    p.add_argument("--epochs", type=positive_int, default=12,
                   help="train up to this epoch (counting the checkpoint's with --resume)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="images per step")
    p.add_argument("--lr", type=positive_float, default=4e-3, help="Adam's learning rate")
    p.add_argument("--lr-decay", type=positive_float, default=0.8,
                   help="multiply the learning rate by this after every epoch")
    p.add_argument("--seed", type=int, default=0,
                   help="draws the initial weights and the order of the batches")
    p.add_argument("--out", default=os.path.join("out", "lenet"),
                   help="folder for the checkpoint and the plot")
    p.add_argument("--threads", type=positive_int, default=os.cpu_count() or 1,
                   help="threads for torch and for our kernels (default: every core, "
                   "%(default)s here)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint in --out up to --epochs")
    p.add_argument("--benchmark", action="store_true",
                   help="one epoch of MNIST-shaped random data (60,000 images, batch 64) "
                   "with the kernels and the torch engines; prints images/s")
    # for the tests: fewer benchmark images, and a cut-down data set
    p.add_argument("--benchmark-images", type=positive_int, default=60_000,
                   help=argparse.SUPPRESS)
    p.add_argument("--limit", type=positive_int, default=None, help=argparse.SUPPRESS)
    return p


def parse_args(argv=None) -> argparse.Namespace:
    args = make_parser().parse_args(argv)
    if args.dataset == "digits" and args.data_dir is not None:
        fail("--data-dir: the digits data set ships with scikit-learn and takes no files")
    return args


# ---------------------------------------------------------------- data

def load_data(args, console):
    """The split for ``args.dataset`` at the network's input size (digits as a fallback)."""
    from kernels import datasets

    channels, size = INPUTS[args.dataset]
    if args.dataset != "digits" and args.data_dir is None:
        console.print(f"[yellow]note:[/] no --data-dir, so {args.dataset} falls back to "
                      f"the digits data set resized to {channels}x{size}x{size}")
        split = datasets.load_digits(image_size=size, channels=channels)
    else:
        split = datasets.load(args.dataset, args.data_dir, image_size=size, channels=channels)
    if args.limit is not None:
        split = datasets.Split(split.x_train[:args.limit], split.y_train[:args.limit],
                               split.x_test[:args.limit], split.y_test[:args.limit])
    return split


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The shuffle of epoch ``epoch``: a function of the seed and the epoch only."""
    return np.random.default_rng([seed, epoch]).permutation(n)


# ---------------------------------------------------------------- engines

class KernelsEngine:
    """kernels.nn's LeNet and kernels.optim.Adam: NumPy arrays, float32 throughout."""

    name = "kernels"

    def __init__(self, model, lr: float):
        from kernels import nn, optim

        self.model = model
        self.loss_fn = nn.CrossEntropyLoss()
        self.optimizer = optim.Adam(model.parameters(), lr=lr)

    def set_lr(self, lr: float) -> None:
        self.optimizer.hyperparameters["lr"] = lr

    def train_step(self, x, y) -> tuple[float, int]:
        logits = self.model.forward(x)
        loss = self.loss_fn.forward(logits, y)
        self.model.backward(self.loss_fn.backward())
        self.optimizer.step(self.model.gradients())
        return loss, int((logits.argmax(axis=1) == y).sum())

    def predict(self, x) -> np.ndarray:
        self.model.eval()
        try:
            return self.model.forward(x)
        finally:
            self.model.train()

    def checkpoint_parts(self):
        return self.model, self.optimizer


class TorchModelState:
    """A torch module seen through kernels.nn's ``state_dict`` interface (NumPy arrays),
    so :func:`kernels.nn.save` / ``load`` can checkpoint it without pickle."""

    def __init__(self, module):
        self.module = module

    def state_dict(self) -> dict:
        return {k: v.detach().numpy().copy() for k, v in self.module.state_dict().items()}

    def load_state_dict(self, state) -> None:
        import torch

        own = self.module.state_dict()
        if set(state) != set(own):
            raise ValueError(f"names differ: expected {sorted(own)}, got {sorted(state)}")
        for k, v in own.items():
            if tuple(v.shape) != np.shape(state[k]):
                raise ValueError(f"{k} has shape {np.shape(state[k])}, expected {tuple(v.shape)}")
        self.module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})


class TorchOptimizerState:
    """A torch optimizer (one param group) seen through kernels.optim's ``state_dict``
    format: ``{"hyperparameters": group, "state": [{"step": int, name: array}, ...]}``."""

    def __init__(self, optimizer):
        self.optimizer = optimizer

    def state_dict(self) -> dict:
        sd = self.optimizer.state_dict()
        (group,) = sd["param_groups"]
        state = [{k: int(v.item()) if k == "step" else v.numpy().copy()
                  for k, v in sd["state"].get(i, {}).items()} for i in group["params"]]
        return {"hyperparameters": {k: v for k, v in group.items() if k != "params"},
                "state": state}

    def load_state_dict(self, sd) -> None:
        import torch

        current = self.optimizer.state_dict()
        (group,) = current["param_groups"]
        if set(sd["hyperparameters"]) != set(group) - {"params"}:
            raise ValueError("the optimizer's hyperparameters differ from the checkpoint's")
        if len(sd["state"]) != len(group["params"]):
            raise ValueError(f"state for {len(sd['state'])} parameters, expected "
                             f"{len(group['params'])}")
        state = {i: {k: torch.tensor(float(v)) if k == "step" else torch.from_numpy(np.array(v))
                     for k, v in s.items()} for i, s in zip(group["params"], sd["state"]) if s}
        self.optimizer.load_state_dict(
            {"state": state, "param_groups": [{**group, **sd["hyperparameters"]}]})


class TorchEngine:
    """The same LeNet in torch.nn with torch.optim.Adam, or, ``with_kernels``, with the
    conv and pooling layers and Adam from kernels.torch."""

    def __init__(self, model, lr: float, with_kernels: bool):
        import torch

        self.torch = torch
        self.name = "torch+kernels" if with_kernels else "torch"
        if with_kernels:
            import kernels.torch as kt
            conv, pool, adam = kt.Conv2d, kt.MaxPool2d, kt.Adam
        else:
            conv, pool, adam = torch.nn.Conv2d, torch.nn.MaxPool2d, torch.optim.Adam
        self.model = to_torch(model, conv, pool)
        self.optimizer = adam(self.model.parameters(), lr=lr)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def train_step(self, x, y) -> tuple[float, int]:
        torch = self.torch
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(xt)
        loss = torch.nn.functional.cross_entropy(logits, yt)
        loss.backward()
        self.optimizer.step()
        return loss.item(), int((logits.argmax(dim=1) == yt).sum())

    def predict(self, x) -> np.ndarray:
        self.model.eval()
        try:
            with self.torch.no_grad():
                return self.model(self.torch.from_numpy(x)).numpy()
        finally:
            self.model.train()

    def checkpoint_parts(self):
        return TorchModelState(self.model), TorchOptimizerState(self.optimizer)


def to_torch(model, conv, pool):
    """The torch.nn twin of a kernels.nn Sequential, with the same weights."""
    import torch

    from kernels import nn

    layers = []
    for layer in model.layers:
        if isinstance(layer, nn.Conv2d):
            layers.append(conv(layer.in_channels, layer.out_channels, layer.kernel_size,
                               layer.stride, layer.padding, bias=layer.bias is not None))
        elif isinstance(layer, nn.MaxPool2d):
            layers.append(pool(layer.kernel_size, layer.stride))
        elif isinstance(layer, nn.Linear):
            layers.append(torch.nn.Linear(layer.in_features, layer.out_features,
                                          bias=layer.bias is not None))
        elif isinstance(layer, nn.ReLU):
            layers.append(torch.nn.ReLU())
        elif isinstance(layer, nn.Flatten):
            layers.append(torch.nn.Flatten())
        else:
            raise TypeError(f"no torch twin for {type(layer).__name__}")
    twin = torch.nn.Sequential(*layers)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    return twin


def make_engine(name: str, channels: int, size: int, n_classes: int, lr: float, seed: int):
    from kernels import nn

    model = nn.lenet5(channels, size, n_classes, rng=np.random.default_rng(seed))
    if name == "kernels":
        return KernelsEngine(model, lr)
    return TorchEngine(model, lr, with_kernels=name == "torch+kernels")


# ---------------------------------------------------------------- training

@dataclass
class History:
    loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    images_per_s: list[float] = field(default_factory=list)


def accuracy(engine, x, y) -> float:
    correct = 0
    for i in range(0, len(x), EVAL_BATCH):
        correct += int((engine.predict(x[i:i + EVAL_BATCH]).argmax(axis=1)
                        == y[i:i + EVAL_BATCH]).sum())
    return correct / len(x)


def train_epoch(engine, x, y, batch_size: int, order, progress, label: str):
    """One pass over ``x[order]`` (``x`` for None) in batches; returns (mean loss,
    accuracy, images/s)."""
    # NOTE: one shuffled copy per epoch, so every batch is a contiguous view (no copies)
    xs, ys = (x, y) if order is None else (x[order], y[order])
    n = len(xs)
    task = progress.add_task(label, total=n)
    total_loss, correct = 0.0, 0
    start = time.perf_counter()
    for i in range(0, n, batch_size):
        xb, yb = xs[i:i + batch_size], ys[i:i + batch_size]
        loss, right = engine.train_step(xb, yb)
        total_loss += loss * len(xb)
        correct += right
        progress.update(task, advance=len(xb), description=f"{label} loss {loss:.3f}")
    seconds = time.perf_counter() - start
    progress.remove_task(task)
    return total_loss / n, correct / n, n / seconds


def progress_bar(console):
    """A bar within the epoch (images done, images/s, time left), shown from the first
    batch, so that a first run that compiles the kernels does not look hung. Rich draws
    it only on a terminal; in a pipe or a test the output stays the epoch lines."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Speed(ProgressColumn):
        def render(self, task):
            return Text("" if task.speed is None else f"{task.speed:,.0f} images/s")

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    Speed(), TimeRemainingColumn(), console=console, transient=True)


def plot(history: History, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history.loss) + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3))
    left.plot(epochs, history.loss, marker="o")
    left.set(xlabel="epoch", ylabel="training loss", yscale="log")
    right.plot(epochs, np.multiply(history.train_acc, 100), marker="o", label="train")
    right.plot(epochs, np.multiply(history.test_acc, 100), marker="s", label="test")
    right.set(xlabel="epoch", ylabel="accuracy (%)")
    right.legend()
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, path)


def settings(args) -> dict:
    return {k: getattr(args, k) for k in RESUME_KEYS}


class Interrupted(Exception):
    """Ctrl-C during training; carries the one line that says what was saved."""


# an .npz is a zip archive: a file that does not start so is not a checkpoint at all
NPZ_MAGIC = b"PK\x03\x04"


def resume_point(args, path: str) -> tuple[int, History]:
    """The epoch and history of the checkpoint ``--resume`` continues, checked against
    ``args`` before any data is loaded or any kernel compiled."""
    from kernels import nn

    try:
        with open(path, "rb") as f:
            is_npz = f.read(4) == NPZ_MAGIC
    except FileNotFoundError:
        fail(f"--resume: there is no checkpoint {path} (train without --resume first, "
             "or give the --out of an earlier run)")
    if not is_npz:
        fail(f"--resume: {path} is not an .npz checkpoint (this example writes one after "
             "every epoch); give another --out")
    meta = nn.load_meta(path)
    try:
        theirs, epoch, history = meta["settings"], int(meta["epoch"]), History(**meta["history"])
    except (KeyError, TypeError, ValueError):
        fail(f"--resume: {path} is not a checkpoint of this example")
    for key, ours in settings(args).items():
        if theirs.get(key) != ours:
            fail(f"--resume: the checkpoint {path} was made with {key}={theirs.get(key)!r}, "
                 f"not {ours!r}")
    if epoch >= args.epochs:
        fail(f"--resume: the checkpoint {path} is already at epoch {epoch}, so --epochs "
             f"{args.epochs} leaves nothing to train; give --epochs {epoch + 1} or more")
    return epoch, history


def resume_command(args) -> str:
    """The command line that continues this run: ``--resume`` plus every option that
    differs from its default."""
    parser = make_parser()
    words = ["python", "examples/lenet.py", "--resume"]
    for key in (*RESUME_KEYS, "data_dir", "epochs", "out"):
        value = getattr(args, key)
        if value != parser.get_default(key):
            words += [f"--{key.replace('_', '-')}", shlex.quote(str(value))]
    return " ".join(words)


def train(args, console) -> History:
    from kernels import nn

    path = os.path.join(args.out, CHECKPOINT)
    start, history = resume_point(args, path) if args.resume else (0, History())
    split = load_data(args, console)
    channels, size = split.x_train.shape[1], split.x_train.shape[2]
    n_classes = int(max(split.y_train.max(), split.y_test.max())) + 1
    engine = make_engine(args.engine, channels, size, n_classes, args.lr, args.seed)
    if args.resume:
        nn.load(path, *engine.checkpoint_parts())
    console.print(f"LeNet-5 on {args.dataset} ({len(split.x_train)} train, "
                  f"{len(split.x_test)} test, {channels}x{size}x{size}), engine "
                  f"{engine.name}, epochs {start + 1}..{args.epochs}")
    os.makedirs(args.out, exist_ok=True)
    try:
        train_epochs(args, engine, split, start, history, path, console)
    except KeyboardInterrupt:
        done = len(history.loss)  # the epochs in the checkpoint
        if not done:
            raise Interrupted("interrupted in epoch 1, before the first checkpoint; "
                              "nothing saved") from None
        raise Interrupted(f"interrupted in epoch {done + 1}: the checkpoint after epoch "
                          f"{done} is in {path}; continue with: {resume_command(args)}") from None
    if history.loss:
        plot(history, os.path.join(args.out, PLOT),
             f"LeNet-5, {args.dataset}, engine {engine.name}")
        console.print(f"final test accuracy {100 * history.test_acc[-1]:.2f}%  "
                      f"(mean {np.mean(history.images_per_s):,.0f} training images/s); "
                      f"plot and checkpoint in {args.out}")
    return history


def train_epochs(args, engine, split, start: int, history: History, path: str, console):
    """Epochs ``start + 1`` to ``args.epochs``, a checkpoint after each."""
    from kernels import nn

    with progress_bar(console) as progress:
        for epoch in range(start, args.epochs):
            order = epoch_order(args.seed, epoch, len(split.x_train))
            engine.set_lr(args.lr * args.lr_decay**epoch)  # a function of the epoch only
            loss, train_acc, speed = train_epoch(engine, split.x_train, split.y_train,
                                                 args.batch_size, order, progress,
                                                 f"epoch {epoch + 1}/{args.epochs}")
            test_acc = accuracy(engine, split.x_test, split.y_test)
            row = {"loss": loss, "train_acc": train_acc, "test_acc": test_acc,
                   "images_per_s": speed}
            nn.save(path, *engine.checkpoint_parts(), epoch=epoch + 1, settings=settings(args),
                    history={k: [*v, row[k]] for k, v in history.__dict__.items()})
            for name, value in row.items():  # only once saved: the history is what is saved
                getattr(history, name).append(value)
            progress.console.print(
                f"epoch {epoch + 1:3d}  loss {loss:.4f}  train {100 * train_acc:6.2f}%  "
                f"test {100 * test_acc:6.2f}%  {speed:,.0f} images/s")


# ---------------------------------------------------------------- benchmark

class Profile:
    """Wall time of each layer's forward and backward, the loss and the optimizer step of
    a :class:`KernelsEngine` (wraps the instance methods; ~1 µs per call)."""

    def __init__(self, engine: KernelsEngine):
        self.rows = {}
        for i, layer in enumerate(engine.model.layers):
            name = f"{i}: {type(layer).__name__}"
            if hasattr(layer, "weight"):
                name += f" {'x'.join(map(str, layer.weight.shape))}"
            self._wrap(layer, "forward", name, "forward")
            self._wrap(layer, "backward", name, "backward")
        self._wrap(engine.loss_fn, "forward", "cross-entropy loss", "forward")
        self._wrap(engine.loss_fn, "backward", "cross-entropy loss", "backward")
        self._wrap(engine.optimizer, "step", "Adam step", "forward")

    def _wrap(self, obj, method: str, name: str, column: str) -> None:
        row = self.rows.setdefault(name, {"forward": 0.0, "backward": 0.0})
        inner = getattr(obj, method)

        def timed(*args):
            t0 = time.perf_counter()
            out = inner(*args)
            row[column] += time.perf_counter() - t0
            return out
        setattr(obj, method, timed)

    def table(self, epoch_seconds: float):
        from rich.table import Table

        table = Table(title="kernels engine: where one epoch's time goes")
        for col in ("", "forward s", "backward s", "share"):
            table.add_column(col, justify="right" if col else "left")
        for name, r in self.rows.items():
            share = (r["forward"] + r["backward"]) / epoch_seconds
            table.add_row(name, f"{r['forward']:.2f}", f"{r['backward']:.2f}" if r["backward"]
                          else "", f"{100 * share:.1f}%")
        rest = epoch_seconds - sum(r["forward"] + r["backward"] for r in self.rows.values())
        table.add_row("the rest (batching, Python)", f"{rest:.2f}", "",
                      f"{100 * rest / epoch_seconds:.1f}%")
        table.add_row("epoch", f"{epoch_seconds:.2f}", "", "100%")
        return table


def benchmark(args, console, segments: int = 10) -> dict[str, float]:
    """images/s of one training epoch on random MNIST-shaped data, for each engine.

    NOTE: the epoch is cut into ``segments`` runs of batches, and the engines take turns
    on each (who goes first alternates), so a machine whose speed drifts during the run
    (other load, a noisy neighbour on a VM) skews both engines alike. Each engine still
    trains on every image once."""
    rng = np.random.default_rng(args.seed)
    n = args.benchmark_images
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, n)
    segments = max(1, min(segments, n // 64))  # each segment holds whole batches
    console.print(f"one epoch of {n:,} random 1x28x28 images, batch 64, Adam, "
                  f"{args.threads} thread(s), engines taking turns over {segments} segments")
    names = ("kernels", "torch")
    engines = {name: make_engine(name, 1, 28, 10, args.lr, args.seed) for name in names}
    for engine in engines.values():
        engine.train_step(x[:64], y[:64])  # compile / warm up outside the timing
    profile = Profile(engines["kernels"])
    seconds = dict.fromkeys(names, 0.0)
    cuts = np.linspace(0, n // 64, segments + 1).astype(int) * 64
    cuts[-1] = n
    with progress_bar(console) as progress:
        for k, (lo, hi) in enumerate(zip(cuts[:-1], cuts[1:])):
            for name in names[::1 if k % 2 == 0 else -1]:
                _, _, speed = train_epoch(engines[name], x[lo:hi], y[lo:hi], 64, None,
                                          progress, f"{name} {k + 1}/{segments}")
                seconds[name] += (hi - lo) / speed
    speeds = {name: n / seconds[name] for name in names}
    for name in names:
        console.print(f"{name:8s} {speeds[name]:10,.0f} images/s")
    console.print(f"kernels / torch: {speeds['kernels'] / speeds['torch']:.2f}")
    console.print(profile.table(seconds["kernels"]))
    return speeds


def steady_malloc() -> None:
    """Keep freed memory in the process (glibc ``mallopt``), for both engines alike.

    NOTE: by default glibc hands blocks above ~128 KiB back to the OS when freed and
    page-faults them in again on the next allocation; a training step allocates its
    activations anew each time, and in this VM those faults made ReLU and pooling
    several times slower than the arithmetic. A no-op where libc is not glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    mallopt(M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest allowed value
    mallopt(M_TRIM_THRESHOLD, 512 << 20)


def use_threads(n: int) -> None:
    """``n`` threads for torch and Numba (Numba cannot go above its start-up count).

    NOTE: NumPy's BLAS (the kernels engine's fc layers) gets one thread: LeNet's GEMMs
    (at most 64x400 by 400x120) take ~0.1 ms, less than waking a thread pool, and a
    pool that spins while other processes hold the cores made them 20x slower here."""
    import numba
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    threadpool_limits(1, user_api="blas")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except Interrupted as e:
        print(f"lenet.py: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("lenet.py: interrupted; the benchmark saves nothing" if args.benchmark else
              "lenet.py: interrupted outside an epoch; every checkpoint is written whole, so "
              f"{os.path.join(args.out, CHECKPOINT)}, if there, is intact", file=sys.stderr)
    return 130  # the shell's status for Ctrl-C


def run(args) -> int:
    from rich.console import Console

    console = Console(highlight=False)
    use_threads(args.threads)
    steady_malloc()
    from kernels import datasets, nn

    try:
        if args.benchmark:
            benchmark(args, console)
        else:
            train(args, console)
    except (datasets.DatasetError, nn.CheckpointError, OSError) as e:
        fail(str(e))  # a bad --data-dir, --out or checkpoint: one line, not a traceback
    return 0


if __name__ == "__main__":
    sys.exit(main())
