"""dlcamp.engine: a small deep-learning engine on NumPy, to read in one sitting.

    from dlcamp import engine as scratch
    x = scratch.Tensor(np.random.randn(4, 3), requires_grad=True)
    loss = (x * x).sum()
    loss.backward()                     # x.grad == 2 * x

Files: tensor.py (the Tensor and reverse-mode autodiff), conv.py (im2col convolution and
pooling), nn.py (layers shaped like torch.nn), optim.py (SGD, Adam), train.py (the loop used
by `dlcamp train --engine scratch`).
"""

from dlcamp.engine import nn, optim
from dlcamp.engine.conv import avg_pool2d, conv2d, max_pool2d
from dlcamp.engine.tensor import (
    Tensor,
    cross_entropy,
    dropout,
    is_grad_enabled,
    lift,
    no_grad,
    tensor,
    unbroadcast,
)

__all__ = ["Tensor", "avg_pool2d", "conv2d", "cross_entropy", "dropout", "is_grad_enabled",
           "lift", "max_pool2d", "nn", "no_grad", "optim", "tensor", "unbroadcast"]
