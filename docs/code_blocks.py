"""Run every ```python block of markdown files, each as pasted into a fresh interpreter session.

    python docs/code_blocks.py README.md docs/*.md           # every block
    python docs/code_blocks.py --core README.md              # only blocks that need torch + numpy

Each block runs in a fresh namespace, in a temporary working directory (files it writes land
there). A block preceded by the line

    <!-- docs-test: skip (the reason) -->

is not run, and the reason is reported: such blocks need data or minutes. With ``--core`` the
blocks that import the applications layer or its dependencies (matplotlib, scipy, ...) are
skipped too, so the README's core examples can be checked in an environment holding only torch,
numpy and gumbelkit. Exit status 1 when any block fails. ``tests/test_docs.py`` runs this file.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

#: Top-level modules that come with the ``apps`` extra, not with the library.
APP_MODULES = ("matplotlib", "scipy", "tqdm", "sklearn", "zarr", "pureml")
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->")
FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\s*$")


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    code: str
    skip: str | None  # the reason, when marked to be skipped

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """Every ```python block of ``path`` with its skip reason (if marked)."""
    out: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None or not m.group("lang"):
            i += 1
            continue
        start, lang = i, m.group("lang")
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        if lang == "python":
            prev = next((ln for ln in reversed(lines[:start]) if ln.strip()), "")
            mark = SKIP.search(prev)
            out.append(Block(path, start + 1, "\n".join(lines[start + 1 : j]) + "\n",
                             mark.group("reason") if mark else None))
        i = j + 1
    return out


def needs_apps(code: str) -> bool:
    """Whether the block imports the applications layer or one of its dependencies."""
    for node in ast.walk(ast.parse(code)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            if name.split(".")[0] in APP_MODULES or name.startswith("gumbelkit.apps"):
                return True
    return False


def run_block(block: Block) -> str | None:
    """Run one block in a fresh namespace and a temporary directory; the traceback on failure."""
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="gumbelkit-docs-") as tmp:
        os.chdir(tmp)
        try:
            code = compile(block.code, block.where, "exec")
            exec(code, {"__name__": "__main__"})
        except Exception:  # reported with the block's location
            return traceback.format_exc()
        finally:
            os.chdir(cwd)
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run the ```python blocks of markdown files.")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--core", action="store_true",
                   help="skip blocks that need the apps extra (check a torch + numpy install)")
    args = p.parse_args(argv)
    failed = ran = 0
    for path in args.files:
        for block in blocks(path):
            reason = block.skip or ("needs the apps extra" if args.core and needs_apps(block.code) else None)
            if reason:
                print(f"skip  {block.where}: {reason}")
                continue
            t0 = time.perf_counter()
            error = run_block(block)
            ran += 1
            if error is None:
                print(f"ok    {block.where} ({time.perf_counter() - t0:.1f} s)")
            else:
                failed += 1
                print(f"FAIL  {block.where}\n{error}")
    print(f"{ran - failed} of {ran} blocks ran; {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
