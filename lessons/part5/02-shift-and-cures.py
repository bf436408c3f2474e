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
#     title: 协变量偏移和它的对策（covariate shift and its cures）
#     title_en: Covariate shift and its cures
#     minutes:
#       quick: 0.6
#       full: 15
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 协变量偏移和它的对策
#
# 黑客松的晚上，排行榜亮出来的那一刻，几乎每个队都会说同一句话：
# "我们自己的验证集（validation set）上 mAP 有 0.9，怎么到了组织者的测试集上只剩一半？"
# 测试集是在**别处**拍的：别的桌子、别的灯、别的距离、别的手机。
# 输入的分布变了，而"图里哪儿有个水果"的答案没变——第 5.01 讲叫它**协变量偏移**（covariate shift）：
# $p_\text{test}(x) \ne p_\text{train}(x)$，$p_\text{test}(y \mid x) = p_\text{train}(y \mid x)$。
#
# 本讲在合成的"营地"上把这件事完整走一遍：
#
# 1. **量出差距**（gap）：一个队用约 200 张照片训练，在自己的验证集（`test` 划分，同样的场景条件）
#    和组织者的测试集（`shift` 划分，在别处拍的）上各打一次分；
# 2. **找出差距在哪里**：按条件标签（conditions：背景、亮度、物体大小、画风）拆开 mAP，
#    再看最离谱的误报（false positive）和漏报（false negative）；
# 3. **三种对策**，每种都用**同样的训练预算**（同样的步数）量一次：
#    针对偏移的数据增强、更多样的照片、测试时增强（test-time augmentation，TTA）。

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from dlcamp.core.utils import is_quick
from dlcamp.course.datawork import narrow_scenes, train_detector
from dlcamp.course.plot import show_detections
from dlcamp.course.shift import (
    SHIFT_AUGMENT,
    WIDER,
    by_condition,
    gap_closed,
    map_scores,
    predict,
    show_errors,
    varied_scenes,
    worst_errors,
)
from dlcamp.train.detection import load_scenes
from dlcamp.vision.scene_sets import shift_knobs

QUICK = is_quick()
DATASET, N, SEED = "fruit-1", 200, 0  # 一个队拍得出来的数量：约 200 张
if QUICK:  # 快速模式：半宽的小 yolo（从零训练）、80 步，效应小一些但方向相同
    MODEL, STEPS, KWARGS = "yolo", 80, {"width": 8}
else:      # 完整模式：营地用的检测器（ImageNet 预训练的 EfficientNet-Lite0 + YOLO 头），500 步
    MODEL, STEPS, KWARGS = "yolo-lite0", 500, {}

team = load_scenes(DATASET, "train", quick=QUICK).select(range(N))  # 队伍自己拍的照片
val = load_scenes(DATASET, "test", quick=QUICK)      # 队伍自己的验证集：同样的桌子和灯，没见过的水果
hidden = load_scenes(DATASET, "shift", quick=QUICK)  # 组织者的测试集：在别处拍的
print(f"{MODEL}, {STEPS} steps of batch 16 for every run; {len(team)} training photos, "
      f"{len(val)} validation, {len(hidden)} hidden test photos")

# %% [markdown]
# 组织者的测试集和队伍的照片到底差在哪里？合成器把每一处不同都记了下来（`shift_knobs`）：
# 物体更小（`scale`），更暗（`brightness`）、对比度更低（`contrast`）、伽马更大（`gamma`，中间调更暗）、
# 光照更不均匀（`gradient`）、更糊（`blur`）、噪声更大（`noise`），背景全是没见过的，
# 还有一部分水果是**卡通画**（clip-art），不是照片。

# %%
for knob, (home, away) in shift_knobs(DATASET).items():
    print(f"  {knob:12s} team's photos {str(home):14s} hidden test {away}")

# %% [markdown]
# 每个实验 = 训练（`train_detector`：同一个模型、同样的步数）+ 预测（`predict`）+ 打分（`map_scores`：
# COCO 的 mAP@[.5:.95] 和 mAP@0.5，和服务器排行榜用的是同一个引擎）。

# %%
def experiment(data, augment=None):
    """Train on `data` with the same budget; detections and mAP on val and on the hidden test."""
    trainer = train_detector(data, STEPS, seed=SEED, model=MODEL, augment=augment, **KWARGS)
    model = trainer.model
    found = {"val": predict(model, val), "shift": predict(model, hidden)}
    result = {"model": model, "found": found, "seconds": trainer.train_seconds}
    result.update({split: map_scores(f, val if split == "val" else hidden)
                   for split, f in found.items()})
    return result


def line(name, r, base=None):
    gap = r["val"]["map_50"] - r["shift"]["map_50"]
    closed = f"   closes {gap_closed(base, r):+.0%} of the gap" if base else ""
    return (f"{name:14s} val {r['val']['map_50']:.3f}  hidden {r['shift']['map_50']:.3f}  "
            f"gap {gap:+.3f}   (mAP@[.5:.95] {r['val']['map']:.3f} / {r['shift']['map']:.3f})"
            + closed)


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. 量出差距

# %%
runs = {"team": experiment(team)}
base = runs["team"]
print(line("team", base))
gap = base["val"]["map_50"] - base["shift"]["map_50"]

# %% [markdown]
# 差距（gap）= 自己验证集上的 mAP@0.5 − 组织者测试集上的 mAP@0.5。验证集并没有骗人：
# 它准确地回答了"在**我们的**桌子和灯下，对**没见过的**水果，检测器有多好"。
# 只是组织者问的是另一个问题。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. 差距在哪里：按条件拆开
#
# 测试集的每张图都带着条件标签。把 mAP 按标签分组算（`by_condition`），就能看出检测器在**哪种**照片上掉分。
# 连续的标签（亮度、模糊）切成三段，每段图片一样多。

# %%
for key in ("scale_bucket", "style", "brightness", "blur"):
    groups = by_condition(base["found"]["shift"], hidden, key)
    cells = "   ".join(f"{v}: {g['map_50']:.2f} ({g['images']})" for v, g in groups.items())
    print(f"hidden test by {key:12s} {cells}")
home = by_condition(base["found"]["val"], val, "scale_bucket")
print("validation by scale_bucket   " + "   ".join(
    f"{v}: {g['map_50']:.2f} ({g['images']})" for v, g in home.items()))

# %% [markdown]
# 小物体（`small`）是最难的一组，卡通画（`clip-art`）通常也比照片难；亮度和模糊的三段之间的差别
# 小而杂（每段只有四十来张图，±0.05 的抖动很正常）。
# 自己的验证集里根本没有小物体——这正是"没覆盖到的地方"。
#
# 再看最离谱的错误（`worst_errors`）：上一行是**分数最高的误报**（红框：模型很有把握，却什么也不是），
# 下一行是**漏得最惨的物体**（蓝框：真实物体，数字是它得到的最好分数，0 表示根本没找到）。

# %%
errors = worst_errors(base["found"]["shift"], hidden, k=6)
fig = show_errors(hidden, errors)
plt.show()

# %% [markdown]
# 误报多半落在没见过的纹理上（石头、木纹里的结块像一个水果）；漏报多半是小的、暗的、糊的水果和卡通画。
# 每一种错都指向一种对策。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. 对策一：针对偏移的数据增强
#
# 第 4.01 讲的数据增强（data augmentation）是"随便变一变"；这里是**照着偏移的方向**变：
# `ShiftAugment` 在翻转和颜色抖动之外，一半的图**缩小**（zoom out：整张图缩到 0.5~1 倍，四周填上平均色，
# 物体变小——注意随机裁剪是**放大**，方向正好反了），再加伽马、高斯模糊（blur）和噪声（noise）。
# 每张图各抽各的参数，框跟着像素一起动。下面是同一批图增强前后的样子：

# %%
gen = torch.Generator().manual_seed(SEED)
shown = team.select(range(6))
pixels, boxes, labels = SHIFT_AUGMENT.with_boxes(shown.images.float(), shown.boxes,
                                                 shown.labels, gen)
fig = show_detections(torch.cat([shown.images, pixels.round().clamp(0, 255).byte()]),
                      list(shown.boxes) + list(boxes), list(shown.labels) + list(labels),
                      team.class_names_zh, titles=["photo"] * 6 + ["augmented"] * 6)
plt.show()

# %%
runs["augmented"] = experiment(team, SHIFT_AUGMENT.with_boxes)
print(line("team", base))
print(line("augmented", runs["augmented"], base))

# %% [markdown]
# 测试集上的分数涨了，差距缩小了一截。代价：同样的步数里要学的东西变多了，自己验证集上的分数可能持平甚至略降——
# 在排行榜上，这笔买卖是划算的。增强只能模拟**你想得到**的变化：缩小、变暗、变糊都能模拟，
# 一张没见过的石头桌面变不出来。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. 对策二：更多样的照片
#
# 张数不变（200 张），只改**怎么拍**。三支队伍：
#
# - `one table`：一张桌子一盏灯（第 5.01 讲的 `narrow_scenes`）；
# - `team`：上面的队伍，10 种背景、正常的光线、正常的距离；
# - `varied`：同样 10 种背景，但按第 5.01 讲的清单拍——远的近的（物体占画面 0.2~0.6）、
#   亮的暗的、手稳的手抖的（`varied_scenes`，条件范围见 `WIDER`）。组织者的桌子仍然一张都没见过。

# %%
print("varied photos:", {k: v for k, v in WIDER.items()})
runs["one table"] = experiment(narrow_scenes(DATASET, N, background="mate/nature/Wood.jpg"))
runs["varied"] = experiment(varied_scenes(DATASET, N))
for name in ("one table", "team", "varied"):
    print(line(name, runs[name], None if name == "team" else base))

# %% [markdown]
# 多样性是可靠的对策：`varied` 在测试集上明显更好，自己验证集上的分数只略低或持平（同样的步数要学的东西更多）。
# `one table` 连自己的验证集（别的桌子）都过不了——对它来说，**验证集本身就是偏移的**。
# 如果它的验证照片也在那张桌子上拍，它会看到一个漂亮的分数，然后在排行榜上摔得更重。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. 对策三：测试时增强（TTA）
#
# 不重新训练：预测时把每张图**左右翻转**再预测一次，把翻转回来的框和原来的框合并。
# 两种合并法：`nms`（每个物体留分数最高的那个框）和 `fuse`（两个视角的框按分数加权平均，
# 只在一个视角里出现的框分数减半——加权框融合（weighted boxes fusion）的思路）。
# 代价是预测慢一倍。

# %%
tta = {}
for name in ("team", "varied"):
    r = runs[name]
    tta[name] = {merge: map_scores(predict(r["model"], hidden, tta=merge), hidden)
                 for merge in ("nms", "fuse")}
    print(f"{name:8s} hidden mAP@0.5 / mAP@[.5:.95]: plain {r['shift']['map_50']:.3f} / "
          f"{r['shift']['map']:.3f}" + "".join(
              f"   {m} {s['map_50']:.3f} / {s['map']:.3f}" for m, s in tta[name].items()))

# %% [markdown]
# TTA 只是小修小补：翻转后的照片还是同一张暗、糊、小的照片，它补不上模型没学过的东西。
# `fuse` 把两个视角的框平均，框更准，高 IoU 阈值下的 mAP 略有提升；`nms` 几乎不变，有时还略降
# （只在一个视角里出现的误报原样留下了）。
# 它在比赛最后一分钟还能用（不用重新训练），但别指望它救一个数据不行的模型。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. 汇总

# %%
order = ["one table", "team", "augmented", "varied"]
print(f"{'':14s} {'val':>6s} {'hidden':>7s} {'gap':>7s}  share of the team's gap closed")
for name in order:
    r = runs[name]
    print(f"{name:14s} {r['val']['map_50']:6.3f} {r['shift']['map_50']:7.3f} "
          f"{r['val']['map_50'] - r['shift']['map_50']:+7.3f}  {gap_closed(base, r):+.0%}")
fused = tta["team"]["fuse"]
print(f"{'team + TTA':14s} {'':6s} {fused['map_50']:7.3f} {'':7s}  "
      f"{gap_closed(base, {'shift': fused}):+.0%}")

fig, ax = plt.subplots(figsize=(6.5, 3.2))
x = np.arange(len(order))
ax.bar(x - 0.2, [runs[n]["val"]["map_50"] for n in order], 0.4, label="own validation")
ax.bar(x + 0.2, [runs[n]["shift"]["map_50"] for n in order], 0.4, label="hidden test (elsewhere)")
ax.set_xticks(x, order)
ax.set_ylabel("mAP@0.5")
ax.set_ylim(0, 1)
ax.legend()
plt.show()

# %% [markdown]
# - **差距是真的**，而且自己的验证集看不出来：它只回答"在我们拍照的地方好不好"。
# - **拆开看**：按条件标签分组的 mAP 和最离谱的错误，告诉你差距来自哪里（今晚的排行榜也会给你这张表和这张图）。
# - **对策的排序**：更多样的照片 ≥ 针对偏移的增强 ≫ 测试时增强。前两者可以叠加。
# - 最好的验证集是你自己的"别处"：留一个房间、一种背景、一部手机只用来验证（第 5.01 讲清单第 5 条）。
#
# 自测：把 `ShiftAugment` 的缩小关掉（`zoom=None`），`small` 那一组的 mAP 会怎样？
# 只用 `varied` 的照片再加上增强，差距还剩多少？

# %%
base_gap = base["val"]["map_50"] - base["shift"]["map_50"]
gain = {name: runs[name]["shift"]["map_50"] - base["shift"]["map_50"]
        for name in ("augmented", "varied")}
small = by_condition(base["found"]["shift"], hidden, "scale_bucket")
# Quick-mode margins are at most half the smallest margin measured over seeds 0, 1 and 2.
assert base_gap >= 0.2, base_gap                                          # the gap is real
assert gain["augmented"] >= 0.05 and gain["varied"] >= 0.05, gain          # both cures help
assert runs["one table"]["val"]["map_50"] <= base["val"]["map_50"] - 0.1   # one table fails
for name, merges in tta.items():  # TTA is no cure-all, but fusing the views does no harm
    plain = runs[name]["shift"]["map_50"]
    assert merges["fuse"]["map_50"] >= plain - 0.03, (name, plain, merges)
    assert merges["nms"]["map_50"] >= plain - 0.08, (name, plain, merges)
assert small["small"]["map_50"] < small["medium"]["map_50"], small         # small is hard
assert errors["false_negatives"] and errors["false_positives"]
print(f"lesson 5.02 done: gap {base_gap:.3f} (val {base['val']['map_50']:.3f}, hidden "
      f"{base['shift']['map_50']:.3f}); augmentation closes "
      f"{gap_closed(base, runs['augmented']):.0%}, varied photos "
      f"{gap_closed(base, runs['varied']):.0%}, flip TTA {gap_closed(base, {'shift': fused}):.0%}")
