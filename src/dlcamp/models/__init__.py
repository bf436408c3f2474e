"""The model zoo. Importing this package registers every model family."""

from dlcamp.models import basic, cnn, lenet  # noqa: F401  (registration side effect)
from dlcamp.models.registry import (
                                    count_parameters,
                                    create_model,
                                    list_models,
                                    model_recipe,
                                    model_summary,
                                    register_model,
)

__all__ = ["count_parameters", "create_model", "list_models", "model_recipe", "model_summary",
           "register_model"]
