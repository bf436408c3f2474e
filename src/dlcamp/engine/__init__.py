"""dlcamp.engine: a small deep-learning engine on NumPy, to read in one sitting.

    from dlcamp import engine
    x = engine.Tensor(np.random.randn(4, 3), requires_grad=True)
    loss = (x * x).sum()
    loss.backward()                     # x.grad == 2 * x

Files: tensor.py (the Tensor and reverse-mode autodiff), conv.py (im2col convolution and
pooling), nn.py (layers shaped like torch.nn, and the course's networks), models.py (those
networks by name: `create_scratch_model`), optim.py (SGD, Adam). The training loop used by
`dlcamp train --engine numpy` is dlcamp.train.engine.
"""

from dlcamp.engine import nn, optim
from dlcamp.engine.conv import avg_pool2d, conv2d, max_pool2d
from dlcamp.engine.models import create_scratch_model, list_scratch_models
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

__all__ = ["Tensor", "avg_pool2d", "conv2d", "create_scratch_model", "cross_entropy", "dropout",
           "is_grad_enabled", "lift", "list_scratch_models", "max_pool2d", "nn", "no_grad",
           "optim", "tensor", "unbroadcast"]
