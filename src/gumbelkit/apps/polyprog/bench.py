r"""The published small estimator benchmarks: ``gumbelkit estimators {polyprog,qp,exact}``.

Each subcommand writes ``<name>.json`` (every number, with the protocol that produced it) and
``<name>.md`` (a table rendered from that JSON) into the run directory ``runs/estimators/``
(``--out`` to change; it refuses to replace an earlier ``<name>.json`` there unless
``--overwrite``, or ``--merge`` for polyprog); ``--quick`` runs a tiny version for smoke tests.
The committed tables in ``results/estimators/`` are regenerated only when asked explicitly:
``--out results/estimators --overwrite``.

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
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from gumbelkit import estimators as E
from gumbelkit._validation import validate_args

__all__ = ["main", "run_exact", "run_polyprog", "run_qp"]

DEFAULT_OUT = Path("runs/estimators")
COMMITTED = Path("results/estimators")  # where the committed tables live (regenerate explicitly)

POLY_ESTIMATORS = ("st", "st_gs", "gumbel_rao", "gst", "reinmax", "gs", "decoupled_st", "reinforce", "indecater",
                   "bernoulli:st", "bernoulli:st_gs", "bernoulli:reinmax", "bernoulli:decoupled_st", "bernoulli:gs")
#: decoupled ST's backward temperature in the polynomial benchmark (tau_forward = 1: the samples
#: come from the model, so the reported loss is the model's)
POLY_DECOUPLED_TAU_B = 0.5
BERNOULLI_PREFIX = "bernoulli:"


def check_poly_name(name: str) -> str:
    """A registry name, or ``bernoulli:<name>`` for the Bernoulli version (one logit per variable)."""
    if name.startswith(BERNOULLI_PREFIX):
        base = name[len(BERNOULLI_PREFIX):]
        if base not in E.bernoulli_names():
            raise ValueError(f"unknown Bernoulli estimator {base!r}; known: {', '.join(E.bernoulli_names())}")
        return name
    E.spec(name)  # ValueError listing valid names
    return name
POLY_P = (1.5, 2.0, 3.0)
POLY_TARGET = 0.45


def _env() -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
    }


def _provenance(command: Sequence[str] | None = None) -> dict[str, Any]:
    """Git state and command; ``command`` is the equivalent ``gumbelkit estimators ...`` line."""
    from gumbelkit.apps.provenance import provenance

    return provenance(command)


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
    decoupled_tau_b: float = POLY_DECOUPLED_TAU_B,
) -> dict[str, Any]:
    """Train the polynomial-programming toy for every estimator; return the JSON payload.

    For ``gs`` the training loss is the relaxed one; the *reported* loss is always evaluated at
    the exact sample ``indices`` (the hard one-hot), so all rows measure the same quantity.
    ``reinforce`` uses the batch's ``batch`` samples with a leave-one-out baseline; ``indecater``
    one sample per step (``1 + 128 x 2`` evaluations of the loss; the loss is a sum of
    one-variable terms, so its gradient is exact). ``bernoulli:<name>`` trains one log-odds per
    variable, initialised to the difference of the two categorical logits, with
    :func:`gumbelkit.estimators.sample_bernoulli` (z = 1 is the categorical's category 0).
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
        bern = name.startswith(BERNOULLI_PREFIX)
        base = name[len(BERNOULLI_PREFIX):] if bern else name
        start = init[..., 0] - init[..., 1] if bern else init  # (S, L) log-odds of category 0, or (S, L, 2)
        theta = torch.nn.Parameter(start.unsqueeze(0).repeat(n_p, *([1] * start.ndim)))  # (P, S, L[, 2])
        opt = torch.optim.Adam([theta], lr=lr)
        gen = torch.Generator().manual_seed(noise_seed)
        epoch_sum = torch.zeros(n_p, seeds, dtype=torch.float64)
        last_epoch = torch.zeros(n_p, seeds, dtype=torch.float64)
        opts: dict[str, Any] = {"k": k} if base == "gumbel_rao" else {}
        tau_used = tau
        if base == "decoupled_st":
            opts, tau_used = {"tau_forward": 1.0}, decoupled_tau_b
        for step in range(steps):
            # the data checks (NaN / all-masked logits) cost a pass per step; theta is finite
            if bern:
                logits_b = theta.unsqueeze(2).expand(n_p, seeds, batch, latent)  # (P, S, B, L)
                sb = E.sample_bernoulli(logits_b, base, tau_used, generator=gen, **opts)
                loss = _poly_loss(sb.output, pt).mean(dim=-1).sum()
                with torch.no_grad():
                    reported = _poly_loss(sb.hard, pt).mean(dim=-1)  # (P, S)
            elif name == "indecater":

                def f1(h: torch.Tensor) -> torch.Tensor:  # (M, P, S, L, 2) -> (M, P, S)
                    return _poly_loss(h[..., 0], pt.squeeze(-1))

                ind = E.indecater(theta, f1, 1, generator=gen)
                loss = ind.loss.sum()
                reported = ind.values.detach().mean(dim=0)  # (P, S): the one sample's loss
            elif name == "reinforce":

                def f(h: torch.Tensor) -> torch.Tensor:  # (B, P, S, L, 2) -> (B, P, S)
                    return _poly_loss(h[..., 0], pt.squeeze(-1))

                out = E.reinforce_loo(theta, f, reinforce_samples or batch, generator=gen)
                loss = out.loss.sum()  # sum over (P, S): each run gets exactly its own gradient
                reported = out.values.detach().mean(dim=0)  # (P, S)
            else:
                logits = theta.unsqueeze(2).expand(n_p, seeds, batch, latent, 2)  # (P, S, B, L, 2)
                s = E.sample(logits, name, tau_used, generator=gen, **opts)
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
                    "options": {**opts, **({"tau": tau_used} if tau_used != tau else {})},
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
            "decoupled_st": f"tau_forward 1, backward tau {decoupled_tau_b}",
            "indecater_samples": 1,
            "reinforce_samples": reinforce_samples or batch,
            "init": "U(-0.01, 0.01), seed s -> torch.Generator().manual_seed(s)",
            "noise_seed": noise_seed,
            "reported": "mean training loss over the last epoch, evaluated at the exact (hard) sample",
        },
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
        "| estimator | seeds | " + " | ".join(f"p = {p}" for p in ps) + " |",
        "|---|---|" + "---|" * len(ps),
    ]
    for n in names:
        cells = []
        for p in ps:
            r = by.get((n, p))
            cells.append(
                "-" if r is None else f"{r['final_loss_mean']:.4f} +- {r['final_loss_std']:.1g} ({r['gap_pct']:+.1f}%)"
            )
        seeds = sorted({r["seeds"] for r in payload["results"] if r["estimator"] == n})
        label = n + "".join(f" {k}={v}" for k, v in by_opts(payload, n).items())
        lines.append(f"| {label} | {'/'.join(map(str, seeds))} | " + " | ".join(cells) + " |")
    lines.append("| exact optimum 0.45^p | | " + " | ".join(f"{POLY_TARGET ** p:.4f}" for p in ps) + " |")
    lines += [
        "",
        "Protocol of Liu et al., *Bridging Discrete and Backpropagation: Straight-Through and Beyond*, "
        "NeurIPS 2023, Sec. 6.1. Regenerate: "
        f"`gumbelkit estimators polyprog --out {COMMITTED} --overwrite` runs the full protocol (10 seeds, "
        "every p) in one command; "
        "rows with other seed counts come from separate runs merged into the same JSON: "
        f"`gumbelkit estimators polyprog --out {COMMITTED} --estimators NAME --p P --seeds S --merge` "
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


def qp_figure(payload: dict[str, Any], path: Path) -> Path:
    """Bias, variance and MSE against tau, one line per estimator, in the shared plotting style.

    ``gumbel_rao(k=1)`` is ST-GS on the same noise, bit for bit: it is drawn dashed with open
    markers over the solid ``st_gs`` line so that both stay visible.
    """
    from gumbelkit.apps import plotting

    rows = payload["results"]
    labels = list(dict.fromkeys(r["label"] for r in rows))
    reds = {"1": "#fc9272", "10": "#de2d26", "100": "#67000d"}
    fig = plotting.figure(11, 3.9)
    axes = fig.subplots(1, 3)
    for ax, (metric, title) in zip(axes, (("bias_norm", "bias |E[g] - grad|"), ("variance", "variance (trace)"),
                                          ("mse", "mean squared error")), strict=True):
        for lab in labels:
            pts = sorted((r["tau"], r[metric]) for r in rows if r["label"] == lab)
            style = plotting.estimator_style(lab)
            k = lab.partition("k=")[2].rstrip(")")
            if k:
                style = {**style, "color": reds.get(k, style["color"])}
                if k != "1":
                    style.update(linestyle="-", markerfacecolor=style["color"])
            shown = f"{lab} (= st_gs on the same noise)" if k == "1" else lab
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=shown, ms=4, **style)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tau (log scale)")
        ax.set_title(title)
        plotting.style_axes(ax)
    plotting.legend_outside(fig, [axes[0]], where="below", ncols=4)
    return plotting.save(fig, path)


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
    lines += ["", f"Regenerate: `gumbelkit estimators qp --out {COMMITTED} --overwrite`.", ""]
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
    # decoupled ST off the diagonal: sampling from the model (tau_forward = 1) with a sharper and a
    # softer backward, and the paper's VAE-style pair (tau_forward > tau_b)
    for tb, tf in ((0.5, 1.0), (2.0, 1.0), (0.5, 2.0)):
        rows += D.compare(logits, f, ("decoupled_st",), tau=tb, n_draws=n_draws, seed=seed,
                          options={"decoupled_st": {"tau_forward": tf}}, exact=(value, grad))
    # the Bernoulli versions on 12 binary units of the same kind of decoder
    blogits, bf = decoder_objective(12, 2, seed=seed)
    btheta = blogits[:, 0] - blogits[:, 1]
    bvalue, bgrad = D.exact_gradient(btheta, lambda z: bf(torch.stack([z, 1 - z], -1)), family="bernoulli")
    brows = D.compare(btheta, lambda z: bf(torch.stack([z, 1 - z], -1)), tau=tau, n_draws=n_draws, seed=seed,
                      exact=(bvalue, bgrad), family="bernoulli")
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
        "bernoulli": {"n_vars": 12, "exact_grad_norm": float(bgrad.norm()), "results": brows},
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
    body = "\n".join(head) + D.to_markdown(payload["results"])
    if "bernoulli" in payload:
        b = payload["bernoulli"]
        body += (f"\nBernoulli versions (`sample_bernoulli`) on {b['n_vars']} binary units (2^{b['n_vars']} "
                 f"configurations enumerated), |exact gradient| = {b['exact_grad_norm']:.4g}:\n\n"
                 + D.to_markdown(b["results"]))
    return body + f"\nRegenerate: `gumbelkit estimators exact --out {COMMITTED} --overwrite`.\n"


# --------------------------------------------------------------------------- anneal


def anneal_schedules(steps: int) -> dict[str, Any]:
    """Fixed temperatures and annealed schedules for a run of ``steps`` steps (pure functions)."""
    from gumbelkit.schedules import ConstantTau, ExponentialTau, LinearTau

    every = max(steps // 100, 1)
    return {
        "fixed 0.1": ConstantTau(0.1),
        "fixed 0.5": ConstantTau(0.5),
        "fixed 1": ConstantTau(1.0),
        "fixed 2": ConstantTau(2.0),
        # Jang et al.'s form, from 2 to 0.1, reaching 0.1 at 80% of the run
        "exp 2 -> 0.1": ExponentialTau(tau0=2.0, tau_end=0.1, rate=math.log(20) / (0.8 * steps), every=every),
        "linear 2 -> 0.1": LinearTau(tau0=2.0, tau_end=0.1, total=int(0.8 * steps)),
        "exp 1 -> 0.5 (Jang's defaults)": ExponentialTau(tau0=1.0, tau_end=0.5, rate=3e-5, every=1000),
    }


def _exact_poly(theta: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``E[mean_i |z_i - 0.45|^p]`` and its gradient for logits ``(*, L, 2)`` (z = 1 is category 0)."""
    q = torch.softmax(theta.detach().double(), -1)[..., 0]  # (*, L)
    a, b = (1 - POLY_TARGET) ** p, POLY_TARGET**p
    value = (q * a + (1 - q) * b).mean(-1)  # (*,)
    dq = q * (1 - q) * (a - b) / theta.shape[-2]  # d/d theta_i0; d/d theta_i1 is its negative
    return value, torch.stack([dq, -dq], -1)


@validate_args(False)
def run_anneal(
    estimators: Sequence[str] = ("st_gs", "gs"),
    p: float = 2.0,
    seeds: int = 5,
    steps: int = 8000,
    batch: int = 64,
    latent: int = 128,
    lr: float = 1e-3,
    diag_every: int = 1000,
    diag_draws: int = 512,
    noise_seed: int = 1234,
) -> dict[str, Any]:
    r"""Polynomial programming under fixed and annealed tau: final exact loss, relaxed-vs-hard gap,
    and the gradient's bias and variance against the exact gradient over training.

    The *hard* (one-hot) model is what is evaluated: the exact expected loss
    :math:`\frac1L\sum_i q_i\,0.55^p + (1-q_i)\,0.45^p` of the trained logits. The relaxed-vs-hard
    gap is the mean of ``f(soft) - f(hard)`` at the same draws over the last 10% of steps (what a
    relaxed (GS) objective reports on top of the true one). Every ``diag_every`` steps, ``diag_draws``
    single-sample gradients at the current logits of seed 0 are compared with the exact gradient
    (relative bias with the Monte Carlo part removed, and relative variance).
    """
    import gumbelkit.diagnostics as D

    init = torch.stack(
        [torch.empty(latent, 2).uniform_(-0.01, 0.01, generator=torch.Generator().manual_seed(s)) for s in range(seeds)]
    )  # (S, L, 2)
    scheds = anneal_schedules(steps)
    runs: list[dict[str, Any]] = []
    for name in estimators:
        for label, sched in scheds.items():
            t0 = time.perf_counter()
            theta = torch.nn.Parameter(init.clone())
            opt = torch.optim.Adam([theta], lr=lr)
            gen = torch.Generator().manual_seed(noise_seed)
            dgen = torch.Generator().manual_seed(noise_seed + 1)
            curve, diags, gaps = [], [], []
            for step in range(steps):
                tau = float(sched(step))
                logits = theta.unsqueeze(1).expand(seeds, batch, latent, 2)  # (S, B, L, 2)
                s = E.sample(logits, name, tau, generator=gen)
                loss = _poly_loss(s.output[..., 0], torch.tensor(p)).mean(-1).sum()
                if step >= int(0.9 * steps):
                    with torch.no_grad():
                        gaps.append(float((_poly_loss(s.soft[..., 0], torch.tensor(p))
                                           - _poly_loss(s.hard[..., 0], torch.tensor(p))).mean()))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if step % diag_every == 0 or step == steps - 1:
                    value, exact = _exact_poly(theta, p)  # (S,), (S, L, 2)
                    th0 = theta.detach()[0].double()

                    def f(z: torch.Tensor) -> torch.Tensor:  # (M, L, 2) -> (M,)
                        return _poly_loss(z[..., 0], torch.tensor(p, dtype=z.dtype))

                    st = D.estimator_stats(th0, f, name, tau, n_draws=diag_draws, seed=int(torch.randint(0, 2**31, (1,), generator=dgen)),
                                           exact=(value[0], exact[0]))
                    tn2 = st["exact_norm"] ** 2
                    diags.append({"step": step, "tau": tau, "exact_loss_mean": float(value.mean()),
                                  "rel_bias2_unbiased": (st["bias_norm"] ** 2 - st["variance"] / diag_draws) / max(tn2, 1e-300),
                                  "rel_var": st["variance"] / max(tn2, 1e-300), "cosine": st["cosine"],
                                  "exact_grad_norm": st["exact_norm"]})
                    curve.append((step, float(value.mean())))
            final, _ = _exact_poly(theta, p)
            runs.append({
                "estimator": name, "schedule": label, "tau_first_last": [float(sched(0)), float(sched(steps - 1))],
                "final_exact_loss_per_seed": final.tolist(), "final_exact_loss_mean": float(final.mean()),
                "final_exact_loss_sd": float(final.std()) if seeds > 1 else float("nan"),
                "relaxed_minus_hard_last10pct": statistics.fmean(gaps) if gaps else float("nan"),
                "exact_loss_curve": curve, "gradient_diagnostics": diags,
                "elapsed_s": time.perf_counter() - t0,
            })
            print(f"anneal {name} {label}: final exact loss {float(final.mean()):.4f}", flush=True)
    return {
        "benchmark": "anneal",
        "protocol": {"task": "ReinMax polynomial programming", "p": p, "latent": latent, "batch": batch,
                     "steps": steps, "lr": lr, "seeds": seeds, "diag_every": diag_every, "diag_draws": diag_draws,
                     "optimum": POLY_TARGET**p, "schedules": {k: repr(v) for k, v in scheds.items()}},
        "results": runs,
        "env": _env(),
    }


def _anneal_markdown(payload: dict[str, Any]) -> str:
    pr = payload["protocol"]
    lines = [
        "# Annealing on polynomial programming",
        "",
        f"{pr['latent']} binary variables, p = {pr['p']}, batch {pr['batch']}, {pr['steps']} Adam steps at lr "
        f"{pr['lr']}, {pr['seeds']} seeds; optimum {pr['optimum']:.4f}. Final exact expected loss of the hard "
        "(one-hot) model; relaxed - hard = mean f(soft) - f(hard) at the same draws over the last 10% of steps; "
        "gradient bias^2 / |g|^2 (Monte Carlo part removed) and variance / |g|^2 of one-sample gradients against "
        "the exact gradient, averaged over the checkpoints of seed 0.",
        "",
        "| estimator | schedule | tau first -> last | final exact loss (mean +- sd) | relaxed - hard | rel. bias^2 | rel. variance |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in payload["results"]:
        d = r["gradient_diagnostics"]
        b2 = statistics.fmean(x["rel_bias2_unbiased"] for x in d)
        v = statistics.fmean(x["rel_var"] for x in d)
        t = r["tau_first_last"]
        lines.append(f"| {r['estimator']} | {r['schedule']} | {t[0]:g} -> {t[1]:.3g} | {r['final_exact_loss_mean']:.4f} +- "
                     f"{r['final_exact_loss_sd']:.4f} | {r['relaxed_minus_hard_last10pct']:+.4f} | {b2:.3g} | {v:.3g} |")
    command = payload.get("provenance", {}).get("command") or "gumbelkit estimators anneal"
    lines += ["", f"Regenerate: `{command}`.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    from gumbelkit.apps.cli import version

    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(prog="gumbelkit estimators", description="Published small estimator benchmarks.",
                                formatter_class=fmt)
    p.add_argument("--version", action="version", version=version())
    sub = p.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output folder (the committed tables: --out {COMMITTED} --overwrite)")
        sp.add_argument("--overwrite", action="store_true",
                        help="replace the benchmark's files already in --out")
        sp.add_argument("--quick", action="store_true", help="tiny run for smoke tests (seconds)")
        sp.add_argument("--threads", type=_positive_int, default=1, help="torch CPU threads")

    names = ", ".join(E.estimator_names())
    pp = sub.add_parser("polyprog", help="ReinMax's polynomial programming table", formatter_class=fmt,
                        description="ReinMax's polynomial programming (Liu et al. 2023, Sec. 6.1).")
    common(pp)
    pp.add_argument("--estimators", default=",".join(POLY_ESTIMATORS),
                    help=f"comma-separated estimator names, from: {names}")
    pp.add_argument("--p", default="1.5,2,3", help="comma-separated exponents p of the loss mean|z - 0.45|^p")
    pp.add_argument("--seeds", type=_positive_int, default=10, help="seeds (independent runs) per estimator and p")
    pp.add_argument("--steps", type=_positive_int, default=8000, help="Adam steps per run")
    pp.add_argument("--steps-per-epoch", type=_positive_int, default=200,
                    help="steps per epoch; the reported value is the mean loss of the last epoch")
    pp.add_argument("--batch", type=_positive_int, default=64, help="samples per step")
    pp.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam learning rate")
    pp.add_argument("--tau", type=_positive_float, default=1.0, help="temperature (ReinMax needs >= 1)")
    pp.add_argument("--k", type=_positive_int, default=10, help="Gumbel-Rao Monte Carlo samples K")
    pp.add_argument("--render", action="store_true", help="only re-render polyprog.md from polyprog.json in --out")
    pp.add_argument("--merge", action="store_true",
                    help="update an existing polyprog.json in --out: replace its rows of these (estimator, p), "
                    "keep the others")

    qp = sub.add_parser("qp", help="Gumbel-Rao's quadratic program: bias/variance vs tau", formatter_class=fmt,
                        description="Gumbel-Rao's quadratic program on the 3-simplex (Paulus et al. 2021).")
    common(qp)
    qp.add_argument("--draws", type=_positive_int, default=20000, help="gradient draws per (estimator, tau) cell")
    qp.add_argument("--taus", default="0.1,0.25,0.5,1,2,5", help="comma-separated temperatures")
    qp.add_argument("--render", action="store_true", help="only re-render qp.md and qp.png from qp.json in --out")

    an = sub.add_parser("anneal", help="fixed vs annealed tau on polynomial programming, with exact-gradient diagnostics",
                        formatter_class=fmt, description="Fixed against annealed temperatures on polynomial "
                        "programming, with the exact gradient's bias and variance along the run.")
    common(an)
    an.add_argument("--estimators", default="st_gs,gs", help="comma-separated estimator names")
    an.add_argument("--p", type=_positive_float, default=2.0, help="exponent p of the loss mean|z - 0.45|^p")
    an.add_argument("--seeds", type=_positive_int, default=5, help="seeds per (estimator, schedule)")
    an.add_argument("--steps", type=_positive_int, default=8000, help="Adam steps per run")

    ex = sub.add_parser("exact", help="exact-gradient comparison on a synthetic 8x4 decoder", formatter_class=fmt,
                        description="Every estimator against the exact gradient (enumeration) of a synthetic "
                        "categorical decoder objective.")
    common(ex)
    ex.add_argument("--draws", type=_positive_int, default=2000, help="gradient draws per estimator")
    ex.add_argument("--tau", type=_positive_float, default=1.0, help="temperature")
    ex.add_argument("--vars", type=_positive_int, default=8, help="categorical variables (enumeration: cats^vars)")
    ex.add_argument("--cats", type=_positive_int, default=4, help="categories per variable")
    return p


def _refuse_overwrite(out: Path, name: str, overwrite: bool, merge: bool = False) -> None:
    """An earlier result in ``out`` is replaced only when asked (``--overwrite``, or ``--merge``)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    existing = [p for p in (out / f"{name}.json", out / f"{name}.md") if p.exists()]
    if existing and not (overwrite or merge):
        raise ValueError(f"{existing[0]} already exists; pass --overwrite to replace it, or choose another --out"
                         + (" (or --merge to update it)" if name == "polyprog" else ""))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gumbelkit estimators BENCHMARK [options]``; returns the exit code (2: a bad
    request or a filesystem error, with one line on stderr)."""
    from gumbelkit.apps.training.errors import cli_main

    words = list(argv) if argv is not None else sys.argv[1:]
    args = _parser().parse_args(words)
    args.command_words = ["gumbelkit", "estimators", *words]  # recorded in the results' provenance
    return cli_main(f"gumbelkit estimators {args.bench}", lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    if not (args.bench == "polyprog" and args.render):  # --render rewrites only the table of its JSON
        _refuse_overwrite(args.out, args.bench, args.overwrite, merge=getattr(args, "merge", False))
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> int:
    # the git state when the run starts: the code that produces the numbers (a long run must not
    # record the worktree as it is at the end)
    prov = _provenance(args.command_words)
    if args.bench == "polyprog" and args.render:
        source = args.out / "polyprog.json"
        if not source.is_file():
            raise ValueError(f"--render needs {source}; run the benchmark first or pass --out")
        payload = json.loads(source.read_text())
        (args.out / "polyprog.md").write_text(_poly_markdown(payload))
        print(f"wrote {args.out / 'polyprog.md'}")
    elif args.bench == "polyprog":
        names = [check_poly_name(n) for n in args.estimators.split(",") if n]
        ps = [float(x) for x in args.p.split(",") if x]
        if args.quick:
            kw = dict(seeds=2, steps=40, steps_per_epoch=20, batch=8, latent=16)
        else:
            kw = dict(seeds=args.seeds, steps=args.steps, steps_per_epoch=args.steps_per_epoch, batch=args.batch)
        payload = run_polyprog(
            names, ps, lr=args.lr, tau=args.tau, k=args.k, log_every=0 if args.quick else 500, **kw  # type: ignore[arg-type]
        )
        payload["quick"] = bool(args.quick)
        payload["provenance"] = prov
        existing = args.out / "polyprog.json"
        args.out.mkdir(parents=True, exist_ok=True)
        fd = os.open(args.out, os.O_RDONLY)  # lock the folder itself: no lock file left behind
        try:
            import fcntl  # POSIX only: imported where --merge needs it

            fcntl.flock(fd, fcntl.LOCK_EX)  # concurrent --merge runs must not drop each other's rows
            if args.merge and existing.exists():
                payload = merge_polyprog(json.loads(existing.read_text()), payload)
            _write(args.out, "polyprog", payload, _poly_markdown(payload))
        finally:
            os.close(fd)
    elif args.bench == "qp" and args.render:
        payload = json.loads((args.out / "qp.json").read_text())
        (args.out / "qp.md").write_text(_qp_markdown(payload))
        print(f"wrote {args.out / 'qp.md'} and {qp_figure(payload, args.out / 'qp.png')}")
    elif args.bench == "anneal":
        names = [check_poly_name(n) for n in args.estimators.split(",") if n]
        if args.quick:
            payload = run_anneal(names, args.p, seeds=2, steps=60, batch=8, latent=16, diag_every=30, diag_draws=64)
        else:
            payload = run_anneal(names, args.p, seeds=args.seeds, steps=args.steps)
        payload["quick"] = bool(args.quick)
        payload["provenance"] = prov
        _write(args.out, "anneal", payload, _anneal_markdown(payload))
    elif args.bench == "qp":
        taus = [float(x) for x in args.taus.split(",") if x]
        if args.quick:
            payload = run_qp(taus=taus[:2], ks=(1, 10), n_draws=200)
        else:
            payload = run_qp(taus=taus, n_draws=args.draws)
        payload["quick"] = bool(args.quick)
        _write(args.out, "qp", payload, _qp_markdown(payload))
        print(f"wrote {qp_figure(payload, args.out / 'qp.png')}")
    else:
        if args.quick:
            payload = run_exact(n_vars=3, n_cats=3, n_draws=50, tau=args.tau)
        else:
            payload = run_exact(n_vars=args.vars, n_cats=args.cats, n_draws=args.draws, tau=args.tau)
        payload["quick"] = bool(args.quick)
        _write(args.out, "exact", payload, _exact_markdown(payload))
    return 0
