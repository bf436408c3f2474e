"""dlcamp.core.registry: one Registry, one wording of "unknown name", used by every registry."""

from __future__ import annotations

import pytest

from dlcamp.core.errors import DlcampError, UnknownName
from dlcamp.core.registry import Registry, unknown_name
from dlcamp.data.datasets import DATASETS, get_spec, list_datasets
from dlcamp.engine.models import MODELS as SCRATCH_MODELS
from dlcamp.engine.models import create_scratch_model, list_scratch_models
from dlcamp.models import create_model, list_models, model_recipe
from dlcamp.models.registry import model_entry
from dlcamp.text.corpora import CORPORA, get_corpus_spec, list_corpora


def fruit() -> Registry[int]:
    return Registry("fruit", [("banana", 2), ("apple", 1), ("cherry", 3)])


def test_get_register_and_the_container_protocol():
    reg = fruit()
    assert reg.get("apple") == reg["apple"] == 1
    assert reg.register("date", 4) == 4  # returns the item: usable inside a decorator
    assert list(reg) == ["banana", "apple", "cherry", "date"]  # registration order
    assert reg.names() == ["apple", "banana", "cherry", "date"]  # sorted
    assert reg.items() == [("banana", 2), ("apple", 1), ("cherry", 3), ("date", 4)]
    assert reg.values() == [2, 1, 3, 4]
    assert "apple" in reg and "kiwi" not in reg and 3 not in reg
    assert len(reg) == 4 and "fruit" in repr(reg)


def test_one_wording_with_did_you_mean():
    with pytest.raises(UnknownName) as info:
        fruit().get("aple")
    assert str(info.value) == ("unknown fruit 'aple'; did you mean 'apple'? "
                               "Choose from: apple, banana, cherry")
    # an UnknownName is a DlcampError (the CLI prints it) and a KeyError (a failed lookup)
    assert isinstance(info.value, DlcampError) and isinstance(info.value, KeyError)


def test_no_close_name_just_lists_the_choices_and_the_hint_comes_last():
    reg = Registry("fruit", [("apple", 1)], hint="Vegetables are elsewhere.")
    with pytest.raises(UnknownName) as info:
        reg["zucchini"]
    assert str(info.value) == ("unknown fruit 'zucchini'; choose from: apple. "
                               "Vegetables are elsewhere.")
    empty = unknown_name("fruit", "x", [])
    assert str(empty) == "unknown fruit 'x'; choose from: (none registered)"


def test_several_close_names_are_all_suggested():
    reg = Registry("model", [(n, n) for n in ("lenet", "lenet-bn", "lenet-modern", "mlp")])
    message = str(pytest.raises(UnknownName, reg.get, "lenett").value)
    assert message.startswith("unknown model 'lenett'; did you mean 'lenet' or ")


def test_duplicates_are_rejected():
    reg = fruit()
    with pytest.raises(ValueError, match="fruit 'apple' is registered twice"):
        reg.register("apple", 10)
    assert reg["apple"] == 1  # unchanged
    with pytest.raises(ValueError, match="registered twice"):
        Registry("fruit", [("a", 1), ("a", 2)])


# -- the four registries of dlcamp use it -------------------------------------------------
def message(fn, name: str) -> str:
    with pytest.raises(UnknownName) as info:
        fn(name)
    return str(info.value)


def test_models():
    text = message(create_model, "lenett")
    assert text.startswith("unknown model 'lenett'; did you mean 'lenet'")
    assert f"Choose from: {', '.join(list_models())}" in text
    assert message(model_recipe, "lenett") == message(model_entry, "lenett") == text


def test_datasets():
    text = message(get_spec, "fashion-mnst")
    assert text == ("unknown dataset 'fashion-mnst'; did you mean 'fashion-mnist'? "
                    f"Choose from: {', '.join(list_datasets())}")
    assert isinstance(DATASETS, Registry) and DATASETS["mnist"].name == "mnist"
    assert list(DATASETS) == ["fashion-mnist", "mnist", "digits"]  # the table's order


def test_text_corpora():
    text = message(get_corpus_spec, "tang3000")
    assert text == ("unknown text corpus 'tang3000'; did you mean 'tang300' or 'tang'? "
                    f"Choose from: {', '.join(list_corpora())}")
    assert isinstance(CORPORA, Registry) and CORPORA["quotes-en"].joiner == " "


def test_scratch_engine_models():
    text = message(create_scratch_model, "mpl")
    assert text == ("unknown NumPy engine model 'mpl'; did you mean 'mlp'? "
                    "Choose from: lenet, lenet-modern, mlp, softmax. "
                    "Use --engine torch for the other models.")
    assert isinstance(SCRATCH_MODELS, Registry)
    assert list_scratch_models() == ["lenet", "lenet-modern", "mlp", "softmax"]
    assert set(list_scratch_models()) <= set(list_models())  # each has a PyTorch twin


def test_the_other_name_lookups_use_the_same_wording():
    """Book configurations, lessons and token kinds: not registries, the same message."""
    from dlcamp.course.lessons import find_lesson
    from dlcamp.models import book_config
    from dlcamp.text.vocab import tokenize

    assert message(book_config, "alexnt").startswith(
        "unknown book configuration 'alexnt'; did you mean 'alexnet'")
    assert message(find_lesson, "tensrs").startswith("unknown lesson 'tensrs'; did you mean "
                                                      "'tensors'?")
    assert message(lambda kind: tokenize("x", kind), "chr") == (
        "unknown token kind 'chr'; did you mean 'char'? Choose from: char, word")
