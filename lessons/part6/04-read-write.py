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
#     title: 读写文件（save / load）：张量、state_dict 与 safetensors
#     title_en: Reading and writing - tensors, state dicts, safetensors
#     minutes:
#       quick: 0.1
#       full: 0.1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 读写文件（save / load）：张量、state_dict 与 safetensors
#
# 训练了几个小时的模型，要存下来：程序崩了能接着训练，训练完能拿去部署，也能分享给别人。
# 本讲讲三件事：
#
# 1. 用 `torch.save` / `torch.load` 存取张量和模型的 `state_dict`，以及怎样写文件才不会在崩溃时丢掉旧文件；
# 2. 为什么加载别人的文件时必须写 `weights_only=True`：`torch.save` 的文件里是 pickle，而 pickle 能执行代码；
# 3. `safetensors`：一种只能装张量的格式，从设计上就执行不了代码。
#
# 本讲写的所有文件都放在一个临时目录里，最后删掉。

# %%
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, load_model, save_model
from safetensors.torch import save as safetensors_bytes
from torch import nn

from dlcamp.core.io import atomic_write_bytes
from dlcamp.core.utils import is_quick

QUICK = is_quick()  # 本讲在快速和完整模式下做的事一样：文件都很小
torch.manual_seed(0)
scratch = tempfile.TemporaryDirectory(prefix="dlcamp-6.04-")
workdir = Path(scratch.name)
print("writing under", workdir)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 存取张量
#
# `torch.save(obj, path)` 可以存一个张量，也可以存由张量、数字、字符串组成的列表和字典；
# `torch.load(path, weights_only=True)` 读回来。读回的张量和原来的逐位相同，dtype 和形状也一样。

# %%
x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
torch.save(x, workdir / "x.pt")
x_back = torch.load(workdir / "x.pt", weights_only=True)
print(x_back)

bundle = {"weights": torch.randn(4, 4), "steps": [torch.tensor(1), torch.tensor(2)],
          "note": "a dict of tensors, numbers and strings", "lr": 0.1}
torch.save(bundle, workdir / "bundle.pt")
bundle_back = torch.load(workdir / "bundle.pt", weights_only=True)
print({k: type(v).__name__ for k, v in bundle_back.items()})
assert torch.equal(x_back, x) and x_back.dtype == x.dtype
assert torch.equal(bundle_back["weights"], bundle["weights"]) and bundle_back["lr"] == 0.1

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 写到一半崩溃了怎么办
#
# `torch.save(obj, path)` 打开文件就开始覆盖。如果写到一半出了错——进程被杀、断电、磁盘满了，
# 或者像下面这样对象里混进了存不了的东西——旧文件已经没了，新文件只写了一半，两个都读不出来。
# 训练时每隔一会儿覆盖一次检查点（checkpoint），这正是最不该丢的那个文件。

# %%
checkpoint = workdir / "checkpoint.pt"
torch.save({"step": 100, "weights": torch.ones(1000)}, checkpoint)  # a good checkpoint
try:
    torch.save({"step": 200, "weights": torch.zeros(1000), "hook": lambda: None}, checkpoint)
except Exception as e:  # a lambda cannot be saved: the error comes half way through writing
    print(type(e).__name__, str(e)[:80])
try:
    torch.load(checkpoint, weights_only=True)
except RuntimeError as e:
    broken_error = str(e)
    print("the old checkpoint is gone:", broken_error[:90], "...")
assert "data.pkl" in broken_error

# %% [markdown]
# 办法是**原子写入**（atomic write）：先把全部内容写进同一目录下的临时文件，确认落盘（`fsync`）之后，
# 再用 `os.replace` 一步换掉旧文件。替换是操作系统保证的原子操作，别的进程看到的要么是旧文件，
# 要么是完整的新文件。dlcamp 的 `dlcamp.core.io.atomic_write_bytes` 就是这样做的，训练时的检查点也用它写。
# 配合 `torch.save` 时，先存进内存里的 `BytesIO`，出错就出在这一步，磁盘上的旧文件原封不动：

# %%
def save_atomically(obj: object, path: Path) -> None:
    """torch.save into memory first, then replace `path` in one step (old file or new)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)  # an error here leaves the file on disk untouched
    atomic_write_bytes(path, buffer.getvalue())


save_atomically({"step": 100, "weights": torch.ones(1000)}, checkpoint)
try:
    save_atomically({"step": 200, "weights": torch.zeros(1000), "hook": lambda: None}, checkpoint)
except Exception as e:
    print(type(e).__name__, str(e)[:80])
survivor = torch.load(checkpoint, weights_only=True)
print("still readable, step", survivor["step"])
assert survivor["step"] == 100 and torch.equal(survivor["weights"], torch.ones(1000))
assert sorted(p.name for p in workdir.iterdir() if p.name.startswith(".")) == []  # no temp left

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 存取模型：`state_dict`
#
# 模型的"内容"就是它的 `state_dict`：参数和缓冲区，名字 → 张量（第 6.02 讲）。
# 存模型就是存这个字典；读的时候先用**代码**建一个结构相同的新模型，再 `load_state_dict`。
# 文件里只有数，没有结构：结构在代码里。（也可以 `torch.save(model)` 存整个对象，但那要靠 pickle
# 记住类的名字，换个代码版本就可能读不出来，也没法用下面的安全方式读。）

# %%
class SmallNet(nn.Module):
    """x (B, 20) -> (B, 10): one hidden layer with batch norm."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(20, 64), nn.BatchNorm1d(64), nn.ReLU())
        self.out = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


net = SmallNet()
net(torch.randn(32, 20))  # one training-mode pass: the batch-norm running statistics move
net.eval()
X = torch.randn(8, 20)
save_atomically(net.state_dict(), workdir / "smallnet.pt")

clone = SmallNet()  # new random weights ...
clone.load_state_dict(torch.load(workdir / "smallnet.pt", weights_only=True))  # ... replaced
clone.eval()
print("same outputs after the round trip:", torch.equal(clone(X), net(X)))
assert torch.equal(clone(X), net(X))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 为什么一定要 `weights_only=True`
#
# `torch.save` 的文件其实是一个 zip 包：张量的字节各占一个文件，其余的结构放在 `data.pkl` 里，
# 用的是 Python 的 **pickle** 格式。pickle 不只是数据：它可以记录"加载时调用某个函数、传这些参数"，
# 任何对象都能通过 `__reduce__` 方法让自己在被加载时调用任意函数。所以**加载一个不可信的 pickle 文件，
# 等于运行别人写的程序**。
#
# 下面造一个这样的文件。为了无害，它在加载时做的事只是在临时目录里建一个空目录；
# 换成删除文件、上传密钥的命令，写法完全一样。

# %%
print(zipfile.ZipFile(workdir / "smallnet.pt").namelist()[:3], "...")

marker = workdir / "the-file-ran-code"


class Surprise:
    """Pickles as 'call os.mkdir(marker)': whoever unpickles it runs that call."""

    def __reduce__(self) -> tuple:
        return (os.mkdir, (str(marker),))


torch.save({"weights": torch.ones(3), "extra": Surprise()}, workdir / "booby-trapped.pt")

# %% [markdown]
# `weights_only=True` 让 `torch.load` 换用一个受限的解析器：它只认张量、基本类型（数字、字符串、列表、字典……）
# 和少数登记过的安全类型，遇到别的函数或类就拒绝，一行代码也不执行。PyTorch 2.6 起这是默认值，
# 但写明它，读代码的人一眼就知道这次加载是安全的。

# %%
try:
    torch.load(workdir / "booby-trapped.pt", weights_only=True)
except Exception as e:  # pickle.UnpicklingError
    refused = str(e)
    why = next((line for line in refused.splitlines() if "GLOBAL" in line), refused[:80])
    print(type(e).__name__, "|", why)
print("did the code run?", marker.exists())
assert "Weights only load failed" in refused and not marker.exists()

# %% [markdown]
# 作为对照，只有在完全信任文件来源时才可以关掉这道保护。关掉以后，加载时那行代码就真的执行了：

# %%
unsafe = torch.load(workdir / "booby-trapped.pt", weights_only=False)  # trusted files ONLY
print("did the code run?", marker.exists(), "| what the object became:", unsafe["extra"])
assert marker.exists()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## safetensors：只装张量的格式
#
# `safetensors`（Hugging Face 设计，现在是分享模型权重的通行格式）干脆不用 pickle。
# 文件由三段组成：8 个字节的整数 $N$（小端序），$N$ 个字节的 JSON 头，然后是所有张量的原始字节。
# 头里写着每个张量的名字、dtype、形状和字节范围；可选的 `__metadata__` 只能是字符串到字符串的映射。
# 读文件就是解析一段 JSON、复制（或内存映射）一段字节，没有任何地方能放"要调用的函数"。

# %%
model_file = workdir / "smallnet.safetensors"
state = net.state_dict()
atomic_write_bytes(model_file, safetensors_bytes(state, metadata={"model": "SmallNet"}))

raw = model_file.read_bytes()
header_len = int.from_bytes(raw[:8], "little")
header = json.loads(raw[8:8 + header_len])
print("header:", json.dumps(header["body.0.weight"]), "|", header["__metadata__"])
print(f"{len(raw)} bytes = 8 + {header_len} (JSON) + {len(raw) - 8 - header_len} (tensor data)")
assert set(header) == set(state) | {"__metadata__"}

from_safetensors = SmallNet()
from_safetensors.load_state_dict(load_file(model_file))
from_safetensors.eval()
print("same outputs:", torch.equal(from_safetensors(X), net(X)))
assert torch.equal(from_safetensors(X), net(X))

# %% [markdown]
# 只能装张量是它的全部意义：往里放一个数或一个对象，保存时就报错。
# 读的时候还可以只取需要的那几个张量，不必把整个文件读进内存：

# %%
try:
    safetensors_bytes({"weights": torch.ones(3), "step": 200})
except (ValueError, TypeError) as e:
    not_a_tensor = str(e)
    print(type(e).__name__, not_a_tensor)
with safe_open(model_file, framework="pt") as f:
    print("names:", list(f.keys())[:3], "...")
    only_bias = f.get_tensor("out.bias")
assert torch.equal(only_bias, net.out.bias)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 共享参数怎样保存
#
# 共享参数（第 6.02 讲）在 `state_dict` 里是两个名字指向同一块内存。`torch.save` 会记住这种共享；
# safetensors 的 `save_file` 则拒绝保存共享内存的张量（读回来会变成两份独立的数），
# 提示改用 `save_model` / `load_model`：它们只存其中一份，加载时再交给模型自己的结构去共享。

# %%
def tied_net() -> nn.Sequential:
    shared = nn.Linear(8, 8)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), shared, nn.ReLU(), shared, nn.Linear(8, 1))


tied = tied_net()
try:
    safetensors_bytes(tied.state_dict())
except RuntimeError as e:
    print("RuntimeError:", " ".join(str(e).split())[:100], "...")
save_model(tied, str(workdir / "tied.safetensors"))
tied_back = tied_net()
load_model(tied_back, str(workdir / "tied.safetensors"))
with safe_open(workdir / "tied.safetensors", framework="pt") as f:
    stored = set(f.keys())
inputs = torch.randn(5, 4)
print("stored:", sorted(stored), "| still tied:", tied_back[2].weight is tied_back[4].weight)
assert torch.equal(tied_back(inputs), tied(inputs)) and tied_back[2].weight is tied_back[4].weight
assert len(stored) == len(tied.state_dict()) - 2  # one copy of the shared weight and bias

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 张量和 `state_dict` 用 `torch.save` 存，用 `torch.load(..., weights_only=True)` 读；模型的结构在代码里；
# - 会被覆盖的文件（检查点）要原子地写：先写完临时文件，再一步替换；
# - `torch.save` 的文件是 pickle，加载不可信的 pickle 等于运行别人的代码；`weights_only=True` 拒绝执行；
# - safetensors 只装张量（JSON 头 + 原始字节），读文件不会执行代码，还能只读其中几个张量；
#   共享参数用 `save_model` / `load_model`。
#
# 自测：从网上下载的检查点里除了权重还有优化器状态和训练配置，`weights_only=True` 能读吗？
# 如果里面有一个自定义的数据类（dataclass）对象呢？（提示：`torch.serialization.add_safe_globals`）
#
# 最后用断言检查本讲的要点都成立，然后删掉临时目录：

# %%
assert torch.equal(clone(X), net(X)) and torch.equal(from_safetensors(X), net(X))
assert survivor["step"] == 100, "an atomic write keeps the old checkpoint when saving fails"
assert "Weights only load failed" in refused, "weights_only=True refuses to run code"
assert "step" in not_a_tensor, "safetensors holds tensors only"
scratch.cleanup()
assert not workdir.exists()
print("lesson 6.04 done: state dicts round-trip through torch.save and safetensors; "
      "pickled code is refused")
