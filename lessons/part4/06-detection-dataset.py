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
#     title: 目标检测数据集（object detection dataset）
#     title_en: The object detection dataset
#     minutes:
#       quick: 0.3
#       full: 1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 目标检测数据集（object detection dataset）
#
# 分类数据集里每张图只有一个标签；检测数据集里每张图有**若干个物体**，每个物体一个类别加一个边界框。
# 标注边界框很费人工，所以《动手学深度学习》14.6 节用了一个"香蕉数据集"：把一张香蕉照片以随机的
# 位置和大小贴到背景图上，1000 张训练图、100 张测试图，框是贴的时候顺手记下的。那个数据集要联网下载。
#
# 我们用同样的思路离线合成，并且做得更像真实数据：
#
# - **物体**来自 Debian 软件包 `tuxpaint-stamps-default`：几百张带透明通道（alpha channel）的抠图，
#   其中很多是真实照片（水果、鸟、花、昆虫……），文件夹就是类别；
# - **背景**来自 `mate-backgrounds` 的风景照片、`gimp-data` 的纹理和 scikit-image 自带的纹理；
# - 物体会被**旋转、翻转、缩放、互相遮挡**（occlusion）、被图像边缘截断，整张图还有光照、模糊和噪声的变化；
# - 框取自物体**可见部分**的像素，所以永远精确。
#
# 本讲看懂这个数据集：它的原料、一张图怎样合成、小批量的形状、为什么按**物体实例**划分训练集和测试集，
# 以及一个专门用来测**协变量偏移**（covariate shift）的第三个划分。

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from dlcamp.core.utils import is_quick
from dlcamp.course.plot import draw_boxes, show_detections
from dlcamp.data import scene_sources
from dlcamp.data.detection_loader import DetectionLoader
from dlcamp.vision import scene_sets
from dlcamp.vision.scenes import SceneConfig, SceneObject, synthesise

QUICK = is_quick()  # 快速模式：每个划分只取前几十张图（和完整数据集的前几十张完全相同）
N = {"train": 64, "test": 32, "shift": 32} if QUICK else {"train": None, "test": None,
                                                            "shift": None}

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 原料：带透明通道的抠图
#
# PNG 图片除了红绿蓝三个通道，还可以有第四个 **alpha 通道**：0 表示完全透明，255 表示不透明。
# 抠图的 alpha 通道就是物体的**像素掩码**（mask）——哪些像素属于物体，一目了然。
# 所以边界框不用人画：不透明像素的最小、最大 x 和 y 就是框。

# %%
keys = ["tuxpaint/food/fruit/banana.png", "tuxpaint/food/fruit/pear.png",
        "tuxpaint/food/fruit/grapes.png", "tuxpaint/food/fruit/pineapple.png"]
stamps = [scene_sources.load_rgba(scene_sources.resolve(k)) for k in keys]  # (h, w, 4) each
fig, axes = plt.subplots(2, len(keys), figsize=(2.2 * len(keys), 4.4))
for k, rgba, top, bottom in zip(keys, stamps, axes[0], axes[1], strict=True):
    top.imshow(rgba)
    ys, xs = np.nonzero(rgba[..., 3] >= 128)  # pixels that are (mostly) opaque
    draw_boxes(top, torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]),
               [k.split("/")[-1]], colors="tab:red")
    bottom.imshow(rgba[..., 3], cmap="gray")  # the alpha channel: the object's mask
    top.set_axis_off()
    bottom.set_axis_off()
plt.show()
print({k.split("/")[-1]: s.shape for k, s in zip(keys, stamps, strict=True)})

# %% [markdown]
# Tux Paint 里也有卡通画（clip-art）。照片和卡通画怎么区分？卡通画是大片平涂的颜色，
# 最常见的 8 种颜色就占了大半像素；照片有光影和噪声，颜色分散得多。
# `scene_sources.stamp_style` 就用这个统计量（再加上 Tux Paint 把卡通画放在 `cartoon/` 文件夹里的习惯）。

# %%
cartoon = scene_sources.load_rgba(scene_sources.resolve("tuxpaint/food/fruit/cartoon/banana.png"))
print("photo banana:", scene_sources.stamp_style(stamps[0]),
      "| cartoon banana:", scene_sources.stamp_style(cartoon))
assert scene_sources.stamp_style(stamps[0]) == "photo"
assert scene_sources.stamp_style(cartoon) == "clipart"

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 合成一张场景
#
# `dlcamp.vision.scenes.synthesise` 一张一张地画：先从背景里随机裁一块，再贴上 1~k 个物体，
# 每个物体随机缩放、翻转、旋转、调颜色，位置允许伸出图像边缘一点（被截断）。
# 后贴的物体会挡住先贴的；**可见部分**不到一半的物体在贴之前就被去掉，免得图里留下没有标注的碎片。
# 最后整张图做光照（亮度、对比度、伽马、明暗渐变）、模糊和噪声。
#
# 每张图 i 用自己的随机数发生器 `default_rng([seed, i])`，所以同样的设置永远画出**完全相同**的字节。

# %%
config = SceneConfig(image_size=128, objects=(3, 3), scale=(0.35, 0.6), min_visible=0.5)
print(config)
objects = [SceneObject(k, 0, s) for k, s in zip(keys, stamps, strict=True)]
background = ("mate/nature/Dune.jpg",
              scene_sources.load_rgb(scene_sources.resolve("mate/nature/Dune.jpg")))
demo = synthesise(config, objects, 4, seed=0, backgrounds=[background], class_names=["fruit"],
                  class_names_zh=["水果"])
again = synthesise(config, objects, 4, seed=0, backgrounds=[background], class_names=["fruit"],
                   class_names_zh=["水果"])
assert demo.to_bytes() == again.to_bytes()  # deterministic, byte for byte

fig, axes = plt.subplots(2, 4, figsize=(9, 4.6))
for i in range(4):
    axes[0, i].imshow(demo.images[i].permute(1, 2, 0))
    draw_boxes(axes[0, i], demo.targets(i)["boxes"])
    axes[1, i].imshow(demo.masks[i], cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
    axes[0, i].set_axis_off()
    axes[1, i].set_axis_off()
plt.show()

# %% [markdown]
# 下面一行是**实例掩码**（instance mask）：0 是背景，k 是第 k 个物体的可见像素。
# 框正是每个掩码的外接矩形；被挡住一部分的物体，框只框住看得见的部分。检查一下：

# %%
for i in range(len(demo)):
    for k, box in enumerate(demo.targets(i)["boxes"], start=1):
        ys, xs = torch.nonzero(demo.masks[i] == k, as_tuple=True)
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
print("objects per image after occlusion:", demo.num_objects().tolist())

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 命名、带版本的数据集
#
# 自己调设置适合做实验；训练和比较模型则需要**固定**的数据集。`dlcamp.vision.scene_sets` 登记了两个：
#
# - `fruit-1`：只有一类"水果"，每张图 1~2 个，对应书里的香蕉数据集；
# - `objects-8`：鸟、哺乳动物、鱼、昆虫、花、水果、蔬菜、工具八类，每张图 1~3 个。
#
# 每个版本记下所用源文件的 SHA-256：装的软件包版本不同，会得到一条清楚的错误，而不是悄悄变了的数据。
# 第一次加载时合成（几秒到几十秒），之后从缓存里读。命令行 `dlcamp data info fruit-1` 显示同样的信息。

# %%
for name in scene_sets.list_scene_sets():
    info = scene_sets.scene_set_info(name)
    print(f"{name} v{info['version']}: {info['sizes']}, {info['image_size']} px, "
          f"classes {list(zip(info['classes'], info['classes_zh'], strict=True))}")
train = scene_sets.load_scene_set("fruit-1", "train", n=N["train"])
test = scene_sets.load_scene_set("fruit-1", "test", n=N["test"])
print(len(train), "train images,", len(test), "test images; image", tuple(train.images.shape[1:]))

# %%
fig = show_detections(train.images[:12], train.boxes[:12], train.labels[:12], train.class_names_zh)
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 读取小批量
#
# 书里的香蕉数据集每张图恰好一个框，标签张量是 (批量大小, 1, 5)：类别加四个坐标（除以 256 归一化）。
# 我们每张图的物体数不同，于是把框**填充**（padding）到一个批量里最多的物体数 M：
#
# - 图像 (B, 3, H, W)；
# - 框 (B, M, 4)，角点格式，单位是像素；
# - 类别 (B, M)，填充的行记为 **-1**。
#
# `dlcamp.data.detection_loader.DetectionLoader` 把整个划分放在设备上，一次取一个批量，不用逐张的 Python 循环。

# %%
loader = DetectionLoader(train, batch_size=32, shuffle=True)
images, boxes, labels = next(iter(loader))
print("images", tuple(images.shape), images.dtype)  # (32, 3, 128, 128) normalised floats
print("boxes ", tuple(boxes.shape), boxes.dtype)    # (32, M, 4) corner pixels
print("labels", tuple(labels.shape), labels.dtype)  # (32, M) class ids, -1 = padding
print("objects in this batch:", int((labels >= 0).sum()), "padding rows:",
      int((labels < 0).sum()))
assert images.shape == (32, 3, 128, 128) and boxes.shape[:2] == labels.shape

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 按物体实例划分
#
# 如果训练集和测试集用的是**同一批抠图**，模型可能只是记住了这几个香蕉，测试成绩会虚高。
# 所以我们按**实例**（instance）划分：每类的抠图按文件名排序，每四个留出一个只给测试集用。
# 测试集考的是"没见过的水果还认不认得"。

# %%
spec = scene_sets.get_scene_set("fruit-1")
train_instances = {k.split("/")[-1] for k, _ in spec.instances("train")}
test_instances = {k.split("/")[-1] for k, _ in spec.instances("test")}
print("train:", sorted(train_instances))
print("test: ", sorted(test_instances))
assert not train_instances & test_instances
seen = {k.split("/")[-1] for s in test.conditions["instances"] for k in s.split("|")}
assert seen <= test_instances  # every object pasted in a test image is a held-out instance

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 第三个划分：协变量偏移
#
# 真实世界里，部署时的照片往往和训练时的不一样：光线更暗、物体更小、镜头有点糊、背景换了……
# 输入的分布 $p(x)$ 变了、而"什么是水果"没变，这叫**协变量偏移**（covariate shift）。
# `shift` 划分专门模拟它：留出的实例再加上卡通画，贴在 GIMP 纹理上，物体更小，光照更差，更模糊，噪声更大。
# 以后训练的检测器会在 `test` 和 `shift` 上各报一次 mAP，差距就是模型对偏移的敏感程度。

# %%
shift = scene_sets.load_scene_set("fruit-1", "shift", n=N["shift"])
print("what the shift split changes:")
for knob, (in_domain, shifted) in scene_sets.shift_knobs("fruit-1").items():
    print(f"  {knob:12s} {str(in_domain):28s} -> {shifted}")
pairs = [test.targets(i) for i in range(6)] + [shift.targets(i) for i in range(6)]
fig = show_detections(torch.cat([test.images[:6], shift.images[:6]]),
                      [t["boxes"] for t in pairs], [t["labels"] for t in pairs],
                      test.class_names_zh, titles=["test"] * 6 + ["shift"] * 6)
plt.show()

# %% [markdown]
# 每张图都带着它的**条件标签**（conditions）：背景来源、亮度、模糊、物体大小……
# 以后可以按条件拆开看模型在哪里出错。

# %%
summary = {}
for split, data in (("test", test), ("shift", shift)):
    c = data.conditions
    summary[split] = {"blur": float(np.mean(c["blur"])),
                      "brightness": float(np.mean(c["brightness"])),
                      "scale": float(np.mean(c["scale"])),
                      "pixel mean": data.images.float().mean().item(),
                      "backgrounds": sorted(set(c["background_source"]))}
    print(split, {k: (round(v, 3) if isinstance(v, float) else v)
                  for k, v in summary[split].items()})

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结
#
# - 检测数据集的每张图有若干个框和类别；一个批量里把框填充到同样的个数，填充的类别记 -1。
# - 用带 alpha 通道的抠图合成场景，框和像素掩码都是精确的，遮挡和截断也算得清清楚楚。
# - 训练集和测试集按**物体实例**划分；`shift` 划分用来衡量协变量偏移。
# - 下一讲用 `fruit-1` 训练书里的 TinySSD。

# %%
assert summary["shift"]["blur"] > summary["test"]["blur"]
assert summary["shift"]["scale"] < summary["test"]["scale"]
assert summary["shift"]["pixel mean"] < summary["test"]["pixel mean"]
assert set(summary["test"]["backgrounds"]).isdisjoint(summary["shift"]["backgrounds"])
assert not train_instances & test_instances and (labels[labels >= 0] == 0).all()
print(f"lesson 4.06 done: {len(train)} train / {len(test)} test / {len(shift)} shift images, "
      f"batch {tuple(images.shape)} with boxes {tuple(boxes.shape)}, "
      f"shift blur {summary['shift']['blur']:.2f} vs {summary['test']['blur']:.2f}")
