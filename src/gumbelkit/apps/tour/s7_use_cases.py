"""Section 7: where Gumbel-Softmax is used, and the applications of this project that exist.

Each application's headline numbers and figure come from its committed ``results/<app>/showcase.json``
(written by the application's showcase command after a full run); the tour trains nothing here.
"""

from __future__ import annotations

import html
import importlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gumbelkit.apps import plotting
from gumbelkit.apps.tour._report import FigureRef, Section, TourContext, fmt

TITLE = "Use cases"


@dataclass(frozen=True)
class UseCase:
    key: str
    title: str
    app_names: tuple[str, ...]  # this use case's applications (their names in gumbelkit.apps.APPS)
    paragraph: str
    chain: tuple[str, ...]  # the pipeline, the Gumbel step marked with "*"


USE_CASES = (
    UseCase(
        "textgan", "Text GANs", ("textgan",),
        "A text GAN's generator writes words one at a time, and the discriminator must "
        "backpropagate through those choices. RelGAN feeds the discriminator Gumbel-Softmax "
        "samples of each word (a near-one-hot vector times the embedding table) and anneals the "
        "temperature down during training, instead of the high-variance REINFORCE of SeqGAN.",
        ("generator LSTM", "word logits", "*Gumbel-Softmax", "y @ embeddings", "discriminator"),
    ),
    UseCase(
        "vae", "Discrete VAEs", ("vae", "dvae"),
        "A VAE with categorical latent codes (Jang et al.'s 20 x 10 model on MNIST, DALL-E's dVAE) "
        "samples its code with Gumbel-Softmax so the reconstruction loss can train the encoder; the "
        "temperature is annealed, relaxed samples are used in training and one-hot codes at test.",
        ("image x", "encoder", "code logits", "*Gumbel-Softmax", "decoder", "reconstruction"),
    ),
    UseCase(
        "attention", "Hard attention and feature selection", ("l2x", "select", "glimpse"),
        "Hard attention picks a few inputs instead of averaging over all of them. L2X selects the k "
        "features that explain a prediction with a relaxed top-k (k Gumbel-Softmax draws combined "
        "by an element-wise max at tau = 0.1); Gumbel-top-k gives the exact k-subset when no "
        "gradient is needed.",
        ("input x", "selector scores", "*relaxed top-k", "masked x", "predictor"),
    ),
    UseCase(
        "nas", "Architecture search", ("nas",),
        "Differentiable architecture search chooses one operation per edge of a network cell. GDAS "
        "samples that choice with straight-through Gumbel-Softmax, so only the chosen operation is "
        "computed in the forward pass while the architecture weights still get gradients; tau "
        "decays linearly from 10 to 0.1.",
        ("arch. weights alpha", "*ST Gumbel-Softmax", "one op per edge", "cell output", "loss"),
    ),
)


def registered_apps(uc: UseCase) -> list[str]:
    """The names under which ``gumbelkit train`` runs this use case's applications (those installed)."""
    try:
        apps: Any = importlib.import_module("gumbelkit.apps")
    except ImportError:
        return []
    return [n for n in uc.app_names if n in getattr(apps, "APPS", {})]


def load_showcase(results: Path | None, app: str) -> dict[str, Any] | None:
    """``results/<app>/showcase.json`` (the application's committed headline run), if present.

    The file holds ``summary``, ``train_command``, ``headline`` (rows with ``metric``, ``ours``,
    ``published``, ``published_source``) and optionally ``figure``; see docs/applications.md.
    """
    if results is None:
        return None
    path = results / app / "showcase.json"
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    data["_dir"] = str(path.parent)
    return data


def _showcase_figure(ctx: TourContext, app: str, showcase: dict[str, Any]) -> FigureRef | None:
    """Draw the showcase's figure from its committed arrays (``image_rows``) or copy its PNG."""
    spec = showcase.get("figure")
    if not spec:
        return None
    folder = Path(showcase["_dir"])
    name = f"s7_{app}_showcase"
    caption = f"{spec.get('caption', '')} From the committed run ({showcase['summary']}), not retrained by the tour."
    if spec.get("kind") == "image_rows":
        with np.load(folder / spec["file"]) as arrays:
            rows = [arrays[key] for key in spec["rows"].values()]
        fig = plotting.figure(0.62 * len(rows[0]) + 1.2, 0.75 * len(rows) + 0.3)
        plotting.image_rows(fig, rows, list(spec["rows"]))
        return ctx.save_figure(fig, name, caption)
    if spec.get("png"):
        ctx.fig_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / spec["png"], ctx.fig_dir / f"{name}.png")
        return FigureRef(name=name, path=f"figures/{name}.png", caption=caption)
    return None


def _num(v: Any) -> str:
    return "-" if v is None else fmt(float(v))


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
    """The four use cases, the applications that exist, and their committed headline results."""
    bar = ctx.bar(f"7 {TITLE}", total=2)
    apps = {uc.key: registered_apps(uc) for uc in USE_CASES}
    fig = plotting.figure(10, 4.4)
    axes = fig.subplots(len(USE_CASES), 1)
    for ax, uc in zip(axes, USE_CASES, strict=True):
        _draw_chain(ax, uc.chain, uc.title)
    figures = [ctx.save_figure(fig, "s7_use_cases", "Where the Gumbel step (orange) sits in each of the four use cases.")]
    bar.update()

    showcases: dict[str, dict[str, Any]] = {}
    table: list[tuple[str, str]] = []
    for uc in USE_CASES:
        for app in apps[uc.key]:
            showcase = load_showcase(ctx.results, app)
            if showcase is None:
                continue
            ref = _showcase_figure(ctx, app, showcase)
            if ref is not None:
                figures.append(ref)
            showcases[app] = {k: v for k, v in showcase.items() if not k.startswith("_") and k != "config"}
            for row in showcase.get("headline", []):
                published = "" if row.get("published") is None else (
                    f"; published {_num(row['published'])} ({row.get('published_source') or 'source not given'})")
                table.append((f"{uc.title} ({app}): {row['metric']}", f"{_num(row['ours'])}{published}"))
    bar.update()
    bar.close()

    paragraphs = []
    for uc in USE_CASES:
        if not apps[uc.key]:
            how = "This project's application for it is not available yet."
        else:
            how = "Run " + ", ".join(f"<code>gumbelkit train {a}</code>" for a in apps[uc.key]) + (
                " (<code>--help</code> lists every option).")
            for app in apps[uc.key]:
                sc = showcases.get(app)
                if sc is not None:
                    how += (f" The committed {app} results below ({html.escape(sc['summary'])}) came from "
                            f"<code>{html.escape(sc['train_command'])}</code>.")
        paragraphs.append(f"<b>{uc.title}.</b> {uc.paragraph} {how}")
    numbers = {
        "applications": {uc.key: {"available": bool(apps[uc.key]),
                                  "commands": [f"gumbelkit train {a}" for a in apps[uc.key]]}
                         for uc in USE_CASES},
        "showcases": showcases,
    }
    table = [(uc.title, ("available: " + ", ".join(f"gumbelkit train {a}" for a in apps[uc.key])
                         if apps[uc.key] else "not available yet"))
             for uc in USE_CASES] + table
    n_av = sum(bool(a) for a in apps.values())
    shown = list(showcases)
    return Section(
        number=7, key="use_cases", title=TITLE, paragraphs=paragraphs, figures=figures,
        numbers=numbers, table=table, html_paragraphs=True,
        headline=f"{n_av} of {len(USE_CASES)} use cases have an application"
        + (f"; committed results of {', '.join(shown)}" if shown else ""),
    )
