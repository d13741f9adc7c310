"""Atomic, safe-to-load checkpoints and the RNG states that make resumption exact.

A checkpoint is one ``torch.save`` file holding only tensors and plain containers (dicts, lists,
tuples, numbers, strings): the model and optimizer ``state_dict``, the step, every RNG state
(torch, numpy, python, the loop's generator) and the config as a dict. It is written to a temporary
file in the same directory, flushed to disk, then renamed over the old one with ``os.replace``
(atomic on POSIX), so a crash mid-write leaves the previous checkpoint intact.

Loading uses ``torch.load(..., weights_only=True)``: a file carrying a pickled object that would
run code is refused, not executed, and a truncated or corrupt file gives a
:class:`CheckpointError` that says so.
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "capture_rng_state",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]

FORMAT_VERSION = 1
_REQUIRED = ("format_version", "step", "model", "optimizer", "rng", "config")


class CheckpointError(RuntimeError):
    """A checkpoint could not be loaded (truncated, corrupt, tampered with, or incompatible)."""


def capture_rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Every RNG state as tensors and plain values (loadable with ``weights_only=True``).

    Args:
        generators: named ``torch.Generator`` objects owned by the caller.
    """
    np_state = np.random.get_state()  # noqa: NPY002  (the global legacy RNG is what user code seeds)
    assert isinstance(np_state, tuple)  # the legacy MT19937 tuple
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None) -> None:
    """Inverse of :func:`capture_rng_state`; the generators are restored in place."""
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["cached_gaussian"])
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    saved = state.get("generators", {})
    for name, g in (generators or {}).items():
        if name not in saved:
            raise CheckpointError(f"checkpoint has no state for generator {name!r}; it holds {sorted(saved)}")
        g.set_state(saved[name])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (temporary file, fsync, ``os.replace``).

    ``payload`` must hold only tensors and plain containers (checked by loading rules later).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format_version": FORMAT_VERSION, **payload}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, refusing anything unsafe.

    Raises:
        CheckpointError: the file is missing, truncated or corrupt, carries objects other than
            tensors and plain containers (e.g. a pickled callable that would run code), or lacks
            the expected entries.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing to load {path}: it contains pickled objects other than tensors and plain "
            f"containers (a tampered or foreign file could run code when unpickled). Detail: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated or corrupt ({str(exc).splitlines()[0]})"
        ) from exc
    if not isinstance(payload, dict) or any(k not in payload for k in _REQUIRED):
        raise CheckpointError(f"{path} is not a gumbelkit checkpoint (expected entries {list(_REQUIRED)})")
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {payload['format_version']}, this version reads {FORMAT_VERSION}"
        )
    return payload
