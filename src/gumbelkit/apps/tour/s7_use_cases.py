"""Section 7: where Gumbel-Softmax is used, and the applications of this project that exist."""

from __future__ import annotations

import html
import importlib
import json
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
        "gradient is needed.",
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


#: Use cases whose application is a command of its own rather than ``gumbelkit train <app>``.
COMMAND_APPS = {"nas": ("gumbelkit.apps.nas.train", "gumbelkit search gdas")}


def registered_app(uc: UseCase) -> str | None:
    """The name under which ``gumbelkit train`` runs this use case's application, if it exists."""
    try:
        apps: Any = importlib.import_module("gumbelkit.apps")
    except ImportError:
        return None
    return next((n for n in uc.app_names if n in getattr(apps, "APPS", {})), None)


def command_app(uc: UseCase) -> str | None:
    """The command of a use case served by its own ``gumbelkit`` command, if it exists."""
    if uc.key not in COMMAND_APPS:
        return None
    module, command = COMMAND_APPS[uc.key]
    try:
        importlib.import_module(module)
    except ImportError:
        return None
    return command


def results_dir() -> Path | None:
    """The repository's committed ``results/`` (from the working directory or the source tree)."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[4]):
        if (base / "results").is_dir():
            return base / "results"
    return None


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def nas_results(ctx: TourContext) -> tuple[list[tuple[str, str]], FigureRef | None, dict[str, Any]]:
    """Headline numbers of the committed architecture-search results, and one figure (copied)."""
    root = results_dir()
    if root is None:
        return [], None, {}
    gdas = _load(root / "nas" / "gdas" / "summary.json")
    bench = _load(root / "nas" / "bench" / "compare.json")
    toy = _load(root / "nas" / "toy" / "st_gs.json")
    teacher = _load(root / "nas" / "teacher" / "teacher.json")
    rows: list[tuple[str, str]] = []
    numbers: dict[str, Any] = {}
    if toy:
        numbers["toy_exact_recovery"] = toy["exact_recovery"]
        rows.append(("GDAS, exact toy (6 edges x 5 scalar maps): architectures recovered exactly",
                     f"{toy['recovered']}/{toy['replicates']} ({100 * toy['exact_recovery']:.0f} %)"))
    if teacher:
        numbers["teacher_recovered_parametric"] = teacher["recovered_parametric"]
        rows.append((f"GDAS, teacher-student ({teacher['teachers']} teachers): edges with a parametric operation recovered",
                     f"{100 * teacher['recovered_parametric']:.1f} %"))
    if bench:
        sm = bench["summary"]
        numbers["bench_median_percentile"] = {m: v["median_percentile"] for m, v in sm.items()}
        rows.append((f"{bench['architectures']}-architecture digits benchmark, median rank percentile "
                     "(GDAS / DARTS / REINFORCE / random)",
                     " / ".join(f"{sm[m]['median_percentile']:.1f}" for m in ("gdas", "darts", "reinforce", "random")
                                if m in sm)))
    fig = None
    if gdas:
        g = gdas["groups"]
        numbers["gdas_fashion"] = {k: g[k]["test_acc_mean"] for k in ("found", "random", "allconv")}
        rows.append((f"GDAS on {gdas['protocol']['dataset']}, retrained test accuracy: found / random / all-conv cell",
                     " / ".join(f"{100 * g[k]['test_acc_mean']:.2f} +- {100 * g[k]['test_acc_std']:.2f}"
                                for k in ("found", "random", "allconv"))))
        rows.append(("reference (not comparable: NAS-Bench-201 CIFAR-10, unavailable offline): GDAS", "93.61 %"))
        src = root / "nas" / "gdas" / "figures" / "alpha_tau.png"
        if src.exists():
            ctx.fig_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, ctx.fig_dir / "s7_nas_alpha_tau.png")
            fig = FigureRef("s7_nas_alpha_tau", "figures/s7_nas_alpha_tau.png", (
                "gumbelkit search gdas, committed result (results/nas/gdas, not rerun by the tour): softmax(alpha) "
                "of each edge's five operations during the search on Fashion-MNIST, and the temperature."))
    return rows, fig, numbers


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
    commands = {uc.key: command_app(uc) for uc in USE_CASES}
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
    committed: dict[str, Any] = {}
    if commands["nas"] is not None:
        nas_rows, nas_fig, committed["nas"] = nas_results(ctx)
        table += nas_rows
        if nas_fig is not None:
            figures.append(nas_fig)
    bar.update()
    bar.close()

    paragraphs = []
    for uc in USE_CASES:
        app = apps[uc.key]
        if app is None and commands[uc.key] is not None:
            how = (f"Run it with <code>{commands[uc.key]}</code> (<code>--help</code> lists every option; "
                   "<code>--quick</code> is a short run); its committed results are summarised below.")
        elif app is None:
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
    def command(key: str) -> str | None:
        return f"gumbelkit train {apps[key]}" if apps[key] is not None else commands[key]

    numbers = {
        "applications": {uc.key: {"available": command(uc.key) is not None, "command": command(uc.key)}
                         for uc in USE_CASES},
        "runs": runs,
        "committed_results": committed,
        "reference": {"jang_2017_vae_cat_gumbel_softmax_neg_elbo": REFERENCE_JANG_GS_NEG_ELBO},
    }
    table = [(uc.title, (f"available: {command(uc.key)}" if command(uc.key) else "not available yet"))
             for uc in USE_CASES] + table
    n_av = sum(command(uc.key) is not None for uc in USE_CASES)
    ran = [k for k, v in runs.items() if v.get("ran")]
    return Section(
        number=7, key="use_cases", title=TITLE, paragraphs=paragraphs, figures=figures,
        numbers=numbers, table=table, html_paragraphs=True,
        headline=f"{n_av} of {len(USE_CASES)} applications available"
        + (f"; ran {', '.join(ran)} quick" if ran else ""),
    )
