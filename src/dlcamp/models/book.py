"""The book's own settings for each CNN it trains on Fashion-MNIST (Dive into Deep Learning).

    cfg = book_config("resnet18")
    run = make_config(cfg["model"], **cfg["recipe"])   # the book's run: a GPU job
    # compare the result with cfg["book_test_acc"]

Sections are numbered as in d2l-en 1.0 (chapters 7-8). The settings are those of the book's
PyTorch code that trains each model with `d2l.train_ch6` (d2l-en 0.17, d2l-zh 2nd edition):
plain SGD (no momentum, no weight decay, constant learning rate), 10 epochs, images resized
on load, fp32, Xavier-uniform weights (`init="xavier"` for the networks without batch
norm; the batch-norm networks keep torch's initialisation here). The book's accuracies are
the test accuracies printed after its 10th epoch on one GPU; they vary from run to run by a
point or so. dlcamp upsamples with bilinear interpolation on the device (`resize`) where the
book's loader uses torchvision.transforms.Resize.
"""

from __future__ import annotations

from typing import Any

from dlcamp.core.config import Recipe
from dlcamp.core.registry import unknown_name

# model -> (book section in d2l-en, model kwargs, resize, lr, batch size, book test accuracy)
_BOOK: dict[str, tuple[str, dict[str, Any], int, float, int, float]] = {
    "lenet": ("7.6 LeNet (sigmoid)", {}, 28, 0.9, 256, 0.78),
    "lenet-bn": ("8.5 Batch Normalization (BN-LeNet)", {}, 28, 1.0, 256, 0.81),
    "alexnet": ("8.1 AlexNet", {"width": 1.0, "hidden": 4096, "stem": "book", "init": "xavier"},
                224, 0.01, 128, 0.88),
    # the book divides VGG-11's channels by ratio = 4 to fit a single GPU (width = 1 / 4)
    "vgg": ("8.2 VGG (VGG-11, ratio 4)",
            {"width": 0.25, "hidden": 4096, "stem": "book", "init": "xavier"}, 224, 0.05, 128,
            0.92),
    "nin": ("8.3 Network in Network", {"width": 1.0, "stem": "book", "init": "xavier"}, 224, 0.1,
            128, 0.79),
    "googlenet": ("8.4 GoogLeNet", {"width": 1.0, "stem": "book", "init": "xavier"}, 96, 0.1,
                  128, 0.89),
    "resnet18": ("8.6 ResNet-18", {"width": 1.0, "stem": "book"}, 96, 0.05, 256, 0.89),
    "densenet": ("8.7 DenseNet", {"width": 1.0, "stem": "book"}, 96, 0.1, 256, 0.885),
}


def book_models() -> list[str]:
    return list(_BOOK)


def book_config(name: str) -> dict[str, Any]:
    """The book's model arguments, input size, training settings and published accuracy.

    Returns {"model", "section", "image_size", "model_kwargs", "book_test_acc", "recipe"};
    `recipe` is a Recipe of complete `make_config` overrides (it replaces every setting of
    dlcamp's CPU recipe: no augmentation, no schedule, fp32; only the memory layout stays
    automatic, as it changes the speed, not the arithmetic), so `make_config(name, **recipe)`
    is the book's run.
    """
    if name not in _BOOK:
        raise unknown_name("book configuration", name, _BOOK,
                           "The book trains these models on Fashion-MNIST.")
    section, kwargs, size, lr, batch_size, acc = _BOOK[name]
    recipe = Recipe(model_kwargs=dict(kwargs), resize=size if size != 28 else 0, epochs=10,
                    lr=lr, batch_size=batch_size, optimizer="sgd", momentum=0.0,
                    nesterov=False, weight_decay=0.0, schedule="constant", label_smoothing=0.0,
                    augment="none", precision="fp32", channels_last="auto")
    return {"model": name, "section": section, "image_size": size,
            "model_kwargs": dict(kwargs), "book_test_acc": acc, "recipe": recipe}
