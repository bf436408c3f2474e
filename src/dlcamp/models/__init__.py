"""The model zoo. Importing this package registers every model family."""

from dlcamp.models import (  # noqa: F401  (registration side effect)
    alexnet,
    basic,
    cnn,
    densenet,
    efficientnet,
    googlenet,
    gpt,
    lenet,
    lite_yolo,
    nin,
    resnet,
    rnn,
    seq2seq,
    ssd,
    transformer,
    vgg,
    yolo,
)
from dlcamp.models.book import book_config, book_models
from dlcamp.models.registry import (
    count_parameters,
    create_model,
    list_models,
    model_recipe,
    model_summary,
    register_model,
)

__all__ = ["book_config", "book_models", "count_parameters", "create_model", "list_models",
           "model_recipe", "model_summary", "register_model"]
