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
#     title: 多台机器（multiple machines）与参数服务器
#     title_en: Many machines and parameter servers
#     minutes:
#       quick: 0.3
#       full: 0.5
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 多台机器（multiple machines）与参数服务器
#
# 前两讲的进程都在同一台机器上。换成几台机器，训练代码本身几乎不变——还是进程组、还是全归约——
# 变的是三件事：
#
# 1. **进程怎样找到彼此**：不能再假设大家都在 127.0.0.1 上，需要一个所有机器都能连上的"集合点"，
#    这叫**汇合**（rendezvous）；
# 2. **通信慢得多**：机器之间走网卡，1–100 Gbit/s，比同一台机器内的内存复制慢一到两个数量级，
#    通信时间常常决定了加机器划不划算；
# 3. **怎样组织通信**：所有人互相全归约，还是把梯度交给专门的**参数服务器**（parameter server）。
#
# 本讲在一台机器上用几个进程把这三件事都跑一遍。

# %%
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.benchmark import Timer

from dlcamp.core.utils import is_quick
from dlcamp.course.parallel import free_port, run_workers, train_single
from dlcamp.course.parallel_cost import (
    allreduce_seconds,
    fit_alpha_beta,
    gbit_to_Bps,
    measure_all_reduce,
    project_machines,
)
from dlcamp.course.parallel_variants import TORCHRUN_VARIABLES, ps_worker
from dlcamp.models import count_parameters, create_model

QUICK = is_quick()  # 快速模式：测量用的消息和批量小一些
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 汇合：`torchrun` 的两种写法
#
# `torchrun`（即 `python -m torch.distributed.run`）在每台机器上运行一次，它是那台机器上的
# **启动器**（launcher）：先和其他机器的启动器汇合，商量好每个进程的编号，再在本机启动
# `--nproc-per-node` 个工作进程，把编号写进它们的环境变量。
#
# **静态汇合**（static rendezvous）：指定一台主机（master）的地址和端口，每台机器自己报上编号 `--node-rank`：
#
# ```bash
# # on machine 0 (its address: 10.0.0.1)               # on machine 1: the same, --node-rank 1
# torchrun --nnodes 2 --node-rank 0 --nproc-per-node 8 \
#          --master-addr 10.0.0.1 --master-port 29500 train.py
# ```
#
# **c10d 汇合**（PyTorch 推荐的方式）：所有机器运行**完全相同**的命令，编号按到达顺序分配；
# `--rdzv-id` 区分同时进行的不同任务。`--nnodes 2:4` 这样的范围还允许机器中途加入或离开
# （弹性训练，elastic training），`--max-restarts` 让出错的工作进程组自动重启：
#
# ```bash
# torchrun --nnodes 2 --nproc-per-node 8 --rdzv-id job42 \
#          --rdzv-backend c10d --rdzv-endpoint 10.0.0.1:29400 train.py
# ```
#
# dlcamp 的训练命令也能这样在两台机器上运行（`--batch-size` 是全局批量）：
#
# ```bash
# torchrun --nnodes 2 --nproc-per-node 1 --rdzv-id run1 --rdzv-backend c10d \
#          --rdzv-endpoint 10.0.0.1:29400 -m dlcamp train --model lenet --dataset fashion-mnist
# ```
#
# 跨机器时还要注意：各机器的代码、数据和软件版本要一致；防火墙要放行这些端口；
# 机器有多块网卡时用 `GLOO_SOCKET_IFNAME`（GPU 上是 `NCCL_SOCKET_IFNAME`）指定走哪一块。
# **安全**：汇合用的 TCP 存储在这台机器的**所有**网卡上监听，而 `torch.distributed` 没有任何身份验证，
# 网络上谁能连上这个端口，谁就能加入或搅乱训练。只在可信的网络（实验室内网、VPN、集群内部网络）上
# 跨机器运行（见 docs/distributed.md）。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 在一台机器上扮演两台机器
#
# 我们同时启动**两个** `torchrun` 启动器，每个都以为自己是两台机器中的一台（`--nnodes 2`，
# 每台 1 个进程），汇合点都是本机的一个空闲端口。每个工作进程运行
# `dlcamp.course.parallel_variants` 里的 `report`：加入进程组，把 rank + 1 用手写的环和 gloo
# 各全归约一次，打印一行 JSON，包括 torchrun 写给它的环境变量。

# %%
port = free_port()
launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
            "--nproc-per-node", "1", "--rdzv-id", "lesson-6-12", "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"127.0.0.1:{port}", "-m", "dlcamp.course.parallel_variants",
            "report"]
print(" ".join(launcher[1:]))
scratch = tempfile.TemporaryDirectory(prefix="dlcamp-6.12-")
start = time.perf_counter()
machines = [subprocess.Popen(launcher, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": scratch.name})
            for _ in range(2)]  # TMPDIR: torchrun's own temporary folders are removed with it
try:
    outputs = [m.communicate(timeout=180) for m in machines]
finally:  # a launcher left waiting for its partner must not outlive the lesson
    for m in machines:
        if m.poll() is None:
            m.kill()
            m.wait()
    scratch.cleanup()
launch_seconds = time.perf_counter() - start
reports = sorted((json.loads(line) for out, _ in outputs for line in out.splitlines()
                  if line.startswith("{")), key=lambda r: r["rank"])
print(f"two launchers finished in {launch_seconds:.1f} s with exit codes",
      [m.returncode for m in machines])
for r in reports:
    print(f"rank {r['rank']} of {r['world_size']} (node {r['env']['GROUP_RANK']}): "
          f"ring sum {r['ring_sum']:.0f}, gloo sum {r['gloo_sum']:.0f}")
print({k: reports[0]["env"][k] for k in TORCHRUN_VARIABLES})
if any(m.returncode for m in machines):
    print(outputs[0][1][-2000:], outputs[1][1][-2000:])

# %% [markdown]
# 每个进程的 `LOCAL_RANK` 是它在本机的编号（多块 GPU 时用它选 `cuda:LOCAL_RANK`），
# `GROUP_RANK` 是它所在机器（节点，node）的编号，`RANK` 是全局编号。
# `MASTER_ADDR`/`MASTER_PORT` 不是我们给的：汇合之后 torchrun 自己选了一台机器来放进程组的存储。
# 这两个启动器运行期间，汇合端口在本机所有网卡上监听了几秒钟（见上面的"安全"）。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 参数服务器
#
# 全归约不是组织通信的唯一方式。早期的大规模系统（如 Li 等人 2014 年的 Parameter Server）
# 把参数放在专门的**服务器**上：每个工作进程算完梯度**推送**（push）给服务器，服务器把梯度加起来、
# 更新参数，工作进程再**拉取**（pull）新参数。这里用 3 个进程写一个最小的版本：rank 0 是服务器，
# rank 1、2 各算半个批量的梯度，用 `dist.send` 推给服务器，服务器用 `dist.broadcast` 发回新参数。
# 结果应当和单进程训练一样：

# %%
X = torch.randn(64, 8)  # (n, features)
y = (X[:, 0] + X[:, 1] > 0).long() + (X[:, 2] > 1).long()  # 3 classes
settings = dict(sizes=[8, 16, 3], seed=0, steps=5 if QUICK else 50, batch_size=11, lr=0.5)
single = train_single(X, y, **settings)
server_states = run_workers(ps_worker, 3, X, y, *settings.values())
ps_diff = max((s[k] - single[k]).abs().max().item() for s in server_states for k in single)
print(f"parameter server (1 server + 2 workers) vs one process: max difference {ps_diff:.1e}")

# %% [markdown]
# 同样的结果，通信量却不同。设梯度有 $n$ 字节、$N$ 个工作进程：服务器每一步要收 $N\cdot n$、
# 发 $N\cdot n$ 字节，全压在它一根网线上（全双工网卡收发可以同时进行，按 $N\cdot n/\beta$ 计），
# 时间随 $N$ 线性增长；环形全归约里每个进程只收发
# $\frac{2(N-1)}{N}n$，几乎不随 $N$ 变。实际系统把参数分片放在多台服务器上来缓解这个瓶颈。
# 以 ResNet-18 的梯度（float32）、10 Gbit/s 网卡为例，只算带宽项：

# %%
resnet_bytes = 4 * count_parameters(create_model("resnet18"))
link = gbit_to_Bps(10)
print(f"ResNet-18 gradient: {resnet_bytes / 1e6:.1f} MB; seconds per step on a 10 Gbit/s link")
print(f"{'workers':>8s} {'server':>9s} {'ring':>9s}")
traffic = {}
for n in (2, 8, 64):
    # full duplex: the server receives and sends its N * n bytes at the same time
    traffic[n] = (n * resnet_bytes / link, allreduce_seconds(resnet_bytes, n, 0.0, link))
    print(f"{n:8d} {traffic[n][0]:9.3f} {traffic[n][1]:9.3f}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 全归约的代价模型与 N 台机器的估算
#
# 第 6.10 讲的 α-β 模型（Thakur 等 2005；Patarasuk 与 Yuan 2009）：
# $T = 2(N-1)\alpha + \frac{2(N-1)}{N}\cdot\frac{n}{\beta}$。先在本机量出 α 和 β：

# %%
elements = [1_000, 10_000, 100_000, 1_000_000] + ([] if QUICK else [4_000_000, 16_000_000])
rows = measure_all_reduce(elements, world_size=2, repeat=10)
alpha, beta_local = fit_alpha_beta(rows, world_size=2)
print(f"loopback, 2 processes: alpha = {alpha * 1e6:.0f} us per message, "
      f"beta = {beta_local / 1e9:.2f} GB/s")

# %% [markdown]
# α 主要是 gloo 和操作系统处理一条消息的开销，换到真实网络上还要再加上线路和交换机的延迟；
# β 到了机器之间就由网卡决定。下面保留量出的 α，把 β 换成 1、10、100 Gbit/s 的网卡，
# 估算 N 台机器一起训练时的加速比。每台机器的批量固定为 256（全局批量随 N 增大），
# 通信和计算不重叠（DDP 会让两者部分重叠，那是更乐观的情形）。每步的计算时间有三种：
# LeNet 在这台 CPU 上实测；LeNet 和 ResNet-18（96 像素输入）在 GPU 上的时间取自书中
# （《动手学深度学习》第 2 版 PyTorch 版第 6.6 节（LeNet）、第 7.6 节（ResNet）训练输出的 examples/sec on cuda:0：
# 55,297 和 5,033 个样本每秒）。

# %%
def step_seconds(name: str, side: int, batch: int) -> float:
    """Seconds of one forward + backward step of `name` on a (batch, 1, side, side) batch."""
    model = create_model(name)
    x, target = torch.randn(batch, 1, side, side), torch.randint(0, 10, (batch,))

    def step():
        model.zero_grad()
        F.cross_entropy(model(x), target).backward()

    step()  # warm-up
    timer = Timer("step()", globals={"step": step}, num_threads=torch.get_num_threads())
    return timer.timeit(2 if QUICK else 10).mean


lenet_bytes = 4 * count_parameters(create_model("lenet"))
BOOK_GPU_EXAMPLES_PER_S = {"lenet": 55_297, "resnet18": 5_033}  # d2l-zh 2nd ed., 6.6 and 7.6
scenarios = {  # name: (seconds of compute per step of 256 examples, gradient bytes)
    "lenet, this CPU": (step_seconds("lenet", 28, 256), lenet_bytes),
    "lenet, book GPU": (256 / BOOK_GPU_EXAMPLES_PER_S["lenet"], lenet_bytes),
    "resnet18, book GPU": (256 / BOOK_GPU_EXAMPLES_PER_S["resnet18"], resnet_bytes),
}
machines_n = [1, 2, 8, 32, 128]
projection = {}
print(f"{'compute':19s} {'link':>10s} {'step ms':>8s} "
      + "".join(f"{f'N={n}':>8s}" for n in machines_n))
for name, (compute_s, nbytes) in scenarios.items():
    for gbit in (1, 10, 100):
        rows_n = project_machines(compute_s, 256, nbytes, machines_n, alpha, gbit_to_Bps(gbit))
        projection[name, gbit] = rows_n
        print(f"{name:19s} {f'{gbit} Gbit/s':>10s} {compute_s * 1e3:8.1f} "
              + "".join(f"{r['speedup']:7.1f}x" for r in rows_n))

# %% [markdown]
# 读这张表：
#
# - LeNet 的梯度只有两百多 KB，网卡快慢几乎无关，瓶颈是每条消息的延迟 α：环上的步数 $2(N-1)$
#   随 N 线性增长，机器一多，延迟项就追上了计算时间。GPU 上每步只要几毫秒，这个问题更早出现。
#   （所以 NCCL 等库在大规模时改用树形算法，延迟只随 $\log N$ 增长。）
# - ResNet-18 每步要传约 45 MB 的梯度：在 GPU 上每步只算约 50 毫秒，1 Gbit/s 的网卡光传梯度就要
#   0.4–0.7 秒，加机器几乎白加；10 Gbit/s 时 8 台机器的效率（加速比 ÷ N）也不到一半；
#   100 Gbit/s 才接近线性加速，但 N 很大时延迟项又会追上来。
# - 在 CPU 上计算本身很慢，通信所占的比例小，加机器反而"划算"——但那是因为每台机器都很慢。
#
# 这就是多 GPU 训练要配高速互联（NVLink、InfiniBand）的原因，也是 DDP 要把通信和反向传播重叠起来的原因。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 跨机器时代码不变，变的是汇合方式：静态（`--master-addr`、`--node-rank`）或 c10d
#   （`--rdzv-backend c10d --rdzv-endpoint`，各机器命令相同，可弹性伸缩）；
# - 参数服务器和全归约算出同样的更新，但服务器的通信量随工作进程数线性增长；
# - α-β 模型加上每步的计算时间，就能在买机器之前估算加速比：小模型受延迟限制，大模型受带宽限制；
#   计算越快（GPU），通信越是瓶颈。
#
# 自测：把 ResNet-18 的梯度用 bf16 传（字节数减半），书中的 GPU、10 Gbit/s、8 台机器时加速比大约变成多少？
#
# 最后用断言检查本讲的要点都成立：

# %%
assert [m.returncode for m in machines] == [0, 0], "both launchers succeeded"
assert [r["rank"] for r in reports] == [0, 1] and {r["env"]["GROUP_RANK"] for r in reports} == {
    "0", "1"}, "two nodes, one rank each"
assert all(r["ring_sum"] == r["gloo_sum"] == 3.0 for r in reports), "1 + 2 on both nodes"
assert ps_diff < 1e-5, "the parameter server trains like one process"
assert traffic[64][0] > 10 * traffic[64][1], "a single server is the bottleneck at 64 workers"
for name in scenarios:
    speedups = [[r["speedup"] for r in projection[name, gbit]] for gbit in (1, 10, 100)]
    assert all(s <= n + 1e-9 for row in speedups for s, n in zip(row, machines_n, strict=True))
    assert all(a <= b for a, b in zip(speedups[0], speedups[2], strict=True)), "faster links help"
eight = {gbit: projection["resnet18, book GPU", gbit][2] for gbit in (1, 10, 100)}
assert eight[1]["efficiency"] < 0.2 and eight[100]["efficiency"] > 0.5, "ResNet-18 needs fast links"
print(f"lesson 6.12 done: two torchrun 'machines' met by c10d in {launch_seconds:.1f} s; "
      f"the parameter server equals all-reduce; alpha {alpha * 1e6:.0f} us")
