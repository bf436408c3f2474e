"""Imperative vs compiled: eager PyTorch beside torch.compile and torch.export, measured.

    row = compare_compile(model, (x,), backend="inductor")          # forward, no_grad
    row = compare_compile(model, (x,), backend="inductor", train=True)  # forward + backward + SGD
    graph_breaks(model, (x,))["graph_breaks"]                        # where Dynamo had to stop
    print(fullgraph_error(DataDependentMLP(), (x,)))                 # the fullgraph=True error
    program, diff = export_and_check(model, (x,))                    # dynamic batch size
    rows = compile_rows(quick=True)                                  # mlp, cnn, lstm side by side

Eager mode runs each operation as Python reaches it. `torch.compile` lets Dynamo read the
Python bytecode of `forward`, record the tensor operations into FX graphs and hand each graph
to a backend: "inductor" writes fused C++/OpenMP kernels on a CPU (Triton on a GPU);
"aot_eager" only traces the forward and backward graphs with AOTAutograd and runs them with
ordinary ATen kernels (it checks graph capture without the C++ compiler); "eager" runs the
captured graph as it is. What Dynamo cannot put in a graph (a Python branch on a tensor's
value via `.item()`, a `print`, by default an `nn.LSTM` call) becomes a *graph break*: the
graph ends there, Python runs that piece, and a new graph starts. `fullgraph=True` turns the
first break into an error. `torch.export` demands one whole graph too and returns an
`ExportedProgram`: ATen operations plus the weights, no Python class needed to run it.

Timings are torch.utils.benchmark.Timer means over blocks of calls, eager and compiled blocks
alternating, the median block kept (a busy machine slows both sides alike). Compile time is
the first compiled call, measured once after `torch._dynamo.reset()`: it includes one run of
the model and, unless `fresh_cache` is set, may reuse kernels that Inductor cached on disk
in an earlier process (dlcamp.train.speed.compile_cache_dir, one folder per CPU capability).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch._dynamo
import torch.utils._pytree as pytree
from torch import Tensor, nn
from torch.export import Dim, ExportedProgram
from torch.utils.benchmark import Timer

from dlcamp.models import create_model
from dlcamp.train.speed import compile_cache_dir

Example = tuple[Tensor, ...]
LossFn = Callable[[Any], Tensor]


class DataDependentMLP(nn.Module):
    """An MLP whose forward branches in Python on a tensor's value: a graph break.

    (B, 1, 28, 28) -> (B, 10). `.item()` copies the mean activation out to a Python float and
    `if` picks a path with it, so Dynamo cannot record one graph for every input: it stops
    the graph before `.item()` and starts another after the branch.
    """

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 10)

    def forward(self, x: Tensor) -> Tensor:
        h = self.hidden(x)
        if h.mean().item() > 1.0:  # a Python decision taken on data
            h = h / h.mean()
        return self.head(h)


# -- small pieces ---------------------------------------------------------------------------
def tensors_of(output: Any) -> list[Tensor]:
    """The tensors in a (nested) output: a tensor, or tuples/lists/dicts of them."""
    return [t for t in pytree.tree_leaves(output) if isinstance(t, Tensor)]


def max_abs_diff(a: Any, b: Any) -> float:
    """Largest |a - b| over all tensors of two outputs of the same structure."""
    pairs = list(zip(tensors_of(a), tensors_of(b), strict=True))
    return max((float((x.detach().float() - y.detach().float()).abs().max()) for x, y in pairs
                if x.numel()), default=0.0)


def classification_loss(output: Any) -> Tensor:
    """Cross-entropy of the first output (logits (..., C)) against fixed labels 0, 1, 2, ...

    The labels depend only on the shape, so eager and compiled copies get the same loss.
    """
    logits = tensors_of(output)[0]
    flat = logits.reshape(-1, logits.shape[-1]).float()
    labels = torch.arange(flat.shape[0], device=flat.device) % flat.shape[1]
    return nn.functional.cross_entropy(flat, labels)


@contextlib.contextmanager
def quiet_dynamo() -> Iterator[None]:
    """Hide Dynamo's graph-break warnings (their content is reported by `graph_breaks`)."""
    logger = logging.getLogger("torch._dynamo")
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


def graph_breaks(model: nn.Module, example: Example) -> dict[str, Any]:
    """Run `model(*example)` under torch._dynamo.explain: {"graphs", "graph_breaks",
    "reasons"} where graph_breaks counts the places Dynamo stopped a graph (its break
    reasons; a break just before the end of forward leaves no second graph but still counts)
    and reasons holds the first line of each with the file, line and code where it happened.
    The model runs once, in its current mode.
    """
    with quiet_dynamo():
        explained = torch._dynamo.explain(model)(*example)
    reasons = []
    for r in explained.break_reasons:
        where = r.user_stack[-1] if r.user_stack else None
        at = f" at {Path(where.filename).name}:{where.lineno}: {(where.line or '').strip()}" \
            if where else ""
        reasons.append(str(r.reason).strip().splitlines()[0] + at)
    return {"graphs": explained.graph_count, "graph_breaks": len(reasons), "reasons": reasons}


def readable_error(error: BaseException) -> str:
    """A Dynamo error in a few lines: its type, what failed, and the user's line of code."""
    lines = [line.rstrip() for line in str(error).splitlines()]
    head = next((line.strip() for line in lines if line.strip()), "")
    text = [f"{type(error).__name__}: {head}"]
    text += [line.strip() for line in lines if line.strip().startswith("Explanation:")][:1]
    if "from user code:" in lines:
        where = lines[lines.index("from user code:") + 1:]
        text += ["  at " + line.strip() for line in where[:2] if line.strip()]
    return "\n".join(text)


def fullgraph_error(model: nn.Module, example: Example, backend: str = "eager") -> str | None:
    """Compile with fullgraph=True and call once: the readable error (readable_error) when
    Dynamo cannot capture the whole forward in one graph, None when it can."""
    torch._dynamo.reset()
    try:
        with quiet_dynamo():
            torch.compile(model, backend=backend, fullgraph=True)(*example)
    except torch._dynamo.exc.TorchDynamoException as e:
        return readable_error(e)
    finally:
        torch._dynamo.reset()
    return None


def side_by_side(fns: dict[str, Callable[[], Any]], calls: int, rounds: int = 5
                 ) -> dict[str, float]:
    """Milliseconds per call of each function: `rounds` blocks of calls//rounds calls each,
    the functions' blocks alternating, the median block's mean kept."""
    rounds = max(1, min(rounds, calls))
    number = max(1, calls // rounds)
    # Timer runs with 1 thread unless told: time with the threads this process uses
    timers = {name: Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
              for name, fn in fns.items()}
    blocks: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, timer in timers.items():
            blocks[name].append(timer.timeit(number).mean * 1e3)
    return {name: statistics.median(ms) for name, ms in blocks.items()}


@contextlib.contextmanager
def fresh_inductor_cache(fresh: bool) -> Iterator[None]:
    """With fresh=True, Inductor compiles into an empty temporary cache folder (deleted
    afterwards), as on a machine that never compiled anything: a cold start."""
    if not fresh:
        yield
        return
    from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir

    with tempfile.TemporaryDirectory(prefix="dlcamp-inductor-") as folder, \
            temporary_cache_dir(folder):
        yield


# -- the comparisons ------------------------------------------------------------------------
def compare_compile(model: nn.Module, example: Example, *, backend: str = "inductor",
                    train: bool = False, repeat: int = 20, loss_fn: LossFn | None = None,
                    fresh_cache: bool = False) -> dict[str, Any]:
    """Eager vs torch.compile(backend) on copies of `model` with the same weights.

    train=False: forward under torch.no_grad() in eval mode; max_abs_diff compares the
    outputs. train=True: a training step in train mode (zero_grad, forward, `loss_fn` (default
    classification_loss), backward, SGD lr 1e-3); max_abs_diff compares the loss and every
    parameter's gradient of the first step. `repeat` calls of each are timed (side_by_side).
    Returns {"eager_ms", "compiled_ms" (per call), "compile_s" (first compiled call, seconds),
    "speedup" (eager_ms / compiled_ms), "max_abs_diff", "graph_breaks", "graphs",
    "break_reasons", "backend", "step" ("forward" | "train")}. `model` itself is not changed.
    """
    compile_cache_dir()  # before anything compiles: one kernel folder per CPU capability
    loss_fn = loss_fn or classification_loss
    eager, twin = copy.deepcopy(model).train(train), copy.deepcopy(model).train(train)
    breaks = graph_breaks(copy.deepcopy(model).train(train), example)
    torch._dynamo.reset()
    compiled = torch.compile(twin, backend=backend)

    if train:
        optimizers = {m: torch.optim.SGD(m.parameters(), lr=1e-3) for m in (eager, compiled)}

        def gradients(m: nn.Module) -> list[Tensor]:
            optimizers[m].zero_grad(set_to_none=True)
            loss = loss_fn(m(*example))
            loss.backward()
            return [loss] + [p.grad for p in m.parameters() if p.grad is not None]

        def step(m: nn.Module) -> None:
            gradients(m)
            optimizers[m].step()

        with fresh_inductor_cache(fresh_cache), quiet_dynamo():
            start = time.perf_counter()
            got = gradients(compiled)
            compile_s = time.perf_counter() - start
        diff = max_abs_diff(gradients(eager), got)
        ms = side_by_side({"eager": lambda: step(eager), "compiled": lambda: step(compiled)},
                          repeat)
    else:
        with torch.no_grad():
            with fresh_inductor_cache(fresh_cache), quiet_dynamo():
                start = time.perf_counter()
                got = compiled(*example)
                compile_s = time.perf_counter() - start
            diff = max_abs_diff(eager(*example), got)

            ms = side_by_side({"eager": lambda: eager(*example),
                               "compiled": lambda: compiled(*example)}, repeat)
    return {"backend": backend, "step": "train" if train else "forward",
            "eager_ms": ms["eager"], "compiled_ms": ms["compiled"], "compile_s": compile_s,
            "speedup": ms["eager"] / ms["compiled"], "max_abs_diff": diff,
            "graph_breaks": breaks["graph_breaks"], "graphs": breaks["graphs"],
            "break_reasons": breaks["reasons"]}


def export_and_check(model: nn.Module, example: Example, *, dynamic_batch: bool = True
                     ) -> tuple[ExportedProgram, float]:
    """torch.export.export the model in eval mode (its mode is restored afterwards) and
    compare the program with eager: max |difference| over all outputs, on `example` and,
    with dynamic_batch, on the example grown by one row (batch B+1).

    dynamic_batch marks dimension 0 of every example tensor as one symbolic size
    (torch.export.Dim "batch", 1..65536), so the program accepts any batch in that range
    (give an example batch of 2 or more: a batch of 1 gets specialised); a static export
    accepts only the example's shapes. Raises RuntimeError (torch's export errors, e.g.
    torch._dynamo.exc.UserError or GuardOnDataDependentSymNode for a branch on a tensor's
    value) when the forward cannot be captured in one graph.
    """
    was_training = model.training
    model.eval()
    try:
        shapes = None
        if dynamic_batch:
            batch = Dim("batch", min=1, max=65536)
            shapes = tuple({0: batch} for _ in example)
        with warnings.catch_warnings():  # nn.LSTM's weight list, harmless for the result
            warnings.filterwarnings("ignore", message=".*assigned during export")
            program = torch.export.export(model, tuple(example), dynamic_shapes=shapes)
        inputs = [tuple(example)]
        if dynamic_batch:
            inputs.append(tuple(torch.cat([t, t[:1]]) for t in example))
        runnable = program.module()
        with torch.no_grad():
            diff = max(max_abs_diff(model(*x), runnable(*x)) for x in inputs)
    finally:
        model.train(was_training)
    return program, diff


# -- the three models of the lesson and the benchmark ---------------------------------------
LSTM_VOCAB, LSTM_STEPS = 1000, 35  # a word-level vocabulary, the LSTM recipe's num_steps


def bench_models(batch: int = 64) -> dict[str, tuple[nn.Module, Example]]:
    """dlcamp's registered mlp (784-256-10), cnn (default widths 16-32-64) and lstm language
    model (vocab 1000, 256 hidden) with an example batch each: images (B, 1, 28, 28) or
    tokens (B, 35)."""
    torch.manual_seed(0)
    images = torch.randn(batch, 1, 28, 28)
    tokens = torch.randint(0, LSTM_VOCAB, (batch, LSTM_STEPS))
    return {
        "mlp": (create_model("mlp"), (images,)),
        "cnn": (create_model("cnn", num_classes=10, in_channels=1, image_size=28), (images,)),
        "lstm": (create_model("lstm", vocab_size=LSTM_VOCAB), (tokens,)),
    }


def inductor_startup(fresh_cache: bool = False) -> float:
    """Seconds to compile and run a one-line function with Inductor: the once-per-process cost
    (importing Inductor, finding the C++ compiler, building shared headers) that the first
    compiled model would otherwise carry on top of its own compile time."""
    compile_cache_dir()
    with fresh_inductor_cache(fresh_cache):
        start = time.perf_counter()
        torch.compile(lambda t: torch.relu(t) + 1, backend="inductor")(torch.randn(8))
        return time.perf_counter() - start


def compile_rows(quick: bool, *, batch: int | None = None, fresh_cache: bool = False
                 ) -> list[dict[str, Any]]:
    """Forward and training-step rows (compare_compile) for mlp, cnn and lstm, each with
    "model" and "batch" added. quick: batch 8, 4 calls, Inductor only for the mlp's forward
    and aot_eager (graph capture, no C++ compiling) for the rest: seconds. Full: batch 64, 100
    calls, Inductor everywhere, plus the lstm's forward with torch._dynamo.config.allow_rnn
    (nn.LSTM inside the graph instead of a graph break): minutes, mostly compiling. Its
    training step is left out: the backward unrolls the 35 time steps and took Inductor about
    4 minutes to compile in a trial here (2 busy cores).
    Inductor's once-per-process start-up (inductor_startup) is paid before the first row.
    """
    batch = batch or (8 if quick else 64)
    models = bench_models(batch)
    runs = [(name, name, step, {}) for name in models for step in (False, True)]
    if not quick:
        runs.append(("lstm (allow_rnn)", "lstm", False, {"allow_rnn": True}))
    inductor_startup()
    rows = []
    for label, name, train, dynamo_options in runs:
        model, example = models[name]
        backend = "aot_eager" if quick and (name != "mlp" or train) else "inductor"
        with torch._dynamo.config.patch(**dynamo_options):
            row = compare_compile(model, example, backend=backend, train=train,
                                  repeat=4 if quick else 100, fresh_cache=fresh_cache)
        rows.append({"model": label, "batch": batch, **row})
    return rows
