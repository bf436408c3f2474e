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
#     title: 检测器的评价：平均精度（average precision）
#     title_en: Evaluating detectors - average precision (COCO mAP)
#     minutes:
#       quick: 0.2
#       full: 0.2
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 检测器的评价：平均精度（average precision）
#
# 分类器用准确率评价；检测器呢？一张图里有几个物体，检测器给出一串带分数的框，
# 有的框对了、有的框偏了、有的框重复了，还有的物体没被找到。业界通用的数字是 COCO 的
# **平均精度均值**（mean average precision, mAP），`dlcamp evaluate` 打印的就是它。
# 本讲从一个小例子开始，一步步算出 mAP，最后和 torchmetrics（调用 COCO 官方的 pycocotools）对照。
#
# 规则来自 COCO 检测评测（pycocotools 的 `COCOeval`），`dlcamp.vision.average_precision` 把它写了出来。

# %%
import matplotlib.pyplot as plt
import torch
from torchmetrics.detection import MeanAveragePrecision

from dlcamp.core.utils import is_quick
from dlcamp.vision.average_precision import (
    COCO_IOU_THRESHOLDS,
    COCO_RECALL_THRESHOLDS,
    interpolated_precision,
    match_detections,
    mean_average_precision,
)
from dlcamp.vision.boxes import box_iou

QUICK = is_quick()  # 本讲没有训练，快速模式和完整模式一样

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 一个小例子
#
# 三张图、一个类别、共 4 个物体；检测器给出 6 个框（分数在后）。框的坐标是像素，角点格式。

# %%
targets = [{"boxes": torch.tensor([[10.0, 10, 50, 50], [60, 60, 100, 100]]),
            "labels": torch.tensor([0, 0])},
           {"boxes": torch.tensor([[20.0, 20, 80, 70]]), "labels": torch.tensor([0])},
           {"boxes": torch.tensor([[30.0, 5, 60, 45]]), "labels": torch.tensor([0])}]
preds = [{"boxes": torch.tensor([[12.0, 10, 50, 52], [11, 11, 49, 50], [62, 58, 100, 98]]),
          "scores": torch.tensor([0.9, 0.75, 0.6]), "labels": torch.tensor([0, 0, 0])},
         {"boxes": torch.tensor([[35.0, 20, 95, 70], [0, 70, 30, 99]]),
          "scores": torch.tensor([0.8, 0.7]), "labels": torch.tensor([0, 0])},
         {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
          "labels": torch.zeros(0, dtype=torch.long)}]                # found nothing in image 2
for i, (p, t) in enumerate(zip(preds, targets, strict=True)):
    print(f"image {i}: IoU of each detection with each object\n", box_iou(p["boxes"], t["boxes"]))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 第一步：在每张图里配对
#
# 一张图里，检测框按分数从高到低，依次去"认领"和它 IoU 最大、还没被认领、且 IoU 不低于阈值 $t$
# 的物体。认领到的是**真正例**（true positive, TP），认领不到的是**假正例**（false positive, FP）。
# 第 0 张图的前两个框都对着第一个物体：分数高的先认领，分数低的那个就成了假正例——**重复的框要扣分**。

# %%
t = 0.5
matches = [match_detections(box_iou(p["boxes"], tr["boxes"]), [t])[0]
           for p, tr in zip(preds, targets, strict=True)]
print("object each detection took (-1 = false positive):", [m.tolist() for m in matches])
assert [m.tolist() for m in matches] == [[0, -1, 1], [0, -1], []]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 第二步：所有图放在一起，按分数排序
#
# 按分数从高到低数下来，每往下一个框，就算一次到此为止的
# **精确率**（precision）= TP / (TP + FP) 和 **召回率**（recall）= TP / 物体总数。

# %%
scores = torch.cat([p["scores"] for p in preds])
tp = torch.cat(matches) >= 0
order = torch.argsort(scores, descending=True, stable=True)
tp_sorted = tp[order]
cum_tp = tp_sorted.cumsum(0).double()
cum_fp = (~tp_sorted).cumsum(0).double()
precision = cum_tp / (cum_tp + cum_fp)
recall = cum_tp / 4
for s, hit, p_, r in zip(scores[order].tolist(), tp_sorted.tolist(), precision.tolist(),
                         recall.tolist(), strict=True):
    print(f"score {s:.2f}  {'TP' if hit else 'FP'}  precision {p_:.3f}  recall {r:.2f}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 第三步：插值，取 101 个点
#
# 精确率-召回率曲线锯齿很多。COCO 先把它变成**单调**的：每一点的精确率换成它右边（召回率更高处）
# 的最大精确率；再在召回率 0, 0.01, …, 1 这 101 个点上读数（读"第一个达到该召回率的框"处的值，
# 达不到的召回率记 0），平均起来就是这个阈值下的 **AP**。image 2 里的物体从未被找到，
# 召回率最多 0.75，后面 25 个点都是 0。

# %%
monotone = precision.flip(0).cummax(0).values.flip(0)
points, final_recall = interpolated_precision(tp_sorted, torch.zeros_like(tp_sorted), 4)
ap = points.mean()
print("monotone precision:", [round(v, 3) for v in monotone.tolist()])
print(f"AP@0.5 = {ap:.4f}  (final recall {final_recall:.2f})")
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot(recall, precision, "o-", label="precision")
ax.step(COCO_RECALL_THRESHOLDS, points, where="post", label="interpolated, 101 points")
ax.set_xlabel("recall")
ax.set_ylabel("precision")
ax.legend()
plt.show()
# by hand: recalls 0..0.50 (51 points) first reached at precision 1; 0.51..0.75 (25 points)
# first reached by the last detection, precision 3/5; nothing reaches recall above 0.75
by_hand = (51 * 1.0 + 25 * 0.6) / 101
assert abs(ap - by_hand) < 1e-9, (ap, by_hand)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 第四步：十个阈值，所有类别
#
# IoU 阈值 0.5 很宽松：框偏一大截也算对。COCO 的主指标 **mAP@[.5:.95]** 在 0.50, 0.55, …, 0.95
# 十个阈值上各算一次 AP，再对阈值和类别取平均；同时报告 mAP@0.5（PASCAL VOC 的老指标）和 mAP@0.75。
# 没有任何真实物体的类别没有 AP，不参与平均。此外 COCO 按物体面积分小（≤ 32² 像素）、中、大（≥ 96²）
# 分别报告，范围之外的物体"忽略"（配到它的框既不算对也不算错）。

# %%
result = mean_average_precision(preds, targets)
for key in ("map", "map_50", "map_75", "mar_100"):
    print(f"{key:8s} {result[key]:.4f}")
assert abs(result["map_50"] - by_hand) < 1e-9
assert result["map_75"] < result["map_50"] and result["map"] < result["map_50"]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 和 torchmetrics / pycocotools 对照
#
# torchmetrics 的 `MeanAveragePrecision` 用 COCO 官方的 pycocotools 计算。给它同样的 IoU 阈值和召回率点
# （torchmetrics 默认用 float32 的 `linspace`，和 COCO 的 float64 值差最后几位，详见
# `dlcamp.vision.average_precision` 的说明），两边的结果一致。

# %%
metric = MeanAveragePrecision(iou_type="bbox", backend="pycocotools", class_metrics=True,
                              iou_thresholds=list(COCO_IOU_THRESHOLDS),
                              rec_thresholds=list(COCO_RECALL_THRESHOLDS))
metric.update(preds, targets)
theirs = metric.compute()
for key in ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_100"):
    print(f"{key:10s} ours {result[key]:.6f}  torchmetrics {theirs[key]:.6f}")
    assert abs(result[key] - theirs[key]) < 1e-6, key

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 检测器越准，mAP 越高
#
# 用 30 张图、3 个类别的随机物体"模拟"检测器：每个物体给一个抖动过的框（抖动越大越不准），
# 再加一些分数较低的随机假框。抖动变大时，mAP@0.5 下降得慢，mAP@[.5:.95] 下降得快——
# 后者要求框的位置精确，这就是 COCO 用它做主指标的原因。

# %%
def simulate(noise: float, seed: int = 0, images: int = 30):
    g = torch.Generator().manual_seed(seed)
    ps, ts = [], []
    for _ in range(images):
        n = int(torch.randint(1, 5, (), generator=g))
        xy = torch.rand(n, 2, generator=g) * 200
        wh = 20 + torch.rand(n, 2, generator=g) * 100
        boxes = torch.cat((xy, xy + wh), 1)                          # (n, 4)
        labels = torch.randint(0, 3, (n,), generator=g)
        jitter = torch.randn(n, 4, generator=g) * noise * wh.repeat(1, 2)
        found = boxes + jitter
        found = torch.cat((found[:, :2], torch.maximum(found[:, 2:], found[:, :2] + 1)), 1)
        junk_xy = torch.rand(2, 2, generator=g) * 200
        junk = torch.cat((junk_xy, junk_xy + 40), 1)
        ps.append({"boxes": torch.cat((found, junk)),
                   "scores": torch.cat((0.5 + 0.5 * torch.rand(n, generator=g),
                                        0.5 * torch.rand(2, generator=g))),  # junk scores lower
                   "labels": torch.cat((labels, torch.randint(0, 3, (2,), generator=g)))})
        ts.append({"boxes": boxes, "labels": labels})
    return ps, ts


noises = [0.0, 0.05, 0.1, 0.2]
curve = [mean_average_precision(*simulate(noise)) for noise in noises]
for noise, r in zip(noises, curve, strict=True):
    print(f"jitter {noise:4.2f} x size: mAP@[.5:.95] {r['map']:.3f}  mAP@0.5 {r['map_50']:.3f}  "
          f"per class {[round(v, 2) for v in r['map_per_class'].tolist()]}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 每张图里按分数依次配对：IoU ≥ 阈值且未被认领的物体才算找到；重复的框是假正例；
# - 所有图合在一起按分数排序，得到精确率-召回率曲线；单调化后在 101 个召回率上取平均，就是 AP；
# - mAP@[.5:.95] 对十个 IoU 阈值和所有（有真实物体的）类别取平均；mAP@0.5 宽松得多；
# - 我们从零写的实现和 pycocotools 的结果一致（测试里用随机检测结果反复对照）。
#
# 自测：检测器对每个物体多输出一个分数很低的重复框，mAP 会变吗？如果重复框的分数很高呢？

# %%
maps = [float(r["map"]) for r in curve]
assert abs(maps[0] - 1.0) < 1e-9, maps          # exact boxes; the junk comes after every TP
assert all(a > b for a, b in zip(maps, maps[1:], strict=False)), maps   # worse boxes, lower mAP
assert all(float(r["map_50"]) >= float(r["map"]) for r in curve)
print(f"lesson 4.10 done: AP@0.5 {float(result['map_50']):.4f} = by hand = torchmetrics; "
      f"mAP falls {maps[0]:.2f} -> {maps[-1]:.2f} as boxes get worse")
