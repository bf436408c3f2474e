"""Patch whitening: a first convolution fixed, before training, to the principal components
of the training images' k x k patches.

The first layer of a CNN learns, slowly and noisily, roughly what a principal component
analysis (PCA) of image patches gives at once: smooth blobs, edges, then finer textures.
`PatchWhitening` computes that basis from the data (the covariance of all k x k patches of a
few thousand training images), keeps the `out_channels // 2` leading eigenvectors scaled by
1 / sqrt(eigenvalue + eps) together with their negatives (so a ReLU or max pooling after it
sees both signs), and freezes the layer. Whitened patch features go back to Coates and Ng
("An analysis of single-layer networks in unsupervised feature learning", AISTATS 2011); a
frozen whitening first layer is one of the steps of D. Page's "How to train your ResNet"
(2018) and of K. Jordan's "94% on CIFAR-10 in 3.29 seconds on a single GPU" (2024,
arXiv:2404.00498), which used 2 x 2 patches of CIFAR-10 and eps = 5e-4.

For dlcamp's `cnn` on Fashion-MNIST (3 x 3 patches, 16 channels) it is what lets the default
recipe stop after 2 epochs instead of 3 (docs/benchmarks.md); being frozen, the layer also
skips its weight gradient. `dlcamp train` fits it from the training split before the first
step (`dlcamp.train.run.build`); the fitted filters are saved in the checkpoint like any
weight, so evaluation, serving, ONNX and `--resume` use them unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchWhitening(nn.Conv2d):
    """A bias-free k x k 'same' convolution, (B, C, H, W) -> (B, out_channels, H, W).

    Until `fit` it is an ordinary trainable nn.Conv2d. `fit(images)` sets its filters to the
    whitened principal components of the images' patches and freezes them; the buffer `fitted`
    (saved in the state dict) records that, so a loaded checkpoint is frozen again.

    Raises ValueError when out_channels is odd or larger than 2 * in_channels * k * k (there
    are only that many components, with their negatives).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 eps: float = 1e-2) -> None:
        dims = in_channels * kernel_size * kernel_size
        if out_channels % 2 or out_channels > 2 * dims:
            raise ValueError(f"PatchWhitening needs an even out_channels <= 2 * {dims} (the "
                             f"components of {in_channels}x{kernel_size}x{kernel_size} patches "
                             f"and their negatives), got {out_channels}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                         bias=False)
        self.eps = eps
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit(self, images: torch.Tensor, chunk: int = 1024) -> PatchWhitening:
        """Set the filters from `images`, (N, C, H, W) float, normalised as the model sees them.

        Returns self. Raises ValueError for a wrong shape or non-finite values.
        """
        c, k = self.in_channels, self.kernel_size[0]
        if images.dim() != 4 or images.shape[1] != c or len(images) == 0:
            raise ValueError(f"fit needs a non-empty (N, {c}, H, W) batch of images, got shape "
                             f"{tuple(images.shape)}")
        if not torch.isfinite(images).all():
            raise ValueError("fit: the images contain NaN or infinite values")
        dims = c * k * k
        total = torch.zeros(dims, dtype=torch.float64, device=images.device)
        outer = torch.zeros(dims, dims, dtype=torch.float64, device=images.device)
        count = 0
        for start in range(0, len(images), chunk):
            x = images[start:start + chunk].float()
            patches = F.unfold(x, k, padding=self.padding)  # (n, C*k*k, H*W)
            patches = patches.transpose(1, 2).reshape(-1, dims)  # (n*H*W, C*k*k)
            total += patches.sum(0, dtype=torch.float64)
            outer += (patches.T @ patches).double()
            count += len(patches)
        mean = total / count
        cov = outer / count - torch.outer(mean, mean)  # (C*k*k, C*k*k)
        eigvals, eigvecs = torch.linalg.eigh(cov)  # ascending
        m = self.out_channels // 2
        top = eigvals.flip(0)[:m].clamp_min(0)
        vecs = eigvecs.flip(1)[:, :m]  # (C*k*k, m), leading components first
        filters = (vecs / (top + self.eps).sqrt()).T  # (m, C*k*k)
        weight = torch.cat([filters, -filters]).reshape(self.weight.shape)
        self.weight.copy_(weight.to(self.weight.dtype))
        self.weight.requires_grad_(False)
        self.fitted.fill_(True)
        return self

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self.weight.requires_grad_(not bool(self.fitted))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, eps={self.eps}, fitted={bool(self.fitted)}"


def input_whitening(model: nn.Module) -> PatchWhitening | None:
    """The model's first leaf module if it is a PatchWhitening not yet fitted (the only place
    where such a layer sees the images themselves), else None."""
    first = model
    while next(first.children(), None) is not None:
        first = next(first.children())
    return first if isinstance(first, PatchWhitening) and not first.fitted else None
