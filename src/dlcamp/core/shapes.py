"""Shape arithmetic shared by the course, the NumPy engine and the model zoo.

One formula gives the length of a convolution's or a pooling's output along one axis. A
window of k elements, dilated by d (d - 1 gaps between its elements, so it spans
d * (k - 1) + 1 input elements), slides over an input of n elements padded with p on each
side, s elements at a time; the output has one element per position where it fits:

    out = floor((n + 2p - d * (k - 1) - 1) / s) + 1

Source: the shape formula of PyTorch's `nn.Conv2d` and `nn.MaxPool2d` documentation (the
default floor mode; `ceil_mode=True` pooling rounds up instead), and section 7.3 "Padding and
Stride" of Dive into Deep Learning (d2l.ai), which writes it without dilation and with p_h
the padding of both sides together: floor((n_h - k_h + p_h + s_h) / s_h), the same number.
"""

from __future__ import annotations

from collections.abc import Iterable


def conv_output_size(size: int, kernel_size: int, padding: int = 0, stride: int = 1,
                     dilation: int = 1) -> int:
    """Output length along one axis of a convolution or pooling over `size` input elements.

    floor((size + 2 * padding - dilation * (kernel_size - 1) - 1) / stride) + 1, with
    `padding` added on *each* side, as in nn.Conv2d and nn.MaxPool2d. (A pooling layer's
    stride defaults to its window size in torch: pass it.) What is left over at the end is
    dropped (floor).

    Raises ValueError for a kernel, stride or dilation < 1, a negative padding, or a window
    that does not fit into the padded input (an output of 0 or fewer elements).
    """
    if kernel_size < 1 or stride < 1 or dilation < 1 or padding < 0:
        raise ValueError(f"need kernel_size >= 1, stride >= 1, dilation >= 1 and padding >= 0; "
                         f"got kernel_size={kernel_size}, stride={stride}, "
                         f"dilation={dilation}, padding={padding}")
    span = dilation * (kernel_size - 1) + 1  # input elements one window covers
    out = (size + 2 * padding - span) // stride + 1
    if out < 1:
        spans = f" (dilated to {span})" if dilation > 1 else ""
        raise ValueError(f"a window of {kernel_size}{spans} does not fit into {size} elements "
                         f"with {padding} of padding on each side")
    return out


def stack_output_size(size: int, layers: Iterable[tuple[int, int, int]]) -> int:
    """Output length after several convolutions / poolings in a row, each given as
    (kernel_size, padding, stride): `conv_output_size` applied layer after layer.

        stack_output_size(28, [(5, 2, 1), (2, 0, 2), (5, 0, 1), (2, 0, 2)])  # LeNet: 5

    Raises ValueError, naming the layer, when the input shrinks to nothing on the way.
    """
    for i, (kernel_size, padding, stride) in enumerate(layers):
        try:
            size = conv_output_size(size, kernel_size, padding, stride)
        except ValueError as e:
            raise ValueError(f"layer {i} (kernel {kernel_size}, padding {padding}, stride "
                             f"{stride}): {e}") from e
    return size
