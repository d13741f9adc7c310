"""Section 5: temperature schedules, and whether annealing tau pays, measured.

The schedules from the literature are drawn (cheap). The measurements are read from committed
results, not retrained: ``results/estimators/anneal.json`` (ReinMax's polynomial programming,
``gumbelkit estimators anneal``) and ``results/vae/anneal/*.json`` (the categorical VAE,
``python benchmarks/vae_table.py anneal``). Both train with fixed tau in {0.1, 0.5, 1, 2} and with
annealed schedules, evaluate the *hard* (one-hot) model, and record the relaxed-vs-hard gap and the
gradient's bias and variance against the true gradient over training.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from gumbelkit.apps.tour._report import FigureRef, Section, TourContext, fmt
from gumbelkit.schedules import CosineTau, ExponentialTau, InverseTemperatureTau, LinearTau

TITLE = "Annealing"
SCHEDULE_STEPS = 50_000
FIXED = ("fixed 0.1", "fixed 0.5", "fixed 1", "fixed 2")


def committed_results() -> Path:
    """The repository's ``results/`` folder (absent in an installed wheel)."""
    return Path(__file__).resolve().parents[4] / "results"


def _schedules() -> dict[str, Any]:
    return {
        "Jang exponential: max(0.5, exp(-3e-5 t)), every 1000": ExponentialTau(),
        "linear 10 -> 0.1 (GDAS)": LinearTau(10.0, 0.1, SCHEDULE_STEPS),
        "cosine 2 -> 0.1": CosineTau(2.0, 0.1, SCHEDULE_STEPS),
        "RelGAN 1/beta, beta_max = 100": InverseTemperatureTau(1.0, 0.01, SCHEDULE_STEPS),
    }


def _finite(x: Any) -> float | None:
    """``x`` if it is a finite number, else None (one seed has no standard deviation)."""
    return float(x) if isinstance(x, (int, float)) and np.isfinite(x) else None


def _load_poly(root: Path) -> dict[str, Any] | None:
    p = root / "estimators" / "anneal.json"
    if not p.exists():
        return None
    payload = json.loads(p.read_text())
    out: dict[str, Any] = {"protocol": payload["protocol"], "provenance": payload.get("provenance", {}), "rows": {}}
    for r in payload["results"]:
        d = r["gradient_diagnostics"]
        out["rows"].setdefault(r["estimator"], {})[r["schedule"]] = {
            "final_hard_loss": r["final_exact_loss_mean"],
            "final_hard_loss_sd": _finite(r["final_exact_loss_sd"]),
            "relaxed_minus_hard": r["relaxed_minus_hard_last10pct"],
            "rel_bias2": statistics.fmean(x["rel_bias2_unbiased"] for x in d),
            "rel_var": statistics.fmean(x["rel_var"] for x in d),
            "tau_first_last": r["tau_first_last"],
            "diagnostics": [(x["step"], x["tau"], x["rel_bias2_unbiased"], x["rel_var"]) for x in d],
        }
    return out


def _load_vae(root: Path) -> dict[str, Any] | None:
    files = sorted((root / "vae" / "anneal").glob("*.json"))
    if not files:
        return None
    rows: dict[str, dict[str, Any]] = {}
    for p in files:
        r = json.loads(p.read_text())
        curve = r.get("valid_curve", [])
        diag = [c for c in curve if "grad_rel_var" in c]
        entry: dict[str, Any] = {"diverged": bool(r.get("diverged"))}
        if not entry["diverged"]:
            res = r["results"]
            entry.update({
                "test_neg_elbo": res["test"]["neg_elbo"],
                "valid_neg_elbo": res["valid"]["neg_elbo"],
                "relaxed_gap": res["valid"].get("relaxed_gap", 0.0),
                "final_tau": res["final_tau"],
                "epochs": res["epochs"],
                "commit": (res.get("provenance") or {}).get("git", {}).get("commit"),
            })
        if diag:
            entry["rel_bias2"] = statistics.fmean(c["grad_rel_bias2_unbiased"] for c in diag)
            entry["rel_var"] = statistics.fmean(c["grad_rel_var"] for c in diag)
            entry["reference_exact"] = bool(diag[0]["reference_exact"])
            entry["diagnostics"] = [(c["step"], c.get("tau"), c["grad_rel_bias2_unbiased"], c["grad_rel_var"])
                                    for c in diag]
        rows.setdefault(r["estimator"], {})[r["schedule"]] = entry
    return {"rows": rows}


def _verdict(rows: dict[str, Any], key: str, task: str, unit: str, digits: int = 4) -> tuple[str, dict[str, Any]]:
    """One sentence per estimator: best fixed tau vs best annealed schedule (lower is better)."""
    parts, summary = [], {}
    for est, by in rows.items():
        ok = {k: v for k, v in by.items() if not v.get("diverged") and key in v}
        fixed = {k: v[key] for k, v in ok.items() if k in FIXED}
        ann = {k: v[key] for k, v in ok.items() if k not in FIXED}
        if not fixed or not ann:
            continue
        bf, ba = min(fixed, key=fixed.__getitem__), min(ann, key=ann.__getitem__)
        diff = fixed[bf] - ann[ba]
        summary[est] = {"best_fixed": bf, "best_fixed_value": fixed[bf], "best_annealed": ba,
                        "best_annealed_value": ann[ba], "annealed_better_by": diff}
        verb = "beats" if diff > 0 else "does not beat"
        parts.append(f"{est}: the best annealed schedule ({ba}, {fmt(ann[ba], digits)}) {verb} the best fixed "
                     f"tau ({bf}, {fmt(fixed[bf], digits)}) by {fmt(abs(diff), 2)}{' ' + unit if unit else ''}")
    text = f"{task}: " + "; ".join(parts) + "." if parts else ""
    return text, summary


def _plot_diagnostics(ax_b: Any, ax_v: Any, rows: dict[str, Any], estimator: str, title: str) -> None:
    for sched, v in rows.get(estimator, {}).items():
        d = v.get("diagnostics")
        if not d:
            continue
        steps = [x[0] for x in d]
        ls = "-" if sched in FIXED else "--"
        ax_b.plot(steps, [max(x[2], 1e-6) for x in d], ls, marker=".", label=sched)
        ax_v.plot(steps, [x[3] for x in d], ls, marker=".", label=sched)
    for ax, what in ((ax_b, "bias^2 / |grad|^2"), (ax_v, "variance / |grad|^2")):
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel(what)
        ax.set_title(f"{title}: {what}", fontsize=8)
        ax.grid(True, alpha=0.3)
    ax_b.legend(fontsize=6)


def run(ctx: TourContext) -> Section:
    """Schedules (drawn), then the committed fixed-vs-annealed measurements."""
    bar = ctx.bar(f"5 {TITLE}", total=3)
    t = np.linspace(0, SCHEDULE_STEPS, 501).astype(int)
    fig = Figure(figsize=(6.5, 3.6), layout="constrained")
    ax = fig.subplots()
    sched_numbers = {}
    for name, s in _schedules().items():
        ax.semilogy(t, [s(int(i)) for i in t], label=name)
        sched_numbers[name] = {f"tau_at_{k}": s(k) for k in (0, SCHEDULE_STEPS // 2, SCHEDULE_STEPS)}
    ax.set_xlabel("training step")
    ax.set_ylabel("tau (log scale)")
    ax.set_title("Temperature schedules from the literature")
    ax.legend(fontsize=7)
    figures: list[FigureRef] = [ctx.save_figure(
        fig, "s5_schedules", f"Four temperature schedules over {SCHEDULE_STEPS:,} steps (log scale): each is a pure "
        "function of the step, so a resumed run gets the same tau.")]
    bar.update()

    root = committed_results()
    poly, vae = _load_poly(root), _load_vae(root)
    numbers: dict[str, Any] = {"schedules": sched_numbers, "results_dir": str(root),
                               "polyprog": poly, "vae": vae}
    table: list[tuple[str, str]] = []
    paragraphs = [
        "A schedule is a pure function of the step. Whether lowering tau during training helps is an "
        "empirical question with a mechanism behind it: a low tau makes the relaxed sample close to the "
        "one-hot one (small bias of the relaxed objective and of ST-GS's gradient) but makes the gradient "
        "noisy (its variance grows roughly like 1/tau); a high tau is the opposite. Annealing starts in "
        "the low-variance regime and ends in the low-bias one. Measured below on two tasks, with the hard "
        "(one-hot) model evaluated, against the true gradient."
    ]
    headline_bits = []
    if poly is not None:
        text, summary = _verdict(poly["rows"], "final_hard_loss", "Polynomial programming (final exact loss, lower is better)", "")
        numbers["polyprog_verdict"] = summary
        pr = poly["protocol"]
        paragraphs.append(
            f"{text} (Task: {pr['latent']} binary variables, p = {pr['p']}, {pr['steps']} Adam steps, "
            f"{pr['seeds']} seeds; optimum {fmt(pr['optimum'])}.)")
        for est, by in poly["rows"].items():
            for sched, v in by.items():
                table.append((f"polyprog {est}, {sched}: final exact loss | relaxed - hard | bias^2 | variance",
                              f"{fmt(v['final_hard_loss'])} +- "
                              f"{'n/a' if v['final_hard_loss_sd'] is None else fmt(v['final_hard_loss_sd'], 2)} | "
                              f"{fmt(v['relaxed_minus_hard'], 3)} | {fmt(v['rel_bias2'], 3)} | {fmt(v['rel_var'], 3)}"))
        fig = Figure(figsize=(10, 3.6), layout="constrained")
        axes = fig.subplots(1, 2)
        _plot_diagnostics(axes[0], axes[1], poly["rows"], "st_gs", "polyprog, ST-GS")
        figures.append(ctx.save_figure(
            fig, "s5_polyprog_gradients", "Polynomial programming, ST Gumbel-Softmax: squared bias (left) and "
            "variance (right) of a one-sample gradient against the exact gradient, relative to its squared norm, "
            "during training; solid = fixed tau, dashed = annealed (results/estimators/anneal.json)."))
        headline_bits += [f"polyprog {e}: {s['best_annealed']} vs {s['best_fixed']} {s['annealed_better_by']:+.4f}"
                          for e, s in summary.items()]
    else:
        paragraphs.append("Polynomial programming: no committed results (run `gumbelkit estimators anneal`).")
    bar.update()
    if vae is not None:
        text, summary = _verdict(vae["rows"], "test_neg_elbo", "Categorical VAE (test -ELBO of the hard model)", "nats", 5)
        numbers["vae_verdict"] = summary
        paragraphs.append(text)
        for est, by in vae["rows"].items():
            for sched, v in by.items():
                if v.get("diverged"):
                    table.append((f"VAE {est}, {sched}", "diverged (loss became NaN/inf)"))
                    continue
                extra = (f" | {fmt(v['rel_bias2'], 3)} | {fmt(v['rel_var'], 3)}" if "rel_var" in v else "")
                table.append((f"VAE {est}, {sched}: test -ELBO | relaxed - hard (valid) | bias^2 | variance",
                              f"{v['test_neg_elbo']:.2f} | {v['relaxed_gap']:+.2f}{extra}"))
        fig = Figure(figsize=(10, 3.6), layout="constrained")
        axes = fig.subplots(1, 2)
        _plot_diagnostics(axes[0], axes[1], vae["rows"], "st_gs" if "st_gs" in vae["rows"] else next(iter(vae["rows"])),
                          "VAE encoder gradient")
        figures.append(ctx.save_figure(
            fig, "s5_vae_gradients", "Categorical VAE: squared bias and variance of the encoder-logit gradient of "
            "the reconstruction term against the true one, relative to its squared norm, during training "
            "(results/vae/anneal/)."))
        headline_bits += [f"VAE {e}: {s['best_annealed']} vs {s['best_fixed']} {s['annealed_better_by']:+.2f} nats"
                          for e, s in summary.items()]
    else:
        paragraphs.append("Categorical VAE: no committed results (run `python benchmarks/vae_table.py anneal`).")
    bar.update()
    bar.close()
    return Section(number=5, key="annealing", title=TITLE, paragraphs=paragraphs, figures=figures,
                   numbers=numbers, table=table,
                   headline="; ".join(headline_bits) if headline_bits else "schedules only (no committed results)")
