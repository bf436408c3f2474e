# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
#   dlcamp:
#     title: 异步计算（asynchronous execution）
#     title_en: Asynchronous execution
#     minutes:
#       quick: 0.2
#       full: 0.5
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 异步计算（asynchronous execution）
#
# 我们写的 Python 代码只是**前端**（frontend）：它一条条地发出"做矩阵乘法""做加法"的请求；
# 真正干活的是**后端**（backend）——PyTorch 用 C++ 写的算子（operator），以及它们调用的
# oneDNN、BLAS、CUDA 内核（kernel）。前端发出请求后要不要等后端做完，取决于设备：
#
# - 在 **GPU** 上，PyTorch 把内核放进一个队列（CUDA 流，stream）就立刻返回，Python 接着往下走，
#   GPU 在后面慢慢做。前端和后端**异步**（asynchronous）地工作；
# - 在 **CPU** 上，算子就在调用它的线程里执行（可以再分给几个线程一起算），**做完才返回**。
#
# 本讲回答三个问题：异步为什么快？为什么不同步（synchronize）就计时会得到假数字？
# 在只有 CPU 的笔记本上，什么会阻塞（block）、什么能重叠（overlap）？

# %%
import os
import time
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

from dlcamp.core.utils import is_quick
from dlcamp.course.performance import best_seconds

QUICK = is_quick()  # 快速模式：矩阵和循环都小一些，几秒跑完
torch.manual_seed(0)
HAS_CUDA = torch.cuda.is_available()
print("CUDA:", torch.cuda.get_device_name(0) if HAS_CUDA else "none (the GPU cells only explain)")
print("CPU threads used by torch:", torch.get_num_threads())

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 在 CPU 上：算子做完才返回
#
# 先用最朴素的办法计时：`time.perf_counter()` 前后各读一次表。在 CPU 上这样做是对的，
# 因为 `a @ b` 返回时结果已经算好了。于是连续做 k 次乘法，时间大约是一次的 k 倍。
# 每个测量都取多次中最快的一次：别的程序占用 CPU 时只会让时间变长，最快的那次最接近真实。
# 这里只用 1 个线程：两个线程合作时，每次乘法都要等两个线程都做完，
# 机器上别的程序占着另一个核时，一次乘法就会被拖慢好几毫秒（下一讲细说线程）。

# %%
def wall(fn, repeat: int = 5) -> float:
    """The fastest of `repeat` runs of fn(), timed by hand with perf_counter (seconds)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


n = 256 if QUICK else 1024
a, b = torch.randn(n, n), torch.randn(n, n)  # (n, n) each, on the CPU
threads = torch.get_num_threads()
torch.set_num_threads(1)
try:
    one, eight = float("inf"), float("inf")
    for _ in range(10):  # interleaved, so that a busy moment hits both alike
        one = min(one, wall(lambda: a @ b, repeat=1))
        eight = min(eight, wall(lambda: [a @ b for _ in range(8)], repeat=1))
finally:
    torch.set_num_threads(threads)
print(f"{n}x{n} matmul on the CPU: 1 call {one * 1e3:.2f} ms, 8 calls {eight * 1e3:.2f} ms "
      f"({eight / one:.1f}x)")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 在 GPU 上：不同步，计时就是假的
#
# GPU 上同一段代码的行为完全不同。`a @ b` 只把内核**排进队列**（enqueue）就返回，
# `perf_counter` 量到的只是"排队"花的几微秒，而不是 GPU 算了多久。
# 要得到真实时间，必须在停表前调用 `torch.cuda.synchronize()`：它让 CPU 等到队列里的活全部做完。
# 另一种办法是 CUDA 事件（`torch.cuda.Event(enable_timing=True)`）：把两个事件也放进队列，
# 由 GPU 自己记下它们之间过了多久。`torch.utils.benchmark.Timer` 会替我们同步，
# 所以本课程其余的测速都用它。
#
# 下面这一格只在有 GPU 时运行；没有 GPU 时打印一句说明，代码留在这里供阅读。

# %%
gpu_times = {}
if HAS_CUDA:
    g = 4096 if not QUICK else 2048
    ga, gb = torch.randn(g, g, device="cuda"), torch.randn(g, g, device="cuda")
    ga @ gb
    torch.cuda.synchronize()  # warm-up done, queue empty

    start = time.perf_counter()
    for _ in range(10):
        gc = ga @ gb
    gpu_times["no synchronize (wrong)"] = time.perf_counter() - start  # only the enqueueing
    torch.cuda.synchronize()  # drain the queue before the next measurement

    start = time.perf_counter()
    for _ in range(10):
        gc = ga @ gb
    torch.cuda.synchronize()  # wait for the GPU: now the clock tells the truth
    gpu_times["with synchronize"] = time.perf_counter() - start

    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for _ in range(10):
        gc = ga @ gb
    end.record()
    end.synchronize()
    gpu_times["CUDA events"] = begin.elapsed_time(end) / 1e3  # elapsed_time is in ms

    start = time.perf_counter()
    for _ in range(10):
        gc = ga @ gb
    gc[0, 0].item()  # .item() needs the value, so it waits for the whole queue too
    gpu_times["ending with .item()"] = time.perf_counter() - start
    for what, seconds in gpu_times.items():
        print(f"10 x {g}x{g} matmul, {what:24s} {seconds * 1e3:9.2f} ms "
              f"({10 * 2 * g**3 / seconds / 1e12:8.1f} TFLOP/s)")
else:
    print("no GPU: on the CPU every op returns when it is done, so perf_counter is honest here")

# %% [markdown]
# 有 GPU 时，第一行的"速度"会高得离谱（比 GPU 的峰值还高几十倍），这就是谎言；后三行才一致。
# 注意最后一行：`.item()` 没有显式同步，却一样要等——它需要的值还在队列后面。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 什么会让前端停下来等
#
# 在 GPU 上，下面这些操作都要等后端把之前的活做完（**隐式同步**，implicit synchronization）：
#
# - 把值取回 Python：`.item()`、`.tolist()`、`print(t)`、`if t > 0:`（要知道真假）；
# - 把张量搬回 CPU：`.cpu()`、`.numpy()`（NumPy 只认主机内存）、不带 `non_blocking` 的复制；
# - 形状取决于数据的算子：`torch.nonzero`、布尔掩码索引 `x[x > 0]`——不算完不知道结果多大；
# - 显式的 `torch.cuda.synchronize()`、`Event.synchronize()`。
#
# 在 CPU 上，所有算子本来就是"做完才返回"，这些调用不用等谁，只剩下创建 Python 对象的开销。
# 但前端本身也有开销：每调用一个算子，Python 和 PyTorch 的调度器（dispatcher）都要花几微秒
# 检查参数、挑选内核。在 GPU 上异步执行能把这段时间藏在 GPU 计算的背后；
# 在 CPU 上它实打实地加在总时间里。所以在 CPU 上**少调用、每次多做**尤其重要：

# %%
m = 2_000 if QUICK else 20_000
x = torch.randn(m)  # (m,)


def python_loop() -> torch.Tensor:
    total = torch.zeros(())
    for i in range(m):  # 2 ops per element: index, multiply-add
        total += x[i] * x[i]
    return total


def vectorised() -> torch.Tensor:
    return (x * x).sum()  # 2 ops for the whole vector


loop_s, vec_s = best_seconds(python_loop, 0.2), best_seconds(vectorised, 0.2)
tiny = torch.ones(1)
tiny_op_s = best_seconds(lambda: tiny + 1, 0.2)
print(f"sum of squares of {m:,} numbers: Python loop {loop_s * 1e3:.2f} ms, "
      f"vectorised {vec_s * 1e6:.1f} us ({loop_s / vec_s:,.0f}x)")
print(f"one op on a 1-element tensor: {tiny_op_s * 1e6:.2f} us, nearly all of it overhead")
assert torch.allclose(python_loop(), vectorised(), rtol=1e-4)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 在 CPU 上重叠：一边准备数据，一边计算
#
# CPU 上的算子不能异步排队，但**两个线程**可以同时干不同的活。PyTorch 的算子在 C++ 里执行时会
# 释放 Python 的全局解释器锁（GIL），所以一个后台线程准备下一个批量（读取、增广、归一化），
# 主线程同时在当前批量上做前向和反向传播，两件事就在两个核上重叠进行。
# 这正是 `DataLoader(num_workers=...)` 和 GPU 上"复制与计算重叠"背后的想法。
#
# 下面把计算限制在 1 个线程，另一个核留给准备数据的线程，比较"先准备再计算"和"流水线"
# （pipeline：算第 i 批时，后台已经在准备第 i+1 批）。两种做法算出的损失必须一模一样：
# 并行只改变**什么时候**做，不改变**做什么**。

# %%
steps, batch = (6, 256) if QUICK else (30, 1024)


def prepare(i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch i, the same every time it is asked for: uint8 images -> flipped, scaled floats."""
    gen = torch.Generator().manual_seed(i)
    images = torch.randint(0, 256, (batch, 1, 56, 56), dtype=torch.uint8, generator=gen)
    flip = torch.rand(batch, generator=gen) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    images = nn.functional.avg_pool2d(images.float() / 255, 2)  # (batch, 1, 28, 28)
    return (images - 0.5) / 0.25, torch.randint(0, 10, (batch,), generator=gen)


net = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 10))
state = {k: v.clone() for k, v in net.state_dict().items()}


def compute(images: torch.Tensor, labels: torch.Tensor) -> float:
    net.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(net(images), labels)
    loss.backward()
    with torch.no_grad():
        for p in net.parameters():
            p -= 0.1 * p.grad
    return loss.item()


def sequential() -> list[float]:
    net.load_state_dict(state)
    return [compute(*prepare(i)) for i in range(steps)]


intervals: list[tuple[str, float, float]] = []  # (what, start, end), for the overlap check


def timed(what: str, fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    intervals.append((what, start, time.perf_counter()))
    return out


def pipelined() -> list[float]:
    net.load_state_dict(state)
    losses = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        nxt = pool.submit(timed, "prepare", prepare, 0)
        for i in range(steps):
            images, labels = nxt.result()  # the only place the main thread waits
            if i + 1 < steps:
                nxt = pool.submit(timed, "prepare", prepare, i + 1)
            losses.append(timed("compute", compute, images, labels))
    return losses


torch.set_num_threads(1)  # one core computes, the other prepares
try:
    seq_losses, pipe_losses = sequential(), pipelined()  # warm-up, and the results
    seq_s = wall(sequential, repeat=2)
    intervals.clear()
    pipe_s = wall(pipelined, repeat=2)
finally:
    torch.set_num_threads(threads)
overlaps = sum(1 for w1, s1, e1 in intervals if w1 == "prepare"
               for w2, s2, e2 in intervals if w2 == "compute" and s1 < e2 and s2 < e1)
print(f"{steps} steps: prepare-then-compute {seq_s:.3f} s, pipelined {pipe_s:.3f} s "
      f"({seq_s / pipe_s:.2f}x) on {os.cpu_count()} logical cores")
print(f"a batch was being prepared while another computed {overlaps} times")
assert pipe_losses == seq_losses  # same work, same order of updates: the very same numbers

# %% [markdown]
# 在空闲的双核机器上，流水线接近"两件事中慢的那件"的时间，而不是两者之和；
# 机器很忙（或只有一个核）时，两种做法差不多——重叠需要空闲的硬件。
# 在 GPU 上同样的思路是：锁页内存加 `non_blocking=True` 把下一批复制到显存，
# 同时 GPU 还在算这一批（见第 2.01 讲），以及下一讲的多个 CUDA 流。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 前端（Python）发出算子，后端（C++ 内核）执行；GPU 上两者异步，CPU 上算子做完才返回；
# - GPU 上计时前后都要 `torch.cuda.synchronize()`（或用 CUDA 事件、`benchmark.Timer`），否则量到的只是排队时间；
# - `.item()`、`print`、`.cpu()`/`.numpy()`、数据决定形状的算子都会隐式同步：训练循环里少用；
# - 每次调用算子有几微秒的固定开销：在 CPU 上尽量向量化，一次处理一整批；
# - 线程可以让数据准备和计算重叠；重叠不改变结果，只改变时间。
#
# 自测：一段 GPU 训练代码每步都 `print(loss)`，去掉后快了一倍。为什么？只在每 100 步打印一次够不够？
#
# 最后用断言检查本讲的要点：

# %%
assert eight > 3 * one, "on the CPU, 8 matmuls take several times as long as one"
assert loop_s > 10 * vec_s, "one op per element is far slower than one op for all of them"
assert pipe_losses == seq_losses and len(seq_losses) == steps
assert overlaps >= 1, "the background thread prepared a batch while the main thread computed"
if HAS_CUDA:
    assert gpu_times["no synchronize (wrong)"] < gpu_times["with synchronize"] / 2
    assert gpu_times["ending with .item()"] > gpu_times["with synchronize"] / 2
print("lesson 6.07 done: CPU ops block, GPU ops queue; synchronise before reading the clock")
