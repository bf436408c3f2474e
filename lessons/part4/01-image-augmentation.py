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
#     title: 图像增广（image augmentation）
#     title_en: Image augmentation
#     minutes:
#       quick: 0.5
#       full: 4
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 图像增广（image augmentation）
#
# 深度网络要大量数据。**图像增广**（image augmentation）对训练图像做一系列随机变化——
# 翻转、裁剪、改颜色——得到"相似但不同"的样本，等于免费扩大了训练集。
# 它还有第二层意思：随机改变物体的位置、大小和颜色，模型就不能依赖这些属性，只好去学物体本身，
# 泛化（generalization）能力更好。AlexNet 的成功就离不开它。
#
# 本讲对应《动手学深度学习》14.1 节。书里逐张处理 PIL 图片；这里用 torchvision 的
# `transforms.v2` 直接处理**张量**，并且一次处理**一整个批量**——这里有一个不小的坑，下面会看到。
# 最后重做书里的实验：同一个模型，用和不用增广各训练一次，比较训练和测试准确率。

# %%
import time

import matplotlib.pyplot as plt
import skimage.data
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from dlcamp.core.utils import is_quick
from dlcamp.course.plot import draw_boxes
from dlcamp.data import TensorLoader, load_dataset
from dlcamp.models import create_model
from dlcamp.train import TrainConfig, Trainer
from dlcamp.vision.augment import BatchAugment, resized_crop, sample_crops

QUICK = is_quick()  # 快速模式：小一些的实验，一个随机种子
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 一张真实的照片
#
# 书中的猫要联网下载；scikit-image 自带一张猫的照片（Chelsea），完全离线。
# `transforms.v2` 处理形状为 (C, H, W) 的张量（也可以带任意多个批量维度）。
# 浮点图像的约定是取值在 [0, 1]。

# %%
cat = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1).float() / 255  # (3, 300, 451)
print(cat.shape, cat.dtype, float(cat.min()), float(cat.max()))


def show_rows(rows: dict[str, list[torch.Tensor]], scale: float = 1.6) -> plt.Figure:
    """One row of (3, H, W) images in [0, 1] per name."""
    ncols = max(len(images) for images in rows.values())
    fig, axes = plt.subplots(len(rows), ncols, figsize=(ncols * scale, len(rows) * scale),
                             squeeze=False)
    for ax_row, (name, images) in zip(axes, rows.items(), strict=True):
        ax_row[0].set_title(name, loc="left", fontsize=9)
        for ax, image in zip(ax_row, images, strict=False):
            ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
        for ax in ax_row:
            ax.set_axis_off()
    fig.tight_layout()
    return fig


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 常用的增广方法
#
# 书中的 `apply` 把同一个增广对同一张图做好几次，看它的随机性。每一行是一种增广：
#
# - **翻转**（flip）：左右翻转（`RandomHorizontalFlip`）几乎总是安全的——镜子里的猫还是猫；
#   上下翻转（`RandomVerticalFlip`）就不一定了，倒过来的猫很少见；
# - **随机裁剪再缩放**（`RandomResizedCrop`）：随机取一块面积占原图 10%–100%、宽高比在 1/2 到 2
#   之间的区域，再缩放成 200×200。物体在图中的位置和大小变了，卷积网络对它们就更不敏感；
# - **颜色变化**（`ColorJitter`）：亮度（brightness）、对比度（contrast）、饱和度（saturation）
#   和色调（hue）各自随机变化，例如亮度乘以 [0.5, 1.5] 里的一个随机数；
# - **组合**（`Compose`）：依次做几种增广。

# %%
augs = {
    "RandomHorizontalFlip": v2.RandomHorizontalFlip(),
    "RandomVerticalFlip": v2.RandomVerticalFlip(),
    "RandomResizedCrop": v2.RandomResizedCrop((200, 200), scale=(0.1, 1), ratio=(0.5, 2)),
    "ColorJitter(brightness)": v2.ColorJitter(brightness=0.5),
    "ColorJitter(hue)": v2.ColorJitter(hue=0.5),
    "ColorJitter(all four)": v2.ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5,
                                            hue=0.5),
}
augs["Compose(flip, crop, colour)"] = v2.Compose(
    [v2.RandomHorizontalFlip(), augs["RandomResizedCrop"], augs["ColorJitter(all four)"]])
samples = {name: [aug(cat) for _ in range(6)] for name, aug in augs.items()}
show_rows(samples)
plt.show()

mirror = TF.horizontal_flip(cat)
assert all(torch.equal(x, cat) or torch.equal(x, mirror)
           for x in samples["RandomHorizontalFlip"])
assert all(x.shape == (3, 200, 200) for x in samples["RandomResizedCrop"])
ratios = [float(x.mean() / cat.mean()) for x in samples["ColorJitter(brightness)"]]
print("mean brightness of the jittered cats / the original:", [f"{r:.2f}" for r in ratios])
assert all(0.45 < r < 1.55 for r in ratios)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 一个批量：一次抽样，全批同用
#
# 训练时数据是一批一批来的。`transforms.v2` 也接受 (B, C, H, W) 的批量张量——但它**每次调用只抽一次
# 随机参数**，整批图像用同一个翻转、同一个裁剪框、同一个颜色变化。
# 下面把同一只猫复制 8 份，做成一个批量，交给 `RandomResizedCrop`：

# %%
batch = cat[None].expand(8, -1, -1, -1).contiguous()  # (8, 3, 300, 451)
crop = v2.RandomResizedCrop((128, 128), scale=(0.1, 1), ratio=(0.5, 2))
same = crop(batch)  # (8, 3, 128, 128)
print(same.shape, "- all 8 crops identical:", all(torch.equal(x, same[0]) for x in same))
assert all(torch.equal(x, same[0]) for x in same)

# %% [markdown]
# 8 张输出一模一样。这不是 bug，是 `transforms.v2` 的约定：一次调用就是"一张图"（批量维度只是多张图
# 共享一个变换，比如视频的各帧、或者同一张图的图像和它的掩码）。可如果在训练循环里把它用在整个批量上，
# 增广的多样性就少了 B 倍：一个批量里的 256 张图同时被翻转、同时被裁到左上角。
#
# 两种改法：
#
# 1. 逐张处理：`torch.stack([crop(x) for x in batch])`——正确，但每张图都要走一遍 Python；
# 2. **逐样本抽样、整批计算**：每张图抽自己的参数（一个 (B, 4) 的裁剪框张量），然后用一次
#    `grid_sample` 把 B 个不同的裁剪框同时取出来。`dlcamp.vision.augment` 就是这么做的。

# %%
generator = torch.Generator().manual_seed(0)
crops = sample_crops(8, 300, 451, scale=(0.1, 1), ratio=(0.5, 2), generator=generator)
print("one (top, left, height, width) per image:\n", crops)
ours = resized_crop(batch, crops, (128, 128))  # (8, 3, 128, 128), one grid_sample call
per_image = torch.stack([TF.resized_crop(x, *c.tolist(), size=[128, 128], antialias=False)
                         for x, c in zip(batch, crops, strict=True)])
print("largest difference from torchvision, image by image:",
      f"{(ours - per_image).abs().max():.1e}")
assert torch.allclose(ours, per_image, atol=1e-5)
assert len({tuple(c.tolist()) for c in crops}) == 8  # 8 different crops
show_rows({"v2 on the batch: one draw": list(same),
           "dlcamp.vision.augment: one draw per image": list(ours)})
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 合在一起：`BatchAugment`
#
# `BatchAugment` 把左右翻转、随机裁剪缩放和颜色变化（亮度、对比度、饱和度）合在一起，每张图各抽各的，
# 参数来自一个 `torch.Generator`：同一个种子，得到同一批增广结果，实验可以复现。
# 它和 dlcamp 的 `TensorLoader` 的 `augment` 接口一致，可以直接交给数据加载器。
#
# 为了能整批计算，颜色变化按固定顺序（亮度 → 对比度 → 饱和度）进行；torchvision 的 `ColorJitter`
# 每次随机打乱顺序，还能改色调（hue）。

# %%
augment = BatchAugment(flip=0.5, scale=(0.1, 1), ratio=(0.5, 2), brightness=0.5,
                       contrast=0.5, saturation=0.5, bound=1.0)
print(augment)
small = TF.resize(batch, [150, 225])  # (8, 3, 150, 225)
mixed = augment(small, torch.Generator().manual_seed(1))  # (8, 3, 150, 225)
show_rows({"BatchAugment": list(mixed)})
plt.show()
assert len({round(float(x.sum()), 3) for x in mixed}) == 8  # every image its own draw

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 目标检测：框要跟着像素走
#
# 对检测数据做增广时，边界框必须和图像做同样的变换：翻转后 $x_1' = W - x_2$、$x_2' = W - x_1$；
# 裁剪后框要平移、截断到裁剪区域内、再缩放；完全被裁出去（或只剩不到 1 个像素宽）的框作废，
# 它的类别标成 -1（和"填充行"同一个记号）。`BatchAugment.with_boxes` 做的就是这些，
# 测试里逐张和 torchvision 的 `tv_tensors.BoundingBoxes` 比对过。下面给猫的两只眼睛和鼻子画上框：

# %%
boxes = torch.tensor([[135.0, 85, 215, 165], [295, 105, 345, 165], [225, 225, 300, 285]])
labels = torch.tensor([0, 0, 1])  # 0: eye, 1: nose
b = 6
images_out, boxes_out, labels_out = augment.with_boxes(
    batch[:b], boxes.expand(b, -1, -1), labels.expand(b, -1), torch.Generator().manual_seed(3))
fig, axes = plt.subplots(1, b, figsize=(2.4 * b, 2))
for ax, image, image_boxes, image_labels in zip(axes, images_out, boxes_out, labels_out,
                                                strict=True):
    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
    keep = image_labels >= 0
    draw_boxes(ax, image_boxes[keep], [("eye", "nose")[int(i)] for i in image_labels[keep]])
    ax.set_axis_off()
plt.show()
print("objects left in each image:", (labels_out >= 0).sum(dim=1).tolist())
assert boxes_out.shape == (b, 3, 4) and (boxes_out[..., 2:] <= torch.tensor([451, 300])).all()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 一个批量要花多少时间
#
# 64 张 128×128 的彩色图，做"翻转 + 随机裁剪缩放 + 颜色变化"：逐张调用 `transforms.v2`、
# 整批调用一次 `transforms.v2`（快，但全批同一个变换），和 `BatchAugment`（快，而且每张图不同）。
# （数字因机器而异；同一台机器上的其他程序也会影响它们。）

# %%
n_cost = 16 if QUICK else 64  # 快速模式：小一些的批量，只量一次
cats = TF.resize(cat, [128, 128])[None].repeat(n_cost, 1, 1, 1)  # (B, 3, 128, 128)
v2_pipeline = v2.Compose([v2.RandomHorizontalFlip(), v2.RandomResizedCrop(128, scale=(0.5, 1)),
                          v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4)])
ours_pipeline = BatchAugment(flip=0.5, scale=(0.5, 1), brightness=0.4, contrast=0.4,
                             saturation=0.4, bound=1.0)
gen = torch.Generator().manual_seed(0)
ways = {"v2, image by image": lambda: torch.stack([v2_pipeline(x) for x in cats]),
        "v2, whole batch (one draw)": lambda: v2_pipeline(cats),
        "BatchAugment (a draw per image)": lambda: ours_pipeline(cats, gen)}
cost = {}
for name, run in ways.items():
    run()  # warm up
    repeats = 1 if QUICK else 10
    start = time.perf_counter()
    for _ in range(repeats):
        out = run()
    cost[name] = (time.perf_counter() - start) / repeats
    assert out.shape == cats.shape
    print(f"{name:32s} {cost[name] * 1e3:7.1f} ms per batch of {n_cost}")

# %% [markdown]
# 逐张调用要走 B 遍 Python，做 B 次小运算；整批计算只有几次大运算。如果训练一步本身只要几十毫秒
# （小模型、GPU），逐张增广就会成为瓶颈——这正是 PyTorch 的 `DataLoader` 要开多个工作进程的原因。
# 整批计算不需要额外的进程；数据在 GPU 上时，增广也在 GPU 上做。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 实验：用和不用增广
#
# 书中在 CIFAR-10 上比较了用和不用左右翻转的 ResNet-18。CIFAR-10 需要下载，也太慢；
# 增广在**数据少**的时候最有用，所以我们从 Fashion-MNIST 里只取 1000 张训练图片（快速模式 500 张），
# 用同一个小网络（现代化的 LeNet，第 2.05 讲）、同样的轮数、同样的随机种子训练两次：
#
# - 不用增广；
# - 用 `BatchAugment`：左右翻转（衣服左右对称，翻转不改变类别）、温和的随机裁剪缩放
#   （面积 80%–100%）、亮度和对比度变化。
#
# **训练准确率**在原始（不增广的）训练图片上测，这样两次训练的训练准确率才可比。

# %%
N_TRAIN, EPOCHS, SEEDS = (500, 20, [0]) if QUICK else (1000, 30, [0, 1, 2])
train_all = load_dataset("fashion-mnist", "train")
test_set = load_dataset("fashion-mnist", "test").subset(2000 if QUICK else 10_000, 0)
fashion_augment = BatchAugment(flip=0.5, scale=(0.8, 1.0), ratio=(0.9, 1.1), brightness=0.4,
                               contrast=0.4)  # pixels in [0, 255]: bound=255 (the default)


def train_and_measure(seed: int, augment: BatchAugment | None) -> dict[str, float]:
    """Train lenet-modern on N_TRAIN images; accuracy on those images and on the test set."""
    torch.manual_seed(seed)
    train_set = train_all.subset(N_TRAIN, seed)
    model = create_model("lenet-modern")
    config = TrainConfig(epochs=EPOCHS, lr=0.01, optimizer="adam", schedule="cosine",
                         device="cpu", seed=seed)
    trainer = Trainer(model, config)
    trainer.fit(TensorLoader(train_set, 64, shuffle=True, seed=seed, augment=augment))
    train_acc = trainer.evaluate(TensorLoader(train_set, 1000))["acc"]
    test_acc = trainer.evaluate(TensorLoader(test_set, 1000))["acc"]
    return {"train": train_acc, "test": test_acc, "gap": train_acc - test_acc}


results = {"no augmentation": [], "BatchAugment": []}
for seed in SEEDS:
    for name, aug in (("no augmentation", None), ("BatchAugment", fashion_augment)):
        results[name].append(train_and_measure(seed, aug))
        r = results[name][-1]
        print(f"seed {seed}  {name:16s} train {r['train']:.3f}  test {r['test']:.3f}  "
              f"gap {r['gap']:.3f}")

# %%
mean = {name: {k: sum(r[k] for r in rs) / len(rs) for k in ("train", "test", "gap")}
        for name, rs in results.items()}
fig, ax = plt.subplots(figsize=(5.5, 3))
for i, m in enumerate(mean.values()):
    ax.bar([i - 0.2, i + 0.2], [m["train"], m["test"]], width=0.38,
           color=["tab:blue", "tab:orange"], label=["train", "test"] if i == 0 else None)
    ax.text(i, m["test"] + 0.01, f"gap {m['gap']:.3f}", ha="center")
ax.set_xticks(range(len(mean)), list(mean))
ax.set_ylim(0.6, 1.05)
ax.set_ylabel("accuracy")
ax.legend(loc="lower right")
plt.show()

# %% [markdown]
# 完整模式（1000 张训练图片、30 轮、种子 0、1、2，在全部 10000 张测试图片上测）我们得到：
#
# | | 训练准确率 | 测试准确率 | 泛化差距 |
# |---|---|---|---|
# | 不用增广 | 1.000, 1.000, 1.000 | 0.812, 0.822, 0.825 | 0.188, 0.178, 0.175 |
# | `BatchAugment` | 0.938, 0.949, 0.944 | 0.826, 0.823, 0.826 | 0.112, 0.126, 0.118 |
#
# 不用增广时，网络把 1000 张训练图片全部记住了（训练准确率 1.000），测试准确率却低得多：
# **泛化差距**（generalization gap，训练准确率减测试准确率）约 0.18。
# 用了增广，网络每一轮看到的都是"新"图片，没法逐像素地死记，训练准确率降到 0.94 左右，
# 差距缩小到 0.11–0.13，三个种子都是如此。测试准确率只高了 0.1–1.4 个百分点：
# Fashion-MNIST 的图片本来就居中、大小一致，增广带来的新变化有限；
# 在照片这种位置、大小、光照千变万化的数据上，增广的作用要大得多。
# 快速模式只用 500 张图片训练 20 轮，增广后的模型还没学够，测试准确率可能略低，但差距同样明显缩小。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 图像增广随机变换训练图像，扩大训练集，并让模型不依赖位置、大小、颜色等属性；它缩小泛化差距；
# - 常用的增广：左右翻转、随机裁剪缩放、颜色变化，以及它们的组合；只在训练时用，测试时不用；
# - `transforms.v2` 对一个批量张量**只抽一次随机参数**，全批同一个变换；要么逐张调用，
#   要么像 `dlcamp.vision.augment` 这样逐样本抽参数、整批计算；
# - 检测任务里边界框要和像素一起变换，被裁掉的框要丢弃。
#
# 自测：上下翻转适合 Fashion-MNIST 吗？适合手写数字吗？把 `fashion_augment` 的裁剪面积下限从 0.8
# 改成 0.3，训练和测试准确率会怎样变？为什么？

# %%
gap_plain, gap_aug = mean["no augmentation"]["gap"], mean["BatchAugment"]["gap"]
assert mean["no augmentation"]["train"] > 0.99  # without augmentation it memorises the set
assert gap_aug < gap_plain - 0.05, (gap_plain, gap_aug)  # seeds 0-2: 0.08-0.10
if not QUICK:
    assert all(a["gap"] < p["gap"] - 0.03 for a, p in zip(results["BatchAugment"],
                                                          results["no augmentation"], strict=True))
    # the test accuracy gain is small (seeds 0-2: +0.1 to +1.4 points): require "not worse"
    assert mean["BatchAugment"]["test"] > mean["no augmentation"]["test"] - 0.005
print(f"lesson 4.01 done: generalisation gap {gap_plain:.3f} without augmentation, "
      f"{gap_aug:.3f} with it; test accuracy {mean['no augmentation']['test']:.3f} -> "
      f"{mean['BatchAugment']['test']:.3f}")
