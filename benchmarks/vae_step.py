"""Time per training step of the categorical VAE (20 x 10, batch 100, one CPU thread).

Compares, in one process and interleaved, the training step with torch's default Adam (the
per-parameter loop the application used before) against the application's optimizer
(:func:`gumbelkit.apps.vae.train.make_adam`, the fused kernel), and reports examples per CPU-second
of each and their ratio. Process CPU time is used, not wall time, so that other jobs on a shared
machine inflate neither side.

    python benchmarks/vae_step.py                       # writes results/vae/step_bench.{json,md}
    python benchmarks/vae_step.py --estimators st gs --steps 200 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent


def _step_fn(estimator: str, optimizer_kind: str, seed: int = 0) -> Any:
    from gumbelkit.apps.vae.model import CategoricalVAE, sample_latent
    from gumbelkit.apps.vae.train import make_adam

    torch.manual_seed(seed)
    model = CategoricalVAE(20, 10)
    if optimizer_kind == "default_adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        opt = make_adam(model.parameters(), 1e-3, torch.device("cpu"))
    gen = torch.Generator().manual_seed(seed + 1)
    data = (torch.rand(2000, 784, generator=gen) < 0.15).float()  # speed does not depend on the pixels
    tau = 1.3 if estimator == "reinmax" else 0.7
    state = {"i": 0}

    def step() -> None:
        i = state["i"]
        state["i"] = i + 1
        x = data[(i % 20) * 100 : (i % 20 + 1) * 100]  # (100, 784)
        logits = model.encode(x)  # (100, 20, 10)
        z = sample_latent(logits, estimator, tau, generator=gen)
        loss = model.terms(x, z, logits).loss.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def measure(estimators: list[str], steps: int, repeats: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    rows = []
    for est in estimators:
        fns = {k: _step_fn(est, k) for k in ("default_adam", "app")}
        for fn in fns.values():  # warm-up
            for _ in range(10):
                fn()
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(repeats):
            for k, fn in fns.items():  # interleaved, so slow phases of the machine hit both
                t0 = time.process_time()
                for _ in range(steps):
                    fn()
                times[k].append((time.process_time() - t0) / steps)
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({
            "estimator": est,
            "ms_per_step": {k: 1000 * v for k, v in med.items()},
            "examples_per_cpu_s": {k: 100 / v for k, v in med.items()},
            "speedup": med["default_adam"] / med["app"],
            "per_repeat_ms": {k: [1000 * t for t in v] for k, v in times.items()},
        })
    return {"benchmark": "vae_step", "model": "20 x 10 categorical VAE, 784-512-256-200, batch 100",
            "threads": 1, "steps_per_repeat": steps, "repeats": repeats, "timer": "process CPU time",
            "torch": torch.__version__, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--estimators", nargs="+", default=["st", "gs", "gumbel_rao"])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("runs/vae_step"),
                   help="output folder; the committed table: --out results/vae")
    args = p.parse_args(argv)
    from gumbelkit.apps.provenance import provenance

    payload = measure(args.estimators, args.steps, args.repeats)
    payload["provenance"] = provenance()
    lines = ["| estimator | default Adam: ms / step | fused Adam (app): ms / step | examples / CPU-s, before -> after | speed-up |",
             "|---|---|---|---|---|"]
    for r in payload["rows"]:
        ms, ex = r["ms_per_step"], r["examples_per_cpu_s"]
        lines.append(f"| {r['estimator']} | {ms['default_adam']:.2f} | {ms['app']:.2f} | "
                     f"{ex['default_adam']:.0f} -> {ex['app']:.0f} | {r['speedup']:.2f}x |")
    md = "\n".join(lines) + (f"\n\nMedian of {args.repeats} interleaved repeats of {args.steps} steps, process CPU "
                             f"time, one thread. Regenerate: `python benchmarks/vae_step.py --out results/vae`.\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "step_bench.json").write_text(json.dumps(payload, indent=2) + "\n")
    (args.out / "step_bench.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
