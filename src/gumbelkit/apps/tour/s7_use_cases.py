"""Section 7: where Gumbel-Softmax is used, and the applications of this project that exist."""

from __future__ import annotations

import html
import importlib
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from gumbelkit.apps.tour._report import FigureRef, Section, TourContext, fmt

# Jang et al. 2017, Table 1, VAE (Cat.), Gumbel-Softmax: test -ELBO after full training
REFERENCE_JANG_GS_NEG_ELBO = 101.5

TITLE = "Use cases"


@dataclass(frozen=True)
class UseCase:
    key: str
    title: str
    app_names: tuple[str, ...]  # names this application may have in gumbelkit.apps.APPS
    paragraph: str
    chain: tuple[str, ...]  # the pipeline, the Gumbel step marked with "*"


USE_CASES = (
    UseCase(
        "textgan", "Text GANs", ("textgan", "relgan"),
        "A text GAN's generator writes words one at a time, and the discriminator must "
        "backpropagate through those choices. RelGAN feeds the discriminator Gumbel-Softmax "
        "samples of each word (a near-one-hot vector times the embedding table) and anneals the "
        "temperature down during training, instead of the high-variance REINFORCE of SeqGAN.",
        ("generator LSTM", "word logits", "*Gumbel-Softmax", "y @ embeddings", "discriminator"),
    ),
    UseCase(
        "vae", "Discrete VAEs", ("vae",),
        "A VAE with categorical latent codes (Jang et al.'s 20 x 10 model on MNIST, DALL-E's dVAE) "
        "samples its code with Gumbel-Softmax so the reconstruction loss can train the encoder; the "
        "temperature is annealed, relaxed samples are used in training and one-hot codes at test.",
        ("image x", "encoder", "code logits", "*Gumbel-Softmax", "decoder", "reconstruction"),
    ),
    UseCase(
        "attention", "Hard attention and feature selection", ("attention", "l2x"),
        "Hard attention picks a few inputs instead of averaging over all of them. L2X selects the k "
        "features that explain a prediction with a relaxed top-k (k Gumbel-Softmax draws combined "
        "by an element-wise max at tau = 0.1); Gumbel-top-k gives the exact k-subset when no "
        "gradient is needed. gumbelkit.subsets has four k-subset estimators (straight-through top-k, "
        "relaxed top-k, L2X's max of Concrete samples, SIMPLE); gumbelkit train l2x, select "
        "(the concrete autoencoder's 50 pixels) and glimpse (k of 49 image patches) use them.",
        ("input x", "selector scores", "*relaxed top-k", "masked x", "predictor"),
    ),
    UseCase(
        "nas", "Architecture search", ("nas", "gdas"),
        "Differentiable architecture search chooses one operation per edge of a network cell. GDAS "
        "samples that choice with straight-through Gumbel-Softmax, so only the chosen operation is "
        "computed in the forward pass while the architecture weights still get gradients; tau "
        "decays linearly from 10 to 0.1.",
        ("arch. weights alpha", "*ST Gumbel-Softmax", "one op per edge", "cell output", "loss"),
    ),
)


def registered_app(uc: UseCase) -> str | None:
    """The name under which ``gumbelkit train`` runs this use case's application, if it exists."""
    try:
        apps: Any = importlib.import_module("gumbelkit.apps")
    except ImportError:
        return None
    return next((n for n in uc.app_names if n in getattr(apps, "APPS", {})), None)


def _run_quick_app(ctx: TourContext, app: str) -> tuple[dict[str, Any], FigureRef | None]:
    """Run ``gumbelkit.apps.<app>.train.quick_run`` if the application offers one.

    Its outputs go to a temporary directory; the key figure is copied into the report.
    """
    try:
        train: Any = importlib.import_module(f"gumbelkit.apps.{app}.train")
    except ImportError:
        return {"ran": False, "why": "no train module"}, None
    if not hasattr(train, "quick_run"):
        return {"ran": False, "why": "the application has no quick_run"}, None
    if not ctx.sizes.run_apps:
        return {"ran": False, "why": "skipped in --quick mode (takes more than a few seconds)"}, None
    t0 = time.perf_counter()
    # An application is optional to the tour: if its run fails, the report says so (and why)
    # instead of losing the six other sections.
    try:
        with tempfile.TemporaryDirectory(prefix=f"gumbelkit-tour-{app}-") as tmp:
            result = train.quick_run(tmp, seed=ctx.seed)
            ctx.fig_dir.mkdir(parents=True, exist_ok=True)
            name = f"s7_{app}_{Path(result.figure).stem}"
            shutil.copyfile(result.figure, ctx.fig_dir / f"{name}.png")
    except Exception as exc:  # reported in the page, in results.json and on stderr
        why = f"quick run failed: {type(exc).__name__}: {exc}"
        print(f"gumbelkit tour: warning: {app} {why}", file=sys.stderr)
        return {"ran": False, "why": why}, None
    keep = ("app", "estimator", "latent_vars", "categories", "steps", "epochs", "final_tau",
            "binarization", "test", "valid")  # not the temporary paths, config or environment
    summary = {k: v for k, v in result.results.items() if k in keep}
    return {"ran": True, "seconds": time.perf_counter() - t0, "results": summary}, FigureRef(
        name=name, path=f"figures/{name}.png", caption="")


def _selection_results(ctx: TourContext) -> dict[str, Any] | None:
    """Committed headline numbers (and one figure) of l2x / select / glimpse; nothing is rerun."""
    try:
        from gumbelkit.apps.select.summary import headline
    except ImportError:
        return None
    h = headline()
    if h is None:
        return None
    ref = None
    if h["figure"] is not None:
        ctx.fig_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(h["figure"], ctx.fig_dir / "s7_glimpses.png")
        ref = FigureRef("s7_glimpses", "figures/s7_glimpses.png", h["caption"])
    rows = [(f"{label} [committed result]", value) for label, value in h["rows"]]
    return {"rows": rows, "figure": ref, "numbers": h["numbers"]}


def _has_vae_numbers(r: dict[str, Any]) -> bool:
    test = r.get("test", {})
    return all(k in r for k in ("steps", "estimator")) and all(
        k in test for k in ("neg_elbo", "iw_nll", "iw_samples"))


def _draw_chain(ax, chain: tuple[str, ...], title: str) -> None:  # type: ignore[no-untyped-def]
    n = len(chain)
    ax.set_xlim(0, n)
    ax.set_ylim(0, 1)
    ax.axis("off")
    ax.set_title(title, fontsize=10, loc="left")
    for i, label in enumerate(chain):
        gumbel = label.startswith("*")
        ax.text(i + 0.5, 0.5, label.lstrip("*").replace(" ", "\n", 1), ha="center", va="center",
                fontsize=8, bbox={"boxstyle": "round,pad=0.35",
                                  "fc": "#fee391" if gumbel else "#f0f0f0",
                                  "ec": "#d95f0e" if gumbel else "#969696"})
        if i + 1 < n:
            ax.annotate("", xy=(i + 1.12, 0.5), xytext=(i + 0.88, 0.5),
                        arrowprops={"arrowstyle": "->", "color": "#525252"})


def run(ctx: TourContext) -> Section:
    """The four use cases, the applications that exist, and the quick runs they offer."""
    bar = ctx.bar(f"7 {TITLE}", total=2)
    apps = {uc.key: registered_app(uc) for uc in USE_CASES}
    fig = Figure(figsize=(10, 4.4), layout="constrained")
    axes = fig.subplots(len(USE_CASES), 1)
    for ax, uc in zip(axes, USE_CASES, strict=True):
        _draw_chain(ax, uc.chain, uc.title)
    figures = [ctx.save_figure(fig, "s7_use_cases", "Where the Gumbel step (orange) sits in each of the four use cases.")]
    bar.update()

    runs: dict[str, dict[str, Any]] = {}
    table: list[tuple[str, str]] = []
    for uc in USE_CASES:
        app = apps[uc.key]
        if app is None:
            continue
        info, ref = _run_quick_app(ctx, app)
        runs[uc.key] = info
        if ref is not None and uc.key == "vae" and _has_vae_numbers(info["results"]):
            t = info["results"]["test"]
            figures.append(FigureRef(ref.name, ref.path, (
                f"gumbelkit train vae --quick, run by this tour: test images (top) and their "
                f"reconstructions through the discrete code after only {info['results']['steps']} "
                f"steps (test -ELBO {t['neg_elbo']:.1f} nats); a short run, far from the full "
                "training, so expect blurry digits.")))
            table += [
                (f"VAE quick run ({info['results']['steps']} steps, estimator {info['results']['estimator']}): test -ELBO",
                 f"{fmt(t['neg_elbo'])} nats"),
                (f"VAE quick run: importance-weighted bound on -log p(x), m = {t['iw_samples']}",
                 f"{fmt(t['iw_nll'])} nats"),
                ("VAE quick run: wall time", f"{info['seconds']:.1f} s"),
                ("reference (not from this run): Jang et al. Table 1, Gumbel-Softmax, full training",
                 f"{REFERENCE_JANG_GS_NEG_ELBO} nats"),
            ]
        elif ref is not None:
            figures.append(FigureRef(ref.name, ref.path, f"gumbelkit train {app} --quick, run by this tour."))
    selection = _selection_results(ctx)
    if selection is not None:
        table += selection["rows"]
        if selection["figure"] is not None:
            figures.append(selection["figure"])
    bar.update()
    bar.close()

    paragraphs = []
    for uc in USE_CASES:
        app = apps[uc.key]
        if app is None:
            how = "This project's application for it is not available yet."
        else:
            how = f"Run it with <code>gumbelkit train {app}</code> (<code>--help</code> lists every option)."
            if runs.get(uc.key, {}).get("why") != "the application has no quick_run":
                how += f" <code>gumbelkit train {app} --quick</code> is a short run."
            if str(runs.get(uc.key, {}).get("why", "")).startswith("quick run failed"):
                how += f" The tour's quick run of it failed ({html.escape(runs[uc.key]['why'])})."
            if runs.get(uc.key, {}).get("ran"):
                how += " The tour ran its quick mode; the figure is below."
        paragraphs.append(f"<b>{uc.title}.</b> {uc.paragraph} {how}")
    numbers = {
        "applications": {uc.key: {"available": apps[uc.key] is not None,
                                  "command": None if apps[uc.key] is None else f"gumbelkit train {apps[uc.key]}"}
                         for uc in USE_CASES},
        "runs": runs,
        "reference": {"jang_2017_vae_cat_gumbel_softmax_neg_elbo": REFERENCE_JANG_GS_NEG_ELBO},
        "selection_results": None if selection is None else selection["numbers"],
    }
    table = [(uc.title, (f"available: gumbelkit train {apps[uc.key]}" if apps[uc.key] else "not available yet"))
             for uc in USE_CASES] + table
    n_av = sum(a is not None for a in apps.values())
    ran = [k for k, v in runs.items() if v.get("ran")]
    return Section(
        number=7, key="use_cases", title=TITLE, paragraphs=paragraphs, figures=figures,
        numbers=numbers, table=table, html_paragraphs=True,
        headline=f"{n_av} of {len(USE_CASES)} applications available"
        + (f"; ran {', '.join(ran)} quick" if ran else ""),
    )
