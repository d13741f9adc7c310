"""Section 5: temperature schedules, and whether annealing tau pays, measured.

The literature's schedules are drawn (cheap). The measurements are read from committed results;
the section trains nothing:

* ``results/estimators/anneal.json`` (``gumbelkit estimators anneal``): ReinMax's polynomial
  programming trained with ST Gumbel-Softmax and with Gumbel-Softmax at fixed tau in
  {0.1, 0.5, 1, 2} and under annealed schedules; the *hard* (one-hot) model's exact expected
  loss, the relaxed-vs-hard gap, and the bias and variance of the gradient against the exact
  gradient along training.
* ``results/vae/anneal/runs/*.json`` (``python benchmarks/vae_table.py anneal``): the categorical
  VAE trained with GS and ST-GS at fixed tau in {0.1, 0.5, 1, 2} and under annealed schedules; the
  hard (one-hot) model's test -ELBO, the relaxed-vs-hard gap, and the encoder gradient's bias and
  variance against an unbiased reference at each validation.
* ``results/vae/st_study/*.json`` and ``results/vae/st_bias_*.json``: the categorical VAE's short
  straight-through runs (tau 1, tau 0.5, annealed) and the encoder gradient's bias and variance
  across tau at a trained checkpoint.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gumbelkit.apps import plotting
from gumbelkit.apps.polyprog.bench import POLY_TARGET
from gumbelkit.apps.tour._report import FigureRef, Section, TourContext, fmt
from gumbelkit.schedules import CosineTau, ExponentialTau, InverseTemperatureTau, LinearTau

TITLE = "Annealing"
SCHEDULE_STEPS = 50_000
POLY_FILE = "estimators/anneal.json"
VAE_STUDY_DIR = "vae/st_study"
VAE_BIAS_FILE = "vae/st_bias_st_annealed_50ep.json"  # the checkpoint docs/vae.md quotes
VAE_BIAS_ESTIMATORS = ("st", "st_gs", "gs")
VAE_ANNEAL_DIR = "vae/anneal/runs"
VAE_MAIN_TABLE = "vae/main/table.json"  # its seed-to-seed sd stands in where a grid row has one seed
#: the exact-gradient diagnostics are read at these temperatures (fixed-tau runs)
LOW_TAU, HIGH_TAU = "fixed 0.1", "fixed 2"


def _schedules() -> dict[str, Callable[[int], float]]:
    return {
        "Jang exponential: max(0.5, exp(-3e-5 t)), every 1000": ExponentialTau(),
        "linear 10 -> 0.1 (GDAS)": LinearTau(10.0, 0.1, SCHEDULE_STEPS),
        "cosine 2 -> 0.1": CosineTau(2.0, 0.1, SCHEDULE_STEPS),
        "RelGAN 1/beta, beta_max = 100": InverseTemperatureTau(1.0, 0.01, SCHEDULE_STEPS),
    }


def is_fixed(schedule: str) -> bool:
    """Whether a schedule label of ``gumbelkit estimators anneal`` is a constant temperature."""
    return schedule.startswith("fixed")


def st_large_tau_fixed_point(p: float) -> dict[str, float]:
    """Where the expected straight-through gradient vanishes as tau -> inf on the polynomial task.

    There d soft / d theta no longer depends on the draw, so the expected gradient is proportional
    to ``q p (1-T)^(p-1) - (1-q) p T^(p-1)``; it is zero at ``q*`` below, a plateau above the optimum.
    """
    a, b = p * (1 - POLY_TARGET) ** (p - 1), p * POLY_TARGET ** (p - 1)
    q = b / (a + b)
    return {"q": q, "loss": q * (1 - POLY_TARGET) ** p + (1 - q) * POLY_TARGET**p}


def load_polyprog(results: Path | None) -> dict[str, Any] | None:
    """The committed ``gumbelkit estimators anneal`` results, summarised per (estimator, schedule);
    ``None`` when the file is absent. Bias^2 and variance are relative to |exact gradient|^2 and
    averaged over the run's checkpoints (seed 0)."""
    path = None if results is None else results / POLY_FILE
    if path is None or not path.is_file():
        return None
    payload = json.loads(path.read_text(encoding="utf-8"))
    rows: dict[str, dict[str, Any]] = {}
    for r in payload["results"]:
        d = r["gradient_diagnostics"]
        per_seed = [float(x) for x in r["final_exact_loss_per_seed"]]
        rows.setdefault(r["estimator"], {})[r["schedule"]] = {
            "tau_first_last": r["tau_first_last"],
            "final_hard_loss_per_seed": per_seed,
            "final_hard_loss_mean": statistics.fmean(per_seed),
            "final_hard_loss_sd": statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0,
            "relaxed_minus_hard": r["relaxed_minus_hard_last10pct"],
            "rel_bias2_mean": statistics.fmean(x["rel_bias2_unbiased"] for x in d),
            "rel_var_mean": statistics.fmean(x["rel_var"] for x in d),
            "checkpoints": [{"step": x["step"], "tau": x["tau"], "rel_bias2": x["rel_bias2_unbiased"],
                             "rel_var": x["rel_var"], "hard_loss_mean": x["exact_loss_mean"]} for x in d],
        }
    prov = payload.get("provenance", {})
    return {"source": f"results/{POLY_FILE}", "protocol": payload["protocol"], "quick": payload.get("quick", False),
            "command": prov.get("command", ""), "git_commit": prov.get("git", {}).get("commit", ""), "rows": rows}


def _tau_key(schedule: str) -> float:
    """The temperature of a ``fixed T`` label (0 for schedules), for ordering."""
    try:
        return float(schedule.split()[1]) if is_fixed(schedule) else 0.0
    except (IndexError, ValueError):
        return 0.0


def load_vae_anneal(results: Path | None) -> dict[str, Any] | None:
    """The committed VAE fixed-vs-annealed grid (``benchmarks/vae_table.py anneal``), per
    (estimator, schedule): final hard test -ELBO per seed, relaxed - hard, and the encoder
    gradient's relative bias^2 and variance averaged over the validations of training; seed 0's
    validation curve. ``None`` when absent."""
    folder = None if results is None else results / VAE_ANNEAL_DIR
    if folder is None or not folder.is_dir():
        return None
    rows: dict[str, dict[str, Any]] = {}
    commits, epochs = set(), set()
    for path in sorted(folder.glob("*_seed*.json")):
        payload = json.loads(path.read_text(encoding="utf-8"))
        if "results" not in payload:
            continue
        r, seed = payload["results"], payload["seed"]
        curve = payload.get("valid_curve", [])
        row = rows.setdefault(payload["estimator"], {}).setdefault(payload["schedule"], {
            "tau_first_last": [r["config"]["tau0"], r["final_tau"]], "final_hard_loss_per_seed": [],
            "relaxed_gap_per_seed": [], "rel_bias2_per_seed": [], "rel_var_per_seed": [], "seeds": [], "curve": None})
        row["seeds"].append(seed)
        row["final_hard_loss_per_seed"].append(r["test"]["neg_elbo"])
        row["relaxed_gap_per_seed"].append(r["test"]["relaxed_gap"])
        diag = [c for c in curve if "grad_rel_var" in c]
        if diag:
            row["rel_bias2_per_seed"].append(statistics.fmean(c["grad_rel_bias2_unbiased"] for c in diag))
            row["rel_var_per_seed"].append(statistics.fmean(c["grad_rel_var"] for c in diag))
        if seed == 0:
            row["curve"] = [{"step": c["step"], "tau": c.get("tau"), "neg_elbo": c["neg_elbo"],
                             "rel_var": c.get("grad_rel_var"), "rel_bias2": c.get("grad_rel_bias2_unbiased")}
                            for c in curve]
        commits.add(((r.get("provenance") or {}).get("git") or {}).get("commit") or "unrecorded")
        epochs.add(round(r["epochs"], 2))
    if not rows:
        return None
    # fixed temperatures first (ascending), then the schedules
    rows = {est: dict(sorted(by.items(), key=lambda kv: (not is_fixed(kv[0]), _tau_key(kv[0]), kv[0])))
            for est, by in sorted(rows.items())}
    proxy: dict[str, float] = {}
    main = results / VAE_MAIN_TABLE if results is not None else None
    if main is not None and main.is_file():
        for t in json.loads(main.read_text(encoding="utf-8"))["rows"]:
            if t["test_neg_elbo"]["n"] > 1:
                proxy[t["estimator"]] = t["test_neg_elbo"]["sd"]
    for est, by in rows.items():
        for v in by.values():
            per = v["final_hard_loss_per_seed"]
            v["final_hard_loss_mean"] = statistics.fmean(per)
            v["final_hard_loss_sd"] = statistics.stdev(per) if len(per) > 1 else proxy.get(est, 0.0)
            v["sd_from_main_table"] = len(per) < 2
            v["relaxed_minus_hard"] = statistics.fmean(v["relaxed_gap_per_seed"])
            v["rel_bias2_mean"] = statistics.fmean(v["rel_bias2_per_seed"]) if v["rel_bias2_per_seed"] else None
            v["rel_var_mean"] = statistics.fmean(v["rel_var_per_seed"]) if v["rel_var_per_seed"] else None
    return {"source": f"results/{VAE_ANNEAL_DIR}", "rows": rows, "commits": sorted(commits),
            "epochs": sorted(epochs), "proxy_sd": proxy}


def verdict(by_schedule: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Best fixed tau against best annealed schedule on the final hard loss (lower is better).

    ``difference`` = best fixed - best annealed (positive: annealing wins); ``standard_error`` is
    that of the difference of the two seed means; ``clear`` when the difference exceeds two of them.
    """
    fixed = {k: v for k, v in by_schedule.items() if is_fixed(k)}
    annealed = {k: v for k, v in by_schedule.items() if not is_fixed(k)}
    if not fixed or not annealed:
        raise ValueError("verdict needs at least one fixed and one annealed schedule")
    bf = min(fixed, key=lambda k: fixed[k]["final_hard_loss_mean"])
    ba = min(annealed, key=lambda k: annealed[k]["final_hard_loss_mean"])
    f, a = fixed[bf], annealed[ba]
    se = math.sqrt(f["final_hard_loss_sd"] ** 2 / len(f["final_hard_loss_per_seed"])
                   + a["final_hard_loss_sd"] ** 2 / len(a["final_hard_loss_per_seed"]))
    diff = f["final_hard_loss_mean"] - a["final_hard_loss_mean"]
    overall = min(by_schedule, key=lambda k: by_schedule[k]["final_hard_loss_mean"])
    return {"best_fixed": bf, "best_fixed_loss": f["final_hard_loss_mean"], "best_annealed": ba,
            "best_annealed_loss": a["final_hard_loss_mean"], "difference": diff, "standard_error": se,
            "clear": abs(diff) > 2 * se, "best_overall": overall}


def _verdict_sentence(est: str, v: dict[str, Any], digits: int = 4) -> str:
    if not v["clear"]:
        how = "level with"
    else:
        how = "better than" if v["difference"] > 0 else "worse than"
    return (f"{est}: the best annealed schedule ({v['best_annealed']}, {fmt(v['best_annealed_loss'], digits)}) is {how} "
            f"the best fixed tau ({v['best_fixed']}, {fmt(v['best_fixed_loss'], digits)}); difference "
            f"{fmt(v['difference'], 2)}, standard error {fmt(v['standard_error'], 2)}")


def _lesson(rows: dict[str, dict[str, Any]], verdicts: dict[str, dict[str, Any]]) -> str:
    """Where annealing helped and where it did not, from the measured verdicts."""
    fixed_won = [e for e, v in verdicts.items() if v["clear"] and v["difference"] < 0]
    annealed_won = [e for e, v in verdicts.items() if v["clear"] and v["difference"] > 0]
    parts = []
    if fixed_won:
        beaten = {e: [k for k, r in rows[e].items() if is_fixed(k)
                      and r["final_hard_loss_mean"] > verdicts[e]["best_annealed_loss"]] for e in fixed_won}
        parts.append(
            f"For {', '.join(fixed_won)} the bias matters more than the variance here (a smooth loss of "
            "independent variables, where Adam averages the noise over thousands of steps): the best fixed "
            "tau wins, and the annealed runs, which spend their first part at a high, biased tau, end behind "
            "it. Annealing does help against a fixed higher tau: the best annealed run beats "
            + "; ".join(f"{', '.join(b) if b else 'no fixed tau'} for {e}" for e, b in beaten.items())
            + ", because it ends where the bias is small.")
    if annealed_won:
        parts.append(f"For {', '.join(annealed_won)} annealing wins: the low-variance start pays for itself.")
    level = [e for e, v in verdicts.items() if not v["clear"]]
    if level:
        parts.append(f"For {', '.join(level)} the difference is within two standard errors.")
    return " ".join(parts)


def load_vae(results: Path | None) -> dict[str, Any] | None:
    """The committed VAE straight-through study (``results/vae/st_study``) and the gradient
    bias/variance across tau at its 50-epoch annealed checkpoint; ``None`` when absent."""
    folder = None if results is None else results / VAE_STUDY_DIR
    if folder is None or not folder.is_dir():
        return None
    runs = {}
    for path in sorted(folder.glob("*.json")):
        payload = json.loads(path.read_text(encoding="utf-8"))
        r, c = payload["results"], payload["results"]["config"]
        if c["schedule"] == "constant":
            sched = f"constant tau {c['tau0']:g}"
        else:
            sched = f"{c['schedule']} tau {c['tau0']:g} -> {r['final_tau']:.2g}"
        lr = f"Adam {c['lr']:g}" + (f" x{c['lr_decay']:g} / {c['lr_decay_every']} steps" if c["lr_decay"] != 1 else "")
        runs[path.stem] = {"estimator": r["estimator"], "schedule": sched, "final_tau": r["final_tau"], "lr": lr,
                           "epochs": r["epochs"], "steps": r["steps"], "test_neg_elbo": r["test"]["neg_elbo"],
                           "valid_neg_elbo": r["valid"]["neg_elbo"],
                           "git_commit": r["provenance"]["git"]["commit"], "command": r["provenance"]["command"]}
    if not runs:
        return None
    out: dict[str, Any] = {"source": f"results/{VAE_STUDY_DIR}", "runs": runs, "gradient": None}
    bias_path = results / VAE_BIAS_FILE if results is not None else None
    if bias_path is not None and bias_path.is_file():
        b = json.loads(bias_path.read_text(encoding="utf-8"))
        grad: dict[str, dict[str, Any]] = {}
        for row in b["rows"]:
            if row["estimator"] in VAE_BIAS_ESTIMATORS:
                grad.setdefault(row["estimator"], {})[f"{row['tau']:g}"] = {
                    "rel_bias2": row["grad_rel_bias2_unbiased"], "rel_var": row["grad_rel_var"]}
        out["gradient"] = {"source": f"results/{VAE_BIAS_FILE}", "checkpoint_step": b["checkpoint_step"],
                           "images": b["images"], "draws": b["draws"], "by_estimator": grad}
    return out


_SCHEDULE_COLORS = {"fixed 0.1": "#08306b", "fixed 0.5": "#2171b5", "fixed 1": "#6baed6", "fixed 2": "#bdd7e7"}
_ANNEALED_COLORS = ("#d62728", "#ff7f0e", "#2ca02c", "#9467bd")
BIAS_FLOOR = 1e-4  # log-scale panels: smaller (or negative, i.e. zero within Monte Carlo error) drawn here


Points = list[dict[str, Any]]


def _schedule_panels(rows: dict[str, dict[str, Any]], points: Callable[[dict[str, Any]], Points], loss_key: str,
                     ylabels: tuple[str, str, str], titles: tuple[str, str, str]) -> tuple[Any, Any]:
    """One row of three panels per estimator (loss, bias^2, variance along training), a line per
    schedule: fixed tau solid, annealed dashed. ``points(row)`` gives the row's ``step``,
    ``loss_key``, ``rel_bias2`` and ``rel_var`` records (``rel_var`` None where not measured)."""
    ests = list(rows)
    fig = plotting.figure(12, 3.1 * len(ests) + 0.4)
    axes = np.atleast_2d(fig.subplots(len(ests), 3))
    for i, est in enumerate(ests):
        annealed = iter(_ANNEALED_COLORS)
        for sched, v in rows[est].items():
            style = ({"color": _SCHEDULE_COLORS.get(sched, "#7f7f7f"), "linestyle": "-"} if is_fixed(sched)
                     else {"color": next(annealed, "#7f7f7f"), "linestyle": "--"})
            pts = points(v)
            axes[i, 0].plot([c["step"] for c in pts], [c[loss_key] for c in pts], marker=".", label=sched, **style)
            d = [c for c in pts if c["rel_var"] is not None]
            axes[i, 1].semilogy([c["step"] for c in d], [max(c["rel_bias2"], BIAS_FLOOR) for c in d], marker=".", **style)
            axes[i, 2].semilogy([c["step"] for c in d], [c["rel_var"] for c in d], marker=".", **style)
        for j, label in enumerate(ylabels):
            axes[i, j].set_ylabel(label.format(est=est))
    for ax in axes.flat:
        ax.set_xlabel("Adam step")
        plotting.style_axes(ax)
    for j, title in enumerate(titles):
        axes[0, j].set_title(title)
    return fig, axes


def _poly_figure(ctx: TourContext, poly: dict[str, Any], st_point: float) -> FigureRef:
    fig, axes = _schedule_panels(poly["rows"], lambda v: v["checkpoints"], "hard_loss_mean",
                                 ("{est}\nexact hard loss (mean of seeds)", "bias^2 / |exact grad|^2",
                                  "variance / |exact grad|^2"),
                                 ("hard (one-hot) model's exact loss", "gradient bias^2 (seed 0)",
                                  "one-sample gradient variance (seed 0)"))
    optimum = poly["protocol"]["optimum"]
    for i in range(len(poly["rows"])):
        axes[i, 0].axhline(optimum, color="black", ls=":", lw=1, label=f"exact optimum {optimum:.4f}")
        axes[i, 0].axhline(st_point, color="#756bb1", ls=":", lw=1, label=f"ST plateau, tau -> inf: {st_point:.4f}")
    plotting.legend_outside(fig, title="tau schedule")
    pr = poly["protocol"]
    mc = max(c["rel_var"] for by in poly["rows"].values() for v in by.values() for c in v["checkpoints"]) / pr["diag_draws"]
    return ctx.save_figure(
        fig, "s5_polyprog_anneal",
        f"Polynomial programming ({pr['latent']} binary variables, p = {pr['p']:g}, {pr['steps']} Adam steps, "
        f"{pr['seeds']} seeds), read from {poly['source']}: exact expected loss of the hard (one-hot) model "
        "along training (left), and the squared bias (middle) and variance (right) of a one-sample gradient "
        "against the exact gradient, relative to its squared norm; solid = fixed tau, dashed = annealed. "
        f"Bias^2 has the Monte Carlo part (variance / {pr['diag_draws']} draws, up to {fmt(mc, 2)} here) removed, "
        f"so small values are zero within error; below {BIAS_FLOOR:g} they are drawn at {BIAS_FLOOR:g}.")


def _vae_figure(ctx: TourContext, vae: dict[str, Any]) -> FigureRef:
    grad = vae["gradient"]
    fig = plotting.figure(12, 3.4)
    axes = fig.subplots(1, 3, width_ratios=(1.5, 1, 1)) if grad else [fig.subplots()]
    names = list(vae["runs"])
    vals = [vae["runs"][n]["test_neg_elbo"] for n in names]
    labels = [f"{vae['runs'][n]['schedule']}, {vae['runs'][n]['lr']}, {vae['runs'][n]['epochs']:g} ep" for n in names]
    axes[0].barh(range(len(names)), vals, color=["#6baed6" if "constant" in lab else "#fc9272" for lab in labels])
    axes[0].set_yticks(range(len(names)), labels, fontsize=plotting.FONT - 1)
    axes[0].set_xlim(min(vals) - 5, max(vals) + 2)
    for y, v in enumerate(vals):
        axes[0].text(v + 0.2, y, f"{v:.2f}", va="center", fontsize=plotting.FONT - 1)
    axes[0].set_xlabel("test -ELBO (nats, lower is better)")
    axes[0].set_title("VAE, straight-through (seed 0)")
    if grad:
        for est, by_tau in grad["by_estimator"].items():
            taus = sorted(by_tau, key=float)
            st = plotting.estimator_style(est)
            axes[1].semilogy([float(t) for t in taus], [max(by_tau[t]["rel_bias2"], BIAS_FLOOR) for t in taus],
                             label=est, **st)
            axes[2].semilogy([float(t) for t in taus], [by_tau[t]["rel_var"] for t in taus], **st)
        axes[1].set_ylabel("bias^2 / |true grad|^2")
        axes[2].set_ylabel("variance / |true grad|^2")
        axes[1].set_title(f"encoder gradient bias^2, step {grad['checkpoint_step']}")
        axes[2].set_title("one-sample variance")
        for ax in axes[1:]:
            ax.set_xlabel("backward tau")
    for ax in axes:
        plotting.style_axes(ax)
    plotting.legend_outside(fig)
    return ctx.save_figure(
        fig, "s5_vae_st_study",
        f"Categorical VAE (20 x 10, MNIST), read from {vae['source']}: test -ELBO of short straight-through runs "
        "at a constant (blue) and an annealed (red) tau (left); the encoder-logit gradient's squared bias and "
        "variance against an unbiased reference, relative to its squared norm, across tau, at the annealed "
        "run's 50-epoch checkpoint (middle, right; bias^2 below 1e-4 drawn at 1e-4).")


def _vae_lesson(rows: dict[str, dict[str, Any]], verdicts: dict[str, dict[str, Any]]) -> str:
    """Where annealing helped on the VAE and where it did not, from the measured rows."""
    parts = []
    for est, by in rows.items():
        fixed = {k: v for k, v in by.items() if is_fixed(k)}
        if len(fixed) < 2 or est not in verdicts:
            continue
        v = verdicts[est]
        best = fixed[v["best_fixed"]]["final_hard_loss_mean"]
        ends = [k for k in (LOW_TAU, HIGH_TAU) if k in fixed and k != v["best_fixed"]]
        if ends:
            parts.append(f"for {est} the best fixed tau is an intermediate one ({v['best_fixed']}): "
                         + " and ".join(f"{k} ends {fixed[k]['final_hard_loss_mean'] - best:.1f} nats behind" for k in ends)
                         + " (the low end pays in variance, the high end in bias)")
        worse = [k for k, r in by.items() if not is_fixed(k) and r["final_hard_loss_mean"] > best + 2 * v["standard_error"]]
        if worse:
            parts.append(f"annealing from a high tau to a low one ({', '.join(worse)}) ends behind that fixed tau for {est}")
    if not parts:
        return ""
    close = [f"{e}: {v['best_annealed']}, tau {rows[e][v['best_annealed']]['tau_first_last'][0]:g} -> "
             f"{rows[e][v['best_annealed']]['tau_first_last'][1]:.2g}"
             for e, v in verdicts.items() if v["difference"] > -2 * v["standard_error"]]
    tail = (" The annealed runs that match or beat the best fixed tau (" + "; ".join(close) + ") move within "
            "the middle of the range: annealing refines a well-chosen temperature; it does not replace "
            "choosing one." if close else "")
    return "Here neither end of the tau range works: " + "; ".join(parts) + "." + tail


def _vae_grid_figure(ctx: TourContext, grid: dict[str, Any]) -> FigureRef:
    fig, axes = _schedule_panels(grid["rows"], lambda v: v["curve"] or [], "neg_elbo",
                                 ("{est}\nvalid -ELBO, hard (nats)", "bias^2 / |true grad|^2", "variance / |true grad|^2"),
                                 ("hard (one-hot) model, validation", "encoder gradient bias^2 (seed 0)",
                                  "one-sample variance (seed 0)"))
    for i, by in enumerate(grid["rows"].values()):
        lo = min(v["final_hard_loss_mean"] for v in by.values())
        axes[i, 0].set_ylim(lo - 3, lo + 35)
    plotting.legend_outside(fig, title="tau schedule")
    return ctx.save_figure(
        fig, "s5_vae_anneal",
        f"Categorical VAE (20 x 10, MNIST, {'/'.join(f'{e:g}' for e in grid['epochs'])} epochs), read from "
        f"{grid['source']}: validation -ELBO of the hard (one-hot) model along training (left), and the squared "
        "bias (middle) and variance (right) of the encoder-logit gradient of the reconstruction term against "
        "IndeCateR's unbiased estimate, relative to its squared norm (20 validation images, 32 draws; bias^2 "
        f"with the Monte Carlo part removed, below {BIAS_FLOOR:g} drawn at {BIAS_FLOOR:g}); solid = fixed tau, "
        "dashed = annealed.")


def _vae_grid_part(ctx: TourContext, grid: dict[str, Any], numbers: dict[str, Any], table: list[tuple[str, str]],
                   paragraphs: list[str], headline: list[str], figures: list[FigureRef]) -> None:
    """The VAE fixed-vs-annealed grid: table rows, verdicts, the bias / variance reading, a figure."""
    verdicts = {est: verdict(by) for est, by in grid["rows"].items()
                if any(is_fixed(k) for k in by) and any(not is_fixed(k) for k in by)}
    numbers["vae_anneal_verdict"] = verdicts
    for est, by in grid["rows"].items():
        for sched, v in by.items():
            b2 = "-" if v["rel_bias2_mean"] is None else fmt(v["rel_bias2_mean"], 3)
            var = "-" if v["rel_var_mean"] is None else fmt(v["rel_var_mean"], 3)
            sd = f" +- {v['final_hard_loss_sd']:.2f}" if not v["sd_from_main_table"] else " (1 seed)"
            table.append((f"VAE {est}, {sched} (tau {v['tau_first_last'][0]:g} -> {v['tau_first_last'][1]:.3g}): "
                          "final hard test -ELBO | relaxed - hard | bias^2 | variance",
                          f"{v['final_hard_loss_mean']:.2f}{sd} | {v['relaxed_minus_hard']:.2f} | {b2} | {var}"))
    one_seed = any(v["sd_from_main_table"] for by in grid["rows"].values() for v in by.values())
    text = (f"Categorical VAE (20 x 10 latents, {'/'.join(f'{e:g}' for e in grid['epochs'])} epochs, "
            f"`python benchmarks/vae_table.py anneal`, commit {', '.join(c[:10] for c in grid['commits'])}; "
            "test -ELBO of the hard model, nats): ")
    text += "; ".join(_verdict_sentence(e, v, digits=5) for e, v in verdicts.items()) + "."
    if one_seed:
        text += (" Rows with one seed take the seed-to-seed sd of the same estimator in the 100-epoch table ("
                 + ", ".join(f"{e} {sd:.2f}" for e, sd in grid["proxy_sd"].items() if e in grid["rows"])
                 + " nats) for the standard error.")
    why = []
    for est, by in grid["rows"].items():
        if LOW_TAU in by and HIGH_TAU in by and by[LOW_TAU]["rel_var_mean"] is not None and by[HIGH_TAU]["rel_var_mean"] is not None:
            lo, hi = by[LOW_TAU], by[HIGH_TAU]
            why.append(f"{est}: relaxed - hard {hi['relaxed_minus_hard']:.2f} at tau 2 against "
                       f"{lo['relaxed_minus_hard']:.2f} at tau 0.1, gradient variance {fmt(hi['rel_var_mean'], 2)} "
                       f"against {fmt(lo['rel_var_mean'], 2)}, bias^2 {fmt(hi['rel_bias2_mean'], 2)} against "
                       f"{fmt(lo['rel_bias2_mean'], 2)}")
    if why:
        text += (" The diagnostics, averaged over the validations of training (bias^2 relative to an IndeCateR "
                 "reference that carries its own Monte Carlo error, so only large values are meaningful): "
                 + "; ".join(why) + ".")
    text += " " + _vae_lesson(grid["rows"], verdicts)
    paragraphs.append(text)
    headline += [f"VAE {e}: {v['best_fixed']} {v['best_fixed_loss']:.2f} vs {v['best_annealed']} "
                 f"{v['best_annealed_loss']:.2f} nats" for e, v in verdicts.items()]
    figures.append(_vae_grid_figure(ctx, grid))


def run(ctx: TourContext) -> Section:
    """Schedules (drawn), then the committed fixed-vs-annealed measurements."""
    bar = ctx.bar(f"5 {TITLE}", total=3)
    t = np.linspace(0, SCHEDULE_STEPS, 501).astype(int)
    fig = plotting.figure(9, 3.4)
    ax = fig.subplots()
    sched_numbers = {}
    for name, s in _schedules().items():
        ax.semilogy(t, [s(int(i)) for i in t], label=name)
        sched_numbers[name] = {f"tau_at_{k}": s(k) for k in (0, SCHEDULE_STEPS // 2, SCHEDULE_STEPS)}
    ax.set_xlabel("training step")
    ax.set_ylabel("tau (log scale)")
    ax.set_title("Temperature schedules from the literature")
    plotting.style_axes(ax)
    plotting.legend_outside(fig)
    figures = [ctx.save_figure(fig, "s5_schedules", f"Four temperature schedules over {SCHEDULE_STEPS:,} steps "
                               "(log scale): each is a pure function of the step, so a resumed run gets the same tau.")]
    bar.update()

    poly, vae, grid = load_polyprog(ctx.results), load_vae(ctx.results), load_vae_anneal(ctx.results)
    numbers: dict[str, Any] = {"schedules": sched_numbers, "polyprog": poly, "vae": vae, "vae_anneal": grid,
                               "vae_fixed_vs_annealed_grid_run": grid is not None}
    table: list[tuple[str, str]] = []
    paragraphs = [
        "A schedule is a pure function of the step. Whether lowering tau during training helps has a "
        "mechanism behind it: a low tau puts the relaxed sample close to the one-hot one (a small bias of "
        "the relaxed objective and of the gradient) but makes the gradient noisy; a high tau is the "
        "opposite. Annealing starts in the low-variance regime and ends in the low-bias one. Measured "
        "below against the exact gradient, evaluating the hard (one-hot) model; nothing is retrained here."
    ]
    headline: list[str] = []
    if poly is not None:
        pr = poly["protocol"]
        st_point = st_large_tau_fixed_point(pr["p"])
        numbers["st_large_tau_fixed_point"] = st_point
        numbers["polyprog_verdict"] = {est: verdict(by) for est, by in poly["rows"].items()}
        for est, by in poly["rows"].items():
            for sched, v in by.items():
                table.append((f"polyprog {est}, {sched} (tau {v['tau_first_last'][0]:g} -> "
                              f"{v['tau_first_last'][1]:.3g}): final hard loss | relaxed - hard | bias^2 | variance",
                              f"{fmt(v['final_hard_loss_mean'])} +- {fmt(v['final_hard_loss_sd'], 2)} | "
                              f"{fmt(v['relaxed_minus_hard'], 3)} | {fmt(v['rel_bias2_mean'], 3)} | "
                              f"{fmt(v['rel_var_mean'], 3)}"))
        table += [(f"polyprog exact optimum 0.45^{pr['p']:g}", fmt(pr["optimum"])),
                  (f"polyprog straight-through plateau as tau -> inf (computed, P(z = 1) = {st_point['q']:.2f})",
                   fmt(st_point["loss"]))]
        verdicts = numbers["polyprog_verdict"]
        lowest = min(v["final_hard_loss_mean"] for by in poly["rows"].values() for v in by.values())
        paragraphs.append(
            f"Polynomial programming ({pr['latent']} binary variables, loss mean |z - 0.45|^{pr['p']:g}, optimum "
            f"{fmt(pr['optimum'])}; {pr['steps']} Adam steps at lr {pr['lr']:g}, {pr['seeds']} seeds, from "
            f"`{poly['command']}` at commit {poly['git_commit'][:10]}). Final exact loss of the hard model, mean of "
            "seeds: " + "; ".join(_verdict_sentence(e, v) for e, v in verdicts.items())
            + f". No run reaches the optimum in {pr['steps']} steps (lowest final loss {fmt(lowest)}).")
        why = []
        for est, by in poly["rows"].items():
            if LOW_TAU in by and HIGH_TAU in by:
                lo, hi = by[LOW_TAU], by[HIGH_TAU]
                why.append(f"{est}: bias^2 {fmt(hi['rel_bias2_mean'], 2)} at tau 2 against {fmt(lo['rel_bias2_mean'], 2)} "
                           f"at tau 0.1, variance {fmt(hi['rel_var_mean'], 2)} against {fmt(lo['rel_var_mean'], 2)}, "
                           f"relaxed - hard {fmt(hi['relaxed_minus_hard'], 2)} against {fmt(lo['relaxed_minus_hard'], 2)}")
        if why:
            high = [(v["checkpoints"], v) for by in poly["rows"].values() for k, v in by.items()
                    if is_fixed(k) and v["tau_first_last"][0] >= 0.5 and len(v["checkpoints"]) > 2]
            plateau = ""
            if high:
                after = max(abs(cp[1]["hard_loss_mean"] - cp[-1]["hard_loss_mean"]) for cp, _ in high)
                end_b2 = [cp[-1]["rel_bias2"] for cp, _ in high]
                plateau = (f"Every fixed-tau run at tau >= 0.5 stops on a plateau above the optimum: its hard loss "
                           f"moves by at most {fmt(after, 2)} after step {high[0][0][1]['step']}, and its gradient's "
                           f"bias^2 at the end is {fmt(min(end_b2), 2)} to {fmt(max(end_b2), 2)} (near 1: the "
                           "expected estimate no longer follows the exact gradient; for straight-through as "
                           f"tau -> inf this plateau is computed at loss {fmt(st_point['loss'])}). ")
            numbers["polyprog_plateau"] = {"runs_tau_ge_0.5": len(high), "max_loss_change_after_first_checkpoint":
                                           after if high else None, "end_rel_bias2": end_b2 if high else []}
            paragraphs.append(
                "Why (exact-gradient diagnostics, relative to |exact gradient|^2, averaged along training): "
                + "; ".join(why) + ". " + plateau + "The relaxed objective under-reports the hard loss most at a "
                "high tau; a low tau removes most of the bias and pays in variance. " + _lesson(poly["rows"], verdicts))
        headline += [f"polyprog {e}: {v['best_fixed']} {v['best_fixed_loss']:.4f} vs "
                     f"{v['best_annealed']} {v['best_annealed_loss']:.4f}" for e, v in verdicts.items()]
        figures.append(_poly_figure(ctx, poly, st_point["loss"]))
    else:
        paragraphs.append("Polynomial programming: no committed results in this installation "
                          "(`gumbelkit estimators anneal --out results/estimators` writes them).")
    bar.update()
    if grid is not None:
        _vae_grid_part(ctx, grid, numbers, table, paragraphs, headline, figures)
    if vae is not None:
        runs = vae["runs"]
        for name, r in runs.items():
            table.append((f"VAE {r['estimator']}, {r['schedule']}, {r['lr']}, {r['epochs']:g} epochs ({name}): test -ELBO",
                          f"{r['test_neg_elbo']:.2f}"))
        best = min(runs, key=lambda n: runs[n]["test_neg_elbo"])
        worst = max(runs, key=lambda n: runs[n]["test_neg_elbo"])
        text = (f"Categorical VAE (straight-through, one seed, short runs, {vae['source']}): the best run is "
                f"{runs[best]['schedule']} ({runs[best]['lr']}, {runs[best]['epochs']:g} epochs, test -ELBO "
                f"{runs[best]['test_neg_elbo']:.2f}); the worst is {runs[worst]['schedule']} "
                f"({runs[worst]['test_neg_elbo']:.2f}).")
        annealed = [n for n, r in runs.items() if not r["schedule"].startswith("constant")]
        if annealed:
            text += (" The annealed runs reach " + ", ".join(f"{runs[n]['test_neg_elbo']:.2f} ({runs[n]['lr']}, "
                                                             f"{runs[n]['epochs']:g} epochs)" for n in annealed) + ".")
        grad = vae["gradient"]
        if grad and "st" in grad["by_estimator"] and "st_gs" in grad["by_estimator"]:
            g_st, g_stgs = grad["by_estimator"]["st"], grad["by_estimator"]["st_gs"]
            for est, by_tau in grad["by_estimator"].items():
                for tau in ("0.5", "1", "2"):
                    if tau in by_tau:
                        table.append((f"VAE {est} encoder gradient at tau {tau}: bias^2 | variance (relative)",
                                      f"{fmt(by_tau[tau]['rel_bias2'], 2)} | {fmt(by_tau[tau]['rel_var'], 2)}"))
            if all(t in g for g in (g_st, g_stgs) for t in ("0.5", "1")):
                text += (" For straight-through the one-hot sample does not depend on tau, so lowering tau only "
                         f"moves the surrogate gradient: its bias^2 grows from {fmt(g_st['1']['rel_bias2'], 2)} at "
                         f"tau 1 to {fmt(g_st['0.5']['rel_bias2'], 2)} at tau 0.5 and its variance from "
                         f"{fmt(g_st['1']['rel_var'], 2)} to {fmt(g_st['0.5']['rel_var'], 2)}; for ST Gumbel-Softmax "
                         f"the bias^2 falls ({fmt(g_stgs['1']['rel_bias2'], 2)} to {fmt(g_stgs['0.5']['rel_bias2'], 2)}) "
                         f"while the variance rises ({fmt(g_stgs['1']['rel_var'], 2)} to "
                         f"{fmt(g_stgs['0.5']['rel_var'], 2)}): the trade-off annealing is meant to manage "
                         f"({grad['source']}, step {grad['checkpoint_step']}).")
        if grid is None:
            text += (" The full VAE grid (fixed tau 0.1 / 0.5 / 1 / 2 against annealed schedules, for the "
                     "relaxed estimators) was not run.")
        paragraphs.append(text)
        headline.append(f"VAE ST: {runs[best]['schedule']} {runs[best]['test_neg_elbo']:.2f} nats, best of "
                        f"{len(runs)} short runs")
        figures.append(_vae_figure(ctx, vae))
    elif grid is None:
        paragraphs.append("Categorical VAE: no committed results in this installation; the full fixed-vs-annealed "
                          "VAE grid was not run.")
    bar.update()
    bar.close()
    return Section(number=5, key="annealing", title=TITLE, paragraphs=paragraphs, figures=figures,
                   numbers=numbers, table=table,
                   headline="; ".join(headline) if headline else "schedules only (no committed results)")
