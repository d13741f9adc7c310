"""Figures and tables of the architecture-search application (matplotlib's object API)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def teacher_table(s: dict[str, Any]) -> str:
    """Markdown: recovery rates and the teacher x student confusion matrix."""
    ops = s["ops"]
    lines = [
        f"# Teacher-student: {s['teachers']} teachers, {s['edges']} edges",
        "",
        f"Commit `{s['commit'][:10]}`; command `{s['command']}`.",
        "",
        "| edges | recovered % |",
        "|---|---:|",
        f"| all | {_pct(s['recovered_all'])} |",
        f"| teacher op parametric | {_pct(s['recovered_parametric'])} |",
        f"| teacher op parameter-free ({', '.join(s['parameter_free'])}) | {_pct(s['recovered_parameter_free'])} |",
        f"| teacher op parameter-free, student op parameter-free | {_pct(s['parameter_free_as_parameter_free'])} |",
        "",
        "Confusion (rows: teacher's operation, columns: student's):",
        "",
        "| teacher \\ student | " + " | ".join(ops) + " |",
        "|---|" + "---:|" * len(ops),
    ]
    for name, row in zip(ops, s["confusion"], strict=True):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _figure(figsize: tuple[float, float]) -> Any:
    from matplotlib.figure import Figure  # the object API: no global backend switch

    return Figure(figsize=figsize, layout="constrained")


def draw_cell(ax: Any, genotype: Sequence[int], ops: Sequence[str], num_nodes: int, title: str = "") -> None:
    """Draw a cell: nodes on an arc, one arrow per edge labelled with its operation (``none``
    edges are left out, as they do not exist)."""
    import math

    from gumbelkit.apps.nas.model import cell_edges

    pos = {j: (math.cos(math.pi * (1 - j / (num_nodes - 1))), 0.6 * math.sin(math.pi * j / (num_nodes - 1)))
           for j in range(num_nodes)}
    colors = {"skip": "#3182bd", "conv1x1": "#31a354", "conv3x3": "#006d2c", "avgpool3x3": "#e6550d"}
    for (i, j), g in zip(cell_edges(num_nodes), genotype, strict=True):
        op = ops[int(g)]
        if op == "none":
            continue
        (x0, y0), (x1, y1) = pos[i], pos[j]
        rad = 0.3 if j - i > 1 else 0.0
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops={"arrowstyle": "-|>", "color": colors.get(op, "#636363"), "lw": 2,
                                "shrinkA": 12, "shrinkB": 12, "connectionstyle": f"arc3,rad={rad}"})
        # a point of matplotlib's arc3 curve, the quadratic Bezier with control point
        # M + rad * (dy, -dx); crossing curved edges (0 -> 2, 1 -> 3) get their labels away from the
        # crossing at the middle
        cx, cy = (x0 + x1) / 2 + rad * (y1 - y0), (y0 + y1) / 2 - rad * (x1 - x0)
        t = 0.5 if rad == 0.0 or (i == 0 and j == num_nodes - 1) else 0.3
        mx = (1 - t) ** 2 * x0 + 2 * t * (1 - t) * cx + t**2 * x1
        my = (1 - t) ** 2 * y0 + 2 * t * (1 - t) * cy + t**2 * y1
        ax.text(mx, my, op, ha="center", va="center", fontsize=8, color=colors.get(op, "#636363"),
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})
    for j, (x, y) in pos.items():
        ax.scatter([x], [y], s=420, color="#f0f0f0", edgecolor="#252525", zorder=3)
        ax.text(x, y, "in" if j == 0 else ("out" if j == num_nodes - 1 else str(j)), ha="center", va="center",
                fontsize=8, zorder=4)
    ax.set_xlim(-1.35, 1.35)
    ax.set_ylim(-0.75, 0.95)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)


def alpha_curves(fig: Any, history: list[dict[str, Any]], ops: Sequence[str], edge_names: Sequence[str]) -> None:
    """One panel per edge: softmax(alpha) of every operation against the step; the last panel: tau."""
    steps = [h["step"] for h in history]
    n_edges = len(edge_names)
    cols = 4 if n_edges + 1 > 4 else n_edges + 1
    rows = -(-(n_edges + 1) // cols)
    axes = fig.subplots(rows, cols, sharex=True, squeeze=False).ravel()
    for e in range(n_edges):
        ax = axes[e]
        for k, op in enumerate(ops):
            ax.plot(steps, [h["probs"][e][k] for h in history], label=op, lw=1.3)
        ax.set_title(f"edge {edge_names[e]}", fontsize=9)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left")
    ax = axes[n_edges]
    ax.plot(steps, [h["tau"] for h in history], color="black")
    ax.set_title("tau (linear 10 -> 0.1)", fontsize=9)
    ax.grid(alpha=0.3)
    for ax in axes[n_edges + 1 :]:
        ax.axis("off")
    for ax in axes[-cols:]:
        ax.set_xlabel("step")


def gdas_figures(summary: dict[str, Any], out: Path) -> dict[str, str]:
    """``alpha_tau.png``, ``cell.png`` and ``retrain.png`` for ``gumbelkit search gdas``."""
    from gumbelkit.apps.nas.model import cell_edges

    out.mkdir(parents=True, exist_ok=True)
    ops, n = summary["ops"], summary["num_nodes"]
    names = [f"{i}->{j}" for i, j in cell_edges(n)]
    paths = {}
    fig = _figure((11, 5))
    alpha_curves(fig, summary["searches"][0]["history"], ops, names)
    fig.suptitle("GDAS search (seed 0): softmax(alpha) per edge and the temperature", fontsize=10)
    fig.savefig(out / "alpha_tau.png", dpi=110)
    paths["alpha_tau"] = str(out / "alpha_tau.png")

    searches = summary["searches"]
    fig = _figure((3.6 * len(searches), 2.8))
    axes = fig.subplots(1, len(searches), squeeze=False).ravel()
    for ax, s in zip(axes, searches, strict=True):
        draw_cell(ax, s["genotype"], ops, n, f"found by GDAS, search seed {s['seed']}")
    fig.savefig(out / "cell.png", dpi=110)
    paths["cell"] = str(out / "cell.png")

    fig = _figure((6.5, 3.4))
    ax = fig.subplots()
    groups = [("found", "GDAS cell(s)"), ("random", "random cells"), ("allconv", "all conv3x3")]
    for x, (key, _) in enumerate(groups):
        g = summary["groups"][key]
        if not g["n"]:
            continue
        accs = [100 * a for a in g["test_acc"]]
        ax.scatter([x] * len(accs), accs, color="#636363", s=14, zorder=3)
        ax.errorbar([x + 0.15], [100 * g["test_acc_mean"]], yerr=[100 * g["test_acc_std"]], fmt="o", color="#d95f0e",
                    capsize=4)
    ax.set_xticks(range(len(groups)), [label for _, label in groups])
    ax.set_ylabel("test accuracy %")
    ax.set_title(f"retrained from scratch on {summary['protocol']['dataset']} (mean +- std over cells x seeds)", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    fig.savefig(out / "retrain.png", dpi=110)
    paths["retrain"] = str(out / "retrain.png")
    return paths


def seed_spread(summary: dict[str, Any]) -> float:
    """Standard deviation of test accuracy over the retraining seeds of one cell, averaged over cells."""
    import statistics

    stds = [statistics.stdev(r["test_acc"] for r in c["runs"]) for c in summary["cells"].values() if len(c["runs"]) > 1]
    return statistics.fmean(stds) if stds else 0.0


def gdas_table(summary: dict[str, Any]) -> str:
    """Markdown: the found cells, every retrained cell per seed, the groups."""
    p = summary["protocol"]
    g = summary["groups"]
    lines = [
        f"# GDAS on {p['dataset']} ({p['size'] or 'native'} px): search, then retraining from scratch",
        "",
        f"Cell: {summary['num_nodes']} nodes, operations {', '.join(summary['ops'])}; {p['channels']} channels, "
        f"{p['stages']} stage(s) x {p['cells_per_stage']} cell(s). Search: {p['search_epochs']} epochs on "
        f"{p['search_train_subset'] or p['train_subset'] or 'all'} training images (weights) and "
        f"{p['valid_subset'] or 'all'} validation images (alpha), tau {p['tau0']} -> {p['tau_end']}, alpha Adam lr "
        f"{p['arch_lr']}. Retraining: {p['retrain_epochs']} epochs on {p['train_subset'] or 'all'} training images, "
        f"SGD lr {p['retrain_lr']} (cosine), {p['retrain_seeds']} seeds; test on "
        f"{p['test_subset'] or 'all'} test images. Commit `{summary['commit'][:10]}`; command `{summary['command']}`.",
        "",
        "| cells | test accuracy % (mean +- std) | n |",
        "|---|---:|---:|",
    ]
    for key, label in (("found", "found by GDAS"), ("random", "random"), ("allconv", "all conv3x3")):
        lines.append(f"| {label} | {100 * g[key]['test_acc_mean']:.2f} +- {100 * g[key]['test_acc_std']:.2f} | {g[key]['n']} |")
    spread = seed_spread(summary)
    lines += ["", f"Found minus random: {100 * summary['found_minus_random']:.2f} points. Seed spread (standard "
              f"deviation over the retraining seeds of one cell, averaged over the cells): {100 * spread:.2f} points; "
              f"the larger of the two groups' standard deviations (cells and seeds together): "
              f"{100 * summary['seed_spread']:.2f} points.", "",
              "| cell | genotype | test accuracy % per seed |", "|---|---|---|"]
    for name, c in summary["cells"].items():
        per = ", ".join(f"{100 * r['test_acc']:.2f}" for r in c["runs"])
        lines.append(f"| {name} | `{c['genotype_str']}` | {per} |")
    return "\n".join(lines) + "\n"


def bench_figure(table: dict[str, Any], compare: dict[str, Any], out: Path) -> str:
    """The 64 architectures sorted by mean test accuracy, with every method's returned cells."""
    rows = sorted(table["rows"], key=lambda r: -r["test_mean"])
    order = {tuple(r["genotype"]): i for i, r in enumerate(rows)}
    fig = _figure((8, 3.8))
    ax = fig.subplots()
    ax.plot(range(1, len(rows) + 1), [100 * r["test_mean"] for r in rows], color="#969696", lw=1.5,
            label="all architectures (mean of seeds)")
    markers = {"gdas": ("o", "#d95f0e"), "darts": ("s", "#3182bd"), "reinforce": ("^", "#31a354"),
               "random": ("x", "#636363")}
    for k, (method, results) in enumerate(compare["results"].items()):
        m, c = markers.get(method, ("d", "black"))
        xs = [order[tuple(r["genotype"])] + 1 for r in results]
        ys = [100 * r["test_mean"] - 1.5 * (k + 1) for r in results]
        ax.scatter(xs, ys, marker=m, color=c, label=f"{method} (per seed)", s=28)
    ax.set_xlabel("rank of the architecture (by mean test accuracy)")
    ax.set_ylabel("test accuracy %")
    ax.set_title("Exhaustive 64-architecture benchmark: where each search lands "
                 "(markers offset below the curve)", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench_ranks.png"
    fig.savefig(path, dpi=110)
    return str(path)


def toy_table(summaries: dict[str, dict[str, Any]]) -> str:
    """Markdown: exact recovery of the toy per estimator (per master seed and in total)."""
    any_s = next(iter(summaries.values()))
    p = any_s["protocol"]
    lines = [
        "# Exact toy: six edges x five scalar maps, alpha trained alone",
        "",
        f"{p['replicates']} independent replicates per master seed, {p['steps']} steps, batch {p['batch_size']}, "
        f"Adam lr {p['lr']} (betas 0.5, 0.999), tau linear {p['tau0']} -> {p['tau_end']} (softmax: tau 1). "
        f"Commit `{any_s['commit'][:10]}`; commands `{'`, `'.join(s['command'] for s in summaries.values())}`.",
        "",
        "| estimator | architectures recovered exactly | % | per master seed |",
        "|---|---:|---:|---|",
    ]
    for name, s in summaries.items():
        per = ", ".join(f"{q['recovered']}/{q['replicates']}" for q in s["per_seed"])
        lines.append(f"| {name} | {s['recovered']}/{s['replicates']} | {100 * s['exact_recovery']:.1f} | {per} |")
    return "\n".join(lines) + "\n"
