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
#     title: 数据并行的简洁实现（DistributedDataParallel）
#     title_en: Concise data parallelism with DDP
#     minutes:
#       quick: 0.4
#       full: 3
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 数据并行的简洁实现（DistributedDataParallel）
#
# 第 6.10 讲手写了数据并行的每一步。PyTorch 把这些都包进了 `DistributedDataParallel`（DDP）：
#
# - 构造时把 rank 0 的参数和缓冲区**广播**（broadcast）给所有进程，各份模型从同一个起点出发；
# - 在每个参数上挂一个钩子（hook）：反向传播算出一批梯度，就把它们装进一个**桶**（bucket，默认约 25 MB）
#   立刻开始全归约，不等整个反向传播结束——通信和计算**重叠**进行；
# - 全归约后除以进程数：DDP 给出的是各进程梯度的**平均**，而不是和。
#
# 本讲先用 DDP 重做第 6.10 讲的对照实验，再看怎样把数据分给各进程，最后用 dlcamp 的训练命令
# `dlcamp train --nproc 2` 真正训练一个模型。

# %%
import csv
import inspect
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DistributedSampler

from dlcamp.core.utils import is_quick
from dlcamp.course import parallel_variants
from dlcamp.course.parallel import train_data_parallel, train_single
from dlcamp.train.distributed import shard
from dlcamp.train.evaluate import evaluate_checkpoint

QUICK = is_quick()  # 快速模式：训练步数少，dlcamp train 用 --quick 的小数据集
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 用 DDP 重做对照实验
#
# 和手写版本相比，工作函数里只多了一行 `DistributedDataParallel(model)`，优化器换成了
# `torch.optim.SGD`，全归约和更新都不用自己写了。唯一要小心的是 DDP 求的是**平均**：
# 我们仍然用"本块损失之和 ÷ 全局批量大小"，再乘以进程数 N，平均之后正好是全局平均损失的梯度。

# %%
print(inspect.getsource(parallel_variants.ddp_worker))

# %%
X = torch.randn(64, 8)  # (n, features)
y = (X[:, 0] + X[:, 1] > 0).long() + (X[:, 2] > 1).long()  # 3 classes
settings = dict(sizes=[8, 16, 3], seed=0, steps=5 if QUICK else 50, batch_size=11, lr=0.5)
single = train_single(X, y, **settings)
by_hand = train_data_parallel(X, y, **settings, world_size=2)
ddp_states = parallel_variants.train_ddp(X, y, **settings, world_size=2)
ddp_diff = max((s[k] - single[k]).abs().max().item() for s in ddp_states for k in single)
hand_diff = max((by_hand[k] - single[k]).abs().max().item() for k in single)
print(f"vs one process: DDP {ddp_diff:.1e}, hand-written {hand_diff:.1e} (global batch 11)")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 把数据分给各进程
#
# 常见的写法是给 `DataLoader` 配一个 `DistributedSampler`：它把**整个数据集**的下标按
# rank 轮流分配（rank r 拿第 r、r+N、r+2N… 个），不够整除时**重复**开头的几个样本补齐，
# 让每个进程的数量一样（`drop_last=True` 则丢掉多余的）。每个进程再用自己的样本组成批量，
# 所以全局批量是"每个进程的批量 × N"，进程数一变，训练就变了。

# %%
for rank in range(3):
    sampler = DistributedSampler(range(10), num_replicas=3, rank=rank, shuffle=False)
    print(f"rank {rank}: {list(sampler)}")
sampled = [i for rank in range(3)
           for i in DistributedSampler(range(10), num_replicas=3, rank=rank, shuffle=False)]

# %% [markdown]
# dlcamp 的数据整个放在内存里（`TensorLoader`），用的是另一种等价的做法：所有进程用同一个种子打乱，
# 走过**同样的全局批量**，每个进程只取自己那一块连续的切片。`--batch-size` 因此始终是全局批量，
# 用 1 个进程还是 N 个进程训练的是同一个东西。这就是 `dlcamp.train.distributed.shard`：

# %%
print(inspect.getsource(shard))
batch = (torch.arange(10), torch.arange(10) % 3)  # a global batch of 10 (inputs, labels)
parts = [shard(batch, rank, 3) for rank in range(3)]
for rank, part in enumerate(parts):
    print(f"rank {rank}: inputs {part[0].tolist()}, weight {len(part[0])}/{part.global_size}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## `dlcamp train --nproc 2`
#
# 训练命令加上 `--nproc N` 就会在本机启动 N 个进程，给每个进程写好 `torchrun` 会写的环境变量，
# 用 DDP 训练（CPU 上 gloo，GPU 上 NCCL）。只有 rank 0 写运行目录；指标在各进程间求和，
# 所以 `metrics.csv` 里每个样本只算一次；检查点里存的是没有 DDP 包装的模型权重，
# 单进程就能加载。等价的 torchrun 写法是
# `torchrun --standalone --nproc-per-node 2 -m dlcamp train ...`（见 docs/distributed.md）。

# %%
workdir = tempfile.TemporaryDirectory(prefix="dlcamp-6.11-")  # removed at the end
DEVICE = "cuda" if torch.cuda.device_count() >= 2 else "cpu"  # one process per GPU, or CPUs
out = Path(workdir.name) / "cnn-ddp"
command = [sys.executable, "-m", "dlcamp", "train", "--model", "cnn", "--dataset",
           "fashion-mnist", "--epochs", "1" if QUICK else "5", "--nproc", "2", "--out", str(out),
           "--no-progress", "--device", DEVICE] + (["--quick"] if QUICK else [])
print("$ dlcamp", " ".join(command[3:]))
result = subprocess.run(command, capture_output=True, text=True, timeout=600)
print(result.stdout[-1500:] or result.stderr[-3000:])

# %%
config = json.loads((out / "config.json").read_text())
with open(out / "metrics.csv") as f:
    metrics = list(csv.DictReader(f))
print("config.json distributed:", config["distributed"])
print("run directory:", sorted(p.name for p in out.iterdir()))
last = metrics[-1]
print(f"epoch {last['epoch']}: {float(last['train_examples']):,.0f} training examples counted, "
      f"test accuracy {float(last['test_acc']):.4f}")

# %% [markdown]
# 检查点在一个进程里加载、评估，得到的测试准确率和两个进程训练时报告的一样
# （训练的是 dlcamp 默认的 cnn，带批量规范化（batch normalization）：各进程的统计量在评估前
# 统一成 rank 0 的，所以两边的数字一致）：

# %%
alone = evaluate_checkpoint(out, quick=QUICK)
print(f"evaluated in one process: accuracy {alone['acc']:.4f} on {alone['examples']:,} images")

# %% [markdown]
# 在 2 个核的机器上，2 个单线程进程并不比 1 个双线程进程快：算术量一样，还多了全归约。
# 数据并行要有更多的计算资源（更多的核、GPU 或机器）才划算；
# 各种情况的实测见 docs/benchmarks.md 的"Data-parallel training"一节，下一讲估算多台机器的加速比。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - `DistributedDataParallel` 替我们广播初始参数、分桶全归约梯度并与反向传播重叠，结果是梯度的平均；
# - 数据可以按数据集分（`DistributedSampler`），也可以像 dlcamp 这样按全局批量切块：
#   后者让 `--batch-size` 与进程数无关，N 个进程与 1 个进程训练同一个模型；
# - `dlcamp train --nproc N`：rank 0 写运行目录，检查点单进程可用。
#
# 自测：用 `DistributedSampler` 时，把进程数从 2 改成 4 而每个进程的批量不变，
# 学习率通常要怎样调整？为什么用 dlcamp 的切法时不需要？
#
# 最后用断言检查本讲的要点都成立：

# %%
assert ddp_diff < 1e-5 and hand_diff < 1e-5, "DDP, the hand version and one process agree"
assert sorted(sampled) != list(range(10)) and set(sampled) == set(range(10)), "padded by repeats"
assert torch.equal(torch.cat([p[0] for p in parts]), batch[0]), "shards tile the global batch"
assert result.returncode == 0, result.stderr[-2000:]
assert config["distributed"]["world_size"] == 2 and config["distributed"]["backend"] in ("gloo",
                                                                                      "nccl")
assert (out / "checkpoint.pt").exists() and len(metrics) == (1 if QUICK else 5)
assert abs(alone["acc"] - float(last["test_acc"])) < 2e-3, "the checkpoint loads in one process"
assert alone["acc"] > 0.6, "and the two processes together trained a working model"
workdir.cleanup()
print(f"lesson 6.11 done: DDP equals the hand version; dlcamp train --nproc 2 wrote {out.name} "
      f"(test accuracy {alone['acc']:.3f})")
