"""The one training package: config, the loop, checkpoints, distributed, logging, fault handling.

Applications (``gumbelkit.apps.<name>``) supply a small :class:`Task` and a :class:`TrainConfig`
subclass, and call :func:`run` (their ``main`` wraps it in :func:`cli_main`); they never copy the
loop. See :mod:`gumbelkit.apps.training.loop` for the determinism contract behind exact
``--resume``, and ``docs/reliability.md`` for what the package guarantees under faults.
"""

from gumbelkit.apps.training.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from gumbelkit.apps.training.config import (
    TrainConfig,
    build_parser,
    config_from_dict,
    config_to_dict,
    field_help,
    load_config_file,
    parse_config,
)
from gumbelkit.apps.training.console import Console
from gumbelkit.apps.training.distributed import DistInfo, DistributedError
from gumbelkit.apps.training.errors import (
    RunDirectoryError,
    TrainingDiverged,
    cli_main,
    exit_code,
)
from gumbelkit.apps.training.loop import (
    RunResult,
    StepContext,
    StepOutput,
    Task,
    epoch_permutation,
    resolve_device,
    run,
    seed_everything,
)
from gumbelkit.apps.training.metrics import MetricsLogger, read_metrics
from gumbelkit.apps.training.rundir import check_run_dir, prepare_run_dir

__all__ = [
    "CHECKPOINT_NAME",
    "CheckpointError",
    "Console",
    "DistInfo",
    "DistributedError",
    "MetricsLogger",
    "RunDirectoryError",
    "RunResult",
    "StepContext",
    "StepOutput",
    "Task",
    "TrainConfig",
    "TrainingDiverged",
    "build_parser",
    "check_run_dir",
    "cli_main",
    "config_from_dict",
    "config_to_dict",
    "epoch_permutation",
    "exit_code",
    "field_help",
    "load_checkpoint",
    "load_config_file",
    "parse_config",
    "prepare_run_dir",
    "read_metrics",
    "resolve_device",
    "run",
    "save_checkpoint",
    "seed_everything",
]
