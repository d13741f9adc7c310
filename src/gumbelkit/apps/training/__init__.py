"""The one training package: config from the command line, the loop, checkpoints, distributed.

Applications (``gumbelkit.apps.<name>``) supply a small :class:`Task` and call :func:`run`; they
never copy the loop. See :mod:`gumbelkit.apps.training.loop` for the determinism contract behind exact
``--resume``.
"""

from gumbelkit.apps.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from gumbelkit.apps.training.config import TrainConfig, build_parser, config_from_dict, parse_config
from gumbelkit.apps.training.distributed import DistInfo
from gumbelkit.apps.training.loop import (
    CHECKPOINT_NAME,
    RunResult,
    StepContext,
    StepOutput,
    Task,
    TrainingDiverged,
    epoch_permutation,
    resolve_device,
    run,
    seed_everything,
)
from gumbelkit.apps.training.metrics import MetricsLogger, read_metrics

__all__ = [
    "CHECKPOINT_NAME",
    "CheckpointError",
    "DistInfo",
    "MetricsLogger",
    "RunResult",
    "StepContext",
    "StepOutput",
    "Task",
    "TrainConfig",
    "TrainingDiverged",
    "build_parser",
    "config_from_dict",
    "epoch_permutation",
    "load_checkpoint",
    "parse_config",
    "read_metrics",
    "resolve_device",
    "run",
    "save_checkpoint",
    "seed_everything",
]
