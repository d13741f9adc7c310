"""Write ``results/<app>/showcase.json`` for l2x, select and glimpse from their committed tables.

The tour's use-case section shows each application's ``showcase.json`` (headline numbers next to
the published ones, one figure); nothing is trained. Each file is built from
``results/<app>/table.json`` and the per-run files in ``results/<app>/runs/`` (written by
``benchmarks/select_tables.py``)::

    python -m gumbelkit.apps.select.showcase            # all three, under ./results
    python -m gumbelkit.apps.select.showcase --results path/to/results l2x
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["APPS", "build", "main", "write"]

APPS = ("l2x", "select", "glimpse")
CHEN_2018 = "Chen, Song, Wainwright, Jordan, Learning to Explain (L2X), ICML 2018"
ABID_2019 = "Abid, Balin, Zou, Concrete Autoencoders, ICML 2019"
SHOWCASE_COMMAND = "python -m gumbelkit.apps.select.showcase"


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _runs(folder: Path) -> list[dict[str, Any]]:
    return [_read(p) for p in sorted((folder / "runs").glob("*.json"))]


def _commit(runs: list[dict[str, Any]]) -> str | None:
    """The commit the runs ran at (comma-separated if they differ)."""
    commits = sorted({r.get("commit") or "unknown" for r in runs})
    return ", ".join(commits) if commits else None


def _row(metric: str, ours: float, published: float | None = None, source: str | None = None) -> dict[str, Any]:
    return {"metric": metric, "ours": round(ours, 4), "published": published, "published_source": source}


def _l2x(table: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = []
    for d, b in table["best"].items():
        n = len(table["cells"][f"{d}/{b['selector'].split(' = ')[0]}"]["seeds"])
        rows.append(_row(f"L2X {d}: median rank of the relevant features, best selector {b['selector']} "
                         f"(optimum {b['optimum']}, lower is better; {n} seed{'s' if n > 1 else ''})",
                         b["median_rank_mean"]))
    datasets = ", ".join(table["best"])
    return {
        "summary": f"L2X synthetic data ({datasets}), 4 k-subset selectors, Chen et al.'s full budget "
                   "(10^6 training points, one epoch, 10^5 validation points)",
        "train_command": "python benchmarks/select_tables.py run l2x --datasets DATASET --seeds 0 1 2 3 4",
        "headline": rows,
        "figure": {"png": "figures/median_ranks.png",
                   "caption": "Median rank of the relevant features per selector and dataset (dots: seeds; "
                              "bars: sd over validation points; dashed: a perfect explainer)."},
        "published_source": f"{CHEN_2018}: the datasets and the optimum (a perfect explainer's median rank)",
    }


def _select(table: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = []
    figure = None
    for r in table["rows"]:
        if r["selector"] != "concrete":
            continue
        rows.append(_row(f"concrete autoencoder, {r['dataset']}: ExtraTrees accuracy (%) on the 50 selected pixels "
                         f"({r['epochs']:.0f} epochs, {len(r['seeds'])} seed)",
                         100 * r["extratrees_accuracy"], 100 * r["published"], ABID_2019))
        rows.append(_row(f"{r['dataset']}: the same classifier on 50 random pixels (%)", 100 * r["random_extratrees"]))
        if figure is None:
            figure = {"png": f"figures/{r['dataset']}-concrete-seed{r['seeds'][0]}.png",
                      "caption": f"The 50 pixels the concrete autoencoder selected on {r['dataset']}."}
    out: dict[str, Any] = {
        "summary": "concrete autoencoder (Abid et al.'s protocol): 50 pixels of MNIST / Fashion-MNIST, 300 epochs",
        "train_command": "python benchmarks/select_tables.py run select --datasets mnist fashion_mnist --seeds 0",
        "headline": rows,
    }
    if figure is not None:
        out["figure"] = figure
    return out


def _glimpse(table: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = []
    figure = None
    for d in ("mnist", "fashion_mnist"):
        cands = [r for r in table["rows"] if r["dataset"] == d and r["k"] == 10 and r.get("evalx_accuracy") is not None]
        if not cands:
            continue
        b = max(cands, key=lambda r: r["evalx_accuracy"])
        through = "trained through the frozen evaluator" if b["train_against"] == "evaluator" else "own classifier"
        rows.append(_row(f"glimpses, {d}, 10 of 49 patches: accuracy (%) by the EVAL-X evaluator, "
                         f"{b['selector']} selector ({through}, {b['epochs']:.0f} epochs, 1 seed)",
                         100 * b["evalx_accuracy"]))
        rows.append(_row(f"{d}: the same evaluator on 10 random patches (%)", 100 * b["random_patches_evalx"]))
        rows.append(_row(f"{d}: the same evaluator on the 10 centre patches (%)", 100 * b["centre_patches_evalx"]))
        if figure is None:
            tag = "-realx" if b["train_against"] == "evaluator" else ""
            figure = {"png": f"figures/{d}-{b['selector']}{tag}-k10-seed{b['seed']}.png",
                      "caption": f"The 10 patches of 49 that the {b['selector']} selector chose on {d} test images."}
    out: dict[str, Any] = {
        "summary": "glimpses: classify an image from k of its 49 4x4 patches; EVAL-X evaluator 10 epochs, "
                   "selectors 3 epochs, one seed (a reduced budget; no published protocol)",
        "train_command": ("python benchmarks/select_tables.py run glimpse --datasets mnist fashion_mnist "
                          "--selectors SELECTOR --ks K (each run's own command is in results/glimpse/runs)"),
        "headline": rows,
    }
    if figure is not None:
        out["figure"] = figure
    return out


def build(app: str, results: Path) -> dict[str, Any] | None:
    """The showcase of ``app`` from ``results/<app>/table.json`` (None if no table is committed)."""
    if app not in APPS:
        raise ValueError(f"app must be one of {', '.join(APPS)}; got {app!r}")
    folder = results / app
    if not (folder / "table.json").is_file():
        return None
    table, runs = _read(folder / "table.json"), _runs(folder)
    body = {"l2x": _l2x, "select": _select, "glimpse": _glimpse}[app](table, runs)
    if not body["headline"]:
        return None
    return {"app": app, **body, "showcase_command": SHOWCASE_COMMAND, "git_commit": _commit(runs),
            "missing": table.get("missing", [])}


def write(app: str, results: Path) -> Path | None:
    """Write ``results/<app>/showcase.json``; returns its path (None when there is nothing to show)."""
    showcase = build(app, results)
    if showcase is None:
        return None
    path = results / app / "showcase.json"
    path.write_text(json.dumps(showcase, indent=1) + "\n", encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=SHOWCASE_COMMAND, description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("apps", nargs="*", metavar="APP", help=f"any of {', '.join(APPS)} (default: all)")
    p.add_argument("--results", type=Path, default=Path("results"), help="the results/ folder (default ./results)")
    args = p.parse_args(argv)
    bad = [a for a in args.apps if a not in APPS]
    if bad:
        p.error(f"APP must be one of {', '.join(APPS)}; got {', '.join(bad)}")
    for app in args.apps or APPS:
        path = write(app, args.results)
        print(f"{app}: " + (f"wrote {path}" if path else f"no table in {args.results / app}; nothing written"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
