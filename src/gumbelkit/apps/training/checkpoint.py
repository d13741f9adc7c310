"""Atomic, verified, safe-to-load checkpoints and the RNG states that make resumption exact.

A checkpoint is one ``torch.save`` archive holding only tensors and plain containers (dicts,
lists, tuples, numbers, strings): the model and optimizer ``state_dict``, the step, every RNG
state (torch, numpy, python, the loop's generator), the config as a dict, and a SHA-256 of all of
that (``sha256``: a canonical hash of the loaded content, so a flipped byte anywhere in the data is
caught; PyTorch's archive reader checks no checksum itself).

Writing: to a temporary file ``.<name>.<random>.tmp`` in the same directory, flushed and
fsynced, then renamed over the old file with ``os.replace`` (atomic on POSIX): a crash mid-write
leaves the previous checkpoint intact, and the next start removes the temporary file
(:func:`remove_stale_temp_files`).

Loading uses ``torch.load(..., weights_only=True)`` on PyTorch archives only: a file carrying a
pickled object that would run code is refused, not executed. Every unreadable file raises a
:class:`CheckpointError` that says what it is (missing, empty, truncated, a Git LFS pointer, a
text file, not a checkpoint, unsafe, or modified after it was written).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import struct
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CHECKPOINT_NAME",
    "FORMAT_VERSION",
    "CheckpointError",
    "atomic_write_bytes",
    "atomic_write_text",
    "capture_rng_state",
    "content_hash",
    "load_checkpoint",
    "remove_stale_temp_files",
    "restore_rng_state",
    "save_checkpoint",
]

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 2  # 2: with the content hash; 1 (no hash) still loads, with a warning
_REQUIRED = ("format_version", "step", "model", "optimizer", "rng", "config")
_ZIP_MAGIC = b"PK\x03\x04"
_LFS_MAGIC = b"version https://git-lfs"


class CheckpointError(RuntimeError):
    """A checkpoint could not be loaded (what it is and why is in the message)."""


# ------------------------------------------------------------------------------ RNG states


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


# ------------------------------------------------------------------------------ the content hash


def _chunks(obj: Any) -> Iterator[bytes]:
    """A canonical byte stream of a checkpoint's content: type tags, keys in order, tensor bytes."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        yield f"T{t.dtype}{tuple(t.shape)}".encode()
        # every dtype as raw bytes (bfloat16 and friends have no numpy view)
        yield t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    elif isinstance(obj, dict):
        yield f"D{len(obj)}".encode()
        for k, v in obj.items():
            yield from _chunks(k)
            yield from _chunks(v)
    elif isinstance(obj, (list, tuple)):
        yield f"{'L' if isinstance(obj, list) else 'U'}{len(obj)}".encode()
        for v in obj:
            yield from _chunks(v)
    elif isinstance(obj, float):
        yield b"F" + struct.pack("<d", obj)  # exact, NaN payloads included
    elif obj is None or isinstance(obj, (bool, int, str, bytes)):
        text = repr(obj).encode()
        yield f"{type(obj).__name__}{len(text)}:".encode() + text
    elif isinstance(obj, (torch.dtype, torch.device, torch.Size)):
        yield f"O{obj!r}".encode()
    else:
        raise TypeError(f"a checkpoint may hold only tensors and plain containers, got {type(obj).__name__}")


def content_hash(payload: dict[str, Any]) -> str:
    """SHA-256 (hex) of everything in ``payload`` except its ``sha256`` entry."""
    h = hashlib.sha256()
    for chunk in _chunks({k: v for k, v in payload.items() if k != "sha256"}):
        h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------ atomic writes


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def _write_error(path: Path, exc: OSError) -> OSError:
    """The same OSError, naming the destination (a failing fsync or rename names none)."""
    return type(exc)(exc.errno, exc.strerror or str(exc), str(path))


def _file_mode() -> int:
    """The mode ``open()`` would give a new file (mkstemp's own is 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | Path, data: bytes | None = None, *, writer: Any = None) -> None:
    """Write ``path`` all at once: a temporary file, fsync, then ``os.replace``.

    Either ``data`` or ``writer(fh)`` supplies the content. On any error the destination is
    unchanged, the temporary file is removed, and an ``OSError`` names ``path``.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), _file_mode())
            if writer is not None:
                writer(fh)
            else:
                fh.write(data or b"")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise _write_error(path, exc) from exc
    except BaseException:
        _unlink_quietly(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _unlink_quietly(path: str | Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove_stale_temp_files(directory: str | Path, names: tuple[str, ...]) -> list[Path]:
    """Delete the temporary files an interrupted :func:`atomic_write_bytes` of ``names`` left.

    Only files named ``.<name>.<random>.tmp`` for a ``name`` in ``names`` are touched.

    Returns:
        The files removed.
    """
    directory = Path(directory)
    removed = []
    for name in names:
        for stale in directory.glob(f".{name}.*.tmp"):
            if stale.is_file():
                stale.unlink()
                removed.append(stale)
    return removed


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (with its format version and content hash) to ``path`` atomically.

    ``payload`` must hold only tensors and plain containers.

    Raises:
        OSError: the write failed (disk full, permissions, ...); names ``path``. The previous
            checkpoint is unchanged.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format_version": FORMAT_VERSION, **payload}
    payload["sha256"] = content_hash(payload)
    atomic_write_bytes(path, writer=lambda fh: torch.save(payload, fh))


# ------------------------------------------------------------------------------ loading


def _describe_foreign(path: Path, head: bytes, size: int) -> str:
    if head.startswith(_LFS_MAGIC):
        return (f"{path} is a Git LFS pointer ({size} bytes), not the checkpoint itself; fetch the "
                "file with `git lfs pull`")
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return (f"{path} is a pickle file (e.g. the legacy PyTorch format), not a gumbelkit "
                "checkpoint; it is not loaded")
    text = head.decode("utf-8", errors="replace").rstrip("\ufffd")  # the cut may split a character
    if text and all(c.isprintable() or c in "\n\r\t" for c in text):
        return f"{path} is a text file ({size} bytes, starting {text[:24]!r}), not a checkpoint"
    return f"{path} is not a checkpoint: not a PyTorch archive ({size} bytes of unknown binary data)"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, refusing anything unsafe or altered.

    Raises:
        CheckpointError: with a one-line message saying what the file is: missing, empty,
            truncated, a Git LFS pointer, a text or other foreign file, an archive with
            objects other than tensors and plain containers (which would run code when
            unpickled), an archive without the checkpoint's entries, or one whose content
            does not match its SHA-256 (modified or corrupted after it was written).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file")
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from exc
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): its write never started "
                              "(e.g. a full disk), so it holds nothing to resume from")
    if not head.startswith(_ZIP_MAGIC):
        raise CheckpointError(_describe_foreign(path, head, size))
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path} is truncated ({size} bytes; the archive's end is "
                              "missing: an interrupted copy or write)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing to load {path}: it holds pickled objects other than tensors and plain "
            "containers, which could run code when unpickled (a tampered or foreign file)"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt: a damaged PyTorch archive "
                              f"({type(exc).__name__})") from exc
    if not isinstance(payload, dict) or any(k not in payload for k in _REQUIRED):
        raise CheckpointError(f"{path} is a PyTorch file but not a gumbelkit checkpoint "
                              f"(expected entries {list(_REQUIRED)})")
    version = payload["format_version"]
    if version == 1:
        warnings.warn(f"{path} is a format-1 checkpoint without a content hash; loaded unverified",
                      stacklevel=2)
    elif version != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {version!r}; this version reads 1 and {FORMAT_VERSION}")
    else:
        stored = payload.get("sha256")
        try:
            actual = content_hash(payload)
        except TypeError as exc:
            raise CheckpointError(f"{path} holds unexpected content ({exc})") from exc
        if stored != actual:
            raise CheckpointError(
                f"checkpoint {path} was modified or corrupted after it was written: its content "
                f"does not match its SHA-256 (stored {str(stored)[:12]}..., computed {actual[:12]}...)"
            )
    return payload
