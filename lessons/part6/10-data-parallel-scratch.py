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
#     title: 从零实现数据并行（data parallelism）
#     title_en: Data parallelism from scratch
#     minutes:
#       quick: 0.2
#       full: 0.3
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 从零实现数据并行（data parallelism）
#
# 一台机器训练太慢，就让几个**工作进程**（worker）一起训练。最常用的分工方式是**数据并行**：
# 每个工作进程都持有一份完整的模型，一个小批量被切成几块，每个进程只算自己那块的梯度；
# 然后大家把梯度加起来——这一步叫**全归约**（all-reduce）——每个进程拿到同一个总梯度，
# 做同一步更新，于是各份模型始终一模一样。
#
# 本讲全部用 PyTorch 自带的分布式库 `torch.distributed` 的基本操作（primitive）手写：
# 启动几个进程组成**进程组**（process group），切分批量，用点对点的 `send`/`recv`
# 写出环形全归约（ring all-reduce），最后验证：两个进程训练出的权重和一个进程用同样的全局批量训练出的
# **相同**（在浮点误差内）。CPU 上的通信后端（backend）是 gloo；换成 GPU 时后端换成 NCCL，
# 代码结构不变。

# %%
import inspect

import torch
import torch.nn.functional as F

from dlcamp.core.utils import is_quick
from dlcamp.course import parallel
from dlcamp.course.parallel import (
    all_reduce_check_worker,
    make_mlp,
    run_workers,
    split_batch,
    train_data_parallel,
    train_single,
)
from dlcamp.course.parallel_cost import allreduce_seconds, fit_alpha_beta, measure_all_reduce

QUICK = is_quick()  # 快速模式：训练步数少，测量的消息小
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 进程组：rank、world size、后端
#
# 每个工作进程是一个独立的 Python 进程，有自己的内存，彼此只能通过消息通信。
# 加入进程组时每个进程要知道三件事：自己的编号 **rank**（0, 1, …），进程总数 **world size**，
# 以及到哪里"集合"：一个所有进程都能访问的小小的键值存储（store），大家在那里交换地址，
# 之后就能直接互相收发张量了。`torchrun` 用的是 `MASTER_ADDR:MASTER_PORT` 上的 TCP 存储
# （第 6.12 讲）；只在一台机器上时，临时文件夹里的一个文件（`FileStore`）就够了，还不会在网络上监听。
#
# `dlcamp.course.parallel.run_workers(fn, N, *args)` 做的就是 `torchrun` 在一台机器上做的事：
# 启动 N 个进程，环境变量里写好 `RANK`、`LOCAL_RANK`、`WORLD_SIZE`；
# 每个进程调用 `dist.init_process_group("gloo", ...)`，运行 `fn(*args)`，把返回值存成文件交回来，
# 最后销毁进程组。某个进程出错时，它的异常和调用栈会在我们这边重新抛出。
# 进程按名字找到 `fn`，所以工作函数都写在 `dlcamp.course.parallel` 模块里，而不是写在笔记本里。
# 下面是每个工作进程运行的代码：

# %%
print(inspect.getsource(parallel._worker_main))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 切分批量，按权重加起来的梯度
#
# `split_batch` 用 `torch.tensor_split` 把全局批量切成 N 块**连续**的小块，不要求整除：
# 11 个样本分给 2 个进程是 6 + 5。
#
# 要让梯度之和恰好等于整个批量的梯度，每块的损失不能各自取平均：全局损失是
# $\frac{1}{B}\sum_{i=1}^{B}\ell_i$，所以第 $k$ 个进程用 $\frac{1}{B}\sum_{i\in k}\ell_i$
# （本块之和除以**全局**批量大小 $B$）。几块的梯度相加就是全局平均损失的梯度。
# 如果每块先各自取平均再把梯度平均，块大小不等时结果就偏了。先在一个进程里把这件事算清楚：

# %%
X = torch.randn(64, 8)  # (n, features)
y = (X[:, 0] + X[:, 1] > 0).long() + (X[:, 2] > 1).long()  # 3 classes, learnable
model = make_mlp([8, 16, 3], seed=0)


def gradient(loss: torch.Tensor) -> torch.Tensor:
    """The model's gradient of `loss` as one flat vector."""
    model.zero_grad()
    loss.backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


xb, yb = X[:11], y[:11]  # a global batch of 11
chunks = split_batch(xb, yb, 2)
print("chunk sizes:", [len(c[1]) for c in chunks])
full = gradient(F.cross_entropy(model(xb), yb))
weighted = sum(gradient(F.cross_entropy(model(xc), yc, reduction="sum") / len(xb))
               for xc, yc in chunks)
mean_of_means = sum(gradient(F.cross_entropy(model(xc), yc)) for xc, yc in chunks) / 2
print(f"weighted sum vs full batch:  {(weighted - full).abs().max():.2e}")
print(f"mean of chunk means vs full: {(mean_of_means - full).abs().max():.2e}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 环形全归约（ring all-reduce）
#
# 最直接的全归约：每个进程把整个梯度发给所有别的进程。N 个进程各发 $(N-1)$ 份，进程越多越慢。
# **环形**算法把 N 个进程排成一个环，每个进程只和右邻居说话，并把张量切成 N 块：
#
# 1. **归约-分散**（reduce-scatter），N−1 步：每一步每个进程把一块发给右邻居，
#    同时收下左邻居发来的一块，加到自己的那块上。N−1 步后，每个进程各有一块是全部进程之和。
# 2. **全收集**（all-gather），N−1 步：算好的块再沿着环传一圈，每个进程收下后直接覆盖。
#
# 每个进程一共发送 $2(N-1)$ 次，每次 $1/N$ 个张量，总量是 $\frac{2(N-1)}{N}$ 个张量——
# 几乎与 N 无关。下面在纸面上模拟 3 个进程：格子里写的是这一块已经包含哪些进程的数据。

# %%
def ring_snapshots(n: int) -> list[tuple[str, list[list[set[int]]]]]:
    """Which ranks' data each rank's chunks hold, after each step of the ring (no processes)."""
    held = [[{rank} for _ in range(n)] for rank in range(n)]
    snapshots = [("start", [[set(c) for c in row] for row in held])]
    for phase in ("reduce-scatter", "all-gather"):
        for step in range(n - 1):
            messages = []
            for rank in range(n):  # the same chunk indices as parallel.ring_all_reduce
                chunk = (rank - step) % n if phase == "reduce-scatter" else (rank + 1 - step) % n
                messages.append(((rank + 1) % n, chunk, set(held[rank][chunk])))
            for dest, chunk, data in messages:
                held[dest][chunk] = held[dest][chunk] | data if phase == "reduce-scatter" else data
            snapshots.append((f"{phase} {step + 1}", [[set(c) for c in row] for row in held]))
    return snapshots


N_DEMO = 3
snapshots = ring_snapshots(N_DEMO)
print(f"{'after':16s}" + "".join(f"rank {r}: chunks 0 | 1 | 2".ljust(30) for r in range(N_DEMO)))
for label, held in snapshots:
    cells = ["|".join("+".join(map(str, sorted(c))).center(7) for c in row) for row in held]
    print(f"{label:16s}" + "".join(cell.ljust(30) for cell in cells))
assert all(c == set(range(N_DEMO)) for row in snapshots[-1][1] for c in row)

# %% [markdown] slideshow={"slide_type": "slide"}
# 真正的实现和纸面模拟用同样的块编号。发送用非阻塞的 `dist.isend`，接收用 `dist.recv`：
# 如果大家都先用阻塞的 `send`，可能每个人都在等别人先收，谁也动不了（死锁，deadlock）。

# %%
print(inspect.getsource(parallel.ring_all_reduce))

# %% [markdown]
# 在 3 个进程上验证：每个进程生成自己的随机张量（长度不被 3 整除，还有比 3 还短的），
# 分别用手写的环和 `dist.all_reduce` 求和，结果应当一致（求和顺序不同，只差舍入误差）。

# %%
sizes = [0, 2, 10, 1001]
pairs = run_workers(all_reduce_check_worker, 3, sizes, 0)
ring_diff = max((ring - gloo).abs().max().item() if ring.numel() else 0.0
                for rank_pairs in pairs for ring, gloo in rank_pairs)
print(f"max |ring - dist.all_reduce| over 3 ranks and sizes {sizes}: {ring_diff:.1e}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 数据并行的一步
#
# 有了切分和全归约，数据并行训练的一步就是：取自己的块、算加权损失、反向传播、
# 把所有梯度拼成一个向量做**一次**全归约（一条大消息比许多条小消息省时间，见下文的延迟项）、
# 拷回各参数的 `.grad`，再做和单进程完全一样的 SGD 更新。

# %%
print(inspect.getsource(parallel.data_parallel_step))

# %% [markdown]
# 对照实验：同一个初始化（同一个种子）、同一串全局批量（批量 11，不能被 2 整除）、同样的学习率，
# 一个进程训练一次，两个进程再训练一次，比较最后的权重。

# %%
settings = dict(sizes=[8, 16, 3], seed=0, steps=5 if QUICK else 50, batch_size=11, lr=0.5)
single = train_single(X, y, **settings)
two = train_data_parallel(X, y, **settings, world_size=2)
weight_diff = max((single[k] - two[k]).abs().max().item() for k in single)
start = make_mlp([8, 16, 3], seed=0).state_dict()
moved = max((single[k] - start[k]).abs().max().item() for k in single)
print(f"weights moved by up to {moved:.3f}; 2 processes vs 1: max difference {weight_diff:.1e}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 全归约要花多少时间
#
# 通信时间常用 **α-β 模型**描述：每条消息有固定的**延迟**（latency）α，再加上"字节数 ÷ **带宽**
# （bandwidth）β"。环形全归约发 $2(N-1)$ 条消息，每条 $n/N$ 字节，所以
#
# $$T(n, N) = 2(N-1)\,\alpha + \frac{2(N-1)}{N}\cdot\frac{n}{\beta}$$
#
# （Thakur、Rabenseifner 与 Gropp 2005 年给出了 MPICH 中各种集合通信的这种代价；
# Patarasuk 与 Yuan 2009 年证明带宽项 $\frac{2(N-1)}{N}\frac{n}{\beta}$ 已是任何全归约的下限。）
# 下面在这台机器上用 2 个进程测量不同大小的 float32 张量的全归约时间（每种大小取几次中最快的一次，
# 它受其他程序干扰最少），并用最小二乘拟合出 α 和 β。
# 两个进程在同一台机器上经回环（loopback）网络通信，β 反映的是内存复制和系统调用的速度，
# 而不是网卡的速度。

# %%
elements = [1_000, 10_000, 100_000, 1_000_000, 4_000_000] + ([] if QUICK else [16_000_000])
rows = measure_all_reduce(elements, world_size=2, repeat=10)
alpha, beta = fit_alpha_beta(rows, world_size=2)
print(f"{'float32 elements':>16s} {'MB':>8s} {'gloo ms':>9s} {'ring ms':>9s} {'model ms':>9s}")
for r in rows:
    model_ms = allreduce_seconds(r["nbytes"], 2, alpha, beta) * 1e3
    print(f"{r['elements']:16,d} {r['nbytes'] / 1e6:8.3f} {r['gloo_s'] * 1e3:9.3f} "
          f"{r['hand_s'] * 1e3:9.3f} {model_ms:9.3f}")
print(f"fitted to gloo: alpha = {alpha * 1e6:.0f} us per message, beta = {beta / 1e9:.2f} GB/s")

# %% [markdown]
# gloo 自己的全归约用 C++ 写成；我们的环每一步都有 Python 调用、创建张量的开销，这些都算进了 α，
# 所以小消息时它通常慢一些。消息越大，两者越接近，因为时间主要花在搬运字节上。
# （两个进程和别的程序争抢 CPU 时，单次测量会有很大的波动，所以每种大小取最快的一次。）
# 对比一下模型的大小：本讲的小 MLP 不到两百个参数，而第 2 部分的 ResNet-18 有一千一百多万个，
# 每步要全归约约 45 MB 的梯度。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 数据并行：每个进程一份模型、一块数据；梯度全归约后大家做同样的更新；
# - 损失按**全局**批量大小加权，块大小不等时梯度之和也等于整个批量的梯度；
# - 环形全归约每个进程只和邻居通信，发送总量 $\frac{2(N-1)}{N}$ 个张量，几乎不随 N 增长；
# - α-β 模型：小消息看延迟，大消息看带宽，所以把梯度拼成一条大消息再发。
#
# 自测：4 个进程、全局批量 10 时，每个进程分到几个样本？若每个进程都用自己那块的平均损失，
# 再把梯度**平均**，和全局平均损失的梯度差在哪里？
#
# 最后用断言检查本讲的要点都成立：

# %%
assert torch.allclose(weighted, full, atol=1e-6), "weighted chunk gradients sum to the full one"
assert (mean_of_means - full).abs().max() > 1e-4, "uneven chunks: the mean of means is biased"
assert ring_diff < 1e-5, "the hand-written ring equals dist.all_reduce"
assert moved > 1e-2 and weight_diff < 1e-5, "2 processes train exactly like 1 on the same batch"
assert rows[-1]["gloo_s"] > rows[0]["gloo_s"], "a 4000x larger message takes longer"
assert alpha >= 0 and beta > 0
print("lesson 6.10 done: data parallelism by hand equals single-process training; "
      f"all-reduce here costs ~{alpha * 1e6:.0f} us + bytes / {beta / 1e9:.2f} GB/s")
