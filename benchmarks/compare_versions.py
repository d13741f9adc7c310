"""Speed of this checkout's samplers against another commit's, interleaved in one process.

A shared machine's load drifts by more than the few percent a code change moves, so two
separate runs of ``bench_ops.py`` cannot show a 5% slow-down. This script imports the library
twice, this checkout's ``gumbelkit`` and the reference commit's (exported with ``git archive``
into a temporary folder and renamed ``gumbelkit_ref``), and times every (op, shape) of
``bench_ops.py`` for both, alternating which goes first, ``--repeats`` paired rounds. It reports
the median of the per-round time ratios (this checkout / reference) with its quartiles: a load
change during a round hits both alike.

Usage::

    python benchmarks/compare_versions.py REF [--repeats 21] [--out runs/compare] [--quick]
                                              [--ops soft_fwd,gumbel_max] [--clock cpu --threads 1]

Writes ``<out>/compare_versions.json`` and prints a table. Each row gets a distribution-free
95% interval of its median ratio and a verdict against the 5% tolerance: ``slower`` (the whole
interval above 1.05), ``within`` (all of it at or below), or ``undecided``.
``python benchmarks/compare_versions.py --summarize FILE.json`` adds them to an older report.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_ops  # noqa: E402  (the shapes and ops of the speed benchmark)
import gumbelkit as current  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def load_reference(commit: str, tmp: Path) -> object:
    """The library at ``commit`` as the module ``gumbelkit_ref`` (its own imports rewritten)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "src/gumbelkit"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
    src = tmp / "src" / "gumbelkit"
    dst = tmp / "gumbelkit_ref"
    src.rename(dst)
    for path in dst.rglob("*.py"):
        text = path.read_text()
        path.write_text(re.sub(r"\bgumbelkit\b", "gumbelkit_ref", text))
    sys.path.insert(0, str(tmp))
    return importlib.import_module("gumbelkit_ref")


def make_call(lib: object, op: str, sh: bench_ops.Shape) -> Callable[[], object]:
    """``op`` of bench_ops.py with ``lib`` (relaxed_rsample is gumbel_softmax there too)."""
    grad = op.endswith("fwdbwd")
    logits, cot = bench_ops.make_inputs(sh, grad)
    d, k = sh.dim, sh.k
    if grad:
        hard = op.startswith("hard")

        def step() -> None:
            y = lib.gumbel_softmax(logits, bench_ops.TAU, hard=hard, dim=d)  # type: ignore[attr-defined]
            y.backward(cot)
            logits.grad = None

        return step
    x = logits.detach()
    if op in ("soft_fwd", "relaxed_rsample"):
        return lambda: lib.gumbel_softmax(x, bench_ops.TAU, dim=d)  # type: ignore[attr-defined]
    if op == "hard_fwd":
        return lambda: lib.gumbel_softmax(x, bench_ops.TAU, hard=True, dim=d)  # type: ignore[attr-defined]
    if op == "gumbel_max":
        return lambda: lib.gumbel_max(x, d)  # type: ignore[attr-defined]
    return lambda: lib.gumbel_topk(x, k, d)  # type: ignore[attr-defined]


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
#: the slow-down a row may show (issue: "no slow-down beyond 5%")
TOLERANCE = 1.05


def median_ci(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median: order statistics ``k`` and
    ``n + 1 - k`` with ``k`` the largest rank such that ``P(Binomial(n, 1/2) < k) <= (1 - level) / 2``
    (for n = 21 at 95%: the 6th and 16th of the sorted values)."""
    x = sorted(values)
    n = len(x)
    k, cdf = 0, 0.0
    while True:
        nxt = cdf + math.comb(n, k) / 2**n  # P(B <= k)
        if nxt > (1 - level) / 2:
            break
        cdf, k = nxt, k + 1
    # P(B < k) <= alpha / 2: the k-th smallest (1-based) and the k-th largest bound the median
    k = max(k, 1)
    return x[k - 1], x[n - k]


def verdict(lo: float, hi: float) -> str:
    """``slower`` if the whole interval exceeds the tolerance, ``within`` if none of it does."""
    if lo > TOLERANCE:
        return "slower"
    if hi <= TOLERANCE:
        return "within"
    return "undecided"


def paired(f_new: Callable[[], object], f_ref: Callable[[], object], repeats: int, min_s: float,
           clock: Callable[[], float] = time.perf_counter) -> dict:
    for _ in range(2):  # warm-up: thread pool, allocator
        f_new()
        f_ref()
    t0 = time.perf_counter()
    f_ref()
    inner = max(1, min(1000, int(min_s / max(time.perf_counter() - t0, 1e-7))))
    ratios, t_new, t_ref = [], [], []
    for r in range(repeats):
        times = {}
        order = (("new", f_new), ("ref", f_ref)) if r % 2 == 0 else (("ref", f_ref), ("new", f_new))
        for tag, f in order:
            t0 = clock()
            for _ in range(inner):
                f()
            times[tag] = (clock() - t0) / inner
        ratios.append(times["new"] / times["ref"])
        t_new.append(times["new"])
        t_ref.append(times["ref"])
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    lo, hi = median_ci(ratios)
    return {
        "new_ms": 1e3 * statistics.median(t_new),
        "ref_ms": 1e3 * statistics.median(t_ref),
        "ratio_median": statistics.median(ratios),
        "ratio_q1": q1,
        "ratio_q3": q3,
        "ratio_ci95": [lo, hi],
        "verdict": verdict(lo, hi),
        "ratios": ratios,
    }


def summarize(path: Path) -> None:
    """Add each row's median interval and verdict to an existing report (from its raw ratios)."""
    report = json.loads(path.read_text())
    for row in report["results"]:
        lo, hi = median_ci(row["ratios"])
        row["ratio_ci95"], row["verdict"] = [lo, hi], verdict(lo, hi)
    path.write_text(json.dumps(report, indent=1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("ref", help="the reference commit (e.g. main, or a hash); with --summarize, a report JSON")
    p.add_argument("--summarize", action="store_true",
                   help="add the median intervals and verdicts to the report JSON given as REF (older runs)")
    p.add_argument("--repeats", type=int, default=21, help="paired rounds per (op, shape)")
    p.add_argument("--out", default="runs/compare", help="output folder")
    p.add_argument("--quick", action="store_true", help="tiny shapes, 5 rounds (seconds)")
    p.add_argument("--dvae-batch", type=int, default=2, help="batch of the dVAE shape")
    p.add_argument("--ops", default=",".join(bench_ops.OPS), help="comma-separated ops to compare")
    p.add_argument("--shapes", default="lm,dvae,vae,mid", help="comma-separated shape names")
    p.add_argument("--clock", choices=list(CLOCKS), default="wall",
                   help="wall: elapsed time; cpu: the process's CPU time (all threads), which other "
                        "processes' load does not inflate (use with --threads 1 on a busy machine)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.summarize:
        summarize(Path(args.ref))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 5 if args.quick else args.repeats
    with tempfile.TemporaryDirectory() as tmp:
        ref = load_reference(args.ref, Path(tmp))
        rows = []
        load_start = os.getloadavg()
        for sh in [x for x in bench_ops.shapes(args.quick, args.dvae_batch) if x.name in args.shapes.split(",")]:
            for op in [o for o in bench_ops.OPS if o in args.ops.split(",")]:
                res = paired(make_call(current, op, sh), make_call(ref, op, sh), repeats, 0.05 if args.quick else 0.3,
                             CLOCKS[args.clock])
                rows.append({"op": op, "shape": sh.name, "dims": list(sh.shape), "dim": sh.dim, **res})
                print(
                    f"{op:16s} {sh.name:5s} new {res['new_ms']:9.3f} ms  ref {res['ref_ms']:9.3f} ms  "
                    f"new/ref {res['ratio_median']:.3f} (95% CI {res['ratio_ci95'][0]:.3f}-{res['ratio_ci95'][1]:.3f}: "
                    f"{res['verdict']})",
                    flush=True,
                )
    report = {
        "reference": args.ref,
        "reference_commit": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", args.ref], check=True, capture_output=True, text=True
        ).stdout.strip(),
        "checkout_commit": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
        ).stdout.strip(),
        "repeats": repeats,
        "clock": args.clock,
        "torch_threads": torch.get_num_threads(),
        "machine": {"python": platform.python_version(), "torch": torch.__version__},
        "load_average_start": list(load_start),
        "load_average_end": list(os.getloadavg()),
        "results": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare_versions.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
