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
    with pytest.raises(ValueError, match="unknown estimator"):
        bench.main(["polyprog", "--quick", "--out", out, "--estimators", "nope"])
