"""The library / applications split: ``import gumbelkit`` needs torch and numpy only, and the
library never imports the applications layer (``gumbelkit.apps``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import gumbelkit

PACKAGE = Path(gumbelkit.__file__).parent
#: What the applications extra brings; the library must work without any of it.
APP_ONLY = ("matplotlib", "scipy", "tqdm", "zarr", "pureml", "sklearn")


def _library_files() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "apps" not in p.relative_to(PACKAGE).parts]


def test_library_modules_never_import_apps_or_app_dependencies_at_module_level() -> None:
    offenders = []
    for path in _library_files():
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only: a function may import matplotlib lazily
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.startswith("gumbelkit.apps") or name.split(".")[0] in APP_ONLY:
                    offenders.append(f"{path.relative_to(PACKAGE)}: {name}")
    assert not offenders, offenders


def test_import_gumbelkit_works_with_the_app_dependencies_missing() -> None:
    # A fresh interpreter in which importing any app-only package fails, as in an environment
    # with only torch and numpy installed; the README's core calls must still work.
    blocked = ", ".join(repr(n) for n in APP_ONLY)
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ({blocked},):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Block())
import torch, gumbelkit
from gumbelkit import diagnostics, distributions, estimators, functional, nn, noise, schedules
logits = torch.randn(4, 6, requires_grad=True)
y = gumbelkit.gumbel_softmax(logits, tau=0.5, hard=True)
y.sum().backward()
assert logits.grad is not None
assert not any(m.split('.')[0] in ({blocked},) for m in sys.modules), sorted(sys.modules)
assert "gumbelkit.apps" not in sys.modules
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_cli_without_the_apps_extra_says_what_to_install() -> None:
    code = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'matplotlib':
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block())
from gumbelkit.apps.cli import main
sys.exit(main(["tour", "--quick"]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert 'pip install "gumbelkit[apps]"' in out.stderr
    assert "matplotlib" in out.stderr
