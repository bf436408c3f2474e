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
#     title: 注意力提示与注意力汇聚（Nadaraya-Watson）
#     title_en: Attention cues and attention pooling (Nadaraya-Watson)
#     minutes:
#       quick: 0.1
#       full: 0.1
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 注意力提示与注意力汇聚
#
# 前几讲的编码器-解码器把整个源句压进一个固定长度的向量，句子一长，信息就挤不下了。
# **注意力**（attention）机制换了个思路：解码的每一步都回头去"看"源句的所有位置，
# 按当前需要给每个位置分配一个权重，再按权重取加权平均。
#
# 本讲先把这个想法讲清楚，不涉及神经网络：查询、键和值三个概念，
# 然后用 60 年前的统计方法 Nadaraya-Watson 核回归（kernel regression）演示
# "按相似度加权平均"——它就是最早的注意力汇聚（attention pooling），
# 先看不带参数的版本，再让核的宽度变成可学习的参数。

# %%
import matplotlib.pyplot as plt
import torch

from dlcamp.core.utils import is_quick
from dlcamp.course.attention import (
    average_pooling,
    fit_kernel_width,
    gaussian_weights,
    nadaraya_watson,
    show_heatmaps,
    toy_regression_data,
)

QUICK = is_quick()  # 本讲很小，快速模式和完整模式做的事情一样
torch.manual_seed(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 注意力提示：查询、键和值
#
# 心理学把引导注意力的线索分成两类：**非自主性提示**（nonvolitional cue）来自物体本身是否显眼，
# 比如一堆黑白文件中的一只红色杯子；**自主性提示**（volitional cue）来自我们自己的意图，
# 比如想读书时，目光会落在书上，哪怕杯子更显眼。
#
# 注意力机制把自主性提示叫作**查询**（query）。每个可供选择的输入由一对**键**（key）和**值**（value）表示：
# 键是"它看起来像什么"（非自主性提示），值是"选中它得到什么"。
# 注意力汇聚就是：用查询和每个键比较，得到一组和为 1 的非负权重，再对值加权平均。
#
# $$f(\mathbf{q}) = \sum_{i=1}^{n} \alpha(\mathbf{q}, \mathbf{k}_i)\, \mathbf{v}_i, \qquad
# \alpha \ge 0, \quad \sum_i \alpha(\mathbf{q}, \mathbf{k}_i) = 1$$
#
# 全连接层和池化层都没有查询：它们对每个输入的"关注程度"是固定的，和当前想要什么无关。

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 一个回归玩具问题
#
# 书里用的玩具数据：$y_i = 2\sin(x_i) + x_i^{0.8} + \epsilon$，噪声 $\epsilon \sim \mathcal{N}(0, 0.5^2)$，
# 50 个训练点 $x_i$ 在 $[0, 5)$ 上均匀随机（排好序），测试点是 $0, 0.1, \dots, 4.9$。
# 这里测试输入是查询，训练输入是键，训练输出是值：预测某个 $x$ 处的 $y$，就是看它和哪些训练点近。

# %%
data = toy_regression_data(n_train=50, seed=0)
print("train:", tuple(data.x_train.shape), " test:", tuple(data.x_test.shape))
print("first training pairs:", [(round(x, 2), round(y, 2))
                                for x, y in zip(data.x_train[:3].tolist(), data.y_train[:3].tolist(),
                                                strict=True)])


def plot_fit(y_hat: torch.Tensor, title: str) -> None:
    """The truth, the noisy training points and one estimate over the test inputs."""
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(data.x_test, data.y_truth, label="truth")
    ax.plot(data.x_test, y_hat.detach(), "--", label="prediction")
    ax.plot(data.x_train, data.y_train, "o", alpha=0.5, markersize=4, label="training data")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title)
    ax.legend()
    plt.show()


def test_mse(y_hat: torch.Tensor) -> float:
    """Mean squared error against the noiseless curve on the 50 test inputs."""
    return ((y_hat.detach() - data.y_truth) ** 2).mean().item()


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 平均汇聚（average pooling）
#
# 最笨的估计：不管查询是什么，都给所有训练点同样的权重 $1/n$，预测值就是 $y_i$ 的平均数。
# 这相当于"没有注意力"——一条水平线。

# %%
y_avg = average_pooling(data.x_test, data.y_train)
plot_fit(y_avg, "average pooling")
mse = {"average": test_mse(y_avg)}
print(f"average pooling: test MSE {mse['average']:.3f}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 非参数注意力汇聚：Nadaraya-Watson 核回归
#
# Nadaraya 和 Watson（1964）让权重取决于查询和键的距离：用一个核函数（kernel）$K$ 衡量相似度，
#
# $$f(x) = \sum_{i=1}^n \frac{K(x - x_i)}{\sum_{j=1}^n K(x - x_j)}\, y_i .$$
#
# 取高斯核 $K(u) = \frac{1}{\sqrt{2\pi}} e^{-u^2/2}$，常数在分子分母中约掉，权重恰好是一个 softmax：
#
# $$\alpha(x, x_i) = \mathrm{softmax}_i\!\left(-\tfrac{1}{2}(x - x_i)^2\right).$$
#
# 离查询越近的键，权重越大。这里没有要学习的参数，所以叫**非参数**（nonparametric）方法；
# 数据越多，它越接近真实函数（在一定条件下是一致估计）。

# %%
y_nw, weights_nw = nadaraya_watson(data.x_test, data.x_train, data.y_train)
plot_fit(y_nw, "Nadaraya-Watson, Gaussian kernel (w = 1)")
mse["nonparametric"] = test_mse(y_nw)
print(f"Nadaraya-Watson: test MSE {mse['nonparametric']:.3f}")
assert torch.allclose(weights_nw.sum(dim=1), torch.ones(50))  # every query spreads weight 1

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 注意力权重的热图
#
# 把权重矩阵画出来：一行是一个查询（测试输入），一列是一个键（训练输入），都按从小到大排好。
# 颜色集中在对角线附近——查询只"关注"和自己相近的训练点。`show_heatmaps` 之后几讲也会用到。

# %%
fig = show_heatmaps(weights_nw[None, None], xlabel="sorted training inputs",
                    ylabel="sorted test inputs")
plt.show()
near = weights_nw.argmax(dim=1)  # the key each query attends to most
print("most attended key for queries 0, 25, 49:",
      [round(data.x_train[near[i]].item(), 2) for i in (0, 25, 49)],
      "| queries:", [round(data.x_test[i].item(), 2) for i in (0, 25, 49)])

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 带参数的注意力汇聚
#
# 在距离前乘一个可学习的标量 $w$：
#
# $$\alpha(x, x_i) = \mathrm{softmax}_i\!\left(-\tfrac{1}{2}\big((x - x_i)\,w\big)^2\right).$$
#
# $w$ 越大，核越窄，注意力越集中。用训练数据学 $w$ 时有个陷阱：如果一个训练点也是自己的键，
# 把 $w$ 调到无穷大，它就只看自己、原样照抄 $y_i$，训练损失为 0，模型却没学到任何东西。
# 所以训练时每个训练点只用**其他**训练点作键和值（留一法，leave-one-out），
# 用平方损失和 SGD 更新 $w$。`fit_kernel_width` 就做这件事：

# %%
model, losses = fit_kernel_width(data, epochs=20, lr=5.0, w0=1.0)
w = model.w.item()
print("leave-one-out loss by step:", [round(v, 3) for v in losses[::4]], f"-> {losses[-1]:.3f}")
print(f"learned w = {w:.2f}  (kernel width 1/w = {1 / w:.2f})")
with torch.no_grad():
    y_param = model(data.x_test, data.x_train, data.y_train)
plot_fit(y_param, f"parametric kernel, learned w = {w:.2f}")
mse["parametric"] = test_mse(y_param)
print(f"parametric pooling: test MSE {mse['parametric']:.3f}")

# %% [markdown]
# 学到的 $w$ 比 1 大得多，核更窄：曲线更贴近真实函数，但也更容易跟着噪声抖动。
# 对比两种核的权重：参数化之后，注意力更集中在对角线上。

# %%
fig = show_heatmaps(torch.stack([weights_nw, model.attention_weights])[None],
                    xlabel="sorted training inputs", ylabel="sorted test inputs",
                    titles=["w = 1", f"learned w = {w:.2f}"])
plt.show()
peak_fixed = weights_nw.max(dim=1).values.mean().item()
peak_learned = model.attention_weights.max(dim=1).values.mean().item()
print(f"mean of each query's largest weight: w = 1: {peak_fixed:.3f}, learned: {peak_learned:.3f}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 窄核与宽核
#
# $w$ 控制偏差和方差的取舍：$w \to 0$ 时所有权重相等，回到平均汇聚（偏差大）；
# $w$ 很大时只看最近的一个点，就是最近邻（nearest neighbour），噪声全部照搬（方差大）。

# %%
for w_try in (0.01, 1.0, w, 30.0):
    y_try, _ = nadaraya_watson(data.x_test, data.x_train, data.y_train, w_try)
    print(f"w = {w_try:6.2f}: test MSE {test_mse(y_try):.3f}")
tiny_w, _ = nadaraya_watson(data.x_test, data.x_train, data.y_train, 1e-4)
assert torch.allclose(tiny_w, y_avg, atol=1e-4)  # a flat kernel is average pooling
one_hot = gaussian_weights(data.x_test, data.x_train, 300.0)
assert torch.equal(one_hot.argmax(dim=1), (data.x_test[:, None] - data.x_train).abs().argmin(dim=1))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 小结与自测
#
# - 注意力汇聚 = 查询与每个键比较得到权重（非负、和为 1），再对值加权平均；
# - Nadaraya-Watson 核回归是不带参数的注意力汇聚，高斯核的权重正好是 softmax；
# - 把核宽度变成可学习参数，就得到带参数的注意力汇聚；训练时要防止查询"看见自己"；
# - 核的宽度权衡偏差与方差：太宽是平均，太窄是最近邻。
#
# 自测：如果把高斯核换成 $K(u) = \max(0, 1 - |u|)$（三角核），某些查询的所有权重可能都是 0，
# 这时公式会出什么问题？下一讲的"遮蔽 softmax"会遇到类似的情况。

# %%
assert mse["nonparametric"] < 0.6 * mse["average"], mse
assert mse["parametric"] < mse["nonparametric"], mse
assert losses[-1] < losses[0] and w > 1.5
assert peak_learned > peak_fixed  # a narrower kernel concentrates the attention
print("lesson 7.05 done: test MSE "
      + ", ".join(f"{name} {value:.3f}" for name, value in mse.items()))
