"""``gumbelkit tour``: a measured, illustrated report of every claim the library rests on.

Writes ``OUT/index.html`` (self-contained: figures embedded, inline script, viewable offline),
one PNG per figure in ``OUT/figures/``, and ``OUT/results.json`` with every number shown. Seven
sections, each a module with ``run(ctx) -> Section``:

1. the Gumbel distribution (KS test, noise range per dtype),
2. Gumbel-Max and Gumbel-top-k are exact (chi-square tests),
3. temperature (samples on the simplex, E[max] and entropy against tau, interactive slider),
4. where the trick goes (language-model pipeline vs sampled decision, worked example),
5. annealing (schedules; fixed vs annealed tau on polynomial programming and the VAE, read from results/),
6. gradients (bias / variance of estimators against an exact gradient by enumeration),
7. use cases (text GANs, discrete VAEs, hard attention, architecture search).

Example::

    gumbelkit tour --out tour-report --seed 0          # about half a minute on 2 CPU cores
    gumbelkit tour --quick --out /tmp/tour             # a few seconds, smaller samples
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gumbelkit.apps.tour._report import Section, Sizes, TourContext, to_jsonable

__all__ = ["main", "run_tour"]


def _section_runners() -> list[Callable[[TourContext], Section]]:
    from gumbelkit.apps.tour import (
        s1_gumbel,
        s2_gumbel_max,
        s3_temperature,
        s4_pipelines,
        s5_annealing,
        s6_gradients,
        s7_use_cases,
    )

    return [m.run for m in (s1_gumbel, s2_gumbel_max, s3_temperature, s4_pipelines,
                            s5_annealing, s6_gradients, s7_use_cases)]


def run_tour(out: str | Path, *, seed: int = 0, quick: bool = False, progress: bool = True,
             command: str | None = None, results_dir: str | Path | None = None) -> dict[str, Any]:
    """Run every section and write the report; returns the ``results.json`` content.

    Args:
        out: report directory (created if needed).
        seed: base seed; each section derives its own generator from it.
        quick: smaller samples and shorter training (seconds instead of minutes).
        progress: show a progress bar per section on stderr.
        command: the command line recorded in the page (default: rebuilt from the arguments).
        results_dir: the committed ``results/`` the use-case section reads the applications'
            showcases from (default: the source checkout's, else ``./results``).

    Returns:
        The results dictionary written to ``out/results.json``.
    """
    import torch

    import gumbelkit
    from gumbelkit.apps.tour.html import write_html

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in (out / "figures").glob("s[1-7]_*.png"):  # a previous run's figures, e.g. the VAE's
        old.unlink()
    ctx = TourContext(out=out, seed=seed, quick=quick, progress=progress,
                      sizes=Sizes.quick() if quick else Sizes())
    if results_dir is not None:
        ctx.results = Path(results_dir)
    t0 = time.perf_counter()
    sections: list[Section] = []
    threads = torch.get_num_threads()
    # the tour's tensors are small: one thread is faster than several competing for the cores
    torch.set_num_threads(1)
    try:
        for runner in _section_runners():
            ts = time.perf_counter()
            section = runner(ctx)
            section.seconds = time.perf_counter() - ts
            sections.append(section)
            if progress and not ctx.bars:  # no bars (stderr is not a terminal): one line a section
                print(f"[tour] {section.number}. {section.title}: {section.seconds:.1f} s", file=sys.stderr, flush=True)
    finally:
        torch.set_num_threads(threads)
    total = time.perf_counter() - t0
    meta = {
        "seed": seed,
        "quick": quick,
        "gumbelkit_version": gumbelkit.__version__,
        "torch_version": torch.__version__,
        "torch_threads": 1,
        "total_seconds": total,
        "command": command or ("gumbelkit tour --out " + str(out) + f" --seed {seed}"
                               + (" --quick" if quick else "")),
        "sizes": ctx.sizes,
        "results_dir": None if ctx.results is None else str(ctx.results),
    }
    results = to_jsonable({
        "meta": meta,
        "sections": {s.key: {"number": s.number, "title": s.title, "seconds": s.seconds,
                             "headline": s.headline, "figures": [f.path for f in s.figures],
                             "numbers": s.numbers} for s in sections},
    })
    (out / "results.json").write_text(json.dumps(results, indent=1, allow_nan=False) + "\n",
                                      encoding="utf-8")
    write_html(out, sections, meta)
    return results


def _summary(results: dict[str, Any]) -> str:
    rows = [(f"{s['number']}. {s['title']}", s["headline"], f"{s['seconds']:.1f}")
            for s in results["sections"].values()]
    w0 = max(len(r[0]) for r in rows)
    w1 = min(max(len(r[1]) for r in rows), 90)
    lines = [f"{'section':<{w0}}  {'result':<{w1}}  time (s)", "-" * (w0 + w1 + 12)]
    lines += [f"{a:<{w0}}  {b:<{w1}}  {c:>8}" for a, b, c in rows]
    lines.append(f"{'total':<{w0}}  {'':<{w1}}  {results['meta']['total_seconds']:>8.1f}")
    return "\n".join(lines)


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be a non-negative integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"seed must be a non-negative integer, got {text!r}")
    return v


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gumbelkit tour``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="gumbelkit tour",
        description="Write a measured, illustrated report (HTML, PNGs, results.json) of the claims "
        "gumbelkit rests on.",
    )
    parser.add_argument("--out", default="tour-report", help="report directory (default: tour-report)")
    parser.add_argument("--seed", type=_nonneg_int, default=0, help="base random seed (default: 0)")
    parser.add_argument("--quick", action="store_true",
                        help="smaller samples and shorter training: seconds instead of minutes")
    parser.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    parser.add_argument("--results", default=None, metavar="DIR",
                        help="committed results the use-case section reads (default: the "
                        "repository's results/, else ./results)")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    command = "gumbelkit tour --out " + args.out + f" --seed {args.seed}" + (" --quick" if args.quick else "")
    results = run_tour(args.out, seed=args.seed, quick=args.quick, progress=not args.no_progress,
                       command=command, results_dir=args.results)
    print(_summary(results))
    print(f"report: {Path(args.out) / 'index.html'}  numbers: {Path(args.out) / 'results.json'}")
    return 0
