r"""The exhaustive mini-benchmark: every architecture of a small cell trained, then searched.

Search space: a 3-node cell (3 edges) over ``none, skip, conv3x3, avgpool3x3``: 4^3 = 64
architectures, on scikit-learn's 8 x 8 digits (1,000 train / 397 valid / 400 test images). The
network is a stem convolution, one cell of 8 channels, ReLU, global pooling and a linear layer.

* ``gumbelkit search bench table``: trains every architecture with 3 seeds (SGD, fixed budget)
  and writes ``table.json`` / ``table.md`` (per seed validation and test accuracy, the rank of
  every architecture by mean test accuracy).
* ``gumbelkit search bench compare``: searches the same space with GDAS (``st_gs``), DARTS's
  softmax mixture, REINFORCE (leave-one-out baseline, 2 architectures per step) and random
  search, several seeds each, and scores each returned architecture by the table: its rank
  percentile (100 x rank / 64; the best architecture is at 1.6 %) and its regret (best mean
  test accuracy minus the returned one's). The gradient-based searches share every setting
  (epochs, optimizers, data). Random search gets the same budget in training passes: a GDAS
  search makes ``2 x steps`` forward-backward passes through a one-operation-per-edge network,
  a table entry costs ``table steps`` passes, so random search draws
  ``round(2 x search steps / table steps)`` architectures, trains each once (the table's value
  for a randomly chosen seed, as benchmark-based random search does) and returns the one with
  the best validation accuracy.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gumbelkit.apps.nas.data import load_data
from gumbelkit.apps.nas.model import BENCH_OPS, genotype_str
from gumbelkit.apps.nas.train import RetrainConfig, SearchConfig, provenance, retrain, search

__all__ = ["BenchProtocol", "compare", "main", "table"]

DEFAULT_OUT = Path("results/nas/bench")
METHODS = {"gdas": "st_gs", "darts": "softmax", "reinforce": "reinforce", "random": None}


@dataclass
class BenchProtocol:
    """Every setting of the benchmark (written into the JSON files)."""

    ops: tuple[str, ...] = BENCH_OPS
    num_nodes: int = 3
    channels: int = 8
    table_seeds: int = 3
    table_epochs: int = 20
    table_lr: float = 0.05
    search_seeds: int = 5
    search_epochs: int = 30
    search_lr: float = 0.1
    arch_lr: float = 0.01
    batch_size: int = 64
    train_subset: int = 0
    test_subset: int = 0

    @classmethod
    def quick(cls) -> BenchProtocol:
        # one edge (4 architectures), a few hundred images: seconds
        return cls(num_nodes=2, table_seeds=1, table_epochs=15, search_seeds=2, search_epochs=3, train_subset=640,
                   test_subset=200)

    def common(self) -> dict[str, Any]:
        return {"dataset": "digits", "size": 0, "ops": ",".join(self.ops), "num_nodes": self.num_nodes,
                "channels": self.channels, "stages": 1, "cells_per_stage": 1, "batch_size": self.batch_size,
                "train_subset": self.train_subset, "checkpoint_every": 10**9, "log_every": 10**9}

    def genotypes(self) -> list[tuple[int, ...]]:
        n_edges = self.num_nodes * (self.num_nodes - 1) // 2
        return list(itertools.product(range(len(self.ops)), repeat=n_edges))


def _name(g: Sequence[int]) -> str:
    return "".join(str(v) for v in g)


def _cached(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _guard(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise ValueError(f"{path} exists; pass --overwrite to replace it or choose another --out")


def table(p: BenchProtocol, runs_dir: Path, out: Path, argv: Sequence[str] = (), overwrite: bool = False) -> dict[str, Any]:
    """Train every architecture ``p.table_seeds`` times; write ``table.json`` and ``table.md``."""
    _guard(out / "table.json", overwrite)
    prov = provenance(["bench", *argv])  # the code as it is when the run starts
    data = load_data("digits")
    rows = []
    t0 = time.perf_counter()
    for g in p.genotypes():
        runs = []
        for seed in range(p.table_seeds):
            rc = RetrainConfig(**p.common(), out_dir=str(runs_dir / "table" / f"{_name(g)}-seed{seed}"), seed=seed,
                               epochs=p.table_epochs, lr=p.table_lr, genotype=",".join(map(str, g)),
                               test_subset=p.test_subset)
            r = _cached(Path(rc.out_dir) / "results.json") or retrain(rc, data)
            runs.append({"seed": seed, "valid_acc": r["valid_acc"], "test_acc": r["test_acc"],
                         "steps": r["steps"], "process_seconds": r["process_seconds"]})
        rows.append({"genotype": list(g), "genotype_str": genotype_str(g, p.ops, p.num_nodes),
                     "valid_acc": [r["valid_acc"] for r in runs], "test_acc": [r["test_acc"] for r in runs],
                     "valid_mean": statistics.fmean(r["valid_acc"] for r in runs),
                     "test_mean": statistics.fmean(r["test_acc"] for r in runs),
                     "steps": runs[0]["steps"], "process_seconds": [r["process_seconds"] for r in runs]})
    _rank(rows)
    payload = {"benchmark": "nas-digits-3edges", **prov, "protocol": asdict(p),
               "split": {"train": 1000 if not p.train_subset else p.train_subset, "valid": 397, "test": p.test_subset or 400},
               "rows": rows, "process_seconds": time.perf_counter() - t0}
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.json").write_text(json.dumps(payload, indent=1) + "\n")
    (out / "table.md").write_text(render_table(payload))
    return payload


def _rank(rows: list[dict[str, Any]]) -> None:
    """Rank 1 = best mean test accuracy; ties share the better rank."""
    means = [r["test_mean"] for r in rows]
    for r in rows:
        r["rank"] = 1 + sum(m > r["test_mean"] for m in means)
        r["percentile"] = 100.0 * r["rank"] / len(rows)


def render_table(payload: dict[str, Any]) -> str:
    p = payload["protocol"]
    rows = sorted(payload["rows"], key=lambda r: r["rank"])
    lines = [
        f"# Exhaustive benchmark: {len(rows)} architectures x {p['table_seeds']} seed(s) on 8x8 digits",
        "",
        f"Cell: {p['num_nodes']} nodes ({p['num_nodes'] * (p['num_nodes'] - 1) // 2} edges), operations "
        f"{', '.join(p['ops'])}; {p['channels']} channels; {p['table_epochs']} epochs of SGD (lr {p['table_lr']}, cosine), "
        f"batch {p['batch_size']}. Split {payload['split']['train']} / {payload['split']['valid']} / {payload['split']['test']} "
        f"(train / valid / test). Commit `{payload['commit'][:10]}`; command `{payload['command']}`.",
        "",
        "| rank | cell | test acc % (mean) | test acc % per seed | valid acc % (mean) |",
        "|---:|---|---:|---|---:|",
    ]
    for r in rows:
        per = ", ".join(f"{100 * a:.2f}" for a in r["test_acc"])
        lines.append(f"| {r['rank']} | `{r['genotype_str']}` | {100 * r['test_mean']:.2f} | {per} | {100 * r['valid_mean']:.2f} |")
    return "\n".join(lines) + "\n"


def _lookup(rows: list[dict[str, Any]], g: Sequence[int]) -> dict[str, Any]:
    return next(r for r in rows if tuple(r["genotype"]) == tuple(g))


def compare(p: BenchProtocol, runs_dir: Path, out: Path, argv: Sequence[str] = (), overwrite: bool = False,
            methods: Sequence[str] = tuple(METHODS)) -> dict[str, Any]:
    """Search the benchmark's space with every method; score the results by ``table.json``."""
    _guard(out / "compare.json", overwrite)
    prov = provenance(["bench", *argv])  # the code as it is when the run starts
    tab = _cached(out / "table.json")
    if tab is None:
        raise ValueError(f"{out / 'table.json'} not found; run `gumbelkit search bench table` first")
    rows = tab["rows"]
    best = max(r["test_mean"] for r in rows)
    data = load_data("digits")
    results: dict[str, list[dict[str, Any]]] = {}
    search_steps = None
    for method in methods:
        results[method] = []
        for seed in range(p.search_seeds):
            t0 = time.perf_counter()
            if method == "random":
                if search_steps is None:
                    raise ValueError("random search needs a gradient-based method first (it takes GDAS's budget)")
                n = max(1, round(2 * search_steps / rows[0]["steps"]))
                rng = random.Random(1000 + seed)
                picks = rng.sample(range(len(rows)), n)
                scored = [(rows[i]["valid_acc"][rng.randrange(len(rows[i]["valid_acc"]))], i) for i in picks]
                g = tuple(rows[max(scored)[1]]["genotype"])
                extra: dict[str, Any] = {"architectures_trained": n}
            else:
                sc = SearchConfig(**p.common(), out_dir=str(runs_dir / "search" / f"{method}-seed{seed}"), seed=seed,
                                  epochs=p.search_epochs, estimator=METHODS[method] or "st_gs", lr=p.search_lr,
                                  arch_lr=p.arch_lr)
                r = _cached(Path(sc.out_dir) / "search.json") or search(sc, data)
                g = tuple(r["genotype"])
                search_steps = r["steps"] if method == "gdas" or search_steps is None else search_steps
                extra = {"probs": r["probs"], "steps": r["steps"], "search_seconds": r["process_seconds"]}
            row = _lookup(rows, g)
            results[method].append({"seed": seed, "genotype": list(g), "genotype_str": row["genotype_str"],
                                    "rank": row["rank"], "percentile": row["percentile"],
                                    "test_mean": row["test_mean"], "regret": best - row["test_mean"],
                                    "seconds": time.perf_counter() - t0, **extra})
    summary = {}
    for method, rs in results.items():
        pct = [r["percentile"] for r in rs]
        reg = [r["regret"] for r in rs]
        summary[method] = {"median_percentile": statistics.median(pct), "mean_percentile": statistics.fmean(pct),
                           "median_regret": statistics.median(reg), "mean_regret": statistics.fmean(reg),
                           "max_regret": max(reg),
                           "degenerate": sum(len(set(r["genotype"])) == 1 and p.ops[r["genotype"][0]] in ("none", "skip")
                                             for r in rs)}
    payload = {"benchmark": "nas-digits-3edges", **prov, "protocol": asdict(p),
               "table_commit": tab["commit"], "best_test_mean": best, "architectures": len(rows), "results": results, "summary": summary}
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(payload, indent=1) + "\n")
    (out / "compare.md").write_text(render_compare(payload))
    return payload


LABELS = {"gdas": "GDAS (ST Gumbel-Softmax, one op per edge)", "darts": "DARTS (softmax mixture)",
          "reinforce": "REINFORCE (leave-one-out)", "random": "random search (same budget)"}


def render_compare(payload: dict[str, Any]) -> str:
    p = payload["protocol"]
    lines = [
        f"# Searching the {payload['architectures']}-architecture benchmark ({p['search_seeds']} seeds per method)",
        "",
        f"Each gradient-based search: {p['search_epochs']} epochs, weights SGD lr {p['search_lr']} (cosine), alpha Adam "
        f"lr {p['arch_lr']}, alternating weight / architecture steps. Percentile = 100 x rank / "
        f"{payload['architectures']} by mean test accuracy (lower is better; {100 / payload['architectures']:.1f} = the "
        f"best architecture); regret in accuracy points. Best mean test "
        f"accuracy {100 * payload['best_test_mean']:.2f} %. Commit `{payload['commit'][:10]}`; command `{payload['command']}`.",
        "",
        "| method | median percentile | mean percentile | median regret | mean regret | all-none / all-skip cells | cells returned |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for m, s in payload["summary"].items():
        cells = ", ".join(f"`{r['genotype_str']}`" for r in payload["results"][m])
        lines.append(f"| {LABELS.get(m, m)} | {s['median_percentile']:.1f} | {s['mean_percentile']:.1f} | "
                     f"{100 * s['median_regret']:.2f} | {100 * s['mean_regret']:.2f} | {s['degenerate']} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``gumbelkit search bench {table,compare} [--out DIR] [--runs DIR] [--quick] [--overwrite]``."""
    parser = argparse.ArgumentParser(prog="gumbelkit search bench", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("stage", choices=("table", "compare"), help="train every architecture, or search and score")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="directory of table.json / compare.json")
    parser.add_argument("--runs", default="runs/nas-bench", help="directory of the individual runs (cached)")
    parser.add_argument("--quick", action="store_true", help="tiny protocol for smoke tests")
    parser.add_argument("--overwrite", action="store_true", help="replace existing JSON in --out")
    parser.add_argument("--methods", default=",".join(METHODS), help="compare: methods, comma-separated")
    args = parser.parse_args(list(argv) if argv is not None else None)
    p = BenchProtocol.quick() if args.quick else BenchProtocol()
    argv_list = list(argv or [])
    if args.stage == "table":
        t = table(p, Path(args.runs), Path(args.out), argv_list, args.overwrite)
        top = min(t["rows"], key=lambda r: r["rank"])
        print(f"{len(t['rows'])} architectures; best {top['genotype_str']} {100 * top['test_mean']:.2f} %; {args.out}/table.json")
    else:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; choose from: {', '.join(METHODS)}")
        c = compare(p, Path(args.runs), Path(args.out), argv_list, args.overwrite, methods)
        for m, s in c["summary"].items():
            print(f"{m:10s} median percentile {s['median_percentile']:5.1f}  mean regret {100 * s['mean_regret']:.2f}")
    return 0
