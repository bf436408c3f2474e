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
#     title: 硬件与屋顶线模型（roofline model）
#     title_en: Hardware and the roofline model
#     minutes:
#       quick: 0.3
#       full: 1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 硬件与屋顶线模型（roofline model）
#
# 一个网络跑得快还是慢，归根到底取决于两件事：处理器每秒能做多少次浮点运算（FLOP/s），
# 以及内存每秒能把多少字节送到处理器面前（GB/s）。本讲先看存储器的层次结构（memory hierarchy）
# 和它们的延迟，再把"算力"和"带宽"这两个上限都在本机上量出来，画成一张**屋顶线图**
# （roofline；Williams、Waterman、Patterson，2009），最后看 LeNet 和默认的 `cnn` 落在图上哪里。

# %%
import math
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch.utils.flop_counter import FlopCounterMode

from dlcamp.core.utils import is_quick
from dlcamp.course.performance import (
    ByteCounter,
    best_seconds,
    measure_roofline,
    model_point,
    plot_roofline,
)
from dlcamp.models import create_model
from dlcamp.train.speed import cpu_bf16, cpu_info

QUICK = is_quick()  # 快速模式：小矩阵、短测量，几秒跑完；完整模式每项测一秒左右
torch.manual_seed(0)
print("CPU:", cpu_info()[0], "| torch threads:", torch.get_num_threads())

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 存储器的层次结构
#
# 离计算单元越近的存储器越快、越小、越贵：寄存器（register）→ 一级缓存（L1 cache）→ 二级缓存（L2）
# → 三级缓存（L3，几个核共享）→ 主存（DRAM）→ 固态硬盘 → 网络。常被引用的一组"每个程序员都该知道的延迟"
# （出自 Peter Norvig 的文章 *Teach Yourself Programming in Ten Years*，2001，
# 以及 Jeff Dean 在 LADIS 2009 上的报告 *Numbers Everyone Should Know*；是当年典型机器的数量级）：
#
# | 操作 | 大约的时间 |
# |---|---:|
# | 读 L1 缓存 | 0.5 ns |
# | 读 L2 缓存 | 7 ns |
# | 读主存（一次随机访问） | 100 ns |
# | 从主存顺序读 1 MB | 250 µs |
# | 从机械硬盘顺序读 1 MB | 20 ms |
# | 网络包从美国加州到欧洲再回来 | 150 ms |
#
# 今天的数字变了一些（例如 NVMe 固态硬盘顺序读 1 MB 只要零点几毫秒），但阶梯的形状没变：
# 每下一级，延迟大一个数量级左右。本机的缓存有多大（Linux 从 `/sys` 读出，其他系统跳过）：

# %%
caches = []
for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
    try:
        level, kind, size = ((index / f).read_text().strip() for f in ("level", "type", "size"))
    except OSError:
        continue
    caches.append((f"L{level} {kind}", size))
    print(f"L{level} {kind:12s} {size:>8s} per instance")
if not caches:
    print("no cache information here (not Linux)")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 延迟：顺序读与随机读
#
# 主存的延迟在实验里看得见：从一个大数组里按顺序取一百万个元素，和按随机位置取同样多的元素。
# 顺序读时，硬件预取（prefetch）提前把后面的数据搬进缓存，每个元素只花几纳秒；
# 随机读时，数组放不进缓存的话，几乎每次都要去主存，付一次约 100 ns 的延迟。
# 数组小到能放进缓存时，两种读法差别就不大了。（用 1 个线程，量的是一个核看到的延迟。）

# %%
def read_times(mbytes: float, m: int) -> tuple[float, float]:
    """Seconds per element to gather m float32 elements from an array of `mbytes` MB:
    consecutive positions, then random ones (best of blocks, benchmark.Timer)."""
    table = torch.rand(int(mbytes * 1e6) // 4)
    in_order = torch.arange(m) % table.numel()
    scattered = torch.randint(0, table.numel(), (m,))
    return (best_seconds(lambda: table[in_order], 0.1) / m,
            best_seconds(lambda: table[scattered], 0.1) / m)


threads = torch.get_num_threads()
torch.set_num_threads(1)
try:
    gather = {mb: read_times(mb, 200_000 if QUICK else 1_000_000)
              for mb in (0.25, 64)}  # fits in L2 / far larger than any L3
finally:
    torch.set_num_threads(threads)
for mb, (in_order_s, random_s) in gather.items():
    print(f"{mb:6.2f} MB array: in order {in_order_s * 1e9:6.2f} ns/element, "
          f"random {random_s * 1e9:7.2f} ns/element ({random_s / in_order_s:.1f}x)")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 算力与带宽：每字节做几次运算
#
# 一个计算要**算**多少次（FLOP），又要从内存**搬**多少字节？两者之比叫**算术强度**
# （arithmetic intensity，单位 FLOP/byte）：
#
# - 两个长度为 $n$ 的 float32 向量相加：$n$ 次加法，读 $2 \times 4n$ 字节、写 $4n$ 字节，
#   强度 $n / 12n = 1/12$——每搬 12 个字节只做一次运算；
# - 两个 $n \times n$ 矩阵相乘：$2n^3$ 次运算，只读写 $3 \times 4n^2$ 字节，强度 $n/6$，随 $n$ 增长。
#
# 用工具数一数：`FlopCounterMode` 数矩阵乘法和卷积的 FLOP（逐元素运算它不数，加法的 FLOP 我们自己写），
# dlcamp 的 `ByteCounter` 数每个算子读写的字节。

# %%
n_add = 4_000_000 if QUICK else 16_000_000  # 16 or 64 MB per vector: past the L3 cache
n_mm = 512 if QUICK else 1024
u, v = torch.rand(n_add), torch.rand(n_add)
P, Q = torch.randn(n_mm, n_mm), torch.randn(n_mm, n_mm)
kernels = {}
for name, fn, flops_by_hand in [(f"add n={n_add:,}", lambda: u + v, n_add),
                                (f"matmul n={n_mm}", lambda: P @ Q, 2 * n_mm**3)]:
    with FlopCounterMode(display=False) as flop_counter, ByteCounter() as byte_counter:
        fn()
    counted = flop_counter.get_total_flops()
    flops = counted or flops_by_hand  # FlopCounterMode does not count element-wise ops
    seconds = best_seconds(fn, 0.2 if QUICK else 1.0)
    kernels[name] = {"flops": flops, "bytes": byte_counter.bytes,
                     "intensity": flops / byte_counter.bytes,
                     "gflops_measured": flops / seconds / 1e9,
                     "gbps": byte_counter.bytes / seconds / 1e9}
    print(f"{name:18s} FLOPs {flops:>14,} (counted {counted:,}), bytes {byte_counter.bytes:>12,}, "
          f"{flops / byte_counter.bytes:7.3f} FLOP/byte: {flops / seconds / 1e9:8.2f} GFLOP/s, "
          f"{byte_counter.bytes / seconds / 1e9:6.1f} GB/s")
add, matmul = kernels.values()
assert math.isclose(add["intensity"], 1 / 12) and math.isclose(matmul["intensity"], n_mm / 6)

# %% [markdown]
# 加法每秒只做几 GFLOP，但它每秒搬的字节已经接近内存的极限：它被**带宽**卡住了（memory-bound）。
# 矩阵乘法每个字节要用上百次，数据留在缓存里反复使用，它被**算力**卡住了（compute-bound）。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 本机的屋顶线
#
# 把两个上限量出来：算力峰值取大方阵乘法的最好速度，带宽取 STREAM 式的 triad
# （$c = a + 3b$，数组远大于缓存；McCalpin 的 STREAM 基准，1995）。强度为 $I$ 的计算最快只能达到
#
# $$\text{attainable}(I) = \min(\text{peak},\ \text{bandwidth} \times I).$$
#
# 在双对数坐标里这是一条先斜后平的折线，像屋顶。拐点叫**脊点**（ridge point），强度 = peak / bandwidth：
# 脊点左边的计算受带宽限制，右边的受算力限制。训练一步的 LeNet 和 `cnn` 也放上去
# （`model_point`：前向 + 反向，FLOP 由 `FlopCounterMode` 数，字节由 `ByteCounter` 数）。

# %%
roof = measure_roofline(QUICK)
print(f"peak {roof.peak_gflops:,.1f} GFLOP/s, bandwidth {roof.bandwidth_gbps:,.1f} GB/s, "
      f"ridge {roof.ridge:.1f} FLOP/byte")
native_bf16, why = cpu_bf16()
print("bf16:", "native, its roof is higher still" if native_bf16 else why)
batch = 64 if QUICK else 256
points = dict(kernels)
for name in ("lenet", "cnn"):
    points[name] = model_point(create_model(name), (1, 28, 28), batch, 0.2 if QUICK else 1.0)
print(f"{'':18s} {'FLOP/byte':>10s} {'bound':>8s} {'attainable':>11s} {'measured':>9s}  GFLOP/s")
for name, p in points.items():
    bound = "memory" if p["intensity"] < roof.ridge else "compute"
    print(f"{name:18s} {p['intensity']:10.3f} {bound:>8s} {roof.attainable(p['intensity']):11.1f} "
          f"{p['gflops_measured']:9.1f}")
plot_roofline(roof, points, title=f"Roofline of this CPU ({torch.get_num_threads()} threads)",
              fig=plt.figure(figsize=(7, 4.6)))
plt.show()

# %% [markdown]
# 怎样读这张图：
#
# - 加法贴着斜线：它已经用满了带宽，再快的处理器也帮不了它；要快，只能少搬字节（例如把几个逐元素运算
#   **融合**（fuse）成一个内核，第 6.06 讲的 `torch.compile` 就这样做）；
# - 矩阵乘法贴着平顶：它用满了算力；
# - LeNet 和 `cnn` 的强度都在脊点附近或右边，照理可以接近峰值，实际却离屋顶很远。
#   屋顶线只给出**上限**：小卷积（LeNet 只有 1 到 16 个通道）装不满 SIMD 向量单元，
#   每个算子还有几微秒的调用开销（第 6.07 讲），这些都不在模型里。
#   `cnn` 的通道多、每个算子的活大，在空闲的机器上离屋顶近得多（机器忙时，所有实测点都会往下掉，
#   屋顶本身也是在同样的条件下量的）。
# - `ByteCounter` 把每个算子都当成从主存读写，而小张量其实留在缓存里，所以这里的强度是**下限**。
#
# GPU 的屋顶高得多，脊点也靠右得多（数字来自 NVIDIA 的产品规格书）：本书用的 V100（SXM2）
# float32 15.7 TFLOP/s、张量核（tensor core）FP16 125 TFLOP/s、显存带宽 900 GB/s；
# H100（SXM）float32 67 TFLOP/s、张量核 BF16 约 989 TFLOP/s（不计稀疏）、带宽 3.35 TB/s。
# 算一算它们的脊点：

# %%
gpus = {"V100 fp32": (15.7e3, 900), "V100 fp16 tensor core": (125e3, 900),
        "H100 fp32": (67e3, 3350), "H100 bf16 tensor core": (989e3, 3350)}
for name, (peak, bandwidth) in gpus.items():
    print(f"{name:22s} ridge {peak / bandwidth:6.1f} FLOP/byte")
print(f"{'this CPU fp32':22s} ridge {roof.ridge:6.1f} FLOP/byte")

# %% [markdown]
# H100 的张量核要每字节做约 300 次运算才能用满：LeNet 这样的小网络在 GPU 上几乎总是受带宽和调用开销限制，
# 所以要用大批量、融合的内核、CUDA 图（CUDA graph）等办法。有 GPU 时，下一格量一量它的两条上限。

# %%
gpu_roof = None
if torch.cuda.is_available():
    g = 4096
    ga, gb = torch.randn(g, g, device="cuda"), torch.randn(g, g, device="cuda")
    big = torch.rand(64_000_000, device="cuda")  # 256 MB
    out = torch.empty_like(big)
    mm_s = best_seconds(lambda: ga @ gb, 0.2)  # Timer synchronises CUDA
    copy_s = best_seconds(lambda: out.copy_(big), 0.2)
    gpu_roof = (2 * g**3 / mm_s / 1e9, 2 * big.numel() * 4 / copy_s / 1e9)
    print(f"{torch.cuda.get_device_name(0)}: fp32 matmul {gpu_roof[0]:,.0f} GFLOP/s, "
          f"copy {gpu_roof[1]:,.0f} GB/s, ridge {gpu_roof[0] / gpu_roof[1]:.1f} FLOP/byte")
else:
    print("no GPU here: the CPU roofline above is this machine's")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 存储器分层：越近越快越小；随机访问大数组要付主存的延迟，顺序访问靠预取几乎不用等；
# - 算术强度 = FLOP / 字节；逐元素运算约 1/12（float32），大矩阵乘法随尺寸增长；
# - 屋顶线：可达速度 = min(峰值, 带宽 × 强度)；脊点左边受带宽限制，右边受算力限制；
# - 屋顶是上限：小网络离它很远，因为调用开销和小内核的效率不在模型里。
#
# 自测：把 `cnn` 的批量从 64 增加到 256，它在图上会往哪边移动？速度呢？（试试 `model_point`。）
#
# 最后用断言检查本讲的要点：

# %%
assert gather[64][1] > 3 * gather[64][0], "random reads of a big array wait for main memory"
assert gather[64][1] / gather[64][0] > gather[0.25][1] / gather[0.25][0], "caches hide latency"
assert matmul["intensity"] > 100 * add["intensity"]
assert matmul["gflops_measured"] > 5 * add["gflops_measured"], "matmul reuses bytes; add cannot"
assert add["intensity"] < roof.ridge < matmul["intensity"], "add is memory-, matmul compute-bound"
assert roof.attainable(add["intensity"]) == roof.bandwidth_gbps * add["intensity"]
assert roof.attainable(matmul["intensity"]) == roof.peak_gflops
assert points["cnn"]["intensity"] > points["lenet"]["intensity"], "wider layers reuse more"
print(f"lesson 6.09 done: this CPU's ridge is {roof.ridge:.1f} FLOP/byte; "
      f"LeNet {points['lenet']['intensity']:.1f}, cnn {points['cnn']['intensity']:.1f}")
