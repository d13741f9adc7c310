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
# SeqGAN (Yu et al. 2017), Table 1: NLL_oracle of MLE and of SeqGAN on the synthetic oracle
REFERENCE_SEQGAN_MLE, REFERENCE_SEQGAN = 9.038, 8.736
# Committed application results (read, never retrained by the tour), in a source checkout.
RESULTS_DIR = Path(__file__).resolve().parents[4] / "results"

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


def textgan_committed(ctx: TourContext, results_dir: Path | None = None) -> tuple[dict[str, Any], FigureRef | None]:
    """The text GAN's committed oracle results (``results/textgan/``): headline numbers and the
    quality-diversity figure, copied into the report. Nothing is trained."""
    results_root = results_dir or RESULTS_DIR
    base = results_root / "textgan"
    try:
        from gumbelkit.apps.textgan.report import load_runs, position, verdict
    except ImportError:
        return {"available": False, "why": "the textgan application is not installed"}, None
    # the full-protocol results if committed, else the reduced-budget pilot
    oracle, root = None, base
    for root in (base, base / "pilot"):
        oracle = load_runs(root).get("oracle") if root.is_dir() else None
        if oracle and oracle["mle"] is not None and oracle["gan"]:
            break
    if not oracle or oracle["mle"] is None or not oracle["gan"]:
        return {"available": False, "why": f"no committed oracle results under {base}"}, None
    figure = root / "figures" / "oracle_quality_diversity.png"
    source = root.relative_to(results_root.parent).as_posix()
    mle = oracle["mle"]
    gans = [{"run": f"{g['estimator']}, beta_max={g['beta_max']:g}", "steps": g["steps"],
             "nll_oracle": g["final"]["nll_oracle"], "nll_gen": g["final"]["nll_gen"],
             "frontier": position(mle, g)["status"]}
            for g in oracle["gan"]]
    info: dict[str, Any] = {
        "available": True, "source": f"{source} (committed; not rerun by the tour)",
        "mle": {"epochs": mle["epochs"], "nll_oracle": mle["final"]["nll_oracle"], "nll_gen": mle["final"]["nll_gen"]},
        "gan": gans, "best_gan": min(gans, key=lambda g: g["nll_oracle"]), "verdict": verdict(oracle),
    }
    ref = None
    if figure.is_file():
        ctx.fig_dir.mkdir(parents=True, exist_ok=True)
        name = "s7_textgan_quality_diversity"
        shutil.copyfile(figure, ctx.fig_dir / f"{name}.png")
        ref = FigureRef(name, f"figures/{name}.png", (
            f"Text GAN on SeqGAN's oracle ({source}, committed, not rerun; MLE {mle['epochs']:.0f} epochs, "
            f"GAN runs of {', '.join(sorted({str(g['steps']) for g in gans}))} steps): the MLE generator sampled "
            "at temperatures 0.5 to 1.2 (the frontier) and each Gumbel-Softmax GAN run as a point; lower "
            f"is better on both axes. {info['verdict']}"))
    return info, ref


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
        if uc.key == "textgan":
            info, ref = textgan_committed(ctx)
            runs[uc.key] = info
            if info["available"]:
                best, m = info["best_gan"], info["mle"]
                table += [
                    (f"Text GAN, SeqGAN oracle: MLE ({m['epochs']:.0f} epochs) NLL_oracle / NLL_gen",
                     f"{fmt(m['nll_oracle'])} / {fmt(m['nll_gen'])} nats"),
                    (f"Text GAN: best GAN run ({best['run']}, {best['steps']} steps) NLL_oracle / NLL_gen",
                     f"{fmt(best['nll_oracle'])} / {fmt(best['nll_gen'])} nats"),
                    ("reference (not from this run): SeqGAN paper NLL_oracle, MLE / SeqGAN",
                     f"{REFERENCE_SEQGAN_MLE} / {REFERENCE_SEQGAN}"),
                    ("Text GAN: GAN runs beyond the MLE temperature frontier",
                     ", ".join(g["run"] for g in info["gan"] if g["frontier"] == "beyond") or "none"),
                ]
            if ref is not None:
                figures.append(ref)
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
            if runs.get(uc.key, {}).get("available"):
                how += (f" Its committed results ({html.escape(runs[uc.key]['source'])}) are in the table below. "
                        + html.escape(runs[uc.key]["verdict"]))
        paragraphs.append(f"<b>{uc.title}.</b> {uc.paragraph} {how}")
    numbers = {
        "applications": {uc.key: {"available": apps[uc.key] is not None,
                                  "command": None if apps[uc.key] is None else f"gumbelkit train {apps[uc.key]}"}
                         for uc in USE_CASES},
        "runs": runs,
        "reference": {"jang_2017_vae_cat_gumbel_softmax_neg_elbo": REFERENCE_JANG_GS_NEG_ELBO,
                      "seqgan_2017_nll_oracle_mle": REFERENCE_SEQGAN_MLE, "seqgan_2017_nll_oracle_seqgan": REFERENCE_SEQGAN},
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
