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
#     title: 为黑客松收集和标注数据（collecting and labelling data）
#     title_en: Collecting and labelling data for the hackathon
#     minutes:
#       quick: 0.8
#       full: 8
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 为黑客松收集和标注数据
#
# 今晚的黑客松（hackathon）是"做一个自己的目标检测器"：每个队拿到几样物体，用手机拍照、画框、训练，
# 最后在组织者**在别处拍的**测试集上打分——别的桌子、别的灯光、别的角度。
# 往届的经验是：模型结构几乎不决定名次，**数据**决定名次。各队卡住的地方也总是同三个问题：
#
# 1. 要拍**多少张**？
# 2. 拍得**多样**有多重要？
# 3. 框画得**马虎一点**要紧吗？
#
# 本讲把每个问题变成一次实验。合成场景集 `fruit-1`（第 4.06 讲）代替各队的手机照片：
# 同一个检测器（第 4.08 讲的 YOLO 风格检测器）、同样的**训练步数**（step budget），
# 每次只改数据，看测试集上的 mAP 怎么变。最后是一张今晚就能照着做的清单。

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from dlcamp.core.utils import is_quick
from dlcamp.course.datawork import (
    condition_counts,
    corrupt_labels,
    detector_scores,
    found_at,
    narrow_scenes,
    select_condition,
    train_detector,
)
from dlcamp.course.plot import show_detections
from dlcamp.train.detection import load_scenes
from dlcamp.vision.boxes import box_iou

QUICK = is_quick()
DATASET = "fruit-1"
TABLE = "mate/nature/Wood.jpg"  # 那一张"桌子"：窄数据只在它上面拍
if QUICK:  # 快速模式：半宽的网络、80 步，几十秒跑完全部实验，效应小一些但方向相同
    WIDTH, STEPS, SIZES, VARIETY_N = 8, 80, (25, 50, 100, 200), 100
else:      # 完整模式：默认的 yolo，500 步（批量 16），训练集最多 1000 张
    WIDTH, STEPS, SIZES, VARIETY_N = 16, 500, (25, 50, 100, 200, 400, 1000), 200
SEED = 0

train = load_scenes(DATASET, "train", quick=QUICK)  # 训练实例、10 种背景、随机光照
test = load_scenes(DATASET, "test", quick=QUICK)    # 同样的条件，但全是没见过的水果实例
shift = load_scenes(DATASET, "shift", quick=QUICK)  # "别处拍的"：别的背景、更暗、更小、更糊
print(f"{DATASET}: {len(train)} train / {len(test)} test / {len(shift)} shift images; "
      f"yolo width {WIDTH}, {STEPS} steps of batch 16 for every run")

# %% [markdown]
# 一次实验 = `train_detector`（按 yolo 的配方：AdamW、one-cycle 学习率、翻转和颜色增强，**正好** `STEPS` 步）
# 加上 `detector_scores`（COCO 的 mAP@[.5:.95]、mAP@0.5 和 mAP@0.75，和 `dlcamp evaluate` 算的一样），
# 再加上 `found_at`：只留下分数 ≥ 0.5 的框（演示时屏幕上看到的就是这些）时的**召回率**（recall，
# 真实物体找到了几成）和**精确率**（precision，报出来的框有几成是对的）。
# 固定步数而不是固定轮数（epoch）：25 张图和 1000 张图花的训练时间相同，差别只来自数据。

# %%
def experiment(data, on_shift=True):
    """Train on `data` for STEPS steps; mAP on test (and shift), recall at score 0.5 on test."""
    trainer = train_detector(data, STEPS, seed=SEED, width=WIDTH)
    result = {"test": detector_scores(trainer, test), "seconds": trainer.train_seconds,
              "found": found_at(trainer, test, score_threshold=0.5), "trainer": trainer}
    if on_shift:
        result["shift"] = detector_scores(trainer, shift)
    return result


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. 多少张图：学习曲线
#
# 把训练集截成 25、50、100、200……张，各训练一次。横轴是图片数（对数刻度），纵轴是测试集 mAP@0.5，
# 这条线叫**学习曲线**（learning curve）。它回答"再多拍一些值不值"：
# 曲线在你现在的数量上还在往上走，就值得再拍；已经平了，时间该花在别处（多样性、标注质量）。

# %%
curve = {}
for n in SIZES:
    curve[n] = experiment(train.select(range(n)))
    r = curve[n]
    print(f"{n:5d} images: test mAP@0.5 {r['test']['map_50']:.3f}  mAP {r['test']['map']:.3f}"
          f"  | shift mAP@0.5 {r['shift']['map_50']:.3f}   ({r['seconds']:.1f} s)")

fig, ax = plt.subplots(figsize=(6, 3.6))
for split, key, style in (("test", "map_50", "o-"), ("test", "map", "o:"),
                          ("shift", "map_50", "s--")):
    label = f"{split} " + ("mAP@0.5" if key == "map_50" else "mAP@[.5:.95]")
    ax.plot(SIZES, [curve[n][split][key] for n in SIZES], style, label=label)
ax.set_xscale("log")
ax.set_xticks(SIZES, [str(n) for n in SIZES])
ax.set_xlabel("training images (same number of steps)")
ax.set_ylim(0, 1)
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# 读这条曲线的三点：
#
# - 前面涨得快、后面涨得慢：每**翻一倍**带来的提升越来越小（大致是对数关系）。
#   几十张到一两百张是最值钱的一段——这正是今晚一个队拍得出来的数量。
# - 图片少的时候，同样的步数等于把几张图看了几十遍，模型在**背答案**（过拟合，overfitting）。
#   反过来，图多了也要**多训练**：步数固定时，最大的训练集每张图只看了几遍，曲线末端会被压平。
# - 每个点只训练了一次、测试集也只有一两百张，所以单个点有 ±0.03 左右的抖动：看走势，别看相邻两点。
# - `shift` 那条线一直低得多：**多拍同一种照片，补不上"在别处拍"的差距**。这是下一节的事。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. 多样性：一张桌子、一盏灯
#
# 最省事的拍法：把水果摆在一张桌子上，同一盏灯下，换着位置拍一百张。
# `narrow_scenes` 合成这样的"窄"数据：同样的训练实例，物体的位置、大小、旋转照样随机，
# 但**只有一种背景**（木纹桌面）、**只有一种光照**（亮度、对比度、模糊、噪声都固定）。
# 每张图的**条件标签**（conditions，第 4.06 讲）可以核对这一点。

# %%
narrow = narrow_scenes(DATASET, VARIETY_N, background=TABLE)
varied = train.select(range(VARIETY_N))  # 同样多的图：10 种背景、随机光照
for name, data in (("narrow", narrow), ("varied", varied)):
    c = data.conditions
    print(f"{name}: {len(condition_counts(data, 'background'))} backgrounds, "
          f"brightness {min(c['brightness']):+.3f}..{max(c['brightness']):+.3f}, "
          f"blur {min(c['blur']):.2f}..{max(c['blur']):.2f}")
show = [narrow.targets(i) for i in range(6)] + [varied.targets(i) for i in range(6)]
fig = show_detections(torch.cat([narrow.images[:6], varied.images[:6]]),
                      [t["boxes"] for t in show], [t["labels"] for t in show],
                      train.class_names_zh, titles=["narrow"] * 6 + ["varied"] * 6)
plt.show()

# %%
runs = {"narrow": experiment(narrow), "varied": curve[VARIETY_N]}
print(f"{VARIETY_N} images each      test mAP@0.5   shift mAP@0.5   test precision@0.5")
for name, r in runs.items():
    print(f"  {name:8s}             {r['test']['map_50']:.3f}          {r['shift']['map_50']:.3f}"
          f"            {r['found']['precision']:.3f}")

fig, ax = plt.subplots(figsize=(5.5, 3.2))
x = np.arange(2)
for k, (name, r) in enumerate(runs.items()):
    ax.bar(x + 0.38 * k, [r["test"]["map_50"], r["shift"]["map_50"]], 0.38, label=name)
ax.set_xticks(x + 0.19, ["test (other tables)", "shift (shot elsewhere)"])
ax.set_ylabel("mAP@0.5")
ax.set_ylim(0, 1)
ax.legend()
plt.show()

# %% [markdown]
# 窄数据训练出的检测器，换一张桌子就不灵了：它学到的很大一部分是"不是木纹的东西就是水果"，
# 所以在新背景上到处报假警（精确率很低）。而图片的**数量**两边完全一样。
# 用条件标签把测试集拆开看：只挑背景正好是那张木纹桌面的测试图，窄数据的检测器其实不差——
# 它没学错，只是只学了一个地方。

# %%
home = select_condition(test, "background", TABLE)
away = test.select([i for i, b in enumerate(test.conditions["background"]) if b != TABLE])
for name, r in runs.items():
    at_home, elsewhere = (detector_scores(r["trainer"], d)["map_50"] for d in (home, away))
    print(f"{name:7s} mAP@0.5 on its table ({len(home)} test images) {at_home:.3f}, "
          f"on the other {len(away)} {elsewhere:.3f}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 协变量偏移（covariate shift）
#
# 把一张照片记作 $x$，它的标注（框和类别）记作 $y$。训练数据来自分布 $p_\text{train}(x, y)$，
# 组织者的测试集来自 $p_\text{test}(x, y)$。**协变量偏移**说的是：
#
# $$p_\text{test}(x) \ne p_\text{train}(x), \qquad p_\text{test}(y \mid x) = p_\text{train}(y \mid x).$$
#
# **输入**的分布变了（背景、光线、角度、相机、物体的大小），而"这张图里哪儿有个苹果"的答案没变。
# 检测器只在 $p_\text{train}(x)$ 覆盖到的地方学过 $p(y \mid x)$；测试照片落在没覆盖的地方，它就只能瞎猜。
# 对策只有一个方向：让训练照片**覆盖**测试照片可能出现的样子——换背景、换光、换角度、换距离、换手机。
# 数据增强（data augmentation，第 4.01 讲）能补一点（颜色增强模拟光线），但变不出一张新桌子。
#
# 组织者的测试集就是在别处拍的。你们没法看它，但可以**模拟**它：留出一个房间或一种背景，
# 只用来验证，看模型在那里掉多少分（下面清单的第 5 条）。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. 标注质量：松的框、漏的框
#
# 画框很累，于是会有两种马虎：
#
# - **松的框**（loose box）：框比物体大 20%~30%，多出的边随机地分在两侧（框仍然包住整个物体）；
# - **漏的框**（missed box）：30% 的物体没画框——物体还在照片里，但模型被告知"这里什么也没有"。
#
# `corrupt_labels` 对训练集做这两件事，图片不变。左：正确的框；中：松的框；右：漏掉一部分框。

# %%
clean = train.select(range(SIZES[-1]))
loose = corrupt_labels(clean, grow=(0.2, 0.3), seed=SEED)
missed = corrupt_labels(clean, drop=0.3, seed=SEED)
rows = [(clean, "tight"), (loose, "loose"), (missed, "missed")]
picks = range(4)
fig = show_detections(torch.cat([d.images[list(picks)] for d, _ in rows]),
                      [d.targets(i)["boxes"] for d, _ in rows for i in picks],
                      [d.targets(i)["labels"] for d, _ in rows for i in picks],
                      train.class_names_zh, titles=[t for _, t in rows for _ in picks], ncols=4)
plt.show()
real = clean.labels >= 0
iou_loose = box_iou(clean.boxes[real], loose.boxes[real]).diagonal()  # same boxes, same order
kept = 1 - missed.num_objects().sum().item() / clean.num_objects().sum().item()
print(f"loose boxes: IoU with the tight box {iou_loose.mean():.2f} on average "
      f"({(iou_loose < 0.75).float().mean():.0%} below 0.75); missed: {kept:.0%} of boxes gone")

# %% [markdown]
# 一个松 25% 的框和紧框的**交并比**（IoU）只有 $1/1.25^2 \approx 0.64$。检测器学会的是"照标注的样子画框"，
# 所以它画出的框也是松的：在 IoU 阈值 0.5 下还算对，到了 0.75 就全算错。下面各训练一次，和干净的标注比：

# %%
quality = {"tight": curve[SIZES[-1]], "loose": experiment(loose, on_shift=False),
           "missed": experiment(missed, on_shift=False)}
print(f"{SIZES[-1]} images        mAP@0.5  mAP@0.75  mAP@[.5:.95]  recall@0.5  precision@0.5")
for name, r in quality.items():
    t, f = r["test"], r["found"]
    print(f"  {name:8s}       {t['map_50']:.3f}    {t['map_75']:.3f}     {t['map']:.3f}"
          f"        {f['recall']:.3f}       {f['precision']:.3f}")

# %% [markdown]
# - 松的框：mAP@0.5 只掉一点，**mAP@0.75 掉得最多**。比赛用的是 COCO 的 mAP@[.5:.95]（0.5 到 0.95 十个阈值的平均），
#   高阈值那一半几乎全丢。
# - 漏的框：mAP 是按分数**排序**算的，几乎不变（甚至可能略高）；但模型学会了"三成的水果是背景"，变得**胆小**：
#   分数普遍偏低，在常用的阈值 0.5 下召回率明显下降——演示时它就是"看不见"一部分水果。
#   精确率反而不低：它报出来的基本都对，只是报得少。
#
# 一张图里每个物体都要框上；框要**紧贴**物体可见部分的边缘。画不准的宁可删掉这张图，也别留下一个错的标注。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. 今晚的清单
#
# **拍（每队约 45 分钟）**
#
# 1. **数量**：每类至少 50 张、争取 100 张；数的是**物体**（框）不是照片——一张照片里可以有好几个物体。
#    每类至少用 3 个不同的实物（两个苹果不是同一个苹果）。
# 2. **背景**：至少 5 种（桌面、地板、床单、手里、书包里、窗台、户外）；任何一种背景不超过三分之一。
# 3. **光线**：窗边日光、室内灯、台灯侧光、背光、阴影；开一次、关一次闪光灯。
# 4. **角度和距离**：正面、侧面、俯视、斜 45°；近（物体占画面一半）、中、远（物体只占十分之一）；
#    部分**遮挡**（occlusion）、几样东西挤在一起、被画面边缘截掉一块的都要有；队里每人的手机都用上，横拍竖拍都有。
# 5. **留出按物体，不按照片**：验证集（validation set）用**训练里没出现过的那个实物**拍，
#    最好再加一个训练里没有的房间或背景——这就是你们自己的 `shift` 集。按照片随机划分，
#    同一个苹果同一张桌子的"兄弟照片"会同时落在两边，分数虚高（第 4.06 讲按实例划分也是这个道理）。
#
# **标（每队约 45 分钟，边拍边标）**
#
# 6. **紧框**：框贴着物体**看得见**的部分的边缘；被挡住的只框露出来的部分；
#    先在队里定好规则（水果的柄算不算？），写在一张纸上。
# 7. **一个不漏**：图里每个目标类别的物体都要框，远处的小的也算。
# 8. **空图**：拍一成左右没有目标物体的照片（空桌子、别的东西），在 `dlcamp camp` 里标成
#    **"无物体"**（no objects）——它们教模型什么是背景；没标的图不等于空图。
# 9. **互查**（review）：每张图由**另一个人**看一遍，用页面上的审阅状态标"完成 / 需要改"；
#    训练前再随机抽 20 张，一起过一遍。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结
#
# - **数量**：学习曲线前陡后平；几十到一两百张是最值钱的一段。
# - **多样性**：同样多的图，一张桌子一盏灯的数据在别处几乎不能用。测试照片的 $p(x)$ 变了而 $p(y\mid x)$ 没变，
#   这叫协变量偏移；对策是让训练照片覆盖测试照片的样子。
# - **标注质量**：松的框毁掉高 IoU 阈值下的分数；漏的框让模型变胆小、召回率下降。
# - 今晚照清单拍、照清单标，并留出一个"别处"来检验自己。
#
# 自测：把 `TABLE` 换成草地（`mate/nature/GreenMeadow.jpg`），窄数据在 `shift` 上会更好还是更差？
# 漏框比例从 30% 改成 10%，召回率掉多少？

# %%
first, last = curve[SIZES[0]]["test"]["map_50"], curve[SIZES[-1]]["test"]["map_50"]
narrow_r, varied_r = runs["narrow"], runs["varied"]
tight_t, loose_t = quality["tight"]["test"], quality["loose"]["test"]
keep_50, keep_75 = loose_t["map_50"] / tight_t["map_50"], loose_t["map_75"] / tight_t["map_75"]
recall_drop = quality["tight"]["found"]["recall"] - quality["missed"]["found"]["recall"]
assert condition_counts(narrow, "background") == {TABLE: len(narrow)}
# Quick-mode margins are at most half the smallest margin measured over seeds 0, 1 and 2.
assert last >= first + (0.05 if QUICK else 0.1), curve              # more images, better
assert varied_r["test"]["map_50"] >= narrow_r["test"]["map_50"] + 0.2  # variety beats count
assert keep_75 < 0.6 and keep_75 < keep_50, (keep_50, keep_75)     # loose boxes cost IoU 0.75
assert recall_drop >= 0.05, recall_drop                             # missed boxes: timid
if not QUICK:  # the full claims: the curve rises (larger half against smaller half) ...
    half = len(SIZES) // 2
    for split, key in (("test", "map"), ("shift", "map_50")):
        small, large = ([curve[n][split][key] for n in part]
                        for part in (SIZES[:half], SIZES[half:]))
        assert np.mean(large) >= np.mean(small) + 0.05, (split, key, small, large)
    # ... variety wins on the shifted split, loose boxes lose most of mAP@0.75, missed boxes
    # lower recall at score 0.5 but not precision
    assert varied_r["shift"]["map_50"] >= narrow_r["shift"]["map_50"] + 0.1
    assert keep_75 < 0.5
    assert quality["missed"]["found"]["precision"] >= quality["tight"]["found"]["precision"] - 0.03
print(f"lesson 5.01 done: test mAP@0.5 {first:.3f} with {SIZES[0]} images -> {last:.3f} with "
      f"{SIZES[-1]}; narrow {narrow_r['test']['map_50']:.3f} vs varied "
      f"{varied_r['test']['map_50']:.3f} (shift {narrow_r['shift']['map_50']:.3f} vs "
      f"{varied_r['shift']['map_50']:.3f}); loose boxes keep {keep_75:.0%} of mAP@0.75; "
      f"missed boxes cost {recall_drop:.2f} recall")
