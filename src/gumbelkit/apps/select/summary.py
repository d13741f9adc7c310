"""Headline numbers of the selection applications, read from the committed ``results/`` tables.

Used by the tour's use-case section: nothing is trained here. Every value comes from
``results/l2x/table.json``, ``results/select/table.json`` and ``results/glimpse/table.json``
(written by ``benchmarks/select_tables.py render``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["RESULTS_ROOT", "headline"]

#: ``results/`` of the checkout this package runs from (absent in an installed wheel)
RESULTS_ROOT = Path(__file__).resolve().parents[4] / "results"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def headline(root: Path = RESULTS_ROOT) -> dict[str, Any] | None:
    """``{"rows": [(label, value)], "figure": Path | None, "caption": str, "numbers": {...}}`` or None
    when no table is committed."""
    rows: list[tuple[str, str]] = []
    numbers: dict[str, Any] = {}
    l2x = _read(root / "l2x" / "table.json")
    if l2x and l2x.get("best"):
        numbers["l2x_best"] = l2x["best"]
        for d, b in l2x["best"].items():
            rows.append((f"L2X synthetic, {d}: best median rank of the relevant features ({b['selector']})",
                         f"{b['median_rank_mean']:.3f} (optimum {b['optimum']})"))
    sel = _read(root / "select" / "table.json")
    if sel and sel.get("rows"):
        numbers["select"] = [{k: r[k] for k in ("dataset", "selector", "extratrees_accuracy", "published")}
                             for r in sel["rows"]]
        for r in sel["rows"]:
            if r["selector"] == "concrete":
                rows.append((f"concrete autoencoder, {r['dataset']}: ExtraTrees accuracy on 50 selected pixels",
                             f"{100 * r['extratrees_accuracy']:.1f}% (Abid et al.: {100 * r['published']:.1f}%)"))
    glimpse = _read(root / "glimpse" / "table.json")
    figure, caption = None, ""
    if glimpse and glimpse.get("rows"):
        best = [r for r in glimpse["rows"] if r["dataset"] == "mnist" and r["k"] == 10 and r.get("evalx_accuracy") is not None]
        if best:
            b = max(best, key=lambda r: r["evalx_accuracy"])
            numbers["glimpse_mnist_k10"] = b
            rows.append(("glimpses, MNIST, 10 of 49 patches: accuracy by the independent evaluator "
                         f"({b['selector']}, trained through {'the frozen evaluator' if b['train_against'] == 'evaluator' else 'its own classifier'})",
                         f"{100 * b['evalx_accuracy']:.1f}% (10 random patches: {100 * b['random_patches_evalx']:.1f}%, "
                         f"10 centre patches: {100 * b['centre_patches_evalx']:.1f}%)"))
            tag = "-realx" if b["train_against"] == "evaluator" else ""
            candidate = root / "glimpse" / "figures" / f"mnist-{b['selector']}{tag}-k10-seed{b['seed']}.png"
            if candidate.exists():
                figure = candidate
                caption = (f"gumbelkit train glimpse (committed results, not rerun): the 10 patches of 49 that the "
                           f"{b['selector']} selector chose on MNIST test images; an evaluator that never saw the "
                           f"selector classifies {100 * b['evalx_accuracy']:.1f}% of the test images from them.")
    if not rows:
        return None
    return {"rows": rows, "figure": figure, "caption": caption, "numbers": numbers}
