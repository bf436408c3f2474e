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
#     title: YOLO 风格的单阶段检测器（one-stage detector）
#     title_en: A YOLO-style one-stage detector
#     minutes:
#       quick: 1
#       full: 10
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # YOLO 风格的单阶段检测器
#
# 上一讲的 SSD 在每个像素上铺好几个**锚框**（anchor box），再把每个锚框分成"背景"或某个类别，
# 并预测它到真实框的偏移。**YOLO**（You Only Look Once，Redmon 等，2016）走了另一条路：
# 把图片切成一张**网格**（grid），每个**网格单元**（grid cell）只回答三个问题——
#
# 1. 有没有一个物体的**中心**落在我附近？（**目标性**，objectness）
# 2. 它是哪一类？（类别，class）
# 3. 它的框在哪里？（边界框，bounding box）
#
# 整张图只过一次网络，所以叫"单阶段"（one-stage）；下一讲（第 4.09 讲）的 R-CNN 则要先提出候选区域再分类，
# 是"两阶段"（two-stage）。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 有锚框还是无锚框？
#
# YOLOv2/v3 也加上了锚框。之后 FCOS（Tian 等，2019）、CenterNet《Objects as Points》
# （Zhou 等，2019）和 YOLOX（Ge 等，2021）又把锚框去掉了：**无锚框**（anchor-free）检测器
# 直接让靠近物体中心的网格单元预测框。dlcamp 的 `yolo` 选的是无锚框，原因是：
#
# - **没有锚框的超参数**：SSD 的锚框尺寸和宽高比要按数据集去挑，挑得不好，有的物体就没有锚框能匹配上；
#   网格单元不需要任何先验的框；
# - **输出更少、规则更简单**：每个单元一个预测（而不是每个锚框一个），正负样本的分配就是
#   "单元的中心离物体中心近不近"，不用算锚框和真实框的交并比；
# - YOLOX 的实验表明，这样做精度不输有锚框的 YOLO。
#
# 本讲用到的代码都在包里：`dlcamp.vision.grid`（网格、框的编码、中心分配）和
# `dlcamp.models.yolo`（网络、损失、解码）。

# %%
import inspect

import matplotlib.pyplot as plt
import torch

from dlcamp.core.utils import is_quick
from dlcamp.course.compare import histories_figure, train_model
from dlcamp.course.plot import draw_boxes
from dlcamp.data.detection_loader import DetectionLoader
from dlcamp.models import count_parameters, create_model
from dlcamp.models import yolo as yolo_family
from dlcamp.train import make_config
from dlcamp.train.detection import load_scenes
from dlcamp.train.task import Detection
from dlcamp.train.trainer import Trainer
from dlcamp.vision.grid import assign_centres, decode_boxes, encode_boxes, grid_centres

QUICK = is_quick()  # 快速模式：256 张训练图、几轮
DATASET = "fruit-1"  # 单类别的"水果"场景集（仿照书中的香蕉数据集），128×128 像素
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 网格与单元中心
#
# 网络把 128×128 的图片下采样 8 倍（**步幅**，stride = 8），得到 16×16 = 256 个网格单元。
# 单元 $(i, j)$ 的中心在 $((j + 0.5) \cdot 8,\ (i + 0.5) \cdot 8)$ 像素处，按行排列，
# 正好是特征图 `flatten` 之后的顺序。

# %%
STRIDE = yolo_family.STRIDE
points = grid_centres(128 // STRIDE, STRIDE)  # (256, 2)
print(points.shape, points[:3].tolist(), points[16].tolist())
assert points.shape == (256, 2) and points[16].tolist() == [4.0, 12.0]  # 第二行的第一个单元

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 中心分配：哪个单元学哪个物体
#
# 训练时每个单元都要知道自己该预测什么。规则（FCOS 的"中心采样"加上 YOLO v1 的规则）：
#
# - 单元中心落在真实框**内部**，并且离框中心在 x、y 方向都不超过 `radius` 个步幅（默认 1.5），
#   这个单元就是**正样本**（positive）；
# - 框中心所在的那个单元总是正样本——这样比一个单元还小的框也不会被漏掉；
# - 一个单元同时满足好几个框时，学面积最小的那个。
#
# 其余单元是**负样本**：它们只学"这里没有物体中心"。整个批量的分配是一次 (B, N, M) 的比较
# （B 张图、N 个单元、M 个框），没有逐图、逐框的 Python 循环。

# %%
train_set = load_scenes(DATASET, "train", quick=QUICK)
test_set = load_scenes(DATASET, "test", quick=QUICK)
print(f"{DATASET}: {len(train_set)} train / {len(test_set)} test images, "
      f"classes {train_set.class_names} ({train_set.class_names_zh})")
boxes, labels = train_set.boxes[:4], train_set.labels[:4]  # (4, M, 4), (4, M)
match = assign_centres(points, STRIDE, boxes, labels)     # (4, 256): 框的序号，-1 是负样本
fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
for ax, image, b, lab, m in zip(axes, train_set.images[:4], boxes, labels, match, strict=True):
    ax.imshow(image.permute(1, 2, 0))
    draw_boxes(ax, b[lab >= 0])
    pos = points[m >= 0]
    ax.scatter(pos[:, 0], pos[:, 1], s=12, c="yellow", edgecolors="black", linewidths=0.5)
    ax.set_axis_off()
fig.suptitle("ground truth and the positive cells (yellow)")
plt.show()
per_box = torch.stack([(match == k).sum(1) for k in range(boxes.shape[1])], 1)  # (4, M)
print("positive cells per object:", per_box[labels >= 0].tolist())
assert (per_box[labels >= 0] >= 1).all()  # 每个物体都至少有一个单元负责

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 框的编码
#
# 正样本单元预测的不是框的像素坐标，而是相对自己的量（YOLOX 的写法）：
# 框中心相对单元中心的偏移 $(c_x - p_x)/s,\ (c_y - p_y)/s$，以及宽高的对数
# $\log(w/s),\ \log(h/s)$。偏移的量级在 1 附近，取对数让大框和小框的误差可比。
# 解码（decode）是编码（encode）的逆运算：

# %%
first = boxes[0, labels[0] >= 0]                               # (K, 4) 第一张图的框
centre_cell = ((first[:, :2] + first[:, 2:]) / 2 // STRIDE).long()  # (K, 2) 中心所在单元 (列, 行)
cells = points[centre_cell[:, 1] * (128 // STRIDE) + centre_cell[:, 0]]  # (K, 2) 单元中心
code = encode_boxes(first, cells, STRIDE)                       # (K, 4)
print(code)
assert (code[:, :2].abs() <= 0.5).all()  # 中心就在这个单元里：偏移不超过半个步幅
torch.testing.assert_close(decode_boxes(code, cells, STRIDE), first, atol=1e-3, rtol=0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 网络
#
# 几个"卷积 → 批量规范化 → SiLU"块把图片降到步幅 8 和 16；步幅 16 的特征上采样后加回步幅 8
# （一个只有一层的**特征金字塔**，FPN-lite），让 16×16 的网格也"看得见"大物体；
# 最后一个 1×1 卷积给每个单元输出 1 + C + 4 个数：目标性、C 个类别、4 个框参数。

# %%
print(inspect.getsource(yolo_family.YoloDetector.forward))
model = create_model("yolo", num_classes=train_set.num_classes)
objectness, class_logits, box_deltas = model(torch.zeros(2, 3, 128, 128))
print(objectness.shape, class_logits.shape, box_deltas.shape,
      f"{count_parameters(model):,} parameters")
assert class_logits.shape == (2, 256, 1) and box_deltas.shape == (2, 256, 4)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 损失的三项
#
# 都按正样本单元的个数平均（YOLOX 的做法）：
#
# - **目标性**：所有单元上的二元交叉熵（binary cross-entropy），正样本的目标是 1，其余是 0；
# - **类别**：只在正样本上，每个类别一个二元交叉熵；
# - **框**：只在正样本上，解码后的框和真实框的 **GIoU 损失**（generalized IoU，Rezatofighi 等，2019），
#   权重 5。
#
# 目标性和类别的偏置初始化成先验概率 0.01（RetinaNet 的技巧），所以一开始"到处都没有物体"，
# 负样本的损失很小，正样本的损失很大：

# %%
model.eval()  # 只为看一眼初始损失：批量规范化用初始的统计量
loss, sums = model.loss(model(torch.randn(4, 3, 128, 128)), boxes, labels)
print({k: round(float(v) / 4, 3) for k, v in sums.items() if k.endswith("loss")},
      f"positive cells: {int(sums['positives'])}")

# %% [markdown] slideshow={"slide_type": "slide"}
# 没训练的网络检测得怎么样？用 COCO 的**平均精度**（average precision，第 4.10 讲细讲）在测试集上量一下：
# mAP@0.5 是交并比阈值 0.5 时各类 AP 的平均。`Trainer` 的检测任务（`Detection`）先调用 `detect`，
# 再用 torchmetrics 的 `MeanAveragePrecision` 计分。

# %%
test_batches = DetectionLoader(test_set, 64, normalize=model.normalize)
evaluator = Trainer(model, task=Detection())  # 只用它的 evaluate
untrained = evaluator.evaluate(test_batches)["map_50"]
print(f"untrained yolo: test mAP@0.5 {untrained:.3f}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 训练
#
# 和其他模型一样用 `Trainer`（`dlcamp train --model yolo --dataset fruit-1` 走的也是这条路）：
# 配方是 AdamW、one-cycle 学习率、随机水平翻转（框跟着翻）。每轮结束在测试集上算
# COCO 的 **mAP@0.5**（交并比阈值 0.5 的平均精度）。测试集里的水果都是训练时没见过的实例。

# %%
cfg = make_config("yolo", dataset=DATASET, quick=QUICK, **({"epochs": 6} if QUICK else {}))
print(cfg)
trainer, loaders = train_model(cfg, progress=False)
history = trainer.history
trained = history[-1]["test_map_50"]
print(f"yolo: test mAP@0.5 {untrained:.3f} untrained -> {history[0]['test_map_50']:.3f} after "
      f"epoch 1 -> {trained:.3f} after {len(history)} epochs, "
      f"{trainer.train_seconds:.0f} s of training")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 解码与非极大值抑制
#
# 预测时，单元对类别 k 的分数是 $\sigma(\text{目标性}) \cdot \sigma(\text{类别}_k)$。
# 一个物体附近往往有好几个单元都给出高分、框也差不多——留下分数最高的那个，
# 删掉和它交并比超过 0.5 的同类框，这就是**非极大值抑制**（non-maximum suppression, NMS）。
# `detect` 对整个批量只调用一次 `batched_nms`（分组 = 图片 × 类别）。

# %%
yolo = trainer.model.eval()
images, truth_boxes, truth_labels = next(iter(loaders.eval))  # 一批测试图，已规范化
with torch.no_grad():
    outputs = yolo(images)
scores = torch.sigmoid(outputs[0])[..., None] * torch.sigmoid(outputs[1])  # (B, 256, C)
found = yolo.detect(outputs, score_threshold=0.3)
before = int((scores[:4] > 0.3).sum())
after = sum(len(d["scores"]) for d in found[:4])
print(f"first 4 test images: {before} cells above 0.3 before NMS, {after} boxes after")
assert after <= before
fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
raw = loaders.eval.data.images[: len(images)]  # 同一批图（测试集不打乱），未规范化的像素
for ax, image, d, b, lab in zip(axes, raw, found, truth_boxes, truth_labels, strict=False):
    ax.imshow(image.permute(1, 2, 0))
    draw_boxes(ax, b[lab >= 0], colors="white", linewidth=1)
    draw_boxes(ax, d["boxes"], [f"{s:.2f}" for s in d["scores"].tolist()], colors="tab:red")
    ax.set_axis_off()
fig.suptitle("white: ground truth, red: detections after NMS")
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 和 TinySSD 比一比
#
# 同样的数据、同样的 `Trainer`、同样多的训练时间，换成上一讲的 TinySSD（按它自己的配方）。
# 横轴是训练用掉的秒数：

# %%
ssd_cfg = make_config("tinyssd", dataset=DATASET, quick=QUICK,
                      max_seconds=trainer.train_seconds, epochs=100)
ssd_trainer, _ = train_model(ssd_cfg, progress=False)
runs = {"yolo (anchor-free, 1 grid)": history, "tinyssd (anchors, 5 scales)": ssd_trainer.history}
histories_figure(runs, key="test_map_50", x="train_seconds", title=f"test mAP@0.5 on {DATASET}",
                 fig=plt.figure(figsize=(7, 3.6)))
plt.show()
for name, t in (("yolo", trainer), ("tinyssd", ssd_trainer)):
    last = t.history[-1]
    print(f"{name:8s} mAP@0.5 {last['test_map_50']:.3f}  mAP@[.5:.95] {last['test_map']:.3f}  "
          f"{t.train_seconds:5.1f} s  {count_parameters(t.model):,} parameters")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - YOLO 风格的检测器：网格单元 + 目标性 + 类别 + 框，一次前向传播；
# - 无锚框：靠"中心分配"决定哪个单元学哪个物体，没有锚框的尺寸、比例要调；
# - 损失三项：目标性、类别（二元交叉熵）和框（GIoU），都按正样本数平均；
# - 预测：分数 = 目标性 × 类别，解码，再按类别做 NMS。
#
# 自测：把 `radius` 调成 0.5（只有框中心所在的单元是正样本），正样本会少多少？训练会更快还是更慢？
# 两个物体的中心落在同一个单元里会怎样？（提示：一个单元只学面积最小的那个。）

# %%
assert trained >= untrained + 0.3, (untrained, trained)  # 快速模式：几轮、几十秒
if not QUICK:
    assert trained >= 0.9, trained  # 完整配方：测试集 mAP@0.5 达到 0.9
print(f"lesson 4.08 done: yolo test mAP@0.5 {untrained:.3f} -> {trained:.3f}, "
      f"tinyssd {ssd_trainer.history[-1]['test_map_50']:.3f} in the same time")
