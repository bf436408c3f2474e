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
#     title: 自动并行（automatic parallelism）
#     title_en: Automatic parallelism
#     minutes:
#       quick: 0.2
#       full: 0.5
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 自动并行（automatic parallelism）
#
# 一台笔记本有 2 到 16 个 CPU 核，一块 GPU 有上万个计算单元。框架替我们把它们用起来的方式有两种：
#
# - **算子内并行**（intra-op parallelism）：**一个**算子（一次矩阵乘法、一次加法）被切成几块，
#   交给几个线程同时算。PyTorch 在 CPU 上默认就这么做，线程数由 `torch.set_num_threads` 决定；
# - **算子间并行**（inter-op parallelism）：**互不依赖**的几个算子同时执行，比如网络里两条独立的分支。
#   在 CPU 上靠多个线程，在 GPU 上靠多个 CUDA 流（stream）。
#
# 本讲量一量这两种并行在本机上什么时候划算、什么时候不划算。

# %%
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import torch
from torch.utils.benchmark import Timer

from dlcamp.core.utils import is_quick

QUICK = is_quick()  # 快速模式：矩阵小一些，几秒跑完
torch.manual_seed(0)
HAS_CUDA = torch.cuda.is_available()
DEFAULT_THREADS = torch.get_num_threads()
try:
    usable = len(os.sched_getaffinity(0))  # the cores this process may run on
except AttributeError:  # not Linux
    usable = os.cpu_count() or 1
print(f"usable cores: {usable}, torch intra-op threads: {torch.get_num_threads()}, "
      f"inter-op threads: {torch.get_num_interop_threads()}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 算子内并行：线程数
#
# `torch.utils.benchmark.Timer` 有一个 `num_threads` 参数，正好用来比较同一个算子在 1 个和 2 个线程下的速度。
# （它的默认值是 1 个线程，而不是 PyTorch 平时用的线程数——用它测训练速度时要记得设置。）
# 我们比较两类算子：
#
# - 大矩阵乘法：计算量大（$2n^3$ 次浮点运算），切成两半各自独立，线程越多越快，直到核用完；
# - 很小的张量上的加法：真正的计算只要几纳秒，时间几乎全花在调用算子的固定开销上，
#   再多线程也没用。PyTorch 干脆不去并行它：逐元素算子的元素少于约 32768 个
#   （源码里的 `at::internal::GRAIN_SIZE`）时只用一个线程。

# %%
def per_call(stmt: str, threads: int, **values) -> float:
    """Best seconds per call of `stmt` with `threads` intra-op threads (benchmark.Timer)."""
    timer = Timer(stmt=stmt, globals=values, num_threads=threads)
    return min(timer.blocked_autorange(min_run_time=0.1 if QUICK else 0.5).times)


n = 512 if QUICK else 1024
A, B = torch.randn(n, n), torch.randn(n, n)  # (n, n)
small = torch.randn(100)  # (100,): far below the grain size
big = torch.randn(4_000_000)  # (4e6,) = 16 MB
rows = []
for name, stmt, values in [(f"matmul {n}x{n}", "a @ b", {"a": A, "b": B}),
                           ("add, 100 elements", "x + 1", {"x": small}),
                           ("add, 4M elements", "x + 1", {"x": big})]:
    t1, t2 = per_call(stmt, 1, **values), per_call(stmt, 2, **values)
    rows.append((name, t1, t2))
    print(f"{name:22s} 1 thread {t1 * 1e6:10.1f} us   2 threads {t2 * 1e6:10.1f} us   "
          f"speed-up {t1 / t2:.2f}x")
(_, mm1, mm2), (_, small1, small2), (_, big1, big2) = rows

# %% [markdown]
# 在空闲的双核机器上，矩阵乘法用 2 个线程接近快一倍；小加法两种线程数一样快（都是几微秒的开销）；
# 大加法的时间由内存带宽决定（下一讲），多一个线程帮助有限。
# 如果别的程序正占着一个核，2 个线程反而可能更慢：每个被切开的算子都要等**最慢**的那个线程做完。
# 所以 dlcamp 训练时按机器选线程数（`dlcamp.train.speed.plan_speed`），不盲目用满。
# 结果不随线程数改变：

# %%
torch.set_num_threads(1)
one_thread = A @ B
torch.set_num_threads(2)
two_threads = A @ B
torch.set_num_threads(DEFAULT_THREADS)
print("max |difference| between 1 and 2 threads:", (one_thread - two_threads).abs().max().item())
assert torch.allclose(one_thread, two_threads, rtol=1e-4, atol=1e-3)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 算子间并行：两条独立的分支
#
# 设想网络有两条互不依赖的分支，各自连做几次"矩阵乘法 + tanh"。按顺序执行时，第二条要等第一条做完；
# 其实它们可以同时进行。PyTorch 提供了 `torch.jit.fork` 和 `torch.jit.wait`：
# `fork` 启动一个任务，立刻返回一个**未来对象**（future），`wait` 取回它的结果。
#
# 但要注意：在普通的 Python（eager 模式）里调用 `fork`，函数会当场执行完，没有任何并行——
# 返回的 future 一出生就已经完成。只有在 TorchScript（`torch.jit.script` 编译过的函数）里，
# `fork` 才把任务交给 PyTorch 的算子间线程池（inter-op thread pool）。
# TorchScript 在 PyTorch 2.x 里已不再发展（调用时会给出 `FutureWarning`），
# 今天在 eager 模式下更直接的办法是 Python 线程：PyTorch 算子执行时释放 GIL，两个线程真能同时算。
# 三种写法的结果必须和顺序执行**完全相同**。

# %%
def branch(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    for _ in range(8):
        x = torch.tanh(x @ w)
    return x


def sequential(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor):
    return branch(x, w1), branch(x, w2)


def eager_fork(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor):
    future = torch.jit.fork(branch, x, w1)
    eager_fork.done_at_once = future.done()  # already finished: eager fork runs in place
    return torch.jit.wait(future), branch(x, w2)


with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated in PyTorch 2.x

    @torch.jit.script
    def scripted_fork(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor):
        future = torch.jit.fork(branch, x, w1)  # runs on the inter-op thread pool
        second = branch(x, w2)  # meanwhile, on this thread
        return torch.jit.wait(future), second


pool = ThreadPoolExecutor(max_workers=1)


def threaded(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor):
    future = pool.submit(branch, x, w1)  # another Python thread; torch ops drop the GIL
    second = branch(x, w2)
    return future.result(), second


d = 256 if QUICK else 512
X = torch.randn(d, d)
W1, W2 = torch.randn(d, d) / d**0.5, torch.randn(d, d) / d**0.5
expected = sequential(X, W1, W2)
torch.set_num_threads(1)  # one thread per branch, so that only inter-op parallelism is left
try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        results = {f.__name__: f(X, W1, W2) for f in (sequential, eager_fork, scripted_fork,
                                                      threaded)}
        times = {}
        for name, f in [("sequential", sequential), ("scripted_fork", scripted_fork),
                        ("threaded", threaded)]:
            best = float("inf")
            for _ in range(3 if QUICK else 10):
                start = time.perf_counter()
                f(X, W1, W2)
                best = min(best, time.perf_counter() - start)
            times[name] = best
finally:
    torch.set_num_threads(DEFAULT_THREADS)
for name, seconds in times.items():
    print(f"{name:14s} {seconds * 1e3:7.2f} ms ({times['sequential'] / seconds:.2f}x)")
print("eager torch.jit.fork had finished before wait():", eager_fork.done_at_once)
for name, (first, second) in results.items():
    assert torch.equal(first, expected[0]) and torch.equal(second, expected[1]), name

# %% [markdown] slideshow={"slide_type": "slide"}
# ## GPU 上的算子间并行：CUDA 流
#
# GPU 上每个内核都排在某个**流**（stream）里：同一个流里的内核按顺序执行，不同流里的内核可以同时执行
# （只要 GPU 还有空闲的计算单元）。PyTorch 默认把所有内核放进同一个默认流，所以"自动"得到的是顺序执行；
# 想让两条分支重叠，就为它们各开一个流：`s = torch.cuda.Stream()`，`with torch.cuda.stream(s): ...`。
# 代价是依赖要自己管：
#
# - 流 `s` 用到默认流上算出的张量之前，要 `s.wait_stream(torch.cuda.current_stream())`；
# - 回到默认流使用 `s` 的结果之前，要 `torch.cuda.current_stream().wait_stream(s)`；
# - 张量在 `s` 上用完之前不能被释放重用，必要时 `t.record_stream(s)`。
#
# 流最常见的用途不是两条计算分支（一个大内核往往就把 GPU 占满了），而是让**复制和计算重叠**：
# 一个流把下一批数据从锁页内存复制到显存，默认流同时计算这一批。
# 下面这一格只在有 GPU 时运行；没有 GPU 时打印一句说明，代码留在这里供阅读。

# %%
stream_results = None
if HAS_CUDA:
    gx = X.cuda()
    gw1, gw2 = W1.cuda(), W2.cuda()
    main = torch.cuda.current_stream()
    s1, s2 = torch.cuda.Stream(), torch.cuda.Stream()
    s1.wait_stream(main)  # gx, gw1, gw2 were copied on the default stream
    s2.wait_stream(main)
    with torch.cuda.stream(s1):
        first = branch(gx, gw1)
    with torch.cuda.stream(s2):
        second = branch(gx, gw2)
    main.wait_stream(s1)  # the default stream may only use the results after both streams
    main.wait_stream(s2)
    stream_results = (first.cpu(), second.cpu())
    on_one_stream = sequential(gx, gw1, gw2)
    print("two streams vs one stream, max |difference|:",
          max((a - b.cpu()).abs().max().item() for a, b in zip(stream_results, on_one_stream, strict=True)))
else:
    print("no GPU: CUDA streams are explained above; the code runs where a GPU exists")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 算子内并行：一个大算子切给几个线程（`torch.set_num_threads`），计算量大的算子受益，
#   小算子的时间是固定开销，不受益；机器上别的程序会拖慢多线程的算子；
# - 算子间并行：互不依赖的算子同时执行——CPU 上用线程（或 TorchScript 里的 `torch.jit.fork`），
#   GPU 上用多个 CUDA 流，依赖关系要自己用 `wait_stream` 表达；
# - 并行只改变执行的时间，不改变结果。
#
# 自测：一台 8 核机器同时跑 4 个训练进程，每个进程该设几个线程？为什么不是 8？
#
# 最后用断言检查本讲的要点：

# %%
assert mm1 > 20 * small1, "a big matmul is real work; a 100-element add is only call overhead"
assert big1 > 5 * small1, "4 million elements cost more than 100"
assert small2 < 5 * small1 and small1 < 5 * small2, "a tiny op costs about the same either way"
assert eager_fork.done_at_once, "in eager mode torch.jit.fork runs the function right away"
assert all(torch.equal(r[0], expected[0]) for r in results.values())
if stream_results is not None:
    assert all(torch.allclose(a, b, atol=1e-3)
               for a, b in zip(stream_results, expected, strict=True))
pool.shutdown()
print("lesson 6.08 done: threads split big ops, branches can run side by side, results agree")
