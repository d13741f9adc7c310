"""The ``gumbelkit`` command: help, dispatch, errors, and a smoke test for every subcommand."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from gumbelkit.apps import cli

# Every top-level command -> the test that runs it tiny. Adding a command to cli.COMMANDS without
# a smoke test (and an entry here) fails test_every_command_has_a_smoke_test.
SMOKE_TESTS = {
    "tour": "test_tour.py:test_report_files",  # runs `gumbelkit tour --quick` via cli.main
    "train": "test_vae.py:test_cli_smoke_and_resume",  # `gumbelkit train vae`; apps: test_vae.py
    "estimators": "test_polyprog.py:test_subcommand_quick",  # every benchmark, --quick
    "search": "test_nas.py:test_search_cli_smoke",  # `gumbelkit search gdas --quick`; the other
    # experiments of `gumbelkit search`: test_nas.py:test_{toy_cli,gdas_recovers_a_teachers_operations,bench_cli_smoke}
    "dalle": "test_dvae.py:test_classifier_and_dalle_quick",  # `gumbelkit dalle sample` and `evaluate`
}
# Every application of `gumbelkit train <app>` -> the test that runs it tiny and checks a number.
APP_SMOKE_TESTS = {
    "vae": "test_vae.py:test_cli_smoke_and_resume",
    "dvae": "test_dvae.py:test_train_dvae_quick_beats_independent_pixels",
    "dalle": "test_dvae.py:test_classifier_and_dalle_quick",
    "classifier": "test_dvae.py:test_classifier_and_dalle_quick",
    "l2x": "test_select.py:test_l2x_cli_smoke",
    "select": "test_select.py:test_select_cli_smoke",
    "glimpse": "test_select.py:test_glimpse_cli_smoke_with_evaluator",
    "textgan": "test_textgan.py:test_quick_smoke_beats_random_and_rescores",
    "nas": "test_nas.py:test_toy_cli",  # `gumbelkit train nas toy` (= `gumbelkit search toy`)
}
TESTS = Path(__file__).parent


def _assert_defined(name: str, target: str) -> None:
    filename, func = target.split(":")
    tree = ast.parse((TESTS / filename).read_text())
    defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert func in defined, f"smoke test of {name!r} missing: {target}"


def test_every_command_has_a_smoke_test() -> None:
    assert set(cli.COMMANDS) == set(SMOKE_TESTS)
    for name, target in SMOKE_TESTS.items():
        _assert_defined(name, target)


def test_every_application_has_a_smoke_test() -> None:
    from gumbelkit.apps import APPS

    assert set(APPS) == set(APP_SMOKE_TESTS)
    for name, target in APP_SMOKE_TESTS.items():
        _assert_defined(name, target)


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_target_imports(name: str) -> None:
    module_name, func = cli.COMMANDS[name][0].split(":")
    assert callable(getattr(importlib.import_module(module_name), func))


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["no-such-command"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "no-such-command" in err and "tour" in err


@pytest.mark.parametrize("module", ["gumbelkit", "gumbelkit.apps.cli"])
def test_python_dash_m_runs_the_command(module: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "gumbelkit" in out and "tour" in out
