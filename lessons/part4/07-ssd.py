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
#     title: 单发多框检测（SSD）
#     title_en: Single shot multibox detection (SSD)
#     minutes:
#       quick: 1
#       full: 8
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 单发多框检测（SSD）
#
# 前几讲备齐了零件：**锚框**（anchor box）、交并比、给锚框标上类别和**偏移**（offset）、
# **非极大值抑制**（non-maximum suppression, NMS），以及**多尺度**（multiscale）地铺锚框。
# 本讲把它们拼成一个完整的检测器：**单发多框检测**（single shot multibox detection, SSD；
# Liu 等，2016），用的是《动手学深度学习》14.7 节的小号版本 **TinySSD**。
#
# "单发"（single shot）的意思是整张图只过一次网络：每个尺度的特征图上，每个像素的每个锚框
# 都直接预测"是哪一类（含背景）"和"框该怎么挪"。代码都在包里：`dlcamp.models.ssd`（网络、损失、
# 解码）和 `dlcamp.vision.anchors`（锚框、标注、偏移）。

# %%
import inspect

import matplotlib.pyplot as plt
import torch

from dlcamp.core.utils import is_quick
from dlcamp.course.compare import histories_figure, train_model
from dlcamp.course.plot import show_detections
from dlcamp.data.detection_loader import DetectionLoader
from dlcamp.models import count_parameters, create_model
from dlcamp.models import ssd as ssd_family
from dlcamp.train import make_config
from dlcamp.train.detection import load_scenes
from dlcamp.train.task import Detection
from dlcamp.train.trainer import Trainer
from dlcamp.vision.anchors import match_anchors, match_anchors_batched, multibox_target

QUICK = is_quick()  # 快速模式：256 张训练图、8 轮小批量（约半分钟）
DATASET = "fruit-1"  # 单类别"水果"场景集（仿照书中的香蕉数据集），128×128 像素
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 模型的结构
#
# TinySSD 由五个**块**（block）组成，每块都把特征图的高和宽减半：
#
# 1. **基础网络**（base network）：三个"下采样块"（两个 3×3 卷积 + 批量规范化 + ReLU，再 2×2 最大汇聚），
#    通道数 3 → 16 → 32 → 64；
# 2. 再两个下采样块（128 通道），一个下采样块，最后一个**全局最大汇聚**把特征图变成 1×1。
#
# 五个块的输出就是五个尺度的特征图。每个尺度上，一个 3×3 卷积预测每个锚框的类别
# （背景 + C 类），另一个 3×3 卷积预测 4 个偏移。书里的图片是 256×256，特征图是 32、16、8、4、1；
# 我们的场景集是 128×128，所以是 16、8、4、2、1——锚框的大小按图片的**比例**给出
# （0.2 到 0.96），换了图片尺寸也不用改。

# %%
print(inspect.getsource(ssd_family.down_sample_blk))
model = create_model("tinyssd", num_classes=1)
x = torch.zeros(2, 3, 128, 128)
maps = model.feature_maps(x)
k = model.num_anchors
print(f"{'scale':>5} {'feature map':>16} {'anchor sizes':>14} {'anchors':>8}")
for i, (fmap, sizes) in enumerate(zip(maps, ssd_family.BOOK_SIZES, strict=True)):
    print(f"{i + 1:>5} {str(tuple(fmap.shape[1:])):>16} {str(sizes):>14} "
          f"{fmap.shape[2] * fmap.shape[3] * k:>8}")
cls_preds, bbox_preds = model(x)
print("class predictions", tuple(cls_preds.shape), " offsets", tuple(bbox_preds.shape),
      f" {count_parameters(model):,} parameters")
assert [m.shape[-1] for m in maps] == [16, 8, 4, 2, 1]
assert cls_preds.shape == (2, (256 + 64 + 16 + 4 + 1) * 4, 2) == (2, len(model.anchors), 2)

# %% [markdown] slideshow={"slide_type": "slide"}
# 每个像素有 $n + m - 1 = 2 + 3 - 1 = 4$ 个锚框（两个大小、三个宽高比 1、2、0.5）。
# 预测卷积输出 (B, 4×(C+1), H, W)；把通道挪到最后再展平，第 $(i, j)$ 个像素的 4 个锚框就排在一起——
# 和 `multibox_prior` 生成锚框的顺序一样，所以五个尺度拼起来之后，第 a 个预测对应第 a 个锚框：

# %%
print(inspect.getsource(ssd_family.TinySSD.forward))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 给锚框标注：整个批量一次完成
#
# 训练时每个锚框都要有目标：和哪个真实框匹配（交并比 ≥ 0.5，或者是某个真实框最好的锚框），
# 它的类别（背景记作 0，第 c 类记作 c + 1），以及它到真实框的偏移。书中的 `multibox_target`
# 对批量里的图片逐张循环；`dlcamp.vision.anchors.multibox_target` 把交并比算成一个 (B, M, A) 的张量
# （B 张图、M 个框、A 个锚框），填充的框（标签 -1）不参与，**没有 Python 循环**。结果和逐张匹配完全一样：

# %%
train_set = load_scenes(DATASET, "train", quick=QUICK)
test_set = load_scenes(DATASET, "test", quick=QUICK)
print(f"{DATASET}: {len(train_set)} train / {len(test_set)} test images, "
      f"classes {train_set.class_names} ({train_set.class_names_zh})")
boxes, labels = train_set.boxes[:8], train_set.labels[:8]          # (8, M, 4), (8, M)
batched = match_anchors_batched(boxes, labels, model.anchors)        # (8, A)
for b in range(8):
    real = labels[b] >= 0
    alone = match_anchors(boxes[b][real], model.anchors)             # 只看这张图的真实框
    assert torch.equal(batched[b], alone)  # 填充行在最后，所以框的序号也一样
offsets, mask, classes = multibox_target(model.anchors, boxes, labels)
print("positive anchors per image:", (classes > 0).sum(1).tolist(), "of", len(model.anchors))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 损失函数
#
# 书中的损失有两项：所有锚框类别的**交叉熵**（cross-entropy），加上有物体的锚框偏移的 **L1 损失**
# （背景锚框被掩码 `mask` 乘成 0）。每张图都对全部锚框取平均。
#
# 一张图只有十几个正样本锚框，却有 1364 个锚框：平均下来，绝大多数损失来自"容易的背景"。
# SSD 论文的做法是**难负样本挖掘**（hard negative mining）：只保留损失最大的 3×P 个背景锚框
# （P 是正样本数），再把两项都除以 P。`tinyssd` 的 `hard_negatives` 参数就是这个 3；设成 0 就是书中的损失。

# %%
print(inspect.getsource(ssd_family.TinySSD.loss))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练
#
# 和其他模型一样用 `Trainer`（`dlcamp train --model tinyssd --dataset fruit-1` 走的是同一条路），
# 按 `tinyssd` 登记的配方：SGD、one-cycle 学习率、批量 16、随机水平翻转（框跟着翻），以及**一半的通道数**
# （`width=0.5`：在 CPU 上每步快约 3 倍，每轮的 mAP 和书中的宽度差不多）。每轮结束在测试集上算 COCO 的 **mAP@0.5**
# （交并比阈值 0.5 的平均精度，第 4.10 讲）：先 `detect`（解码 + 按类别 NMS），再用 torchmetrics 的
# `MeanAveragePrecision`（pycocotools 后端）计分。测试集里的水果都是训练时没见过的**实例**。

# %%
test_batches = DetectionLoader(test_set, 64, normalize=model.normalize)
untrained = Trainer(model, task=Detection()).evaluate(test_batches)["map_50"]
print(f"untrained tinyssd: test mAP@0.5 {untrained:.3f}")
cfg = make_config("tinyssd", dataset=DATASET, quick=QUICK, **({"epochs": 8} if QUICK else {}))
print(cfg)
trainer, loaders = train_model(cfg, progress=False)
history = trainer.history
trained = history[-1]["test_map_50"]
print(f"tinyssd: test mAP@0.5 {untrained:.3f} untrained -> {trained:.3f} after "
      f"{len(history)} epochs, {trainer.train_seconds:.0f} s of training")
histories_figure({"tinyssd": history}, key="test_map_50", x="train_seconds",
                 title=f"test mAP@0.5 on {DATASET}", fig=plt.figure(figsize=(6, 3.4)))
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 预测：解码、非极大值抑制、前 k 个
#
# 每个锚框对每一类的分数是 softmax 后的概率。分数超过阈值的（锚框, 类别）对先按分数取每张图的前 400 个，
# 把偏移解码成框，再按"图片 × 类别"分组做一次 `batched_nms`（整个批量一次调用），最后每张图留分数最高的
# `max_detections` 个。下面画出测试集（新的水果实例）和**偏移集**（shift：别的背景、更暗、更模糊、
# 物体更小，还有卡通画）上的检测结果：

# %%
ssd = trainer.model.eval()
shift_set = load_scenes(DATASET, "shift", quick=QUICK)
names = [f"{en} {zh}" for en, zh in zip(train_set.class_names, train_set.class_names_zh,
                                          strict=True)]
for split, data in (("test", test_set), ("shift", shift_set)):
    images, _, _ = next(iter(DetectionLoader(data.select(range(6)), 6, normalize=ssd.normalize)))
    with torch.no_grad():
        found = ssd.detect(ssd(images), score_threshold=0.5)
    fig = show_detections(data.images[:6], [d["boxes"] for d in found],
                          [d["labels"] for d in found], names,
                          scores=[d["scores"] for d in found], ncols=6)
    fig.suptitle(f"{split}: detections with score >= 0.5")
    plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 测试集和偏移集上的 mAP
#
# mAP@[.5:.95] 是 COCO 的主指标：交并比阈值从 0.5 到 0.95（步长 0.05）的 AP 的平均，框要画得准才高；
# mAP@0.5 只要求交并比过半。偏移集上的下降，就是模型对**协变量偏移**（covariate shift）的敏感程度。

# %%
evaluator = Trainer(ssd, task=Detection())
scores = {split: evaluator.evaluate(DetectionLoader(data, 64, normalize=ssd.normalize))
          for split, data in (("test", test_set), ("shift", shift_set))}
for split, m in scores.items():
    print(f"{split:6s} mAP@[.5:.95] {m['map']:.3f}   mAP@0.5 {m['map_50']:.3f}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - TinySSD：基础网络 + 多尺度特征图，每个尺度上用卷积同时预测每个锚框的类别和偏移；
# - 训练目标：给整个批量的锚框一次标好类别和偏移（向量化），损失 = 类别交叉熵 + 正样本偏移的 L1；
# - 预测：softmax 分数 → 解码偏移 → 按类别 NMS → 每张图前 k 个；
# - 评价：COCO mAP，在测试集（新实例）和偏移集（新环境）上分别报告。
#
# 自测：把 `hard_negatives` 设成 0（书中的损失），同样的轮数下 mAP 会怎样？
# 把最小的锚框从 0.2 改成 0.1，对偏移集里的小物体有没有帮助？

# %%
# 没训练的模型 mAP 约为 0；快速模式（256 张图、8 轮）通常到 0.6–0.75，0.3 的门槛给线程和随机性留了余量
assert untrained < 0.1 and trained >= untrained + 0.3, (untrained, trained)
assert abs(scores["test"]["map_50"] - trained) < 1e-6  # the Trainer's last evaluation, again
if not QUICK:
    assert trained >= 0.9, trained  # 完整配方：测试集 mAP@0.5 达到 0.9
print(f"lesson 4.07 done: tinyssd test mAP@0.5 {untrained:.3f} -> {trained:.3f}, "
      f"shift {scores['shift']['map_50']:.3f}")
