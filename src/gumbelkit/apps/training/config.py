"""Dataclass configs built from the command line.

Each application declares one ``@dataclass`` that extends :class:`TrainConfig`; every field becomes
a ``--flag`` whose help text comes from ``field(metadata={"help": ...})`` and whose default is
shown by ``--help``. Nothing is bound at import time: :func:`parse_config` builds a fresh instance
from ``argv`` in the application's ``main()``.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["TrainConfig", "build_parser", "config_from_dict", "parse_config"]

C = TypeVar("C", bound="TrainConfig")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class TrainConfig:
    """Fields shared by every application's training run."""

    out_dir: str = field(default="runs/default", metadata=_help("directory for metrics, checkpoints, figures, results"))
    seed: int = field(default=0, metadata=_help("seed of every RNG (torch, numpy, python, the loop's generator)"))
    device: str = field(default="cpu", metadata=_help("'cpu', 'cuda', 'cuda:N', or 'auto' (cuda when present)"))
    epochs: int = field(default=100, metadata=_help("passes over the training set"))
    max_steps: int = field(default=0, metadata=_help("stop after this many optimizer steps (0: epochs decide)"))
    batch_size: int = field(default=100, metadata=_help("global batch size (split across distributed ranks)"))
    lr: float = field(default=1e-3, metadata=_help("Adam learning rate"))
    grad_clip: float = field(default=0.0, metadata=_help("clip the optimizer's gradients to this global norm (0: no clipping)"))
    checkpoint_every: int = field(default=1000, metadata=_help("steps between checkpoints (the last step always saves)"))
    log_every: int = field(default=100, metadata=_help("steps between metric lines in metrics.jsonl"))
    eval_every: int = field(default=0, metadata=_help("steps between validation runs (0: only at the end)"))
    resume: bool = field(default=False, metadata=_help("continue from out_dir/checkpoint.pt if it exists"))
    progress: bool = field(default=True, metadata=_help("show a progress bar (off anyway when stderr is not a TTY)"))
    threads: int = field(default=0, metadata=_help("torch CPU threads (0: torch's default)"))

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field on a bad value (called before any work)."""
        for name in ("epochs", "batch_size", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for name in ("max_steps", "eval_every", "threads"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not self.grad_clip >= 0:
            raise ValueError(f"grad_clip must be >= 0 (0: no clipping), got {self.grad_clip}")
        if not (self.device in ("cpu", "cuda", "auto") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {self.device!r}")


def _field_type(cls: type, f: dataclasses.Field[Any]) -> Any:
    hints = typing.get_type_hints(cls)
    tp = hints[f.name]
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0]
    return tp


def build_parser(cls: type[TrainConfig], prog: str | None = None, description: str | None = None) -> argparse.ArgumentParser:
    """An ``argparse`` parser with one option per field of ``cls`` (``foo_bar`` -> ``--foo-bar``).

    Booleans get ``--flag`` / ``--no-flag``. ``--help`` shows every field with its default.
    """
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    for f in dataclasses.fields(cls):
        tp = _field_type(cls, f)
        flag = "--" + f.name.replace("_", "-")
        help_ = f.metadata.get("help", " ")
        choices = f.metadata.get("choices")
        if tp is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=f.default, help=help_)
        else:
            parser.add_argument(flag, dest=f.name, type=tp, default=f.default, help=help_, choices=choices)
    return parser


def parse_config(cls: type[C], argv: Sequence[str] | None, prog: str | None = None, description: str | None = None) -> C:
    """Build and validate a ``cls`` instance from command-line arguments."""
    ns = build_parser(cls, prog, description).parse_args(list(argv) if argv is not None else None)
    config = cls(**vars(ns))
    config.validate()
    return config


def config_from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Rebuild a config saved with ``dataclasses.asdict`` (unknown keys are an error)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown config field(s) {sorted(unknown)}; allowed: {sorted(names)}")
    return cls(**values)
