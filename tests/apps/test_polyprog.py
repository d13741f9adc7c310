"""Smoke tests of `gumbelkit estimators <benchmark>`: each subcommand runs tiny (--quick)."""

from __future__ import annotations

import argparse
import json

import pytest

from gumbelkit.apps import cli
from gumbelkit.apps.polyprog import bench

SMOKED = ("polyprog", "qp", "exact", "anneal")


def _subcommands() -> set[str]:
    parser = bench._parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def test_every_subcommand_has_a_smoke_test() -> None:
    assert _subcommands() == set(SMOKED)


@pytest.mark.parametrize("name", SMOKED)
def test_subcommand_quick(name: str, tmp_path) -> None:
    assert cli.main(["estimators", name, "--quick", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / f"{name}.json").read_text())
    assert payload["benchmark"] == name and payload["quick"] is True and payload["results"]
    md = (tmp_path / f"{name}.md").read_text()
    assert md.startswith("# ") and "|" in md
    if name == "qp":
        assert (tmp_path / "qp.png").stat().st_size > 0


def test_polyprog_merge_and_bad_estimator(tmp_path) -> None:
    out = str(tmp_path)
    bench.main(["polyprog", "--quick", "--out", out, "--estimators", "st", "--p", "2"])
    bench.main(["polyprog", "--quick", "--out", out, "--estimators", "reinmax", "--p", "2", "--merge"])
    rows = json.loads((tmp_path / "polyprog.json").read_text())["results"]
    assert {r["estimator"] for r in rows} == {"st", "reinmax"}
    (tmp_path / "polyprog.md").unlink()
    bench.main(["polyprog", "--render", "--out", out])
    assert "| reinmax |" in (tmp_path / "polyprog.md").read_text()
    assert bench.main(["polyprog", "--quick", "--out", str(tmp_path / "new"), "--estimators", "nope"]) == 2


def test_default_output_is_a_run_directory_and_nothing_is_replaced_unless_asked(
        tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "estimators").mkdir(parents=True)
    committed = tmp_path / "results" / "estimators" / "qp.json"
    committed.write_text('{"committed": true}')
    assert cli.main(["estimators", "qp", "--quick"]) == 0
    assert (tmp_path / "runs" / "estimators" / "qp.json").exists()  # the default: a run directory
    assert committed.read_text() == '{"committed": true}'  # the committed result is untouched
    before = (tmp_path / "runs" / "estimators" / "qp.json").read_text()
    capsys.readouterr()
    assert cli.main(["estimators", "qp", "--quick"]) == 2  # an earlier run is not replaced...
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["gumbelkit estimators qp: error: runs/estimators/qp.json already exists; pass --overwrite to "
                   "replace it, or choose another --out"]
    assert (tmp_path / "runs" / "estimators" / "qp.json").read_text() == before
    assert cli.main(["estimators", "qp", "--quick", "--out", "results/estimators"]) == 2  # ...nor a committed one
    assert committed.read_text() == '{"committed": true}'
    assert cli.main(["estimators", "qp", "--quick", "--overwrite"]) == 0  # unless asked


@pytest.mark.parametrize("name", SMOKED)
def test_help_shows_every_flag_with_its_default(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.main([name, "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # unwrapped
    assert "(default: runs/estimators)" in text and "--overwrite" in text and "(default: 1)" in text
    parser = bench._parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    for action in sub._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, action.dest  # every flag says what it does
