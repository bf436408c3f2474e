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
#     title: 部署模型：从检查点到 API 到网页（deploying a model）
#     title_en: "Deploying a model: from checkpoint to API to web page"
#     minutes:
#       quick: 0.3
#       full: 3
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 部署模型：从检查点到 API 到网页（deploying a model）
#
# 到目前为止，模型训练完就结束了：打印一个测试准确率，画一条曲线。可是训练模型通常是为了**让别人用**：
# 一个网页、一个手机应用、另一个程序，把一张图片发过来，拿回一个答案。
# 把模型变成这样一个随时可用的服务，就叫**部署**（deployment）。
#
# 这一讲走完整条路，每一步都用 dlcamp 的 `dlcamp.serve` 包：
#
# | 步骤 | 做什么 | 代码 |
# |---|---|---|
# | 检查点 | 权重之外，还要存下标签和预处理的参数 | `dlcamp.train.checkpoint` |
# | 预处理 | 把任意一张照片变成训练时那样的 28×28 灰度图 | `serve/preprocess.py` |
# | API | `POST /predict` 收图片，回 JSON；坏输入回 4xx | `serve/app.py` |
# | 导出 | ONNX 文件，用 onnxruntime 推理，不需要模型代码 | `serve/export.py` |
# | 网页 | 画一个图或上传照片，看模型的回答 | `serve/static/index.html` |
# | 压力测试 | 延迟、吞吐量；微批处理和多个进程 | `serve/batching.py`，`bench/serve.py` |
#
# 本讲写的所有文件都放在一个临时目录里，结束时删掉。

# %%
import asyncio
import base64
import inspect
import io
import json
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import matplotlib.pyplot as plt
import numpy as np
import onnxruntime as ort
import torch
from PIL import Image, ImageOps

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx.*")  # starlette's notice about httpx
    from fastapi.testclient import TestClient

from dlcamp.core.errors import CheckpointError
from dlcamp.core.utils import is_quick
from dlcamp.data import load_dataset
from dlcamp.serve.app import MAX_BODY, create_app
from dlcamp.serve.batching import MicroBatcher
from dlcamp.serve.export import export_onnx
from dlcamp.serve.model import ServedModel
from dlcamp.serve.preprocess import MAX_PIXELS, ImageError, Preprocess
from dlcamp.train.checkpoint import load_checkpoint, model_from_checkpoint
from dlcamp.train.run import make_config, train_run

QUICK = is_quick()  # 快速模式：小数据集训练 2 轮，评估和压力测试都少一些
torch.manual_seed(0)
workdir = tempfile.TemporaryDirectory(prefix="dlcamp-deploy-")  # removed at the end
root = Path(workdir.name)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 第一步：检查点（checkpoint）
#
# 先用默认配方训练 dlcamp 的默认模型 `cnn`，和命令行 `dlcamp train --model cnn --out DIR` 做的事一样。
# 快速模式只在 6000 张图片上训练 2 轮（几秒钟），完整模式按完整配方训练（2 核 CPU 上一两分钟）。
# 运行目录里有四个文件，部署只需要其中的 `checkpoint.pt`：

# %%
cfg = make_config("cnn", quick=QUICK)  # quick mode caps the recipe at 2 epochs
trainer, run = train_run(cfg, root / "demo", force=True, progress=False)
test_acc = trainer.history[-1]["test_acc"]
print(sorted(p.name for p in run.iterdir()))
print(f"checkpoint.pt: {(run / 'checkpoint.pt').stat().st_size / 1e3:.0f} kB, "
      f"test accuracy {test_acc:.3f}")

# %% [markdown]
# 检查点是 `torch.save` 写的文件，里面是 Python 的 **pickle**（序列化格式）。pickle 很方便，
# 但加载时可以**调用任意函数**：谁给你一个 `.pt` 文件，谁就能在你的机器上运行代码。
# 所以 dlcamp 的检查点只装张量、数字、字符串、列表和字典，并且总是用
# `torch.load(..., weights_only=True)` 加载——它拒绝文件里出现的任何其他对象。
#
# 下面做一个"不老实"的文件：它在加载时调用 `print`（换成删文件的函数也一样容易）。

# %%
class Sneaky:
    def __reduce__(self):  # pickle: "to rebuild me, call print(...)"
        return (print, ("!!! this line was printed by a pickle while it was being loaded",))


torch.save({"format": "dlcamp-checkpoint", "version": 1, "gift": Sneaky()}, root / "sneaky.pt")
torch.load(root / "sneaky.pt", weights_only=False)  # runs the code inside the file
try:
    load_checkpoint(root / "sneaky.pt")  # weights_only=True: refused, nothing runs
    raise AssertionError("the sneaky checkpoint should have been refused")
except CheckpointError as e:
    sneaky_refused = str(e)
print("load_checkpoint:", sneaky_refused.split("):")[0] + ")")  # the first sentence

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 检查点里有什么
#
# 用 `load_checkpoint` 正常加载我们自己的检查点，看看它装了什么：
#
# - `model`：模型的名字和构造参数，`create_model(name, **kwargs)` 就能重建同样的网络；
# - `trainer`：权重（`model`），还有优化器状态、随机数状态和训练历史——这些是为了**接着训练**，
#   部署时用不上；
# - `data`：数据集的名字、类别名（中英文）、训练集的均值和标准差、输入形状。

# %%
ckpt = load_checkpoint(run)
print(list(ckpt))
print("model:", ckpt["model"])
print("trainer:", list(ckpt["trainer"]))
print("data:", json.dumps(ckpt["data"], ensure_ascii=False))
model = model_from_checkpoint(ckpt)  # create_model(...) + load_state_dict, in eval mode
n_params = sum(p.numel() for p in model.parameters())
print(f"{n_params:,} parameters")

# %% [markdown]
# 为什么 `data` 必须和权重存在一起？因为模型只认识**它训练时见过的那种输入**。
# 训练时每个像素先除以 255，再减去训练集的均值 $\mu$、除以标准差 $\sigma$：
# $x' = (x / 255 - \mu) / \sigma$。Fashion-MNIST 的图片是**黑底白物**。
# 少了任何一点，同一个模型在同样的测试图片上就会差很多：

# %%
test = load_dataset("fashion-mnist", "test")
n_eval = 1000 if QUICK else 10000
pixels = test.images[:n_eval, 0].numpy()  # (N, 28, 28) uint8, as stored
labels = test.labels[:n_eval].numpy()
mean, std = ckpt["data"]["mean"], ckpt["data"]["std"]


def normalise(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> (N, 1, 28, 28) float, exactly as in training."""
    return (torch.from_numpy(images)[:, None].float() / 255 - mean) / std


def predict_direct(x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return model(x).numpy()  # logits (N, 10)


variants = {
    "as in training: (x/255 - mean) / std": normalise(pixels),
    "forgot mean/std: x/255": torch.from_numpy(pixels)[:, None].float() / 255,
    "light background (not inverted)": normalise(255 - pixels),
}
accuracies = {}
for name, x in variants.items():
    accuracies[name] = float((predict_direct(x).argmax(1) == labels).mean())
    print(f"{name:38s} accuracy {accuracies[name]:.3f}")
right = accuracies["as in training: (x/255 - mean) / std"]
assert all(right > acc + 0.05 for name, acc in accuracies.items() if not name.startswith("as in"))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 第二步：和训练时一模一样的预处理（preprocessing）
#
# 服务收到的不是整齐的 28×28 张量，而是一串字节：PNG、JPEG，大小、方向、颜色都不确定。
# `Preprocess` 负责把它变成训练时那样的输入，参数全部来自检查点（`Preprocess.from_checkpoint`），
# 所以服务器和 `dlcamp evaluate` 用的是**同一份**均值和标准差，不会有人手抄错数字。

# %%
pre = Preprocess.from_checkpoint(ckpt)
print(pre)
print(inspect.getsource(Preprocess.decode))

# %% [markdown]
# `decode` 做了三件和安全有关的事：
#
# 1. **先看尺寸，再解码**。`Image.open` 只读文件头，像素还没有解压。一个几 KB 的 PNG 可以声称自己有
#    上亿个像素，全部解压就吃掉几 GB 内存，这叫**解压炸弹**（decompression bomb）。
#    超过 `MAX_PIXELS` 的图片在解码之前就被拒绝（HTTP 413）。
# 2. `img.load()` 真正解码，截断或损坏的文件在这里出错，变成一句可读的 `ImageError`。
# 3. `ImageOps.exif_transpose` 按 **EXIF** 方向标签把照片转正（后面马上会看到为什么）。
#
# 然后 `to_array` 转成灰度（16 位、32 位的图片按数值范围**缩放**到 0–255，而不是截断）、需要时反色
# （边框偏亮说明是白纸上的深色物体）、**先缩小**到长边 28 像素、**再补**成 28×28 的正方形。
# 顺序很重要：一张 200000×1 的细长 PNG 只有几百字节，如果先补成正方形，要分配 200000² 字节（40 GB）；
# 先缩小，内存就只和最后的 28×28 输入同一个量级。`to_tensor` 做上面的归一化。先确认：一张测试图片存成 PNG 再走一遍这条路，结果和训练时**逐位相同**。

# %%
def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


for i in range(20):
    assert np.array_equal(pre(png(pixels[i])), pixels[i])  # PNG is lossless: the same pixels
served_x = pre.to_tensor(pixels[:20])
assert torch.allclose(served_x, normalise(pixels[:20]), atol=1e-6)
print("preprocessed PNGs equal the training pixels; tensors differ by at most",
      f"{(served_x - normalise(pixels[:20])).abs().max().item():.1e}")

bomb = io.BytesIO()
Image.new("1", (8000, 8000)).save(bomb, "PNG")  # 64 megapixels, a few kB on disk
start = time.perf_counter()
try:
    pre.decode(bomb.getvalue())
    raise AssertionError("the bomb should have been refused")
except ImageError as e:
    print(f"{len(bomb.getvalue()):,} byte PNG -> {e.status}: {e} "
          f"({(time.perf_counter() - start) * 1e3:.1f} ms, nothing decoded)")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 一张"手机照片"
#
# 真实用户会怎么用？把一件衣服画在纸上（或者打印出来），用手机拍一张。这张照片和训练图片处处相反：
#
# - 很大（这里 960×1280），彩色的，还被压成了 JPEG；
# - **白纸黑物**：纸是浅色的，物体是深色的；
# - 手机竖着拍，传感器却常常把像素**横着**存，再在 EXIF 里写一个方向标签（orientation），
#   告诉看图软件"显示前逆时针转 90°"。不读这个标签，图片就是躺倒的。
#
# 我们用一张测试图片"造"这样一张照片。`paper` 是纸的颜色，`margin` 是物体上下留白占物体高度的比例：

# %%
CREAM = (250, 247, 240)  # slightly warm white paper


def phone_photo(image: np.ndarray, paper: tuple[int, int, int] = CREAM, margin: float = 1 / 6,
                side: int = 960) -> bytes:
    """A 28x28 garment as a phone photo: dark ink on paper, big, JPEG, stored sideways with
    EXIF orientation 8 ("rotate 90 degrees counter-clockwise to display")."""
    colour = np.array(paper, dtype=np.float32)
    ink = Image.fromarray(255 - image).resize((side, side), Image.Resampling.BICUBIC)
    garment = np.asarray(ink, dtype=np.float32)[..., None] / 255 * colour  # (side, side, 3)
    top = round(side * margin)
    page = np.broadcast_to(colour, (side + 2 * top, side, 3)).copy()  # portrait when margin > 0
    page[top:top + side] = garment
    upright = Image.fromarray(page.round().astype(np.uint8))
    stored = upright.transpose(Image.Transpose.ROTATE_270)  # what the sensor wrote: sideways
    exif = Image.Exif()
    exif[0x0112] = 8  # the EXIF orientation tag
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=90, exif=exif)
    return buffer.getvalue()


# the image the model is surest about (among those it gets right) makes the cleanest example
probs = torch.softmax(torch.from_numpy(predict_direct(normalise(pixels[:200]))), 1).numpy()
correct = probs.argmax(1) == labels[:200]
star = next(int(i) for i in np.argsort(-probs.max(1)) if correct[i])
photo = phone_photo(pixels[star])
print(f"test image {star}: {test.classes[labels[star]]} ({test.classes_zh[labels[star]]}), "
      f"probability {probs[star].max():.3f}; the photo is a {len(photo) / 1e3:.0f} kB JPEG")

# %% [markdown]
# 把预处理拆开，一步一步看这张照片变成了什么。最后一格是原来的测试图片：

# %%
stored = Image.open(io.BytesIO(photo))
upright = ImageOps.exif_transpose(stored)
grey = np.asarray(upright.convert("L"))
steps = {
    f"as stored {stored.size[0]}x{stored.size[1]}": stored,
    "EXIF applied": upright,
    "greyscale": grey,
    "inverted (light border)": 255 - grey,
    "preprocessed 28x28": pre(photo),
    "original test image": pixels[star],
}
fig, axes = plt.subplots(1, len(steps), figsize=(13, 2.8))
for ax, (title, image) in zip(axes, steps.items(), strict=True):
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# 模型对这张照片怎么说？和一个"偷懒"的做法比一比：直接转灰度、缩到 28×28，不管 EXIF、不反色。

# %%
served = ServedModel.load(run)  # the checkpoint's model + its Preprocess + its labels
photo_answer = served.predict([pre(photo)], top_k=1)[0][0]
lazy = np.array(Image.open(io.BytesIO(photo)).convert("L").resize((28, 28)))
lazy_index = int(predict_direct(normalise(lazy[None])).argmax())
original_index = int(probs[star].argmax())
print(f"original test image       -> {test.classes[original_index]}")
print(f"phone photo, preprocessed -> {photo_answer['label']} ({photo_answer['probability']:.3f})")
print(f"phone photo, lazy resize  -> {test.classes[lazy_index]}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 照片离训练数据还有多远
#
# 一张图片答对了不说明什么。把前面一批测试图片都做成照片，换几种拍法，看准确率。
# 为了快一点，照片边长用 336 像素（缩到 28×28 以后和 960 像素的几乎一样）：
#
# - 物体**占满**画面，纸是纯白的或略带米色的；
# - 物体上下**留白**（竖拍的 3:4 画面，物体只占 75%），就像上面那张；
# - 物体占满画面，但纸是**灰**的（光线暗的房间）。

# %%
n_photos = 100 if QUICK else 300
conditions = {
    "fills the frame, white paper": dict(paper=(255, 255, 255), margin=0),
    "fills the frame, cream paper": dict(paper=CREAM, margin=0),
    "margin above and below (3:4)": dict(paper=CREAM, margin=1 / 6),
    "fills the frame, grey paper": dict(paper=(200, 200, 200), margin=0),
}
seen = {"original test images": pixels[:n_photos]}
for name, kwargs in conditions.items():
    seen[name] = np.stack([pre(phone_photo(pixels[i], side=336, **kwargs))
                           for i in range(n_photos)])
photo_acc = {}
for name, images in seen.items():
    photo_acc[name] = float((served.logits(list(images)).argmax(1) == labels[:n_photos]).mean())
    print(f"{name:30s} accuracy {photo_acc[name]:.3f}")

fig, axes = plt.subplots(len(seen), 8, figsize=(10, 1.4 * len(seen)))
for row, (name, images) in zip(axes, seen.items(), strict=True):
    predicted = served.logits(list(images[:8])).argmax(1)
    for ax, image, index in zip(row, images[:8], predicted, strict=True):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(test.classes[index], fontsize=7)
        ax.axis("off")
    row[0].text(-4, 14, name, fontsize=7, ha="right", va="center")
plt.tight_layout()
plt.show()

# %% [markdown]
# 占满画面的照片和原图几乎一样好，灰纸也一样：反色以后边框如果还不是黑的，`Preprocess`
# 会拉伸对比度（contrast stretch），把纸压成 0。物体小了一圈，准确率就明显下降。
# 原因不在服务，在**训练数据和服务数据的差别**（training-serving skew）：模型只见过居中、
# 占满画面、背景恰好是 0 的图片。`Preprocess` 修好了方向、颜色、黑白、背景亮度和长宽比，
# 却不会把物体裁出来放大。两条路可以走：让预处理更像训练数据
# （按物体的包围框裁剪——MNIST 当年就是把数字按包围框缩放、居中做出来的），
# 或者训练时就加上缩放、亮度的数据增强，让模型不那么挑剔。无论哪条，都要用**真实的照片**来检验。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 第三步：HTTP API
#
# `create_app(model)` 用 **FastAPI** 搭一个网络服务（web service），它有这些地址（endpoint）：
#
# | 方法和路径 | 作用 |
# |---|---|
# | `POST /predict` | 收一张图片：`multipart/form-data` 的 `file` 字段，或 JSON `{"image": "<base64>"}` |
# | `GET /healthz` | 健康检查：服务活着吗，加载的是哪个模型 |
# | `GET /` | 网页 |
# | `GET /docs`、`/openapi.json` | 自动生成的接口文档 |
#
# 测试时不必真的起一个服务器：FastAPI 的 `TestClient` 在同一个进程里直接调用应用，
# 不经过网络，但请求和回答和真的 HTTP 完全一样。

# %%
client = TestClient(create_app(served))
print(client.get("/healthz").json())
print("paths:", list(client.get("/openapi.json").json()["paths"]))

# %% [markdown]
# 上传文件是网页表单的做法（`multipart/form-data`），相当于
# `curl -F file=@garment.png http://127.0.0.1:8000/predict`。回答里有前 3 个类别、概率，和服务器各步骤用的时间：

# %%
response = client.post("/predict", files={"file": ("garment.png", png(pixels[star]), "image/png")})
print(response.status_code, response.headers["content-type"])
print(json.dumps(response.json(), ensure_ascii=False, indent=1))

# %% [markdown]
# 另一种是 JSON：图片的字节用 **base64** 编成文本放进 `"image"`。浏览器里画布的
# `canvas.toDataURL()` 给出的 `data:image/png;base64,...` 也可以直接发。手机照片（JPEG，带 EXIF）也一样：

# %%
as_json = client.post("/predict", json={"image": base64.b64encode(photo).decode(), "top_k": 5})
photo_api = as_json.json()["predictions"]
for p in photo_api:
    print(f"{p['label_zh']:4s} {p['label']:12s} {p['probability']:.3f}")
assert len(photo_api) == 5 and photo_api[0]["index"] == photo_answer["index"]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 坏输入：回答 4xx，服务不倒
#
# 服务一旦对外开放，什么都会被发过来：文本文件、传了一半的图片、错的格式、巨大的文件。
# HTTP 状态码分工明确：**4xx** 表示"你的请求有问题"，**5xx** 表示"服务器出了错"。
# 一个好的服务对坏请求：
#
# - 回答 4xx，并在 `detail` 里用一句话说明**错在哪、怎么改**（400 坏数据、413 太大、415 格式不对、422 字段不对）；
# - 绝不崩溃：一个人发了坏文件，不能让所有人的服务都停掉（这正是拒绝服务攻击，denial of service，想做到的）；
# - 给内存和时间设上限：请求体最多 8 MB（边读边数，超了立刻停），像素数在解码前检查。

# %%
good = png(pixels[star])


def upload(data: bytes, field: str = "file") -> dict:
    return {"files": {field: ("upload.png", data, "image/png")}}


bad_requests = {
    "not an image (text)": upload(b"hello, I am a text file"),
    "truncated PNG": upload(good[: len(good) // 2]),
    "empty file": upload(b""),
    "wrong form field": upload(good, field="image"),
    "decompression bomb": upload(bomb.getvalue()),
    "too big (9 MB)": upload(b"\x89PNG" + bytes(9 * 1024 * 1024)),
    "wrong content type": {"content": good, "headers": {"content-type": "text/plain"}},
    "invalid base64": {"json": {"image": "this is not base64!"}},
    "JSON without image": {"json": {"picture": base64.b64encode(good).decode()}},
    "malformed JSON": {"content": b'{"image": ', "headers": {"content-type": "application/json"}},
    "top_k too large": {"json": {"image": base64.b64encode(good).decode(), "top_k": 1000}},
}
bad_answers = {}
for name, kwargs in bad_requests.items():
    r = client.post("/predict", **kwargs)
    bad_answers[name] = (r.status_code, r.json()["detail"])
    print(f"{name:20s} {r.status_code}  {r.json()['detail'][:90]}")
print("after all that:", client.get("/healthz").json()["status"],
      f"(body limit {MAX_BODY // 2**20} MB, pixel limit {MAX_PIXELS // 10**6} megapixels)")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 第四步：导出 ONNX
#
# 服务 PyTorch 模型需要 PyTorch 和 dlcamp 里的模型代码。**ONNX**（Open Neural Network Exchange）
# 把网络存成一个与框架无关的计算图文件，可以用 **onnxruntime** 在服务器、手机、浏览器里运行，
# 不需要 Python 模型代码。`export_onnx`（命令行 `dlcamp export RUN`）做三件事：
#
# - 用一个示例输入跟踪（trace）一遍前向计算，写出计算图；
# - 把批量维设成**动态的**（dynamic axis），一次可以送 1 张，也可以送 32 张；
# - 把标签和预处理参数写进文件的元数据（metadata），所以一个 `.onnx` 文件就够服务用。

# %%
onnx_path = export_onnx(run, root / "model.onnx")
print(f"{onnx_path.name}: {onnx_path.stat().st_size / 1e3:.0f} kB")
options = ort.SessionOptions()
options.intra_op_num_threads = 1  # one small image per call: threads do not pay here
session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
for arg in session.get_inputs() + session.get_outputs():
    print(f"{arg.name:7s} {arg.shape} {arg.type}")
onnx_meta = json.loads(session.get_modelmeta().custom_metadata_map["dlcamp"])
print("metadata:", list(onnx_meta), onnx_meta["preprocess"])

# %% [markdown]
# 导出前后算的是同一个函数吗？把同一批输入分别交给 PyTorch 和 onnxruntime，比较输出的 logits。
# 两者的卷积实现不同，浮点运算的顺序也不同，所以不会逐位相同，但差别应该在 $10^{-5}$ 左右：

# %%
onnx_errors = {}
for batch in (1, 32):
    x = normalise(pixels[:batch])
    ours, theirs = session.run(None, {"image": x.numpy()})[0], predict_direct(x)
    onnx_errors[batch] = float(np.abs(ours - theirs).max())
    print(f"batch {batch:2d}: logits {ours.shape}, max |onnx - torch| = {onnx_errors[batch]:.1e}")

# %% [markdown]
# `ServedModel.load` 看到 `.onnx` 后缀就用 onnxruntime 作后端，标签和预处理从元数据里读。
# 同一个 `create_app` 就能服务它（命令行：`dlcamp serve runs/demo/model.onnx`）：

# %%
served_onnx = ServedModel.load(onnx_path, threads=1)
client_onnx = TestClient(create_app(served_onnx))
answer_onnx = client_onnx.post("/predict", files={"file": ("photo.jpg", photo, "image/jpeg")})
print(client_onnx.get("/healthz").json())
print(answer_onnx.json()["predictions"][0])
assert answer_onnx.json()["predictions"][0]["index"] == photo_answer["index"]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 第五步：网页
#
# `GET /` 返回一个单独的 HTML 页面（不依赖任何外部文件，断网也能用）。页面上有：
#
# - 一块**画布**（canvas）：用鼠标或手指画一件衣服，点"识别"，页面把画布 `toDataURL()` 成 PNG，
#   以 JSON 发给 `/predict`；
# - 一个**上传照片**的按钮：选中的文件放进 `FormData`，以 `multipart/form-data` 发出——手机上会直接打开相机；
# - 回答来了以后，列出前 3 个类别和概率。
#
# 两种请求都是浏览器的 `fetch`，和我们上面用 `TestClient` 发的一模一样：

# %%
page = client.get("/")
print(page.status_code, page.headers["content-type"], f"{len(page.text):,} characters")
for line in page.text.splitlines():
    if any(key in line for key in ("<canvas", "fetch(", "toDataURL", "FormData()")):
        print("   ", line.strip()[:110])

# %% [markdown]
# 在自己的电脑上真的跑起来：
#
# ```bash
# dlcamp train --model cnn --out runs/demo      # or: make demo
# dlcamp serve runs/demo                        # or: make serve
# ```
#
# 然后在浏览器里打开 `http://127.0.0.1:8000/` 画一件 T 恤，或者打开 `http://127.0.0.1:8000/docs`
# 在自动生成的文档页里直接试 API。`Ctrl-C` 停止服务。
#
# `--host` 的默认值是 `127.0.0.1`（环回地址，loopback）：只有**这台电脑**上的程序能连上。
# 这个服务没有登录、没有限流，默认对外开放就等于把它交给同一个网络里的所有人，所以默认是安全的那一边。
# 想让教室里的手机也能访问，要**自己明确地**写 `--host 0.0.0.0`（监听所有网卡），并且知道这意味着什么。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 第六步：压力测试（load test）
#
# 服务有多快？要分清两个数：
#
# - **延迟**（latency）：一个请求从发出到收到回答用了多久。用户感受到的是它；
# - **吞吐量**（throughput）：每秒能回答多少个请求。决定了要几台机器。
#
# 延迟不是一个数，而是一个分布。平均值会被掩盖问题，所以看**分位数**（percentile）：
# p50 是中位数，一半请求比它快；p99 是 100 个请求里最慢的那一个左右，叫**尾延迟**（tail latency）。
# 一个页面要发很多请求时，几乎每个用户都会碰上一次 p99。
#
# 先做一个很小的测量：用 `TestClient` 一个接一个地发请求，分别测 PyTorch 和 ONNX 两个后端。

# %%
n_requests = 50 if QUICK else 200
body = png(pixels[0])


def measure(client: TestClient, n: int) -> dict[str, float]:
    """n sequential POSTs; requests/s and latency percentiles in milliseconds."""
    for _ in range(5):  # warm-up: first calls allocate and initialise
        client.post("/predict", files={"file": ("x.png", body, "image/png")})
    latencies, inference = [], []
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.post("/predict", files={"file": ("x.png", body, "image/png")})
        latencies.append((time.perf_counter() - t0) * 1e3)
        assert r.status_code == 200
        inference.append(r.json()["timing_ms"]["inference"])
    seconds = time.perf_counter() - start
    p50, p99 = np.percentile(latencies, [50, 99])
    return {"requests/s": n / seconds, "p50 ms": p50, "p99 ms": p99,
            "model ms (p50)": float(np.median(inference))}


load = {"torch": measure(client, n_requests), "onnx": measure(client_onnx, n_requests)}
print(f"{n_requests} sequential requests, one at a time, in this process "
      f"(torch threads: {torch.get_num_threads()}, onnxruntime threads: 1)")
for backend, row in load.items():
    print(f"{backend:6s}" + "".join(f"  {k} {v:7.2f}" for k, v in row.items()))

# %% [markdown]
# "模型 ms" 是服务器自己量的推理时间，其余的是解析请求、解码 PNG、生成 JSON 和 `TestClient` 本身。
# 对这么小的模型，模型只占一个请求的一部分。
#
# 这还**不是**压力测试：只有一个客户端，一次只发一个请求，没有网络，客户端和服务在同一个进程里。
# 它回答的是"一个请求最快多快"，而不是"很多人同时用时会怎样"。后面会讲真正的压力测试怎么做。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 一批比一张划算
#
# 一个请求只有一张图片，可是矩阵乘法和卷积在**一批**图片上效率高得多。下面直接测模型本身：
# 一次送 1、8、32 张，每次调用要多久（中位数），每秒能处理多少张：

# %%
batch_rows = {}
for batch in (1, 8, 32):
    x = normalise(pixels[:batch])
    row = {}
    for backend, run_batch in (("torch", predict_direct),
                               ("onnx", lambda x: session.run(None, {"image": x.numpy()}))):
        times = []
        for _ in range(25 if QUICK else 100):
            start = time.perf_counter()
            run_batch(x)
            times.append(time.perf_counter() - start)
        ms = float(np.median(times[3:])) * 1e3  # the first calls warm up
        row[backend] = (ms, batch / ms * 1e3)
    batch_rows[batch] = row
    print(f"batch {batch:2d}: " + "   ".join(f"{b} {ms:6.2f} ms/call {ips:7.0f} images/s"
                                           for b, (ms, ips) in row.items()))

# %% [markdown]
# 看 images/s 那一列：批量变大，每张图片分摊到的时间变少，因为每次调用都有一份固定的开销
# （Python 调用、框架分派、内存分配），一批图片只付一次。固定开销占得越多（PyTorch 的 eager 模式比 onnxruntime 多），
# 批处理的收益越大；在 GPU 上更是如此，一张 28×28 的图片远远喂不饱它。具体数字取决于机器，自己跑一跑。
#
# 这就是**微批处理**（micro-batching，也叫 dynamic batching）的想法：服务器把几毫秒之内到达的请求
# 攒成一批，一次推理，再把结果分回各个请求。`create_app(model, batching=True)` 打开它
# （`dlcamp serve` 默认打开），由 `MicroBatcher` 实现：第一个请求最多等 `max_wait_ms`，
# 或者等到凑满 `max_batch` 个，然后在另一个线程里推理，服务器同时继续接收新请求。

# %%
print(inspect.getsource(MicroBatcher._run))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 微批处理：什么时候有用
#
# 要看到它起作用，请求必须**同时**到达。`TestClient` 一次只能发一个，所以这里用 httpx 的异步客户端
# （`ASGITransport`，同样在进程内、不经过网络），两种发法：
#
# - 一个接一个：等上一个回答了再发下一个；
# - 一拥而上（burst）：所有请求同时发出。
#
# 对不攒批和攒批（`max_wait_ms=2`）的两个应用各做一次：

# %%
bodies = [png(image) for image in pixels[:64 if QUICK else 256]]


def drive(app, burst: bool) -> tuple[list[dict], float, list[float]]:
    """POST every body to the app in-process; answers, seconds, latencies in ms."""
    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lesson") as http:
            async def post(data: bytes, sent: float | None = None) -> tuple[dict, float]:
                sent = sent or time.perf_counter()
                r = await http.post("/predict", files={"file": ("x.png", data, "image/png")})
                return r.json(), (time.perf_counter() - sent) * 1e3

            for data in bodies[:4]:  # warm-up
                await post(data)
            start = time.perf_counter()
            if burst:
                # all sent at `start`: a request's latency includes its wait in the queue
                results = await asyncio.gather(*[post(data, start) for data in bodies])
            else:
                results = [await post(data) for data in bodies]
            return [a for a, _ in results], time.perf_counter() - start, [t for _, t in results]

    # a fresh event loop in a helper thread: works in a script and in Jupyter (whose loop runs)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


batched_answers = []
for batching in (False, True):
    for burst in (False, True):
        app = create_app(served, batching=batching, max_batch=32, max_wait_ms=2.0)
        answers, seconds, latencies = drive(app, burst)
        batcher = app.state.batcher
        sizes = f"mean batch {batcher.items / batcher.batches:4.1f}" if batcher else ""
        print(f"batching {'on ' if batching else 'off'}, {'burst     ' if burst else 'one by one'}"
              f"  {len(bodies) / seconds:6.0f} requests/s  p50 {np.median(latencies):6.2f} ms"
              f"  p99 {np.percentile(latencies, 99):6.2f} ms  {sizes}")
        if batching:
            batched_answers.append([a["predictions"][0]["index"] for a in answers])
            mean_batch = batcher.items / batcher.batches  # the burst's is the last one kept

# %% [markdown]
# - 一个接一个发时，攒批**没有好处**：每批只有 1 张，每个请求都白等 `max_wait_ms`，延迟反而多了这么多；
# - 一拥而上时，请求被攒成一批多张（mean batch），每秒处理的请求变多，排在后面的请求也就更早拿到回答。
#   不过所有请求同一时刻到达，延迟里主要是**排队**的时间：这是一次极端的冲击，不是稳定的负载。
#
# 攒批只分摊推理那一段，解析请求、解码图片仍然每个请求各做一次。还有一点：攒批不能改变答案。

# %%
direct = predict_direct(normalise(pixels[:len(bodies)])).argmax(1).tolist()
assert all(answers == direct for answers in batched_answers)  # same labels, batched or not
print(f"{len(bodies)} answers with micro-batching equal the direct predictions "
      f"(burst: {mean_batch:.1f} images per forward pass)")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 多个进程与真正的压力测试
#
# 另一个办法是**多个工作进程**（worker processes）。Python 的一个进程同时只有一个线程在跑 Python 代码（GIL），
# 解析请求、解码图片都在这里排队。`dlcamp serve runs/demo --workers 2` 起 2 个进程，
# 每个进程装一份模型，共用一个端口，由操作系统分配连接：吞吐量最多接近核数倍，内存也是 2 倍。
# 这时每个进程默认只用 1 个计算线程，否则几个进程的线程会互相抢核。
#
# 这些改动到底值不值，要用真正的压力测试来回答：一个专门的**负载生成器**（load generator），比如 `wrk`，
# 从另一个进程、用许多并发连接去打真的服务器（环回地址上的 `dlcamp serve`）：
#
# ```bash
# dlcamp serve runs/demo --workers 2 &
# wrk -t2 -c16 -d10s -s post.lua http://127.0.0.1:8000/predict   # 2 threads, 16 connections, 10 s
# ```
#
# 其中 `post.lua` 告诉 wrk 发什么：
#
# ```lua
# wrk.method = "POST"
# wrk.headers["Content-Type"] = "application/json"
# wrk.body = '{"image": "iVBORw0KGgo..."}'   -- a base64 PNG
# ```
#
# wrk 报告每秒请求数和延迟分布。注意负载生成器本身也要 CPU：在 2 核的笔记本上，它和服务器抢同样的核。
# 本项目的 `bench/serve.py` 就是这样测的：每种配置（进程数、是否攒批、PyTorch 或 ONNX）
# 都起一个真的服务器进程，和一个最直接的写法（`bench/serve_baseline.py`）在同一台机器上对比，
# 结果连同机器信息写进 `docs/benchmarks.md`，以那里实测的数为准。
# 改了什么，就前后各测一次，对比 p50、p99 和每秒请求数——只看一个平均值，很容易得出错误的结论。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 检查点除了权重，还要装下重建模型的参数、标签和训练时的归一化统计量；用 `weights_only=True` 加载；
# - 预处理必须和训练时一致：解码前查尺寸，按 EXIF 转正，灰度，白底时反色，缩放，用检查点里的均值和标准差；
# - API 对每个坏请求回答 4xx 和一句可读的原因，自己不倒；
# - ONNX 把模型、标签和预处理装进一个文件，和 PyTorch 的输出在 $10^{-4}$ 以内一致，批量大小可变；
# - 网页只是 `/predict` 的一个客户端；默认只听 `127.0.0.1`；
# - 性能看延迟的分位数和吞吐量；微批处理在请求同时到达时提高吞吐量，多进程用上更多的核；
#   好不好，用负载生成器在真的服务器上测。
#
# 自测：用户上传的是一张**白底上的浅色**衣服照片（比如白衬衫放在白桌上），`invert="auto"` 会怎么做？
# 模型会看到什么？你会怎么改进预处理，或者在网页上提示用户？
#
# 最后检查本讲的结论。先通过 API 识别 20 张测试图片，和直接调用模型的结果对比：

# %%
n_check = 20
api_top1 = [client.post("/predict", files={"file": (f"{i}.png", png(pixels[i]), "image/png")})
            .json()["predictions"][0]["index"] for i in range(n_check)]
direct_top1 = predict_direct(normalise(pixels[:n_check])).argmax(1).tolist()
print("API   ", api_top1)
print("direct", direct_top1)
assert api_top1 == direct_top1  # the API computes what the model computes
assert photo_answer["index"] == original_index, (photo_answer, original_index)  # photo = original
white = photo_acc["fills the frame, white paper"]  # a good photo is as good as the original
assert white >= photo_acc["original test images"] - 0.08, photo_acc
assert photo_acc["margin above and below (3:4)"] < white, photo_acc  # framing matters
assert photo_acc["fills the frame, grey paper"] >= white - 0.08, photo_acc  # stretched to 0
assert max(onnx_errors.values()) < 1e-4, onnx_errors  # ONNX equals PyTorch
assert len(bad_answers) == len(bad_requests) == 11
for name, (status, detail) in bad_answers.items():  # every bad input: 4xx with a reason
    assert 400 <= status < 500 and isinstance(detail, str) and len(detail) > 10, (name, status)
assert client.get("/healthz").json()["status"] == "ok"  # and the server is still up
assert "not allowed to load safely" in sneaky_refused
if QUICK:
    assert test_acc > 0.7, test_acc  # seconds of training: far above chance (0.1)
else:
    assert test_acc > 0.9, test_acc
workdir.cleanup()
assert not root.exists()
print(f"lesson 10.01 done: API = model on {n_check}/{n_check} test images, phone photo -> "
      f"{photo_answer['label']}, ONNX max |diff| {max(onnx_errors.values()):.1e}, "
      f"{len(bad_answers)} bad inputs answered 4xx")
