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
#     title: 延后初始化（lazy initialization）
#     title_en: Lazy initialisation
#     minutes:
#       quick: 0.1
#       full: 0.2
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 延后初始化（lazy initialization）
#
# 到目前为止，建每一层时都要写出输入的大小：`nn.Linear(400, 120)` 里的 400 是上一层输出展平后的长度。
# 卷积网络里这个数要一层层推算（第 2.05 讲用 `conv_output_size` 算过 LeNet 的 16×5×5），
# 图片尺寸或通道数一变就得重算。
#
# **延后初始化**换个做法：建层时只写输出的大小，输入大小空着；第一次前向传播时，层看到真实的输入，
# 再按它的形状创建参数。PyTorch 的 `nn.LazyLinear`、`nn.LazyConv2d`、`nn.LazyBatchNorm2d` 等就是这样的层。
# 本讲：它们在第一次前向传播前后分别是什么样；用"空跑"（dry run）让参数成形；
# 以及延后初始化会弄坏哪些事情——初始化、优化器的参数分组、批量规范化的统计量、`state_dict` 的存取——各自怎么修。

# %%
import io

import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from dlcamp.core.shapes import stack_output_size
from dlcamp.core.utils import is_quick

QUICK = is_quick()  # 快速模式：最后的小训练只走几十步
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 第一次前向传播之前
#
# 一个多层感知机，两层都只写了输出大小。打印出来 `in_features=0`，权重的类型是
# `UninitializedParameter`：它是一个还没有形状、没有数据的占位符。任何要用到它数值或形状的操作都会报错，
# 连数一数参数个数都不行。

# %%
net = nn.Sequential(nn.LazyLinear(256), nn.ReLU(), nn.LazyLinear(10))
print(net)
print(type(net[0].weight).__name__)
try:
    sum(p.numel() for p in net.parameters())
except ValueError as e:
    count_error = str(e)
    print("ValueError:", count_error[:95], "...")
assert "uninitialized parameter" in count_error

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 空跑：让参数成形
#
# 送一批形状正确的输入进去（数值无所谓，全零就行），每个延后层都在自己的 `forward` 之前看到输入，
# 建好参数、按默认方案初始化，然后把自己的类**换成**普通的层：`LazyLinear` 变成 `Linear`。
# 之后它和一开始就写好大小的层没有任何区别。

# %%
net(torch.zeros(2, 20))  # (batch=2, features=20): a dry run
print(net)
print(type(net[0]).__name__, type(net[0].weight).__name__, tuple(net[0].weight.shape))
n_params = sum(p.numel() for p in net.parameters())
print("parameters:", n_params, "=", 20 * 256 + 256 + 256 * 10 + 10)
assert type(net[0]) is nn.Linear and net[0].in_features == 20
assert n_params == 20 * 256 + 256 + 256 * 10 + 10
assert not any(isinstance(m, LazyModuleMixin) for m in net.modules())

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 卷积网络：不必再算展平后的长度
#
# 这是 LeNet 的结构（和 dlcamp 注册的 `lenet` 一层一层相同），但卷积层不写输入通道数，
# 展平后的全连接层也不写输入长度。同一份定义可以用在 28×28 的灰度图和 32×32 的彩色图上：
# 空跑之后，第一个全连接层的输入长度正是 $16 \times s \times s$，$s$ 由 `stack_output_size` 按卷积和
# 汇聚的形状公式算出。

# %%
LENET_LAYERS = ((5, 2, 1), (2, 0, 2), (5, 0, 1), (2, 0, 2))  # (kernel, padding, stride) per layer


def lazy_lenet(num_classes: int = 10) -> nn.Sequential:
    """LeNet-5 (sigmoid, average pooling) whose input channels and sizes come from the data."""
    return nn.Sequential(
        nn.LazyConv2d(6, kernel_size=5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2),
        nn.LazyConv2d(16, kernel_size=5), nn.Sigmoid(), nn.AvgPool2d(2),
        nn.Flatten(),
        nn.LazyLinear(120), nn.Sigmoid(),
        nn.LazyLinear(84), nn.Sigmoid(),
        nn.LazyLinear(num_classes),
    )


shapes = {}
for channels, size in ((1, 28), (3, 32)):
    model = lazy_lenet()
    model(torch.zeros(1, channels, size, size))  # dry run: (1, C, H, W)
    side = stack_output_size(size, LENET_LAYERS)
    shapes[(channels, size)] = (model[0].in_channels, model[7].in_features, 16 * side * side)
    print(f"{channels} x {size} x {size} images: conv1 in_channels = {model[0].in_channels}, "
          f"first Linear in_features = {model[7].in_features} = 16 x {side} x {side}")
assert shapes[(1, 28)] == (1, 400, 400) and shapes[(3, 32)] == (3, 576, 576)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 会弄坏什么（一）：初始化要在空跑之后
#
# 自己的初始化（第 6.02 讲）要读参数的形状，对还没成形的参数调用会报错。
# 顺序必须是：先 `.to(device, dtype)`，再空跑，然后初始化，最后建优化器。

# %%
def init_xavier(module: nn.Module) -> None:
    if isinstance(module, nn.Linear | nn.Conv2d):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


early = lazy_lenet()
try:
    early.apply(init_xavier)
except ValueError as e:
    init_error = str(e)
    print("ValueError:", init_error[:80], "...")
early(torch.zeros(1, 1, 28, 28))  # dry run first ...
early.apply(init_xavier)  # ... then it works
assert "uninitialized parameter" in init_error and torch.equal(early[0].bias, torch.zeros(6))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 会弄坏什么（二）：在空跑之前建优化器
#
# 参数成形时，PyTorch 是在**原来的参数对象**上填入数据的，所以空跑前交给优化器的参数仍然是模型里的那些，
# 今天的 PyTorch 里普通的 `SGD(net.parameters())` 不受影响（下面验证了）。
# 真正出问题的是建优化器时要**看参数**的代码。一个常见写法是按维数分组：矩阵（权重）做权重衰减，
# 一维的偏置和规范化参数不做。空跑之前，占位符的 `ndim` 是 1——于是所有权重都被分进了"不衰减"组，
# 不报错，只是权重衰减悄悄失效了。

# %%
def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay for matrices and kernels (ndim >= 2), none for biases and norm scales."""
    params = list(model.parameters())
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


def decayed_count(model: nn.Module) -> int:
    return len(param_groups(model, 1e-4)[0]["params"])


too_soon = nn.Sequential(nn.LazyLinear(64), nn.ReLU(), nn.LazyLinear(10))
print("placeholder ndim:", too_soon[0].weight.ndim)
decay_before = decayed_count(too_soon)  # what an optimizer built now would get
optimizer = torch.optim.SGD(too_soon.parameters(), lr=0.1)
too_soon(torch.zeros(2, 20))  # dry run after the optimizer was made
decay_after = decayed_count(too_soon)
same_objects = all(p is q for p, q in zip(optimizer.param_groups[0]["params"],
                                         too_soon.parameters(), strict=True))
before_step = too_soon[0].weight.detach().clone()
too_soon(torch.randn(2, 20)).sum().backward()
optimizer.step()  # the optimizer made before the dry run still trains the materialised weights
stepped = not torch.equal(before_step, too_soon[0].weight)
print(f"tensors with weight decay: {decay_before} before the dry run, {decay_after} after; "
      f"the optimizer still holds the model's parameters: {same_objects}, and updates them: "
      f"{stepped}")
assert decay_before == 0 and decay_after == 2 and same_objects and stepped

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 会弄坏什么（三）：空跑也是一次前向传播
#
# 在训练模式下，批量规范化每次前向传播都会更新它的滑动均值和方差。用全零的假数据空跑，
# 方差的估计就被往 0 拉了一下（`0.9 × 1 + 0.1 × 0`），计数器也记了一个批量：假数据混进了模型的状态。
# 修法：在 `eval()` 模式、`torch.no_grad()` 下空跑，然后再切回训练模式。

# %%
def lazy_bn_net() -> nn.Sequential:
    return nn.Sequential(nn.LazyConv2d(8, kernel_size=3), nn.LazyBatchNorm2d(), nn.ReLU())


careless = lazy_bn_net()
careless(torch.zeros(2, 3, 16, 16))  # dry run in training mode
careful = lazy_bn_net()
careful.eval()
with torch.no_grad():
    careful(torch.zeros(2, 3, 16, 16))  # dry run that leaves no trace
careful.train()
for name, model in (("train-mode dry run", careless), ("eval + no_grad dry run", careful)):
    bn = model[1]
    print(f"{name:24s} running_var[0] = {bn.running_var[0].item():.2f}, "
          f"batches tracked = {bn.num_batches_tracked.item()}")
assert careless[1].num_batches_tracked == 1 and careless[1].running_var[0] < 1
assert careful[1].num_batches_tracked == 0 and torch.equal(careful[1].running_var, torch.ones(8))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 会弄坏什么（四）：`state_dict` 的存取
#
# 空跑之前的 `state_dict` 里装的是占位符：存成 safetensors 会报错，`torch.save` 虽然能存，
# 但 `weights_only=True` 读不回来；反过来，把它装进一个已经成形的模型也会报错。
# 空跑之前不要存模型。

# %%
placeholders = lazy_lenet().state_dict()  # saved before any dry run
try:
    safetensors_bytes(placeholders)
except ValueError as e:
    save_error = str(e)
    print("safetensors   ValueError:", save_error[:60], "...")
buffer = io.BytesIO()
torch.save(placeholders, buffer)  # torch.save accepts it ...
buffer.seek(0)
try:
    torch.load(buffer, weights_only=True)  # ... but it cannot be read back safely
except Exception as e:  # pickle.UnpicklingError
    reload_error = str(e)
    why = next((line for line in reload_error.splitlines() if "GLOBAL" in line), "")
    print("torch.load    UnpicklingError:", why[:90])
ready = lazy_lenet()
ready(torch.zeros(1, 1, 28, 28))
try:
    ready.load_state_dict(placeholders)
except RuntimeError as e:
    load_error = str(e)
    print("load_state_dict RuntimeError:", load_error[:80], "...")
assert "uninitialized" in save_error and "uninitialized" in load_error
assert "Weights only load failed" in reload_error

# %% [markdown]
# 反方向是可以的：把一个成形模型的 `state_dict` 装进全新的延后模型，不用空跑，
# 参数直接按文件里的形状成形。但这时**形状无从检查**——模型还不知道输入是什么样的。
# 下面把一个按 32×32 图片建的 LeNet 的参数装进要处理 28×28 图片的模型：卷积层的形状两边一样，
# 只有第一个全连接层不同（576 对 400 个输入）。装载时一声不响，错误要等到第一次有数据流过时才出现——
# 在真实的程序里，那可能是读完数据、建好一切之后很久。
# 修法：**先用真实形状的输入空跑，再装载**，形状不符时 `load_state_dict` 当场报出是哪个参数、差在哪里。

# %%
big = lazy_lenet()
big(torch.zeros(1, 1, 32, 32))  # a LeNet for 32 x 32 images
gray_images = torch.rand(4, 1, 28, 28)

quiet = lazy_lenet()
quiet.load_state_dict(big.state_dict())  # accepted: shapes come from the file
try:
    quiet(gray_images)
except Exception as e:  # only the first forward pass notices
    late_error = f"{type(e).__name__}: {e}"
    print("first forward:", late_error[:110])

checked = lazy_lenet()
checked(torch.zeros(1, 1, 28, 28))  # dry run with the real input shape first
try:
    checked.load_state_dict(big.state_dict())
except RuntimeError as e:
    early_error = str(e)
    print("load_state_dict:", " ".join(early_error.split())[:150], "...")
assert "size mismatch for 7.weight" in early_error

# %% [markdown]
# 文件和模型相符时，装进全新的延后模型就能用，输出与原模型逐位相同：

# %%
gray = lazy_lenet()
gray(torch.zeros(1, 1, 28, 28))
restored = lazy_lenet()
restored.load_state_dict(gray.state_dict())  # no dry run needed: shapes come from the file
print("same outputs:", torch.equal(restored(gray_images), gray(gray_images)),
      "| became", type(restored[7]).__name__)
assert torch.equal(restored(gray_images), gray(gray_images))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 会弄坏什么（五）：随机初值的顺序
#
# 普通层在构造时取随机数，延后层要等到空跑时才取。所以同一个随机种子下，
# "延后层 + 普通层"的模型和"全是普通层"的模型得到的初值不同：普通层先取走了随机数。
# 需要逐位复现别人的初值时，要么全用延后层（顺序又一致了），要么空跑之后用种子重新初始化、或直接装载权重。

# %%
x = torch.zeros(2, 20)
torch.manual_seed(1)
mixed = nn.Sequential(nn.LazyLinear(8), nn.Linear(8, 4))
mixed(x)
torch.manual_seed(1)
all_lazy = nn.Sequential(nn.LazyLinear(8), nn.LazyLinear(4))
all_lazy(x)
torch.manual_seed(1)
eager = nn.Sequential(nn.Linear(20, 8), nn.Linear(8, 4))
print("lazy + eager == eager:", torch.equal(mixed[0].weight, eager[0].weight),
      "| all lazy == eager:", torch.equal(all_lazy[0].weight, eager[0].weight))
assert not torch.equal(mixed[0].weight, eager[0].weight)
assert torch.equal(all_lazy[0].weight, eager[0].weight)
assert torch.equal(all_lazy[1].weight, eager[1].weight)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 正确的顺序，然后训练
#
# 把上面的修法连起来就是使用延后层的固定步骤：建模型 → 搬到设备、定好 dtype → 在 `eval()` 和
# `no_grad` 下用真实形状空跑 → 初始化 → 按参数分组建优化器 → 训练（或装载检查点）。
# 下面用一个带批量规范化的小卷积网络走一遍，任务是人造的：16×16 的噪声图里有一个亮块，
# 判断它在哪个象限（4 类）。

# %%
def lazy_cnn(num_classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.LazyConv2d(8, kernel_size=3, padding=1), nn.LazyBatchNorm2d(), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.LazyConv2d(16, kernel_size=3, padding=1), nn.LazyBatchNorm2d(), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(), nn.LazyLinear(num_classes))


def quadrant_images(n: int, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """n noisy images (n, 1, size, size) with a bright 4x4 patch; label = its quadrant 0..3."""
    labels = torch.randint(0, 4, (n,))
    images = torch.rand(n, 1, size, size) * 0.5
    half = size // 2
    for i, quadrant in enumerate(labels.tolist()):
        top, left = (quadrant // 2) * half + 2, (quadrant % 2) * half + 2
        images[i, 0, top:top + 4, left:left + 4] += 1.0
    return images, labels


torch.manual_seed(0)
cnn = lazy_cnn(4).to(torch.float32)  # 1. device and dtype first
cnn.eval()
with torch.no_grad():
    cnn(torch.zeros(1, 1, 16, 16))  # 2. dry run with the real shape, leaving no trace
cnn.train()
cnn.apply(init_xavier)  # 3. initialise
optimizer = torch.optim.Adam(param_groups(cnn, weight_decay=1e-4), lr=1e-2)  # 4. optimizer
print(cnn)
print("tensors with weight decay:", len(optimizer.param_groups[0]["params"]),
      "(2 conv kernels + 1 linear weight; batch-norm scales are 1-D)")
images, labels = quadrant_images(128)
losses = []
for _ in range(15 if QUICK else 100):
    loss = nn.functional.cross_entropy(cnn(images), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
cnn.eval()
test_images, test_labels = quadrant_images(256)
accuracy = (cnn(test_images).argmax(dim=1) == test_labels).float().mean().item()
print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f} after {len(losses)} steps; "
      f"accuracy on new images {accuracy:.1%}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - `nn.LazyLinear`、`nn.LazyConv2d` 等只写输出大小；第一次前向传播（空跑）时按输入建参数，并变成普通的层；
# - 空跑之前参数是占位符：不能初始化、不能数个数、不能存；按 `ndim` 分组会悄悄出错；
# - 在 `eval()` 和 `no_grad` 下空跑，免得假数据混进批量规范化的统计量；
# - 检查点可以直接装进新的延后模型，但要检查形状，就先用真实形状空跑再装载；
# - 顺序：设备和 dtype → 空跑 → 初始化 → 优化器。
#
# 自测：一个模型的输入有时是 28×28，有时是 32×32，能不能先用 28×28 空跑，再拿 32×32 的图去训练？为什么？
#
# 最后用断言检查本讲的要点都成立：

# %%
assert shapes[(1, 28)][1] == 16 * stack_output_size(28, LENET_LAYERS) ** 2
assert decay_before == 0 and decay_after == 2, "grouping by ndim before the dry run is wrong"
assert careful[1].num_batches_tracked == 0, "an eval/no_grad dry run leaves no trace"
assert "size mismatch" in early_error, "dry run first, and load_state_dict checks the shapes"
assert len(optimizer.param_groups[0]["params"]) == 3  # 2 conv kernels + 1 linear weight
assert losses[-1] < 0.5 * losses[0] and accuracy > 0.5, "the lazily built network must learn"
print("lesson 6.05 done: lazy layers take their shapes from a dry run; then init, optimizer, load")
