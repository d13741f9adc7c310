r"""The published small estimator benchmarks: ``gumbelkit estimators {polyprog,qp,exact}``.

Each subcommand writes ``<name>.json`` (every number, with the protocol that produced it) and
``<name>.md`` (a table rendered from that JSON) into ``results/estimators/`` (``--out`` to
change); ``--quick`` runs a tiny version for smoke tests.

* ``polyprog`` -- ReinMax's polynomial programming (Liu et al. 2023, Sec. 6.1): 128 binary
  variables, loss :math:`\frac{1}{128}\sum_i |z_i - 0.45|^p`, :math:`p \in \{1.5, 2, 3\}`,
  :math:`\theta \in \mathbb R^{128\times2}` initialised :math:`U(-0.01, 0.01)`, batch 64,
  8000 Adam steps at lr 1e-3, tau 1.0, several seeds; the reported value is the mean training
  loss of the last epoch (200 steps) against the exact optimum :math:`0.45^p`. All seeds and all
  ``p`` train as one vectorised tensor program (Adam is elementwise, so this is exactly the same
  as separate runs).
* ``qp`` -- Gumbel-Rao's quadratic program on the 3-simplex (Paulus et al. 2021):
  :math:`f(D) = (D - c)^\top Q (D - c)`, :math:`Q_{ij} = e^{-2|i-j|}`, :math:`c_i = 1/3`; bias,
  variance and MSE of ST-GS and Gumbel-Rao with K in {1, 10, 100} against the exact gradient,
  across tau.
* ``exact`` -- exact-gradient comparison of every estimator on a synthetic categorical decoder
  objective (8 variables x 4 categories = 65536 configurations, enumerated).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from gumbelkit import estimators as E
from gumbelkit._validation import validate_args

__all__ = ["main", "run_exact", "run_polyprog", "run_qp"]

DEFAULT_OUT = Path("results/estimators")

POLY_ESTIMATORS = ("st", "st_gs", "gumbel_rao", "gst", "reinmax", "gs", "reinforce")
POLY_P = (1.5, 2.0, 3.0)
POLY_TARGET = 0.45
#: measured by the project's reference run (../shared/REFERENCES.md), p = 2, 3 seeds
POLY_REFERENCE_P2 = {"reinmax": 0.2037, "st_gs": 0.2431, "st": 0.2475}


def _env() -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
    }


def _write(out: Path, name: str, payload: dict[str, Any], markdown: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown)
    print(f"wrote {out / (name + '.json')} and {out / (name + '.md')}")


# --------------------------------------------------------------------------- polyprog


def _poly_loss(z: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``mean_i |z_i - 0.45|^p`` per batch element: z ``(P, S, B, L)`` -> ``(P, S, B)``."""
    return (z - POLY_TARGET).abs().pow(p).mean(dim=-1)


@validate_args(False)
def run_polyprog(
    estimators: Sequence[str] = POLY_ESTIMATORS,
    ps: Sequence[float] = POLY_P,
    seeds: int = 10,
    steps: int = 8000,
    steps_per_epoch: int = 200,
    batch: int = 64,
    latent: int = 128,
    lr: float = 1e-3,
    tau: float = 1.0,
    k: int = 10,
    reinforce_samples: int | None = None,
    noise_seed: int = 1234,
    log_every: int = 0,
) -> dict[str, Any]:
    """Train the polynomial-programming toy for every estimator; return the JSON payload.

    For ``gs`` the training loss is the relaxed one; the *reported* loss is always evaluated at
    the exact sample ``indices`` (the hard one-hot), so all rows measure the same quantity.
    ``reinforce`` uses the batch's ``batch`` samples with a leave-one-out baseline.
    """
    if steps % steps_per_epoch:
        raise ValueError(f"steps ({steps}) must be a multiple of steps_per_epoch ({steps_per_epoch})")
    pt = torch.tensor(list(ps)).reshape(-1, 1, 1, 1)  # (P, 1, 1, 1)
    n_p = len(ps)
    init = torch.stack(
        [torch.empty(latent, 2).uniform_(-0.01, 0.01, generator=torch.Generator().manual_seed(s)) for s in range(seeds)]
    )  # (S, L, 2): seed s initialises theta exactly as a standalone run with that seed would
    rows: list[dict[str, Any]] = []
    for name in estimators:
        t0 = time.perf_counter()
        theta = torch.nn.Parameter(init.unsqueeze(0).repeat(n_p, 1, 1, 1))  # (P, S, L, 2)
        opt = torch.optim.Adam([theta], lr=lr)
        gen = torch.Generator().manual_seed(noise_seed)
        epoch_sum = torch.zeros(n_p, seeds, dtype=torch.float64)
        last_epoch = torch.zeros(n_p, seeds, dtype=torch.float64)
        opts: dict[str, Any] = {"k": k} if name == "gumbel_rao" else {}
        for step in range(steps):
            # the data checks (NaN / all-masked logits) cost a pass per step; theta is finite
            if name == "reinforce":

                def f(h: torch.Tensor) -> torch.Tensor:  # (B, P, S, L, 2) -> (B, P, S)
                    return _poly_loss(h[..., 0], pt.squeeze(-1))

                out = E.reinforce_loo(theta, f, reinforce_samples or batch, generator=gen)
                loss = out.loss.sum()  # sum over (P, S): each run gets exactly its own gradient
                reported = out.values.detach().mean(dim=0)  # (P, S)
            else:
                logits = theta.unsqueeze(2).expand(n_p, seeds, batch, latent, 2)  # (P, S, B, L, 2)
                s = E.sample(logits, name, tau, generator=gen, **opts)
                loss = _poly_loss(s.output[..., 0], pt).mean(dim=-1).sum()
                with torch.no_grad():
                    z = (s.indices == 0).to(theta.dtype)  # (P, S, B, L) exact sample
                    reported = _poly_loss(z, pt).mean(dim=-1)  # (P, S)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            epoch_sum += reported.double()
            if log_every and (step + 1) % log_every == 0:
                print(f"  {name} step {step + 1}/{steps} {time.perf_counter() - t0:.0f}s", flush=True)
            if (step + 1) % steps_per_epoch == 0:
                last_epoch = epoch_sum / steps_per_epoch
                epoch_sum.zero_()
        elapsed = time.perf_counter() - t0
        for i, p in enumerate(ps):
            vals = last_epoch[i].tolist()
            mean = sum(vals) / len(vals)
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / max(len(vals) - 1, 1))
            opt_v = POLY_TARGET**p
            rows.append(
                {
                    "estimator": name,
                    "options": opts,
                    "seeds": seeds,
                    "steps": steps,
                    "batch": batch,
                    "p": p,
                    "final_loss_mean": mean,
                    "final_loss_std": std,
                    "per_seed": vals,
                    "optimum": opt_v,
                    "gap_pct": 100.0 * (mean - opt_v) / opt_v,
                }
            )
        print(f"polyprog {name}: {elapsed:.1f}s  " + "  ".join(f"p={r['p']}: {r['final_loss_mean']:.4f}" for r in rows[-n_p:]))
        rows[-1]["elapsed_s"] = elapsed
    return {
        "benchmark": "polyprog",
        "protocol": {
            "source": "Liu et al., NeurIPS 2023 (ReinMax), polynomial programming; microsoft/ReinMax poly/",
            "latent": latent,
            "categories": 2,
            "target": POLY_TARGET,
            "p": list(ps),
            "batch": batch,
            "steps": steps,
            "steps_per_epoch": steps_per_epoch,
            "optimizer": "Adam",
            "lr": lr,
            "tau": tau,
            "seeds": seeds,
            "gumbel_rao_k": k,
            "reinforce_samples": reinforce_samples or batch,
            "init": "U(-0.01, 0.01), seed s -> torch.Generator().manual_seed(s)",
            "noise_seed": noise_seed,
            "reported": "mean training loss over the last epoch, evaluated at the exact (hard) sample",
        },
        "reference_p2": POLY_REFERENCE_P2,
        "results": rows,
        "env": _env(),
    }


def by_opts(payload: dict[str, Any], name: str) -> dict[str, Any]:
    for r in payload["results"]:
        if r["estimator"] == name:
            return dict(r.get("options", {}))
    return {}


def merge_polyprog(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Rows of ``new`` replace rows of ``old`` with the same (estimator, p); the rest are kept."""
    keys = {(r["estimator"], r["p"]) for r in new["results"]}
    kept = [r for r in old.get("results", []) if (r["estimator"], r["p"]) not in keys]
    out = dict(new)
    out["results"] = kept + new["results"]
    out["protocol"] = dict(new["protocol"])
    out["protocol"]["p"] = sorted({r["p"] for r in out["results"]})
    out["protocol"]["seeds"] = "per row (see results[].seeds)"
    return out


def _poly_markdown(payload: dict[str, Any]) -> str:
    pr = payload["protocol"]
    ps = pr["p"]
    by = {(r["estimator"], r["p"]): r for r in payload["results"]}
    names = list(dict.fromkeys(r["estimator"] for r in payload["results"]))
    lines = [
        "# Polynomial programming (ReinMax, Liu et al. 2023)",
        "",
        f"{pr['latent']} binary variables, loss mean|z - {pr['target']}|^p, batch {pr['batch']}, "
        f"{pr['steps']} Adam steps at lr {pr['lr']}, tau {pr['tau']}; "
        f"mean training loss of the last epoch ({pr['steps_per_epoch']} steps) +- std over seeds, "
        f"and its gap to the exact optimum 0.45^p. Gumbel-Rao k = {pr['gumbel_rao_k']}; "
        f"reinforce = score function with a leave-one-out baseline over the {pr['reinforce_samples']} batch samples.",
        "",
        "| estimator | seeds | " + " | ".join(f"p = {p}" for p in ps) + " | reference run, p = 2 |",
        "|---|---|" + "---|" * len(ps) + "---|",
    ]
    for n in names:
        cells = []
        for p in ps:
            r = by.get((n, p))
            cells.append(
                "-" if r is None else f"{r['final_loss_mean']:.4f} +- {r['final_loss_std']:.1g} ({r['gap_pct']:+.1f}%)"
            )
        ref = payload["reference_p2"].get(n)
        seeds = sorted({r["seeds"] for r in payload["results"] if r["estimator"] == n})
        label = n + "".join(f" {k}={v}" for k, v in by_opts(payload, n).items())
        lines.append(f"| {label} | {'/'.join(map(str, seeds))} | " + " | ".join(cells) + f" | {ref if ref is not None else '-'} |")
    lines.append("| exact optimum 0.45^p | | " + " | ".join(f"{POLY_TARGET ** p:.4f}" for p in ps) + " | 0.2025 |")
    lines += [
        "",
        "Reference run: ../shared/REFERENCES.md (p = 2, 3 seeds). Regenerate: "
        "`gumbelkit estimators polyprog` runs the full protocol (10 seeds, every p) in one command; "
        "rows with other seed counts come from separate runs merged into the same JSON: "
        "`gumbelkit estimators polyprog --estimators NAME --p P --seeds S --merge` "
        "(`--render` re-renders this table from the JSON).",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- qp


def _qp_setup(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    i = torch.arange(3, dtype=dtype)
    q = torch.exp(-2.0 * (i[:, None] - i[None, :]).abs())  # (3, 3)
    c = torch.full((3,), 1.0 / 3.0, dtype=dtype)
    return q, c


def run_qp(
    taus: Sequence[float] = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
    ks: Sequence[int] = (1, 10, 100),
    n_draws: int = 20000,
    logits: Sequence[float] = (0.5, 0.0, -0.5),
    seed: int = 0,
) -> dict[str, Any]:
    """Bias / variance of ST-GS and Gumbel-Rao(K) on the 3-simplex quadratic program."""
    import gumbelkit.diagnostics as D

    q, c = _qp_setup()
    theta = torch.tensor(list(logits), dtype=torch.float64)

    def f(z: torch.Tensor) -> torch.Tensor:  # (M, 3) -> (M,)
        y = z - c
        return ((y @ q) * y).sum(dim=-1)

    rows: list[dict[str, Any]] = []
    for tau in taus:
        configs: list[tuple[str, str, dict[str, Any]]] = [("st_gs", "st_gs", {})]
        configs += [(f"gumbel_rao(k={k})", "gumbel_rao", {"k": k}) for k in ks]
        for label, name, opts in configs:
            r = D.estimator_stats(theta, f, name, tau=tau, n_draws=n_draws, seed=seed, **opts)
            r.update(label=label, tau=tau)
            rows.append(r)
    return {
        "benchmark": "qp",
        "protocol": {
            "source": "Paulus, Maddison, Krause, ICLR 2021 (Gumbel-Rao), quadratic program on the 3-simplex",
            "f": "(D - c)^T Q (D - c), Q_ij = exp(-2|i-j|), c_i = 1/3",
            "logits": list(logits),
            "taus": list(taus),
            "ks": list(ks),
            "n_draws": n_draws,
            "seed": seed,
            "dtype": "float64",
        },
        "results": [{k: v for k, v in r.items() if k != "mean_grad"} | {"mean_grad": r["mean_grad"]} for r in rows],
        "env": _env(),
    }


def _qp_markdown(payload: dict[str, Any]) -> str:
    pr = payload["protocol"]
    lines = [
        "# Quadratic program on the 3-simplex (Gumbel-Rao, Paulus et al. 2021)",
        "",
        f"f(D) = {pr['f']}; logits {pr['logits']}; {pr['n_draws']} draws per cell, float64. "
        "Bias = |mean estimate - exact gradient|, variance = trace of the estimate's covariance, "
        "MSE = mean |estimate - exact|^2.",
        "",
        "| tau | estimator | bias norm | cosine | variance | MSE |",
        "|---|---|---|---|---|---|",
    ]
    for r in payload["results"]:
        lines.append(
            f"| {r['tau']} | {r['label']} | {r['bias_norm']:.4g} | {r['cosine']:.4f} | "
            f"{r['variance']:.4g} | {r['mse']:.4g} |"
        )
    lines += ["", "Regenerate: `gumbelkit estimators qp`.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- exact


def decoder_objective(
    n_vars: int = 8, n_cats: int = 4, dim_out: int = 16, seed: int = 0
) -> tuple[torch.Tensor, Any]:
    """A synthetic categorical 'decoder': logits and ``f(z) = |x - tanh(W vec(z) + b)|^2``.

    Returns:
        ``(logits (n_vars, n_cats) float64, f)`` with ``f`` mapping ``(M, n_vars, n_cats)`` to ``(M,)``.
    """
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n_vars, n_cats, generator=g, dtype=torch.float64)
    w = torch.randn(n_vars * n_cats, dim_out, generator=g, dtype=torch.float64) / math.sqrt(n_vars)
    b = torch.randn(dim_out, generator=g, dtype=torch.float64) * 0.1
    x = torch.randn(dim_out, generator=g, dtype=torch.float64).tanh()

    def f(z: torch.Tensor) -> torch.Tensor:  # (M, n_vars, n_cats) -> (M,)
        h = torch.tanh(z.reshape(*z.shape[:-2], -1).to(w.dtype) @ w + b)  # (M, dim_out)
        return (h - x).pow(2).sum(dim=-1)

    return logits, f


def run_exact(
    n_vars: int = 8,
    n_cats: int = 4,
    n_draws: int = 2000,
    tau: float = 1.0,
    seed: int = 0,
    reinforce_samples: int = 4,
    k: int = 10,
) -> dict[str, Any]:
    """Every estimator's bias / cosine / variance / MSE against the enumerated gradient."""
    import gumbelkit.diagnostics as D

    logits, f = decoder_objective(n_vars, n_cats, seed=seed)
    t0 = time.perf_counter()
    value, grad = D.exact_gradient(logits, f)
    t_exact = time.perf_counter() - t0
    options = {"gumbel_rao": {"k": k}, "reinforce": {"n_samples": reinforce_samples}}
    rows = D.compare(logits, f, E.estimator_names(), tau=tau, n_draws=n_draws, seed=seed, options=options, exact=(value, grad))
    rows += D.compare(logits, f, ("gst",), tau=tau, n_draws=n_draws, seed=seed, options={"gst": {"gap": "p"}}, exact=(value, grad))
    for extra_tau in (1.5, 2.0):
        rows += D.compare(logits, f, ("reinmax",), tau=extra_tau, n_draws=n_draws, seed=seed, exact=(value, grad))
    return {
        "benchmark": "exact",
        "protocol": {
            "objective": "synthetic decoder f(z) = |x - tanh(W vec(z) + b)|^2, W ~ N(0, 1/n_vars)",
            "n_vars": n_vars,
            "n_cats": n_cats,
            "configurations": n_cats**n_vars,
            "n_draws": n_draws,
            "tau": tau,
            "seed": seed,
            "options": options,
            "dtype": "float64",
        },
        "exact_value": float(value),
        "exact_grad_norm": float(grad.norm()),
        "enumeration_s": t_exact,
        "results": rows,
        "env": _env(),
    }


def _exact_markdown(payload: dict[str, Any]) -> str:
    import gumbelkit.diagnostics as D

    pr = payload["protocol"]
    head = [
        "# Exact-gradient comparison (synthetic categorical decoder)",
        "",
        f"{pr['n_vars']} variables x {pr['n_cats']} categories = {pr['configurations']} configurations "
        f"enumerated in {payload['enumeration_s']:.2f}s; |exact gradient| = {payload['exact_grad_norm']:.4g}; "
        f"{pr['n_draws']} draws per estimator, tau = {pr['tau']} unless stated. noise_floor = "
        "sqrt(variance / draws) is the bias norm an unbiased estimator would show from Monte Carlo "
        "error alone.",
        "",
        "",
    ]
    return "\n".join(head) + D.to_markdown(payload["results"]) + "\nRegenerate: `gumbelkit estimators exact`.\n"


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gumbelkit estimators", description="Published small estimator benchmarks.")
    sub = p.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default results/estimators)")
        sp.add_argument("--quick", action="store_true", help="tiny run for smoke tests")
        sp.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")

    pp = sub.add_parser("polyprog", help="ReinMax's polynomial programming table")
    common(pp)
    pp.add_argument("--estimators", default=",".join(POLY_ESTIMATORS), help="comma-separated registry names")
    pp.add_argument("--p", default="1.5,2,3", help="comma-separated exponents")
    pp.add_argument("--seeds", type=int, default=10)
    pp.add_argument("--steps", type=int, default=8000)
    pp.add_argument("--steps-per-epoch", type=int, default=200)
    pp.add_argument("--batch", type=int, default=64)
    pp.add_argument("--lr", type=float, default=1e-3)
    pp.add_argument("--tau", type=float, default=1.0)
    pp.add_argument("--k", type=int, default=10, help="Gumbel-Rao samples")
    pp.add_argument("--render", action="store_true", help="only re-render polyprog.md from polyprog.json")
    pp.add_argument(
        "--merge", action="store_true", help="keep rows of an existing polyprog.json for other (estimator, p)"
    )

    qp = sub.add_parser("qp", help="Gumbel-Rao's quadratic program: bias/variance vs tau")
    common(qp)
    qp.add_argument("--draws", type=int, default=20000)
    qp.add_argument("--taus", default="0.1,0.25,0.5,1,2,5")

    ex = sub.add_parser("exact", help="exact-gradient comparison on a synthetic 8x4 decoder")
    common(ex)
    ex.add_argument("--draws", type=int, default=2000)
    ex.add_argument("--tau", type=float, default=1.0)
    ex.add_argument("--vars", type=int, default=8)
    ex.add_argument("--cats", type=int, default=4)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gumbelkit estimators BENCHMARK [options]``."""
    args = _parser().parse_args(list(argv) if argv is not None else None)
    torch.set_num_threads(max(1, args.threads))
    if args.bench == "polyprog" and args.render:
        payload = json.loads((args.out / "polyprog.json").read_text())
        (args.out / "polyprog.md").write_text(_poly_markdown(payload))
        print(f"wrote {args.out / 'polyprog.md'}")
    elif args.bench == "polyprog":
        names = [n for n in args.estimators.split(",") if n]
        for n in names:
            E.spec(n)  # ValueError listing valid names
        ps = [float(x) for x in args.p.split(",") if x]
        if args.quick:
            kw = dict(seeds=2, steps=40, steps_per_epoch=20, batch=8, latent=16)
        else:
            kw = dict(seeds=args.seeds, steps=args.steps, steps_per_epoch=args.steps_per_epoch, batch=args.batch)
        payload = run_polyprog(
            names, ps, lr=args.lr, tau=args.tau, k=args.k, log_every=0 if args.quick else 500, **kw  # type: ignore[arg-type]
        )
        payload["quick"] = bool(args.quick)
        existing = args.out / "polyprog.json"
        args.out.mkdir(parents=True, exist_ok=True)
        fd = os.open(args.out, os.O_RDONLY)  # lock the folder itself: no lock file left behind
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # concurrent --merge runs must not drop each other's rows
            if args.merge and existing.exists():
                payload = merge_polyprog(json.loads(existing.read_text()), payload)
            _write(args.out, "polyprog", payload, _poly_markdown(payload))
        finally:
            os.close(fd)
    elif args.bench == "qp":
        taus = [float(x) for x in args.taus.split(",") if x]
        if args.quick:
            payload = run_qp(taus=taus[:2], ks=(1, 10), n_draws=200)
        else:
            payload = run_qp(taus=taus, n_draws=args.draws)
        payload["quick"] = bool(args.quick)
        _write(args.out, "qp", payload, _qp_markdown(payload))
        import gumbelkit.diagnostics as D

        fig = D.plot(payload["results"], ("bias_norm", "variance", "mse"))
        fig.savefig(args.out / "qp.png", dpi=110)
        print(f"wrote {args.out / 'qp.png'}")
    else:
        if args.quick:
            payload = run_exact(n_vars=3, n_cats=3, n_draws=50, tau=args.tau)
        else:
            payload = run_exact(n_vars=args.vars, n_cats=args.cats, n_draws=args.draws, tau=args.tau)
        payload["quick"] = bool(args.quick)
        _write(args.out, "exact", payload, _exact_markdown(payload))
    return 0
