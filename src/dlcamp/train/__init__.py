"""Training: a generic Trainer, tasks (loss + metrics), callbacks, checkpoints, runs."""

from dlcamp.train.callbacks import (
                                    Callback,
                                    Checkpoint,
                                    CSVLogger,
                                    EarlyStopping,
                                    EpochLog,
                                    ProgressBar,
)
from dlcamp.train.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from dlcamp.train.plot import PlotCurves
from dlcamp.train.run import RunConfig, make_config, resume_run, train_run
from dlcamp.train.task import Classification, Regression, Task
from dlcamp.train.trainer import TrainConfig, Trainer

__all__ = ["CSVLogger", "Callback", "Checkpoint", "Classification", "EarlyStopping", "EpochLog",
           "PlotCurves", "ProgressBar", "Regression", "RunConfig", "Task", "TrainConfig",
           "Trainer", "load_checkpoint", "make_config", "model_from_checkpoint", "resume_run",
           "save_checkpoint", "train_run"]
