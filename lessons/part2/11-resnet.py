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
#     title: 残差网络（ResNet）
#     title_en: Residual networks (ResNet)
#     minutes:
#       quick: 0.2
#       full: 8
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 残差网络（ResNet）
#
# 网络越深越好吗？直觉上，多加几层至少不会更差：新加的层只要学成"什么都不做"（恒等映射，identity），
# 深网络就和浅网络一样。可实际训练时，普通的深层网络常常比浅的**训练误差还高**——
# 不是过拟合，而是优化器找不到那个"什么都不做"的解。
#
# **残差网络**（ResNet；何恺明等，2016）把问题换了个问法：与其让一组层直接学出目标映射 $f(\mathbf{x})$，
# 不如让它学**残差**（residual）$g(\mathbf{x}) = f(\mathbf{x}) - \mathbf{x}$，输出 $\mathbf{x} + g(\mathbf{x})$。
# 想要恒等映射，只要 $g = 0$：把权重推向 0 比学出恒等映射容易得多。
# 靠这个简单的想法，ResNet 赢得了 2015 年的 ImageNet 竞赛，残差连接也成了后来几乎所有深层网络（包括 Transformer）的标配。

# %%
import inspect

import torch
from torch import nn

from dlcamp.core.utils import is_quick
from dlcamp.course.compare import (
    describe_model,
    layer_shapes,
    lesson_run,
)
from dlcamp.models import book_config, create_model, model_recipe
from dlcamp.models import resnet as resnet_family

QUICK = is_quick()  # 快速模式：6000 张训练图片、批量 64，只训练 QUICK_STEPS 步
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 残差块
#
# ResNet 的残差块沿用 VGG 的 3×3 卷积：两个"卷积 → 批量规范化"，中间一个 ReLU；
# 然后把输入 $\mathbf{x}$ 直接加到输出上，再过一个 ReLU。这条绕过两个卷积层的路叫**快捷连接**（shortcut）。
# 如果块要把高和宽减半（步幅 2）或改变通道数，$\mathbf{x}$ 的形状就对不上了，
# 这时快捷连接上放一个 1×1 卷积（加 BN）来变换形状：

# %%
print(inspect.getsource(resnet_family.Residual))

# %%
X = torch.randn(4, 3, 6, 6)  # (B, C, H, W)
same = resnet_family.Residual(3, 3)  # identity shortcut
down = resnet_family.Residual(3, 6, stride=2)  # 1x1 conv shortcut: half the side, twice the channels
print("same shape:", tuple(same(X).shape), type(same.shortcut).__name__)
print("downsample:", tuple(down(X).shape), down.shortcut)
assert same(X).shape == (4, 3, 6, 6) and isinstance(same.shortcut, nn.Identity)
assert down(X).shape == (4, 6, 3, 3)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 恒等映射有多容易？
#
# 把残差块里最后一个 BN 层的 $\gamma$ 和 $\beta$ 设成 0，残差分支的输出就是 0，整个块变成 $\mathrm{ReLU}(\mathbf{x})$；
# 对非负的输入（前一个块的 ReLU 输出正是这样），它就是恒等映射。普通的两层卷积要学成恒等映射可没这么简单。

# %%
with torch.no_grad():
    same.bn2.weight.zero_()
    same.bn2.bias.zero_()
X_pos = torch.relu(torch.randn(4, 3, 6, 6))  # non-negative, like the output of a block
assert torch.equal(same(X_pos), X_pos)
print("a residual block with a zero branch passes its input through unchanged")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## ResNet-18
#
# 几个残差块组成一个**阶段**（stage）：第一个块负责减半高宽、加倍通道，其余的块保持形状：

# %%
print(inspect.getsource(resnet_family.resnet_stage))
print(inspect.getsource(resnet_family.resnet))

# %% [markdown]
# 整个网络像 GoogLeNet 一样：开头一个"主干"（7×7 卷积、BN、ReLU、3×3 最大汇聚），
# 接 4 个阶段（64、128、256、512 个通道），每个阶段 2 个残差块，最后全局平均汇聚和一个全连接层。
# 层数：1 个卷积层 + 8 个块 × 2 个卷积层 + 1 个全连接层 = 18，所以叫 ResNet-18（1×1 的快捷连接不计）。

# %%
BOOK = book_config("resnet18")
BOOK_SIZE = BOOK["image_size"]
book_net = create_model("resnet18", image_size=BOOK_SIZE, **BOOK["model_kwargs"])
layers = [m for m in book_net.modules()
          if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1))]
print(f"{len(layers)} layers with weights (without the 1x1 shortcuts)")
assert len(layers) == 18

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 书中的尺寸：96×96
#
# 书中把图片放大到 96×96。主干把高和宽缩小到四分之一，后面三个阶段再各减半：24 → 12 → 6 → 3。

# %%
print(BOOK["section"], BOOK["model_kwargs"])
book_net, book_params, book_flops = describe_model("resnet18", BOOK_SIZE, **BOOK["model_kwargs"])
assert layer_shapes(book_net, (1, BOOK_SIZE, BOOK_SIZE))[4]["shape"] == (1, 512, 3, 3)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 笔记本电脑的尺寸：28×28
#
# 28×28 的图片不需要主干再缩小：主干换成 3×3、步幅 1 的卷积，没有最大汇聚（`stem="small"`），
# 四个阶段是 28 → 14 → 7 → 4；通道数乘以 `width`。残差块本身完全相同：

# %%
RECIPE = model_recipe("resnet18")
print(RECIPE["model_kwargs"])
cpu_net, cpu_params, cpu_flops = describe_model("resnet18", **RECIPE["model_kwargs"])
print(f"{book_flops / cpu_flops:.0f}x fewer FLOPs than the book's")
assert layer_shapes(cpu_net, (1, 28, 28))[4]["shape"][2:] == (4, 4)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练
#
# 有了批量规范化，ResNet 可以用带动量的 SGD 和很大的学习率训练（打印出来的是注册配方的全部设置）。
# 完整模式按配方训练全部训练集；快速模式只用 6000 张图片、批量 64，训练 `QUICK_STEPS`（60）步（结果与机器快慢无关）。

# %%
cfg, trainer, loaders, acc = lesson_run("resnet18", QUICK)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 残差块输出 $\mathbf{x} + g(\mathbf{x})$：分支学成 0 就是恒等映射，加深网络不会让它变差；
# - 形状变化时，快捷连接用 1×1 卷积变换形状；
# - ResNet-18 = 主干 + 4 个阶段 × 2 个残差块 + 全局平均汇聚 + 全连接层。
#
# 书中（96×96，10 轮）报告的测试准确率约为 0.89。
#
# 自测：把每个阶段的块数改成 `(3, 4, 6, 3)` 就是 ResNet-34，试试 `create_model("resnet", blocks=(3, 4, 6, 3))`，
# 它的参数和 FLOPs 是 ResNet-18 的几倍？

# %%
if QUICK:
    assert acc >= 0.4, acc  # a few dozen steps: well above chance (0.1)
else:
    assert acc >= BOOK["book_test_acc"], (acc, BOOK["book_test_acc"])
print(f"lesson 2.11 done: ResNet-18 test accuracy {acc:.3f}")
