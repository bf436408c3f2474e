"""The run settings have one source of truth: the config dataclasses (dlcamp.core.config).

The `dlcamp train` flags, their help and validation, `make_config`'s keyword overrides and
the models' recipes are all read from the fields, so a new field cannot be forgotten in one
of them. Also here: the one loaders type every run returns (`Loaders`, `TextLoaders`).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

import pytest

from dlcamp.cli.flags import flag_name, overrides
from dlcamp.cli.main import build_parser
from dlcamp.core.config import (
    FLAG,
    PER_RUN,
    SETTING,
    Recipe,
    RunConfig,
    TrainConfig,
    flag_fields,
    setting_fields,
)
from dlcamp.core.errors import BadArgument
from dlcamp.data.loader import Loaders
from dlcamp.models.registry import register_model
from dlcamp.text.data import TextLoaders
from dlcamp.train.run import build, data_kind, make_config

# `dlcamp train` flags that are not settings of a recipe: written by hand in dlcamp.cli.main.
HAND_WRITTEN = {"help", "model", "dataset", "engine", "quick", "out", "force", "resume",
                "no_progress", "nproc"}


def train_actions() -> dict[str, argparse.Action]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices["train"]._actions}


def test_every_field_declares_its_role_and_help():
    """A field added without option()/setting()/per_run() fails here, not silently."""
    for cls in (TrainConfig, RunConfig):
        for f in fields(cls):
            assert f.metadata.get("role") in (FLAG, SETTING, PER_RUN), f"{cls.__name__}.{f.name}"
            assert f.metadata["help"], f"{cls.__name__}.{f.name} has no help text"


def test_every_flag_field_has_a_flag_and_every_flag_a_field():
    actions = train_actions()
    generated = set(actions) - HAND_WRITTEN
    assert generated == {f.name for f in flag_fields()}
    assert HAND_WRITTEN <= set(actions)
    assert not {f.name for f in setting_fields().values() if f.metadata["role"] == SETTING} \
        & set(actions)  # recipe-only settings (momentum, warmup, ...) have no flag


def test_flags_take_name_help_choices_and_kind_from_the_dataclass():
    actions = train_actions()
    for f in flag_fields():
        action = actions[f.name]
        assert flag_name(f) in action.option_strings
        assert action.help == f.metadata["help"]  # the help text lives in the dataclass
        assert action.default is None  # not given: the recipe decides
        if f.metadata["choices"]:
            assert list(action.choices) == list(f.metadata["choices"])
    assert actions["batch_size"].option_strings == ["--batch-size"]
    assert isinstance(actions["compile"], argparse.BooleanOptionalAction)
    assert "--no-compile" in actions["compile"].option_strings


@pytest.mark.parametrize("args", [["--epochs", "0"], ["--lr", "0"], ["--seed", str(2**32)],
                                  ["--optimizer", "lbfgs"], ["--token", "byte"],
                                  ["--weight-decay", "nan"]])
def test_flags_refuse_values_outside_the_field(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["train", *args])
    assert exit_.value.code == 2 and args[0] in capsys.readouterr().err


def test_parsed_flags_become_make_config_overrides():
    args = build_parser().parse_args(["train", "--model", "lenet", "--batch-size", "64",
                                      "--lr", "0.5", "--no-compile", "--token", "word"])
    given = overrides(args)
    assert given == {"batch_size": 64, "lr": 0.5, "compile": False, "token": "word"}
    cfg = make_config(args.model, **given)
    assert (cfg.batch_size, cfg.token) == (64, "word")  # routed to RunConfig ...
    assert (cfg.train.lr, cfg.train.compile) == (0.5, False)  # ... and to TrainConfig
    assert cfg.train.epochs == 10  # not given: lenet's recipe
    assert overrides(build_parser().parse_args(["train"])) == {}


def test_make_config_routes_keywords_and_refuses_unknown_ones():
    cfg = make_config("cnn", quick=True, epochs=3, batch_size=32, augment="none",
                      model_kwargs={"widths": (8, 8, 8)}, lr=None)
    assert (cfg.batch_size, cfg.augment, cfg.model_kwargs) == (32, "none", {"widths": (8, 8, 8)})
    assert (cfg.train.epochs, cfg.train.lr) == (3, 0.2)  # None: the recipe's lr stays
    with pytest.raises(BadArgument, match="'lrr'.*Did you mean 'lr'"):
        make_config("cnn", lrr=0.1)
    with pytest.raises(BadArgument, match="unknown make_config setting 'train'"):
        make_config("cnn", train=TrainConfig())


def test_run_config_reads_old_config_files():
    old = {"model": "lenet", "dataset": "mnist", "batch_size": 64, "augment": "none",
           "patience": 0, "quick": True, "speed": {"precision": {"value": "fp32"}},
           "machine": {"cpu": "x"}, "train": {"epochs": 3, "bf16": True, "channels_last": False,
                                              "retired_setting": 1}}
    cfg = RunConfig.from_dict(old)
    assert (cfg.model, cfg.batch_size, cfg.resize, cfg.engine) == ("lenet", 64, 0, "torch")
    assert (cfg.train.epochs, cfg.train.precision, cfg.train.channels_last) == (3, "bf16", "off")
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_recipes_are_checked_when_made():
    with pytest.raises(BadArgument, match="'epoch'.*Did you mean 'epochs'"):
        Recipe(epoch=3)
    with pytest.raises(BadArgument, match="optimizer must be one of"):
        Recipe(optimizer="lbfgs")
    with pytest.raises(BadArgument, match="lr is out of range"):
        Recipe(lr=0.0)
    with pytest.raises(BadArgument, match="batch_size takes a value of type int"):
        Recipe(batch_size=32.0)
    with pytest.raises(BadArgument, match="unknown setting 'model'"):
        Recipe(model="cnn")  # chosen per run, not by a recipe
    with pytest.raises(TypeError, match="must be a dlcamp.core.config.Recipe"):
        register_model("typo-net", recipe={"epoch": 3})  # type: ignore[arg-type]


def test_recipes_are_read_only_and_derive_with_replace():
    base = Recipe(lr=0.1, model_kwargs={"width": 0.25})
    derived = base.replace(lr=0.2, epochs=4)
    assert dict(derived) == {"lr": 0.2, "model_kwargs": {"width": 0.25}, "epochs": 4}
    base["model_kwargs"]["width"] = 9.0  # a copy: the recipe itself is unchanged
    assert base["model_kwargs"] == {"width": 0.25} and base["lr"] == 0.1


# -- one loaders type -------------------------------------------------------------------------
def test_image_runs_hold_out_the_test_split():
    cfg = make_config("softmax", quick=True, epochs=1)
    _, loaders, meta = build(cfg, None, progress=False, log=lambda _: None)
    assert data_kind(cfg.dataset) == "image" == meta["data"]["kind"]
    assert type(loaders) is Loaders and loaders.eval_split == "test"
    assert loaders.test is loaders.eval and loaders.test_set is loaders.eval_set
    assert loaders.describe == "6,000 train / 2,000 test"
    with pytest.raises(AttributeError, match="'test' split, not 'val'"):
        _ = loaders.val


def test_text_runs_hold_out_the_val_split_and_say_so():
    cfg = make_config("rnn", "tang300", quick=True, epochs=1, model_kwargs={"num_hiddens": 8})
    _, loaders, meta = build(cfg, None, progress=False, log=lambda _: None)
    assert data_kind("tang300") == "text" == meta["data"]["kind"]
    assert isinstance(loaders, TextLoaders) and isinstance(loaders, Loaders)
    assert loaders.eval_split == "val" and loaders.val is loaders.eval
    assert len(loaders.vocab) == len(meta["data"]["vocab"])
    assert loaders.describe.endswith("char tokens in the vocabulary")
    with pytest.raises(AttributeError, match="'val' split, not 'test'"):
        _ = loaders.test  # no silent test = val
