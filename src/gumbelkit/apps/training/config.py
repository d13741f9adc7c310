"""Dataclass configs built from the command line, a config file, or a saved run.

Each application declares one ``@dataclass`` that extends :class:`TrainConfig`; every field becomes
a ``--flag`` whose help text comes from ``field(metadata={"help": ...})`` and whose default (and,
with ``metadata={"choices": ...}``, whose allowed values) ``--help`` shows. Nothing is bound at
import time: :func:`parse_config` builds a fresh instance in the application's ``main()``.

Where a value comes from, lowest to highest precedence: the dataclass default; with ``--resume``,
the run's saved ``config.json``; ``--config FILE`` (a JSON object of field values, e.g. another
run's ``config.json``); the flags on the command line.

Fields marked ``metadata={"resume": "safe"}`` cannot change the training trajectory (run length,
evaluation and output options) and may differ when resuming; every other field must match the
checkpoint's value (see :meth:`TrainConfig.resume_conflicts`).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import re
import sys
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "CONFIG_NAME",
    "TrainConfig",
    "build_parser",
    "config_from_dict",
    "config_to_dict",
    "field_help",
    "load_config_file",
    "parse_config",
]

C = TypeVar("C", bound="TrainConfig")

CONFIG_NAME = "config.json"
#: Fields that say how to start this process, not what the run is: not saved in config.json.
RUN_CONTROL = frozenset({"resume", "overwrite"})
LOGGERS = ("auto", "jsonl", "tensorboard")
ON_NONFINITE = ("stop", "skip")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def field_help(text: str, *, safe: bool = False, choices: Any = None) -> dict[str, Any]:
    """A config field's metadata: its ``--help`` text; ``safe``: it may change on ``--resume``
    (``"resume": "safe"``); ``choices``: the allowed values (a sequence, or a callable that
    returns one when the parser is built), which ``--help`` shows and the parser checks."""
    meta: dict[str, Any] = {"help": text}
    if safe:
        meta["resume"] = "safe"
    if choices is not None:
        meta["choices"] = choices
    return meta


@dataclass
class TrainConfig:
    """Fields shared by every application's training run."""

    out_dir: str = field(default="runs/default", metadata=field_help(
        "run directory: metrics, checkpoints, config, figures, results", safe=True))
    seed: int = field(default=0, metadata=field_help("seed of every RNG (torch, numpy, python, the loop's generator)"))
    device: str = field(default="auto", metadata=field_help("'auto' (cuda when available, else cpu), 'cpu', 'cuda', 'cuda:N', 'mps'"))
    epochs: int = field(default=100, metadata=field_help("passes over the training set", safe=True))
    max_steps: int = field(default=0, metadata=field_help("stop after this many optimizer steps (0: epochs decide)", safe=True))
    batch_size: int = field(default=100, metadata=field_help("global batch size (split across distributed ranks)"))
    lr: float = field(default=1e-3, metadata=field_help("Adam learning rate"))
    grad_clip: float = field(default=0.0, metadata=field_help(
        "clip the optimizer's gradients to this global norm (0: no clipping)"))
    checkpoint_every: int = field(default=1000, metadata=field_help(
        "steps between checkpoints (the last step always saves)", safe=True))
    log_every: int = field(default=100, metadata=field_help(
        "steps between metric records (metrics.jsonl, and a log line when stderr is not a terminal)", safe=True))
    eval_every: int = field(default=0, metadata=field_help(
        "steps between validation runs (0: only at the end)", safe=True))
    resume: bool = field(default=False, metadata=field_help(
        "continue the run in --out-dir from its checkpoint, with its saved config", safe=True))
    overwrite: bool = field(default=False, metadata=field_help(
        "start a new run in a non-empty --out-dir, deleting the previous run's files", safe=True))
    progress: bool = field(default=True, metadata=field_help(
        "show a progress bar when stderr is a terminal (log lines otherwise)", safe=True))
    logger: str = field(default="auto", metadata=field_help(
        "metrics.jsonl always; 'tensorboard' also writes TensorBoard events to out_dir/tensorboard "
        "(needs the tensorboard package); 'auto': tensorboard when it is installed", safe=True, choices=LOGGERS))
    threads: int = field(default=0, metadata=field_help("torch CPU threads (0: torch's default)"))
    on_nonfinite: str = field(default="stop", metadata=field_help(
        "a NaN/inf loss or gradient: 'stop' (keep the last good checkpoint) or 'skip' the "
        "optimizer step", choices=ON_NONFINITE))
    max_skipped_steps: int = field(default=10, metadata=field_help(
        "with --on-nonfinite skip: stop after this many consecutive skipped steps", safe=True))
    dist_timeout: float = field(default=300.0, metadata=field_help(
        "distributed runs: seconds a rank waits for the others in a collective before failing "
        "(covers rank 0's checkpoint writes and validation)", safe=True))

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field on a bad value (called before any work).

        Subclasses extend it (call ``super().validate()``) with their own fields and cross-field
        checks.
        """
        _check_types(self)
        for name in ("epochs", "batch_size", "checkpoint_every", "log_every", "max_skipped_steps"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for name in ("max_steps", "eval_every", "threads"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr}")
        if not (math.isfinite(self.grad_clip) and self.grad_clip >= 0):
            raise ValueError(f"grad_clip must be a finite number >= 0 (0: no clipping), got {self.grad_clip}")
        if not (math.isfinite(self.dist_timeout) and self.dist_timeout > 0):
            raise ValueError(f"dist_timeout must be a positive number of seconds, got {self.dist_timeout}")
        if not _DEVICE.match(self.device):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {self.device!r}")
        _check_choice("logger", self.logger, LOGGERS)
        _check_choice("on_nonfinite", self.on_nonfinite, ON_NONFINITE)
        if self.logger == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
            raise ValueError("logger 'tensorboard' needs the tensorboard package: pip install tensorboard "
                             "(or use --logger jsonl)")
        if not self.out_dir:
            raise ValueError("out_dir must be a directory path, got ''")
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite exclude each other: --resume continues the run in "
                             "out_dir, --overwrite deletes it and starts a new one")

    def apply_presets(self: C) -> C:
        """Return the config with any preset flag (e.g. ``--quick``) expanded; the identity here.

        Called by :func:`parse_config` and :func:`~gumbelkit.apps.training.run` before
        :meth:`validate`; must be idempotent.
        """
        return self

    def resume_conflicts(self, saved: dict[str, Any]) -> list[str]:
        """Why resuming a checkpoint written with config ``saved`` would not be bitwise exact.

        One reason per line, naming the field; empty when resuming is safe. The default compares
        every field not marked ``resume="safe"``; subclasses add cross-field rules (e.g. a schedule
        that spans the whole run cannot change length).
        """
        reasons = []
        for f in dataclasses.fields(self):
            if f.metadata.get("resume") == "safe" or f.name in ("device", "threads", "on_nonfinite"):
                continue  # compared by what the run resolved them to / did (see the loop)
            if f.name not in saved:
                continue  # a field added since the checkpoint was written: its default applies
            now, then = getattr(self, f.name), saved[f.name]
            if now != then:
                reasons.append(f"{f.name} is {now!r} but the checkpoint's run used {then!r}")
        return reasons


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _field_type(cls: type, f: dataclasses.Field[Any]) -> Any:
    hints = typing.get_type_hints(cls)
    tp = hints[f.name]
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0]
    return tp


def _optional(cls: type, f: dataclasses.Field[Any]) -> bool:
    tp = typing.get_type_hints(cls)[f.name]
    return (isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union) and \
        type(None) in typing.get_args(tp)


def _check_types(config: TrainConfig) -> None:
    """Python-API callers can pass anything: name the field whose value has the wrong type."""
    cls = type(config)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        tp = _field_type(cls, f)
        if value is None and _optional(cls, f):
            continue
        if tp is bool:
            ok = isinstance(value, bool)
        elif tp is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif tp is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif tp is str:
            ok = isinstance(value, str)
        else:
            continue
        if not ok:
            raise ValueError(f"{f.name} must be of type {tp.__name__}, got {value!r}")


def _choices(f: dataclasses.Field[Any]) -> Sequence[str] | None:
    choices = f.metadata.get("choices")
    if callable(choices):  # computed when the parser is built (e.g. a registry's names)
        choices = choices()
    return None if choices is None else [str(c) for c in choices]


def _version() -> str:
    from gumbelkit.apps.cli import version

    return version()


def build_parser(cls: type[TrainConfig], prog: str | None = None, description: str | None = None,
                 *, suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """An ``argparse`` parser with one option per field of ``cls`` (``foo_bar`` -> ``--foo-bar``).

    Booleans get ``--flag`` / ``--no-flag``. ``--help`` shows every field with its default and,
    for fields with ``choices`` metadata, the allowed values (checked by ``validate``). Also
    ``--config FILE`` and ``--version``.

    Args:
        suppress_defaults: leave unset options out of the namespace (to see what was given).
    """
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=argparse.SUPPRESS if suppress_defaults else None,
    )
    parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="JSON file of field values (e.g. a run's config.json); flags override it")
    parser.add_argument("--version", action="version", version=_version())
    for f in dataclasses.fields(cls):
        tp = _field_type(cls, f)
        flag = "--" + f.name.replace("_", "-")
        help_ = f.metadata.get("help", " ")
        default = argparse.SUPPRESS if suppress_defaults else f.default
        if tp is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default, help=help_)
            continue
        choices = _choices(f)
        metavar = "{" + ",".join(choices) + "}" if choices else None
        parser.add_argument(flag, dest=f.name, type=tp, default=default, help=help_, metavar=metavar)
    return parser


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """The config as saved in ``config.json`` and in checkpoints (without ``resume``/``overwrite``)."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in RUN_CONTROL}


def config_from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Rebuild a config saved with :func:`config_to_dict` (missing fields take their defaults).

    Raises:
        ValueError: an unknown key (the message lists the allowed ones).
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown config field(s) {sorted(unknown)}; allowed: {sorted(names)}")
    return cls(**values)


def load_config_file(cls: type[TrainConfig], path: str | Path) -> dict[str, Any]:
    """Field values from a JSON file (a JSON object), checked against ``cls``'s fields.

    Raises:
        ValueError: the file is unreadable, not a JSON object, or names an unknown field.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"config file {path} is not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a JSON object of field values")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"config file {path}: unknown field(s) {unknown}; allowed: {sorted(names)}")
    return {k: v for k, v in values.items() if k not in RUN_CONTROL}


def saved_config(cls: type[TrainConfig], out_dir: str | Path) -> dict[str, Any] | None:
    """The config a run in ``out_dir`` was started with, or ``None`` if there is no run there.

    Read from its ``config.json``, or from its checkpoint when that file is missing.
    """
    from gumbelkit.apps.training.checkpoint import CHECKPOINT_NAME, load_checkpoint

    path = Path(out_dir) / CONFIG_NAME
    if path.is_file():
        return load_config_file(cls, path)
    ckpt = Path(out_dir) / CHECKPOINT_NAME
    if ckpt.is_file():
        values = dict(load_checkpoint(ckpt)["config"])
        return {k: v for k, v in values.items() if k not in RUN_CONTROL}
    return None


def parse_config(cls: type[C], argv: Sequence[str] | None, prog: str | None = None,
                 description: str | None = None) -> C:
    """Build and validate a ``cls`` instance from command-line arguments.

    ``--resume`` starts from the run's saved ``config.json`` (so only the flags that change
    something need repeating); ``--config FILE`` supplies values too; flags override both.
    Whether the changed values are allowed for a resumption is checked by
    :func:`~gumbelkit.apps.training.run` against the checkpoint.

    Raises:
        ValueError: a bad value, an unreadable config file, or a failed cross-field check.
        SystemExit: ``--help``, ``--version``, or an argument that does not parse (exit 2).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    build_parser(cls, prog, description).parse_args(args)  # --help, --version, type errors
    given = vars(build_parser(cls, prog, description, suppress_defaults=True).parse_args(args))
    file_values = load_config_file(cls, given.pop("config")) if "config" in given else {}
    explicit = {**file_values, **given}
    config = cls(**explicit).apply_presets()
    if config.resume:
        saved = saved_config(cls, config.out_dir)
        if saved is not None:  # the run continues where its config was found, even if it was moved
            config = cls(**{**saved, **explicit, "out_dir": config.out_dir}).apply_presets()
    config.validate()
    return config

