"""The ``gumbelkit`` command: a thin dispatcher to the subsystems' own ``main(argv)``.

Subcommands are imported only when run, so ``gumbelkit --help`` is fast and one broken
application cannot break the others. The applications need the ``apps`` extra
(``pip install "gumbelkit[apps]"``); without it a command says exactly what to install.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> ("module:function", one-line help). Each function takes argv (list[str]) and
# returns an exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "tour": ("gumbelkit.apps.tour:main", "write the measured, illustrated report of the library's claims"),
    "train": ("gumbelkit.apps:main", "train an application (e.g. `gumbelkit train vae --help`)"),
    "search": (
        "gumbelkit.apps.nas.train:main",
        "architecture search with GDAS and its known-answer checks (e.g. `gumbelkit search gdas --help`)",
    ),
    "dalle": (
        "gumbelkit.apps.dvae.dalle:main",
        "images from a caption with a trained dVAE + prior (e.g. `gumbelkit dalle sample \"ankle boot\" --prior-dir DIR`)",
    ),
    "estimators": (
        "gumbelkit.apps.polyprog.bench:main",
        "run the published small estimator benchmarks (e.g. `gumbelkit estimators polyprog`)",
    ),
}


#: Top-level modules the applications import that the library itself does not need
#: (the ``apps`` extra in pyproject.toml).
EXTRA_MODULES = frozenset({"matplotlib", "scipy", "tqdm"})


def version() -> str:
    """``gumbelkit X.Y.Z (torch A.B.C)``: the package's and torch's versions."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        torch_version = dist_version("torch")
    except PackageNotFoundError:  # pragma: no cover  (torch is a dependency)
        torch_version = "not installed"
    from gumbelkit import __version__

    return f"gumbelkit {__version__} (torch {torch_version})"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gumbelkit",
        description="Gumbel-Max, Gumbel-Softmax and gradient estimators for discrete choices.",
        epilog="Each command has its own --help. Experiment commands write to a run directory "
        "under runs/ by default and refuse to replace an earlier run unless asked.",
    )
    p.add_argument("--version", action="version", version=version())
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gumbelkit`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not args or args[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    if args[0] == "--version":
        print(version())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        parser.error(f"unknown command {name!r}; choose from: {', '.join(COMMANDS)}")
    target, _ = COMMANDS[name]
    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in EXTRA_MODULES:
            raise
        print(
            f"gumbelkit {name}: error: this command needs the '{missing}' package, which comes "
            f"with the applications extra: pip install \"gumbelkit[apps]\"",
            file=sys.stderr,
        )
        return 2
    result = getattr(module, func_name)(rest)
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
