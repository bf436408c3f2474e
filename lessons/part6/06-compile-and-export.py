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
#     title: 命令式与编译式（imperative vs compiled）：torch.compile 与 torch.export
#     title_en: Imperative vs compiled - torch.compile and torch.export
#     minutes:
#       quick: 0.5
#       full: 6
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 命令式与编译式：torch.compile 与 torch.export
#
# 到目前为止，我们写的 PyTorch 代码都是**命令式**（imperative）的，也叫 eager 模式：Python 执行到哪一行，
# 就立刻算哪一个运算。好处是直观——可以随处 `print`、用调试器单步、写任意的 `if` 和 `for`；
# 代价是每个小运算都要经过一次 Python 解释器和一次调度，而且每个运算各自把结果写回内存，
# 下一个运算再读出来，彼此之间不能合并。
#
# **编译式**（compiled，也叫符号式 symbolic）的做法是先把整段计算记成一张**计算图**（graph），
# 再对整张图做优化：把相邻的逐元素运算**融合**（fusion）成一个循环、省掉中间结果、去掉 Python 开销。
# 原书用 MXNet 的 `hybridize` 在两种方式之间切换；今天的 PyTorch 2 有两个工具：
#
# - `torch.compile(model)`：代码照写，第一次调用时由 **Dynamo** 读 `forward` 的 Python 字节码，
#   把张量运算记成 FX 图，交给**后端**（backend）编译；记不下来的地方就**断图**（graph break），交回 Python；
# - `torch.export.export(model, example)`：要求整个 `forward` 是一张完整的图，得到一个可以脱离 Python 类
#   运行、保存和转换的**程序**（`ExportedProgram`）。
#
# 本讲在这台 CPU 上实测：编译要花多少时间、之后快多少、结果是否和 eager 完全一致、断图在哪里发生。

# %%
import contextlib
import inspect
import io
import time
from collections import Counter

import torch
import torch._dynamo

from dlcamp.core.utils import is_quick
from dlcamp.course.compiling import (
    DataDependentMLP,
    bench_models,
    compare_compile,
    compile_rows,
    export_and_check,
    fullgraph_error,
    graph_breaks,
    max_abs_diff,
)
from dlcamp.models import create_model
from dlcamp.train.speed import compile_cache_dir

QUICK = is_quick()  # 快速模式：小批量、少量计时；除 MLP 外只检查抓图，不编译 C++
torch.manual_seed(0)
print("torch", torch.__version__, "| CPU threads:", torch.get_num_threads())

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 第一次编译：先付编译时间
#
# CPU 上默认的后端 **Inductor** 会为图生成 C++/OpenMP 代码，再调用 C++ 编译器编成共享库，
# 编好的内核缓存在磁盘上。缓存的位置要先设好：dlcamp 按 PyTorch 的 CPU 指令集级别（AVX2、AVX-512……）
# 给每种 CPU 一个单独的文件夹（`compile_cache_dir`），因为 PyTorch 的缓存不区分它们，
# 混用会得到错误的结果（见它的文档字符串）。
#
# 下面手工计时：第一次调用包含抓图和编译，第二次起才是真正的运行速度。

# %%
print("Inductor cache:", compile_cache_dir())
mlp = create_model("mlp").eval()          # 784 -> 256 -> 10
x = torch.randn(8 if QUICK else 64, 1, 28, 28)  # compile_rows uses the same batch
compiled_mlp = torch.compile(mlp)         # 这一行什么也不编译：编译发生在第一次调用时
with torch.no_grad():
    start = time.perf_counter()
    y_compiled = compiled_mlp(x)
    first_call = time.perf_counter() - start
    later_calls = []
    for _ in range(5):
        start = time.perf_counter()
        compiled_mlp(x)
        later_calls.append(time.perf_counter() - start)
    y_eager = mlp(x)
print(f"first call {first_call:.2f} s, later calls {min(later_calls) * 1e3:.2f} ms (fastest of 5)")
print("max |compiled - eager|:", max_abs_diff(y_compiled, y_eager))

# %% [markdown] slideshow={"slide_type": "slide"}
# 第一次调用要几秒（一个全新的进程还要先加载 Inductor、找 C++ 编译器），比一次前向传播慢上千倍。
# 编译是否划算，取决于之后要调用多少次：训练几千步、或者长期在线服务时才值得。
#
# `compare_compile` 把这件事做得更仔细：模型复制两份（权重相同），第一次编译调用单独计时；
# 之后用 `torch.utils.benchmark.Timer` 轮流给 eager 和编译版计时，各取中位数，
# 这样机器忙闲的变化对两边的影响相同。它先调用 `torch._dynamo.reset()` 清掉进程里已编译的代码，
# 所以会重新编译——但磁盘缓存里已经有这张图的内核，这次编译快得多。

# %%
row = compare_compile(mlp, (x,), backend="inductor", repeat=20 if QUICK else 200)
print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Dynamo 看到了什么：图与断图
#
# `torch._dynamo.explain` 让 Dynamo 把模型走一遍，报告抓到了几张图、在哪里断开、为什么。
# MLP 是一串张量运算，一张图就装下了。下面这个模型不同：它先把一个张量的值用 `.item()` 取成 Python 数，
# 再用 `if` 决定走哪条路。图里只能记录张量运算，记不下"看数据再决定"的 Python 分支，
# 于是 Dynamo 在 `.item()` 前结束第一张图，由 Python 执行分支，分支之后再开第二张图。

# %%
print(inspect.getsource(DataDependentMLP.forward))
print("mlp:", graph_breaks(mlp, (x,)))
branchy = DataDependentMLP().eval()
broken = graph_breaks(branchy, (x,))
print("branchy:", broken)

# %% [markdown] slideshow={"slide_type": "slide"}
# 断图不是错误：编译后的模型照样运行、结果照样正确，只是每次调用都要在两张图之间回到 Python，
# 而且跨过断点的运算无法融合。要让断图变成错误，就加 `fullgraph=True`——部署或追求速度时，
# 用它确认整个模型真的是一张图。报错信息很长，`fullgraph_error` 只留下类型、原因和出问题的那行代码：

# %%
with torch.no_grad():
    two_graphs = torch.compile(branchy, backend="eager")   # "eager" 后端：只抓图，不编译
    print("with a break, still right:", max_abs_diff(two_graphs(x), branchy(x)))
message = fullgraph_error(branchy, (x,))
print(message)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 去掉断图：把分支写成张量运算
#
# 同样的逻辑可以不离开张量：先把两条路都算出来，再用 `torch.where` 按条件挑选。
# 条件成了图里的一个布尔张量，Python 不必知道它的值，整个 `forward` 又是一张图了
# （分支很重时，还可以用 `torch.cond`，它只执行被选中的那一支）。

# %%
class WhereMLP(DataDependentMLP):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hidden(x)
        mean = h.mean()
        h = torch.where(mean > 1.0, h / mean, h)   # both paths as tensors, no .item()
        return self.head(h)


fixed = WhereMLP().eval()
fixed.load_state_dict(branchy.state_dict())
print("where:", graph_breaks(fixed, (x,)))
print("fullgraph error:", fullgraph_error(fixed, (x,)))
with torch.no_grad():
    big = x * 50   # large inputs: the mean activation passes 1, the other path runs
    same_answer = max(max_abs_diff(fixed(inp), branchy(inp)) for inp in (x, big))
print("same answers as the branchy model:", same_answer)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 循环神经网络的断图
#
# dlcamp 的 LSTM 语言模型用的是 `nn.LSTM`。Dynamo 默认不追踪 RNN、GRU、LSTM 模块
# （`torch._dynamo.config.allow_rnn = False`），遇到就断图，让它们照旧调用 PyTorch 自己的融合内核；
# 打开 `allow_rnn` 后整个模型是一张图。

# %%
lstm, tokens = bench_models(batch=8)["lstm"]
print("lstm:", graph_breaks(lstm, tokens))
with torch._dynamo.config.patch(allow_rnn=True):
    lstm_whole = graph_breaks(lstm, tokens)
print("lstm, allow_rnn:", lstm_whole)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 编译训练步，三个模型并排
#
# `torch.compile` 不只编译前向：需要梯度时，AOTAutograd 从前向图（forward graph）推导出**反向图**（backward graph），两者一起交给后端。
# `compare_compile(..., train=True)` 比较一步训练（前向、损失、反向、SGD）的损失和每个参数的梯度，
# 然后给整步计时。
#
# 下面是 MLP、dlcamp 的默认 CNN（`cnn`）和 LSTM 语言模型，各测前向（推理）和一步训练。
# 完整模式全部用 Inductor，另加一行打开 `allow_rnn` 的 LSTM 前向
# （它的反向要把 35 个时间步展开，Inductor 编译要几分钟，所以不测）。快速模式只给 MLP 的前向用 Inductor，
# 其余用 `aot_eager` 后端：它走完抓图和反向图推导，却用普通的 ATen 内核运行、不编译 C++，
# 所以快速模式的加速比没有意义，只看结果是否一致。这台机器上完整运行的结果见 `docs/benchmarks.md`
# 的 "torch.compile on this CPU" 一节（`python bench/compile.py`）。
#
# 在 CPU 上，大的矩阵乘法和卷积无论 eager 还是编译，大多仍交给 oneDNN/MKL 这类库计算；
# 编译主要省的是其余部分：逐元素运算之间的内存往返（比如批量规范化 + ReLU 融成一个循环）和 Python 调度开销。
# 省下多少因模型和批量而异，只能实测。另一方面，编译版本每次调用都要先检查一遍"守卫"（guard，
# 确认输入的形状、类型与编译时相同），模型很小、批量很小时，这点开销可能让它比 eager 还慢。

# %%
rows = compile_rows(QUICK)
print(f"{'model':18} {'step':8} {'backend':10} {'eager ms':>9} {'compiled ms':>12} "
      f"{'speed-up':>8} {'compile s':>9} {'breaks':>6} {'max diff':>9}")
for r in rows:
    print(f"{r['model']:18} {r['step']:8} {r['backend']:10} {r['eager_ms']:9.2f} "
          f"{r['compiled_ms']:12.2f} {r['speedup']:8.2f} {r['compile_s']:9.2f} "
          f"{r['graph_breaks']:6d} {r['max_abs_diff']:9.1e}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## torch.export：一张可以带走的图
#
# `torch.compile` 的结果只活在当前进程里，而且离不开原来的 Python 代码。`torch.export` 给出一个
# `ExportedProgram`：ATen 运算组成的图加上权重，不再需要模型的 Python 类。默认它按示例输入的形状
# **特化**（specialize）；用 `torch.export.Dim` 把批量维声明为符号，同一个程序就能接受任意批量。
# `export_and_check` 导出（在 eval 模式下）并与 eager 比较输出，包括比示例多一行的批量。

# %%
cnn, images = bench_models(batch=16)["cnn"]
program, export_diff = export_and_check(cnn, images)
print("max |exported - eager|:", export_diff)
print(program.graph_signature.user_inputs, "->", program.graph_signature.user_outputs)
ops = Counter(str(node.target) for node in program.graph.nodes if node.op == "call_function")
print("ATen operations in the graph:", dict(ops))
print("the batch size is a symbol with a range:", program.range_constraints)
runnable = program.module()
cnn.eval()
with torch.no_grad():
    other_batches = {b: max_abs_diff(runnable(images[0][:b]), cnn(images[0][:b]))
                     for b in (1, 3)}
print("other batch sizes:", other_batches)

# %% [markdown] slideshow={"slide_type": "slide"}
# 不声明动态维度时，程序只认示例的形状，换一个批量就被守卫拒绝；
# 带数据相关分支的模型则根本导不出来——和 `fullgraph=True` 一样，export 要的是一整张图。

# %%
static_program, _ = export_and_check(cnn, images, dynamic_batch=False)
try:
    static_program.module()(images[0][:3])
    static_refused = False
except Exception as e:  # noqa: BLE001 - we print whatever the guard raises
    static_refused = True
    print("static program, batch 3:", type(e).__name__, str(e).splitlines()[0])
try:
    with contextlib.redirect_stderr(io.StringIO()):  # export prints the partial graph
        export_and_check(branchy, (x,))
    branchy_exported = True
except RuntimeError as e:
    branchy_exported = False
    print("branchy model:", type(e).__name__, str(e).splitlines()[0][:120])

# %% [markdown] slideshow={"slide_type": "slide"}
# 导出的程序可以用 `torch.export.save` 存成 `.pt2` 文件，但它的加载函数在部分内容上会退回到 pickle，
# 只应打开自己信任的文件；要把模型交给别人，dlcamp 用 ONNX（`dlcamp export`，它同样先把模型抓成一张图）
# 或者只含张量的 safetensors 权重文件。
#
# ## 小结与自测
#
# - eager 灵活、好调试；编译先抓图再优化，第一次调用付出编译时间，之后每次调用省下 Python 开销和内存往返；
# - 断图发生在 Dynamo 记不下的地方（`.item()` 后的分支、`print`、默认的 `nn.LSTM`），`fullgraph=True` 把它变成错误；
# - 把分支写成张量运算（`torch.where`、`torch.cond`）可以消除断图；
# - `torch.export` 给出脱离 Python 的完整图，`Dim` 让批量维保持动态。
#
# 自测：在 `DataDependentMLP.forward` 里再加一个 `print(h.shape)`，`graph_breaks` 会报告几处断图？
# 设 `torch._dynamo.config.capture_scalar_outputs = True` 后，`.item()` 本身还断图吗？

# %%
assert max_abs_diff(y_compiled, y_eager) < 1e-5
assert first_call > 10 * min(later_calls), (first_call, later_calls)  # compiling: s, not ms
assert row["max_abs_diff"] < 1e-5 and row["graph_breaks"] == 0
assert broken["graph_breaks"] == 1 and "item()" in broken["reasons"][0]
assert message is not None and "h.mean().item()" in message
assert graph_breaks(fixed, (x,))["graph_breaks"] == 0 and same_answer < 1e-5
assert lstm_whole["graph_breaks"] == 0 and graph_breaks(lstm, tokens)["graph_breaks"] == 1
with torch.no_grad():  # the two inputs took the two paths
    assert float(fixed.hidden(x).mean()) < 1.0 < float(fixed.hidden(big).mean())
assert all(r["max_abs_diff"] < 1e-4 for r in rows)  # outputs, losses and gradients
assert {r["step"] for r in rows} == {"forward", "train"}
assert {r["model"]: r["graph_breaks"] for r in rows} == {
    "mlp": 0, "cnn": 0, "lstm": 1, **({} if QUICK else {"lstm (allow_rnn)": 0})}
assert export_diff < 1e-5 and max(other_batches.values()) < 1e-5
assert static_refused and not branchy_exported
print(f"lesson 6.06 done: {len(rows)} compiled rows equal eager; export equals eager at "
      f"batch 1, 3 and {len(images[0])}")
