"""The selection applications' tables: L2X synthetic, concrete pixel selection, glimpses.

``run`` trains a grid through each application's own command (one process, sequentially,
resumable: a configuration whose ``results/<app>/runs/<name>.json`` exists is skipped), and
copies every run's ``results.json`` there; ``render`` rebuilds ``results/<app>/table.md`` and
``table.json`` (and the figures) from those files only, and ``showcase.json`` (the tour's headline,
``python -m gumbelkit.apps.select.showcase``).

    python benchmarks/select_tables.py run l2x --datasets xor orange --seeds 0 1 2 3 4
    python benchmarks/select_tables.py run select --datasets mnist fashion_mnist
    python benchmarks/select_tables.py run glimpse --datasets mnist --selectors st_topk --ks 10
    python benchmarks/select_tables.py render l2x        # or select, glimpse, all
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path.cwd()  # results/ and runs/ of the directory it is run from (the repository root)
RESULTS = ROOT / "results"
RUNS = ROOT / "runs"

L2X_DATASETS = ("xor", "orange", "additive", "switch")
SUBSET_SELECTORS = ("st_topk", "relaxed_topk", "l2x", "simple")
SELECTOR_LABELS = {"st_topk": "ST top-k (exact k-hot, relaxed top-k gradient)",
                   "relaxed_topk": "relaxed top-k (Xie & Ermon)", "l2x": "max of k Concrete (L2X)",
                   "simple": "SIMPLE (exact k-subset, marginals gradient)", "concrete": "concrete AE (k Concrete rows)",
                   "sequential": "sequential ST-GS choices", "random": "random patches (trained)",
                   "centre": "centre patches (trained)"}
# distinct from the baselines' grey and orange in the glimpse figure
SELECTOR_COLORS = {"st_topk": "#08519c", "simple": "#31a354", "relaxed_topk": "#756bb1", "l2x": "#e7298a",
                   "sequential": "#8c6d31", "random": "#525252", "centre": "#a63603"}
# Chen et al. 2018 (L2X), the synthetic experiments: a perfect explainer's median rank
L2X_OPTIMUM = {"xor": 1.5, "orange": 2.5, "additive": 2.5, "switch": 3.0}
# Abid et al. 2019: ExtraTrees accuracy on the 50 selected pixels
CAE_PUBLISHED = {"mnist": 0.906, "fashion_mnist": 0.677}
IMAGE_DATASETS = ("mnist", "fashion_mnist")
# the full grids the tables are meant to show; render lists every configuration without a result
L2X_SEEDS = 5
SELECT_PLAN = tuple((d, s) for d in IMAGE_DATASETS for s in ("concrete", *SUBSET_SELECTORS))
GLIMPSE_PLAN = tuple((d, s, k) for d in IMAGE_DATASETS
                     for s, ks in (("st_topk", (2, 5, 10, 20)), ("relaxed_topk", (10,)), ("l2x", (10,)),
                                   ("simple", (10,)), ("sequential", (10,)), ("random", (10,)), ("centre", (10,)))
                     for k in ks)


def _missing_line(missing: Sequence[str]) -> list[str]:
    if not missing:
        return ["", "Every planned configuration has a result."]
    return ["", f"Not run (no result file; CPU budget): {'; '.join(missing)}."]


def _copy(out_dir: Path, dest: Path) -> bool:
    """Copy a run's ``results.json`` to ``dest`` and its figures next to the table."""
    src = out_dir / "results.json"
    if not src.exists():
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    for png in sorted((out_dir / "figures").glob("*.png")):
        fig_dir = dest.parent.parent / "figures"
        fig_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, fig_dir / (f"{dest.stem}.png" if png.stem in ("glimpses", "selected") else f"{dest.stem}_{png.name}"))
    return True


def collect_figures(app: str) -> None:
    """Copy the figures of finished runs (``runs/<app>/<name>/figures``) next to the table."""
    for res in sorted((RESULTS / app / "runs").glob("*.json")):
        out_dir = RUNS / app / res.stem
        if (out_dir / "results.json").exists():
            _copy(out_dir, res)


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _run_grid(app: str, main: Callable[[list[str]], int], configs: list[tuple[str, list[str]]]) -> int:
    failed = []
    for name, argv in configs:
        dest = RESULTS / app / "runs" / f"{name}.json"
        if dest.exists():
            print(f"== {app} {name}: done already ({dest.relative_to(ROOT)})", flush=True)
            continue
        out = RUNS / app / name
        print(f"== {app} {name}: gumbelkit train {app} {' '.join(argv)}", flush=True)
        code = main([*argv, "--out-dir", str(out.relative_to(ROOT)), "--no-progress", "--threads", "1"])
        if code != 0 or not _copy(out, dest):
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def run_l2x(args: argparse.Namespace) -> int:
    from gumbelkit.apps.select.l2x import main

    configs = [(f"{d}-{s}-seed{seed}", ["--dataset", d, "--selector", s, "--seed", str(seed)])
               for d in args.datasets or L2X_DATASETS for s in args.selectors or SUBSET_SELECTORS for seed in args.seeds]
    return _run_grid("l2x", main, configs)


def run_select(args: argparse.Namespace) -> int:
    from gumbelkit.apps.select.concrete import main

    configs = []
    for d in args.datasets or ("mnist", "fashion_mnist"):
        for s in args.selectors or ("concrete",):
            for seed in args.seeds:
                extra = [] if s == "concrete" else ["--batch-size", str(args.subset_batch)]
                configs.append((f"{d}-{s}-seed{seed}", ["--dataset", d, "--selector", s, "--seed", str(seed),
                                                         "--epochs", str(args.epochs), *extra]))
    return _run_grid("select", main, configs)


def run_glimpse(args: argparse.Namespace) -> int:
    from gumbelkit.apps.select.glimpse import main

    code = 0
    for d in args.datasets or ("mnist",):
        ev_name = f"{d}-evalx-seed0"
        code |= _run_grid("glimpse", main, [(ev_name, ["--dataset", d, "--selector", "evalx", "--seed", "0",
                                                       "--epochs", str(args.evaluator_epochs)])])
        evaluator = RUNS / "glimpse" / ev_name / "evaluator.pt"
        if not evaluator.exists():
            print(f"no evaluator at {evaluator}; run the evalx configuration first", file=sys.stderr)
            return 1
        configs = []
        for s in args.selectors or (*SUBSET_SELECTORS, "sequential", "random", "centre"):
            for k in args.ks:
                for seed in args.seeds:
                    epochs = args.sequential_epochs if s == "sequential" else args.epochs
                    against = args.train_against if s in (*SUBSET_SELECTORS, "sequential") else "own"
                    tag = "-realx" if against == "evaluator" else ""
                    configs.append((f"{d}-{s}{tag}-k{k}-seed{seed}",
                                    ["--dataset", d, "--selector", s, "--k", str(k), "--seed", str(seed),
                                     "--epochs", str(epochs), "--evaluator", str(evaluator.relative_to(ROOT)),
                                     "--train-against", against]))
        code |= _run_grid("glimpse", main, configs)
    return code


# --------------------------------------------------------------------------- render


def _load(app: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((RESULTS / app / "runs").glob("*.json"))]


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else math.nan)


def _commits(runs: list[dict[str, Any]]) -> str:
    commits = sorted({(r.get("commit") or "?")[:10] + ("+dirty" if r.get("dirty") else "") for r in runs})
    return ", ".join(commits)


def render_l2x() -> dict[str, Any]:
    runs = _load("l2x")
    cells: dict[str, dict[str, Any]] = {}
    for d in L2X_DATASETS:
        for s in SUBSET_SELECTORS:
            rs = [r for r in runs if r["dataset"] == d and r["selector"] == s]
            if not rs:
                continue
            means = [r["valid"]["median_rank_mean"] for r in rs]
            sds = [r["valid"]["median_rank_sd"] for r in rs]
            m, sd_seeds = _mean_sd(means)
            cells[f"{d}/{s}"] = {"dataset": d, "selector": s, "seeds": sorted(r["seed"] for r in rs),
                                 "median_rank_mean": m, "median_rank_sd_over_seeds": sd_seeds,
                                 "median_rank_sd_over_points": statistics.fmean(sds),
                                 "per_seed": means,
                                 "accuracy_topk_mask": statistics.fmean(r["valid"]["accuracy_topk_mask"] for r in rs),
                                 "exact_set_fraction": statistics.fmean(r["valid"]["exact_set_fraction"] for r in rs),
                                 "minutes_per_run": statistics.fmean(r["process_seconds"] for r in rs) / 60}
    best = {}
    for d in L2X_DATASETS:
        c = [v for v in cells.values() if v["dataset"] == d]
        if c:
            b = min(c, key=lambda v: v["median_rank_mean"])
            tied = [v["selector"] for v in c if v["median_rank_mean"] <= b["median_rank_mean"] + 5e-4]  # equal to 3 decimals
            best[d] = {"selector": " = ".join(tied), "median_rank_mean": b["median_rank_mean"], "optimum": L2X_OPTIMUM[d]}
    lines = ["| selector | " + " | ".join(f"{d} (optimum {L2X_OPTIMUM[d]})" for d in L2X_DATASETS) + " |",
             "|---|" + "---|" * len(L2X_DATASETS)]
    for s in SUBSET_SELECTORS:
        row = []
        for d in L2X_DATASETS:
            c = cells.get(f"{d}/{s}")
            few = "" if c is None or len(c["seeds"]) >= L2X_SEEDS else f" [{len(c['seeds'])} of {L2X_SEEDS} seeds]"
            row.append("not run" if c is None else f"{c['median_rank_mean']:.3f} +- {c['median_rank_sd_over_points']:.3f}"
                       + ("" if math.isnan(c["median_rank_sd_over_seeds"]) else f" (seeds {c['median_rank_sd_over_seeds']:.3f})")
                       + few)
        lines.append(f"| {SELECTOR_LABELS[s]} | " + " | ".join(row) + " |")
    acc = ["", "Predictor accuracy on the test-time top-k mask (against the label's more likely class) / fraction of",
           "points whose top-k mask is exactly their relevant set:", "",
           "| selector | " + " | ".join(L2X_DATASETS) + " |", "|---|" + "---|" * len(L2X_DATASETS)]
    for s in SUBSET_SELECTORS:
        acc.append(f"| {s} | " + " | ".join("not run" if f"{d}/{s}" not in cells else
                                            f"{cells[f'{d}/{s}']['accuracy_topk_mask']:.3f} / {cells[f'{d}/{s}']['exact_set_fraction']:.3f}"
                                            for d in L2X_DATASETS) + " |")
    n_seeds = sorted({len(c["seeds"]) for c in cells.values()})
    missing = [f"{d} / {s}" for d in L2X_DATASETS for s in SUBSET_SELECTORS if f"{d}/{s}" not in cells]
    missing += [f"{c['dataset']} / {c['selector']} seeds {sorted(set(range(L2X_SEEDS)) - set(c['seeds']))}"
                for c in cells.values() if len(c["seeds"]) < L2X_SEEDS]
    not_run = [d for d in L2X_DATASETS if d not in best]
    text = "\n".join([
        "# L2X synthetic: median rank of the relevant features (lower is better)",
        "",
        "Each cell: mean over seeds of the per-run mean median rank over 10^5 validation points, +- the sd over",
        f"points (averaged over seeds), and in brackets the sd over seeds; {'/'.join(map(str, n_seeds))} seeds per cell.",
        "",
        *lines,
        *acc,
        "",
        "Best selector per dataset: " + "; ".join(f"{d}: {b['selector']} {b['median_rank_mean']:.3f} (optimum {b['optimum']})"
                                                  for d, b in best.items())
        + "".join(f"; {d}: not run" for d in not_run) + ".",
        *_missing_line(missing),
        "",
        "Setup (Chen et al. 2018): X ~ N(0, I_10), soft labels, 10^6 training points (seed 2s), 10^5 validation points",
        "(seed 2s + 1) for run seed s, one epoch, batch 1000, Adam 1e-3, tau 0.1 (SIMPLE has no temperature), explainer",
        "Dense 100-100-10, predictor Dense 200 + BN, Dense 200 + BN, Dense 2, L2 1e-3; test mask = top-k scores; ranks by",
        "the explainer's scores, ties at random. Switch points are scored against their own branch's features. The",
        "switch generator moves features 0..3 to 4..7 for the additive half (L2X's code duplicates them instead).",
        f"Runs at commit(s) {_commits(runs)}; per-seed files in runs/. Regenerate: python benchmarks/select_tables.py run l2x",
    ]) + "\n"
    (RESULTS / "l2x" / "table.md").write_text(text)
    fig, axes = _figure(9, 3.0, len(L2X_DATASETS))
    for ax, d in zip(axes, L2X_DATASETS, strict=True):
        sel = [s for s in SUBSET_SELECTORS if f"{d}/{s}" in cells]
        for i, s in enumerate(sel):
            c = cells[f"{d}/{s}"]
            ax.scatter([i] * len(c["per_seed"]), c["per_seed"], s=12, color="#3182bd")
            ax.errorbar(i, c["median_rank_mean"], yerr=c["median_rank_sd_over_points"], fmt="o", color="#08306b", capsize=3)
        ax.axhline(L2X_OPTIMUM[d], color="#d95f0e", ls="--", lw=1, label="optimum")
        ax.set_xticks(range(len(sel)), sel, rotation=35, fontsize=7)
        ax.set_title(d, fontsize=9)
        ax.set_ylim(0.5, 10.5)
    axes[0].set_ylabel("median rank of the relevant features")
    axes[0].legend(fontsize=7)
    (RESULTS / "l2x" / "figures").mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / "l2x" / "figures" / "median_ranks.png", dpi=110)
    out = {"cells": cells, "best": best, "optimum": L2X_OPTIMUM, "missing": missing}
    (RESULTS / "l2x" / "table.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def render_select() -> dict[str, Any]:
    runs = _load("select")
    rows = []
    missing = []
    for d, s in SELECT_PLAN:
        rs = [r for r in runs if r["dataset"] == d and r["selector"] == s]
        if not rs:
            missing.append(f"{d} / {s}")
            continue
        et, et_sd = _mean_sd([r["test"]["extratrees_accuracy"] for r in rs])
        rows.append({"dataset": d, "selector": s, "seeds": sorted(r["seed"] for r in rs),
                     "extratrees_accuracy": et, "extratrees_sd": et_sd,
                     "knn1_accuracy": statistics.fmean(r["test"]["knn1_accuracy"] for r in rs),
                     "mse": statistics.fmean(r["test"]["mse"] for r in rs),
                     "distinct_pixels": statistics.fmean(r["distinct_pixels"] for r in rs),
                     "random_extratrees": statistics.fmean(r["random_pixels_baseline"]["extratrees_accuracy"] for r in rs),
                     "random_knn1": statistics.fmean(r["random_pixels_baseline"]["knn1_accuracy"] for r in rs),
                     "epochs": rs[0]["epochs"], "batch_size": rs[0]["config"]["batch_size"],
                     "published": CAE_PUBLISHED[d] if s == "concrete" else None,
                     "minutes_per_run": statistics.fmean(r["process_seconds"] for r in rs) / 60})
    lines = ["| dataset | selector | ExtraTrees acc. (ours) | published (Abid et al.) | 1-NN acc. | test MSE | distinct pixels |"
             " random 50 pixels: ExtraTrees / 1-NN | epochs x batch | seeds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pub = "-" if r["published"] is None else f"{100 * r['published']:.1f}"
        sd = "" if math.isnan(r["extratrees_sd"]) else f" +- {100 * r['extratrees_sd']:.1f}"
        lines.append(f"| {r['dataset']} | {SELECTOR_LABELS[r['selector']]} | {100 * r['extratrees_accuracy']:.1f}{sd} | {pub} | "
                     f"{100 * r['knn1_accuracy']:.1f} | {r['mse']:.4f} | {r['distinct_pixels']:.0f} | "
                     f"{100 * r['random_extratrees']:.1f} / {100 * r['random_knn1']:.1f} | {r['epochs']:.0f} x {r['batch_size']} | "
                     f"{len(r['seeds'])} |")
    text = "\n".join([
        "# Concrete selection of 50 pixels: classifiers on the selected pixels (accuracy in %)",
        "",
        *lines,
        "",
        "Setup (Abid et al. 2019): the official test set, first 4,000 images to train (the last 10% of them validate the",
        "autoencoder) and last 6,000 to test; decoder one hidden layer of 75 units (LeakyReLU 0.2, dropout 0.1), Adam 1e-3,",
        "MSE; tau 10 -> 0.01 geometrically over the run; test-time selection: each Concrete row's argmax (k-subset",
        "selectors: the top-50 logits). ExtraTrees (50 trees) and 1-NN are fitted on the 4,000 and scored on the 6,000.",
        "The random-pixel columns use 50 uniformly random pixels, same classifiers.",
        *_missing_line(missing),
        "",
        f"Runs at commit(s) {_commits(runs)}; per-seed files in runs/. Regenerate: python benchmarks/select_tables.py run select",
    ]) + "\n"
    (RESULTS / "select" / "table.md").write_text(text)
    out = {"rows": rows, "published": CAE_PUBLISHED, "missing": missing}
    (RESULTS / "select" / "table.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def render_glimpse() -> dict[str, Any]:
    runs = _load("glimpse")
    rows = []
    for r in runs:
        if r["selector"] == "evalx":
            continue
        t = r["test"]
        rows.append({"dataset": r["dataset"], "selector": r["selector"], "k": r["k"], "seed": r["seed"],
                     "train_against": r.get("train_against", "own"),
                     "accuracy": t["accuracy"], "evalx_accuracy": t.get("evalx_accuracy"),
                     "mask_only_accuracy": t["mask_only_accuracy"], "epochs": r["epochs"],
                     "random_patches_evalx": r["evaluator_baselines"].get(str(r["k"]), {}).get("random_patches"),
                     "centre_patches_evalx": r["evaluator_baselines"].get(str(r["k"]), {}).get("centre_patches"),
                     "minutes": r["process_seconds"] / 60})
    rows.sort(key=lambda r: (r["dataset"], r["k"], r["train_against"], -r["accuracy"]))
    have = {(r["dataset"], r["selector"], r["k"]) for r in rows}
    evaluators = {r["dataset"] for r in runs if r["selector"] == "evalx"}
    missing = [f"{d} EVAL-X evaluator" for d in IMAGE_DATASETS if d not in evaluators]
    missing += [f"{d} / {s} / k={k}" for d, s, k in GLIMPSE_PLAN if (d, s, k) not in have]
    baselines: dict[str, dict[str, dict[str, float]]] = {}
    for r in runs:
        if r["selector"] == "evalx":
            baselines[r["dataset"]] = r["evaluator_baselines"]
    lines = ["| dataset | k | selector | trained through | accuracy of that classifier | accuracy, EVAL-X evaluator |"
             " label from mask alone | EVAL-X on k random / centre patches | epochs |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ev = "-" if r["evalx_accuracy"] is None else f"{100 * r['evalx_accuracy']:.1f}"
        base = ("-" if r["random_patches_evalx"] is None else
                f"{100 * r['random_patches_evalx']:.1f} / {100 * r['centre_patches_evalx']:.1f}")
        through = "frozen evaluator (REAL-X)" if r["train_against"] == "evaluator" else "own classifier"
        lines.append(f"| {r['dataset']} | {r['k']} | {SELECTOR_LABELS.get(r['selector'], r['selector'])} | {through} | "
                     f"{100 * r['accuracy']:.1f} | {ev} | {100 * r['mask_only_accuracy']:.1f} | {base} | {r['epochs']:.0f} |")
    ev_epochs = "/".join(sorted({f"{r['epochs']:.0f}" for r in runs if r["selector"] == "evalx"})) or "-"
    base_lines = []
    for d, b in baselines.items():
        ks = sorted(b, key=int)
        base_lines += ["", f"EVAL-X evaluator on {d} (trained on random masks): accuracy with k random / centre patches:", "",
                       "| k | " + " | ".join(ks) + " |", "|---|" + "---|" * len(ks) + "",
                       "| random | " + " | ".join(f"{100 * b[k]['random_patches']:.1f}" for k in ks) + " |",
                       "| centre | " + " | ".join(f"{100 * b[k]['centre_patches']:.1f}" for k in ks) + " |"]
    text = "\n".join([
        "# Glimpses: classify from k of 49 4x4 patches (test accuracy in %)",
        "",
        *lines,
        *base_lines,
        *_missing_line(missing),
        "",
        "EVAL-X: one classifier per dataset trained on random masks (each patch kept with probability r ~ U(0, 1)) and",
        "then frozen; it scores every policy's test-time masks. 'Own classifier': trained jointly with the selector, so",
        "its choice of patches may carry the label; 'frozen evaluator (REAL-X)': the selector trains through the",
        "evaluator, which never saw it. 'Label from mask alone': logistic regression from the 49-bit mask to the label",
        "(fitted on half the test set; high values also arise from honest, shape-following selections).",
        "Selector: fully convolutional (two 5x5 stride-2 convolutions, 16 and 32 channels, a 1x1 convolution to the 7x7",
        "patch grid); classifiers: the same trunk on (x * mask, mask), a 128-unit hidden layer. Batch 100, Adam 1e-3,",
        "tau 1 -> 0.1 geometrically; test-time masks are the top-k scores (sequential: the argmax at each step).",
        f"Budget: 50,000 training images, tested on the 10,000 test images; the evaluator trains {ev_epochs} epochs, the",
        "selectors the epochs column; one seed (0) per configuration. There are no published numbers for this setup.",
        f"Runs at commit(s) {_commits(runs)}; per-run files in runs/. Regenerate: python benchmarks/select_tables.py run glimpse",
    ]) + "\n"
    (RESULTS / "glimpse" / "table.md").write_text(text)
    datasets = sorted(baselines)
    if datasets:
        fig, axes = _figure(4.2 * len(datasets), 3.2, len(datasets))
        for ax, d in zip(axes, datasets, strict=True):
            ks = sorted(baselines[d], key=int)
            for key, label, color in (("random_patches", "k random patches", "#969696"),
                                      ("centre_patches", "k centre patches", "#fd8d3c")):
                ax.plot([int(k) for k in ks], [100 * baselines[d][k][key] for k in ks], marker="o", color=color, label=label)
            for sel in sorted({r["selector"] for r in rows if r["dataset"] == d and r["evalx_accuracy"] is not None}):
                for against in ("evaluator", "own"):
                    pts = sorted((r["k"], 100 * r["evalx_accuracy"]) for r in rows if r["dataset"] == d
                                 and r["selector"] == sel and r["train_against"] == against and r["evalx_accuracy"] is not None)
                    if pts:
                        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="s", color=SELECTOR_COLORS.get(sel),
                                ls="-" if len(pts) > 1 else "none",
                                label=f"{sel}" + (" (REAL-X)" if against == "evaluator" else " (own classifier)"))
            ax.set_xscale("log")
            ax.set_xlabel("k (patches of 49)")
            ax.set_ylabel("test accuracy by the EVAL-X evaluator (%)")
            ax.set_title(d, fontsize=9)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=6)
        (RESULTS / "glimpse" / "figures").mkdir(parents=True, exist_ok=True)
        fig.savefig(RESULTS / "glimpse" / "figures" / "accuracy_vs_k.png", dpi=110)
    out = {"rows": rows, "evaluator_baselines": baselines, "missing": missing}
    (RESULTS / "glimpse" / "table.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("app", choices=("l2x", "select", "glimpse"))
    r.add_argument("--datasets", nargs="*", default=None)
    r.add_argument("--selectors", nargs="*", default=None)
    r.add_argument("--seeds", nargs="*", type=int, default=[0])
    r.add_argument("--ks", nargs="*", type=int, default=[10])
    r.add_argument("--epochs", type=int, default=None, help="select: 300; glimpse: 10")
    r.add_argument("--sequential-epochs", type=int, default=None, help="glimpse: default --epochs")
    r.add_argument("--evaluator-epochs", type=int, default=10)
    r.add_argument("--train-against", choices=("own", "evaluator"), default="evaluator",
                   help="glimpse: selectors train through their own classifier or the frozen evaluator (REAL-X)")
    r.add_argument("--subset-batch", type=int, default=64, help="select: batch of the k-subset selectors")
    g = sub.add_parser("render")
    g.add_argument("app", choices=("l2x", "select", "glimpse", "all"))
    args = p.parse_args(argv)
    if args.cmd == "run":
        if args.epochs is None:
            args.epochs = {"select": 300, "glimpse": 3}.get(args.app, 1)
        if args.sequential_epochs is None:
            args.sequential_epochs = args.epochs
        return {"l2x": run_l2x, "select": run_select, "glimpse": run_glimpse}[args.app](args)
    for app in ("l2x", "select", "glimpse") if args.app == "all" else (args.app,):
        if (RESULTS / app / "runs").is_dir():
            collect_figures(app)
            {"l2x": render_l2x, "select": render_select, "glimpse": render_glimpse}[app]()
            print(f"wrote results/{app}/table.md")
            from gumbelkit.apps.select.showcase import write

            if write(app, RESULTS) is not None:
                print(f"wrote results/{app}/showcase.json (the tour's headline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
