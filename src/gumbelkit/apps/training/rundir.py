"""The run directory: one run per directory, never overwritten without being asked.

A new run goes into an empty or missing directory. A non-empty one is refused unless the run
continues there (``--resume``) or replaces it (``--overwrite``: the previous run's files, listed
in :data:`RUN_FILES` and :data:`RUN_DIRS`, are deleted; other files are left alone).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from gumbelkit.apps.training.checkpoint import CHECKPOINT_NAME, remove_stale_temp_files
from gumbelkit.apps.training.config import CONFIG_NAME
from gumbelkit.apps.training.errors import RunDirectoryError
from gumbelkit.apps.training.metrics import METRICS_NAME

__all__ = ["RUN_DIRS", "RUN_FILES", "check_run_dir", "prepare_run_dir"]

#: Files a run writes (the training package's and the applications' conventional outputs).
RUN_FILES = (CHECKPOINT_NAME, CONFIG_NAME, METRICS_NAME, "results.json", "distributed.json")
#: Directories a run writes.
RUN_DIRS = ("figures", "tensorboard")


def check_run_dir(out_dir: str | Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse a run directory that cannot take this run (checks only; changes nothing).

    Raises:
        RunDirectoryError: ``out_dir`` (or a parent) is a file, or it holds files and the run
            neither resumes nor overwrites.
        OSError: the directory cannot be listed (names it).
    """
    path = Path(out_dir)
    for p in (path, *path.parents):
        if p.exists():
            if p.is_dir():
                break
            if p == path:
                raise RunDirectoryError(f"out_dir {path} exists and is not a directory")
            raise RunDirectoryError(f"out_dir {path} cannot be created: {p} is a file, not a directory")
    if resume or overwrite or not path.exists():
        return
    entries = sorted(e.name for e in path.iterdir())
    if entries:
        shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
        raise RunDirectoryError(
            f"out_dir {path} is not empty ({shown}); pass --resume to continue the run there, "
            "--overwrite to delete it and start over, or choose another --out-dir"
        )


def prepare_run_dir(out_dir: str | Path, *, overwrite: bool) -> list[str]:
    """Create ``out_dir``; with ``overwrite``, delete the previous run's files; remove stale
    temporary files of interrupted writes.

    Returns:
        Notes for the user (what was deleted or cleaned).

    Raises:
        OSError: naming the path that could not be created or deleted.
    """
    path = Path(out_dir)
    notes = []
    if overwrite and path.is_dir():
        deleted = []
        for name in RUN_FILES:
            if (path / name).is_file():
                (path / name).unlink()
                deleted.append(name)
        for name in RUN_DIRS:
            if (path / name).is_dir():
                shutil.rmtree(path / name)
                deleted.append(name + "/")
        if deleted:
            notes.append(f"--overwrite: deleted the previous run's {', '.join(deleted)} in {path}")
    path.mkdir(parents=True, exist_ok=True)
    stale = remove_stale_temp_files(path, (CHECKPOINT_NAME, CONFIG_NAME, METRICS_NAME))
    if stale:
        notes.append(f"removed {len(stale)} temporary file(s) left by an interrupted write: "
                     + ", ".join(p.name for p in stale))
    return notes
