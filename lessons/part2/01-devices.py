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
#     title: 计算设备（device）：CPU 与 GPU
#     title_en: Devices - CPU and GPU
#     minutes:
#       quick: 0.1
#       full: 0.1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 计算设备（device）：CPU 与 GPU
#
# 第二部分要训练卷积神经网络（convolutional neural network，CNN），计算量比前面的多层感知机大得多。
# 这样的计算最适合交给 GPU（graphics processing unit，图形处理器）：它有成千上万个简单的计算单元，
# 擅长把同一种运算同时做在大量数据上。苹果芯片的 Mac 上对应的是 MPS（Metal Performance Shaders）。
#
# PyTorch 里每个张量和每个模型参数都"住"在某个**设备**上，运算在数据所在的设备上进行。
# 本讲的内容：有哪些设备、怎样选择设备、把张量和模型搬到设备上、设备不一致时会怎样，
# 以及搬运数据时什么最花时间。没有 GPU 也能运行本讲：与 GPU 有关的测量会自动跳过。

# %%
import inspect
import time

import torch
from torch import nn

from dlcamp.core.utils import is_quick, pick_device
from dlcamp.models import create_model
from dlcamp.train.speed import cpu_bf16, plan_speed

QUICK = is_quick()  # 快速模式：测速用的数据小一些
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 有哪些设备
#
# `torch.device("cpu")` 表示 CPU 和主机内存（host memory）；`torch.device("cuda")` 表示当前的
# NVIDIA GPU，有多块时用 `"cuda:0"`、`"cuda:1"` 区分；`torch.device("mps")` 是 Apple GPU。
# CPU 只有一个设备名：不管机器有几个核，PyTorch 都会用多个线程（thread）把它们用起来。

# %%
print("CUDA available:", torch.cuda.is_available(), "| GPUs:", torch.cuda.device_count())
mps = getattr(torch.backends, "mps", None)
print("MPS available:", mps is not None and mps.is_available())
print("CPU threads used by torch:", torch.get_num_threads())
print(torch.device("cpu"), torch.device("cuda:1"), torch.device("cuda:1").index)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 选择设备：`pick_device`
#
# 同一份代码最好在笔记本电脑和 GPU 服务器上都能运行。dlcamp 的所有训练代码、命令行和本课程的
# 每一讲都通过 `dlcamp.core.utils.pick_device` 选择设备：默认 `"auto"` 依次尝试 CUDA、MPS，
# 都没有就用 CPU；也可以明确指定。它的全部代码如下：

# %%
print(inspect.getsource(pick_device))
device = pick_device()
print("this lesson runs on:", device)
assert pick_device("cpu") == torch.device("cpu")
if not torch.cuda.is_available():
    try:
        pick_device("cuda")
    except ValueError as e:
        print("asking for a GPU that is not there:", e)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 张量在哪个设备上
#
# 张量默认创建在 CPU 上，`x.device` 告诉我们它在哪里。可以用 `device=` 直接在目标设备上创建，
# 也可以用 `.to(device)` 复制过去。注意 `.to` 返回的是**新张量**（原来的还在原处）；
# 如果张量已经在那个设备上，并且类型也相同，`.to` 什么都不做，直接返回它自己，不会复制。

# %%
x = torch.ones(2, 3)
print(x.device)
y = torch.ones(2, 3, device=device)  # created where it will be used: no copy at all
x_there = x.to(device)
print(y.device, x_there.device, x.device)
assert x.to("cpu") is x  # already there: nothing is copied
assert x.to(torch.float64) is not x  # a new dtype is a new tensor
z = x_there + y  # both operands on the same device: the result stays there
assert z.device == y.device

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 两个设备上的张量不能直接运算
#
# PyTorch 不会在背后悄悄地替我们搬运数据：搬运很慢，应该由我们决定什么时候搬。
# 所以两个运算对象不在同一设备上时，它会报错。没有 GPU 的机器上，我们用 `meta` 设备来演示：
# 它是一个只记录形状、不存放数据的"假"设备，但设备检查和真正的 GPU 一样严格。

# %%
other = device if device.type != "cpu" else torch.device("meta")
a, b = torch.ones(3), torch.ones(3, device=other)
try:
    a + b
except RuntimeError as e:
    mixed_error = str(e)
    print("RuntimeError:", mixed_error)
assert "device" in mixed_error
if other.type != "meta":  # a real second device: copy by hand, then it works
    assert torch.equal(a + b.cpu(), torch.full((3,), 2.0))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 把模型放到设备上
#
# 模型的参数也是张量。`net.to(device)` 把所有参数和缓冲区（buffer）搬过去；
# 和张量不同，`Module.to` 是**原地**修改，返回的就是模型本身。
# 之后送进模型的输入也必须在同一设备上，否则得到的就是上面那种错误。

# %%
net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
assert net.to(device) is net  # in place, unlike Tensor.to
print({name: str(p.device) for name, p in net.named_parameters()})
X = torch.randn(5, 4, device=device)  # (5, 4) on the model's device
print(net(X).device, net(X).shape)
assert net(X).device == next(net.parameters()).device

net_elsewhere = nn.Linear(4, 1).to(other)  # a model on one device, its input on another
try:
    net_elsewhere(torch.randn(5, 4))
except RuntimeError as e:
    model_error = str(e)
    print("RuntimeError:", model_error)
assert "device" in model_error

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 什么最花时间（一）：主机与 GPU 之间的复制
#
# 数据在 CPU 内存和 GPU 显存之间经过 PCIe（或 NVLink）总线传输，带宽比 GPU 自己读写显存低一两个数量级。
# 因此：数据最好一次搬过去、留在那里；训练时只把每个批量搬一次；尽量不要在 GPU 和 CPU 之间来回倒腾。
#
# **锁页内存**（pinned memory，也叫 page-locked memory）：普通内存随时可能被操作系统换出，
# GPU 不能直接从中读取，驱动要先把它复制到一块锁页的缓冲区，再传给 GPU。
# 如果数据本来就在锁页内存里（`tensor.pin_memory()`，或 `DataLoader(pin_memory=True)`），
# 就省掉了这一步，还可以用 `.to(device, non_blocking=True)` 让复制和计算同时进行。
#
# 有 GPU 时，下面测量主机与 GPU 之间几种复制的带宽，并和显卡内部的复制比一比；
# 没有 GPU 时这一格只打印一句说明。

# %%
def best_time(fn, repeat: int = 5) -> float:
    """The fastest of `repeat` runs, in seconds; waits for the GPU so the time is real."""
    best = float("inf")
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


copy_rates = {}
if device.type == "cuda":
    n_bytes = (32 if QUICK else 256) * 2**20
    host = torch.randn(n_bytes // 4)  # float32 in ordinary (pageable) memory
    pinned = host.pin_memory()
    on_gpu = host.to(device)
    copy_rates["host -> GPU, pageable"] = n_bytes / best_time(lambda: host.to(device))
    copy_rates["host -> GPU, pinned"] = n_bytes / best_time(
        lambda: pinned.to(device, non_blocking=True))
    copy_rates["GPU -> host"] = n_bytes / best_time(lambda: on_gpu.cpu())
    copy_rates["GPU -> GPU (on the card)"] = n_bytes / best_time(lambda: on_gpu.clone())
    for what, rate in copy_rates.items():
        print(f"{what:26s} {rate / 1e9:8.1f} GB/s")
    try:
        on_gpu.numpy()  # NumPy lives in host memory: a GPU tensor must be copied first
    except TypeError as e:
        print("TypeError:", e)
else:
    print(f"no GPU here ({device}): nothing crosses a bus, so copies are just memory copies")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 什么最花时间（二）：逐个元素取回 Python
#
# `.item()` 把一个元素变成 Python 数，`.tolist()` 把整个张量变成 Python 列表，
# `.numpy()` 在 CPU 上则**不复制**，直接和张量共享内存（第 1.01 讲）。
# 每次调用都有固定的开销：在 CPU 上是 Python 调用和创建对象的开销；在 GPU 上还要再加上
# 一次**同步**（synchronization）——CPU 必须停下来等 GPU 把之前排队的计算全部做完，
# 再把结果拷回来。所以在循环里对每个元素调用 `.item()`（例如每个批量都 `print(loss.item())`）
# 是常见的性能陷阱：应该先在设备上把要的结果算好、攒成一个张量，再**一次**取回。

# %%
n = 5_000 if QUICK else 50_000
values = torch.randn(n, device=device)  # (n,)

per_element = best_time(lambda: [values[i].item() for i in range(n)], repeat=2)
at_once = best_time(lambda: values.tolist())
as_numpy = best_time(lambda: values.cpu().numpy())  # on the CPU: a view, no copy at all
print(f"{f'{n} x .item()':20s} {per_element * 1e3:9.3f} ms ({per_element / n * 1e6:.2f} us each)")
print(f"{'one .tolist()':20s} {at_once * 1e3:9.3f} ms")
print(f"{'one .cpu().numpy()':20s} {as_numpy * 1e3:9.3f} ms")
print(f"one call for all {n} elements is {per_element / at_once:.0f}x faster than one per element")
assert values.tolist()[:10] == [values[i].item() for i in range(10)]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 什么最花时间（三）：连续与不连续的内存
#
# 张量的元素按行依次排在一块内存里，就是**连续的**（contiguous）。转置 `.T`、
# 步长切片 `x[:, ::2]` 之类的操作不复制数据，只改变"怎样读"（步长，stride），得到的张量不连续。
# 需要一块连续内存时——`.view()`、复制到 GPU、交给某些算子——就得先用 `.contiguous()` 重新排列一遍。
# 按行顺序复制能顺着缓存（cache）读写，按转置顺序复制则要在内存里跳着读，通常慢好几倍。

# %%
size = 1024 if QUICK else 4096
M = torch.randn(size, size, device=device)  # (size, size), contiguous
MT = M.T  # (size, size), a view with swapped strides: no copy
print("strides:", M.stride(), MT.stride(), "| contiguous:", M.is_contiguous(), MT.is_contiguous())
try:
    MT.view(-1)
except RuntimeError as e:
    print("RuntimeError:", str(e)[:90], "...")
out = torch.empty_like(M)  # copy into the same memory each time: only the copy is timed
plain_copy = best_time(lambda: out.copy_(M))
transposed_copy = best_time(lambda: out.copy_(MT))  # what MT.contiguous() has to do
print(f"copy {size}x{size} in order: {plain_copy * 1e3:.2f} ms, "
      f"transposed: {transposed_copy * 1e3:.2f} ms ({transposed_copy / plain_copy:.1f}x)")
MT_c = MT.contiguous()
assert MT_c.is_contiguous() and MT_c.data_ptr() != M.data_ptr() and torch.equal(MT_c, MT)
assert MT.data_ptr() == M.data_ptr()  # the transpose itself shares M's memory

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 按机器选择加速开关：精度、内存布局、线程
#
# 同一个"加速开关"在一台机器上快、在另一台上反而慢。最典型的是 **bfloat16**（bf16）：
# 只用 16 位存一个数，有原生 bf16 指令的硬件（较新的 GPU，带 AVX512_BF16 或 AMX 的 CPU）
# 上矩阵乘法快近一倍；没有这些指令的 CPU——大多数笔记本电脑——只能用软件模拟，反而慢 5–10 倍。
# 所以 dlcamp 不假设快的那条路，而是按机器来选（`dlcamp.train.speed.plan_speed`）：
# 精度（precision）、通道在后的内存布局（channels-last，NHWC）、线程数，训练开始时打印每个选择和理由，
# `dlcamp doctor` 也会显示。先量一量这台机器上 bf16 和 float32 的矩阵乘法：

# %%
n = 256
A32, B32 = torch.randn(n, n), torch.randn(n, n)
A16, B16 = A32.bfloat16(), B32.bfloat16()
fp32_time, bf16_time = best_time(lambda: A32 @ B32), best_time(lambda: A16 @ B16, repeat=3)
print(f"{n}x{n} matmul on the CPU: fp32 {2 * n**3 / fp32_time / 1e9:.1f} GFLOP/s, "
      f"bf16 {2 * n**3 / bf16_time / 1e9:.1f} GFLOP/s")
plan = plan_speed(torch.device("cpu"), create_model("cnn"))
print(plan.describe())

# %% [markdown]
# 在没有原生 bf16 的 CPU 上，bf16 那一行慢得多，于是 `precision` 选了 fp32；有原生 bf16 时才选 bf16。
# 想自己试：`dlcamp train --precision bf16` 强制打开，对比每秒训练的图片数。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 加速开关要按机器选：bf16 只在有原生指令的硬件上更快，别处反而慢得多；
# - 张量和模型参数都在某个设备上；`pick_device()` 选出最好的可用设备，同一份代码到处运行；
# - `Tensor.to` 返回新张量（已在目标设备上时返回自身），`Module.to` 原地移动参数；
# - 参与同一运算的张量、模型和它的输入必须在同一设备上，PyTorch 不会替我们悄悄搬运；
# - 主机与 GPU 之间的复制和同步很贵：一次搬一大块、留在设备上、用锁页内存，
#   把 `.item()` 之类的取回操作攒到一起做。
#
# 自测：训练循环里每一步都 `print(loss.item())`，在 GPU 上为什么会变慢？怎样改？
#
# 最后用断言检查本讲的要点都成立：

# %%
assert pick_device() == device and x_there.device.type == device.type
assert all(p.device.type == device.type for p in net.parameters())
assert "device" in mixed_error and "device" in model_error
assert per_element > 5 * at_once, "one call for the whole tensor must beat one call per element"
assert plan.precision.value == ("bf16" if cpu_bf16()[0] else "fp32")  # bf16 only where native
if copy_rates:
    assert copy_rates["GPU -> GPU (on the card)"] > copy_rates["host -> GPU, pageable"]
print("lesson 2.01 done: tensors and models live on devices; batched transfers are cheaper; "
      f"this CPU trains in {plan.precision.value}")
