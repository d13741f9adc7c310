"""Section 7: where Gumbel-Softmax is used, and the applications of this project that exist."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from matplotlib.figure import Figure

from gumbelkit.tour._report import Section, TourContext

TITLE = "Use cases"


@dataclass(frozen=True)
class UseCase:
    key: str
    title: str
    module: str  # the application's package; the command exists when it is importable
    command: str
    paragraph: str
    chain: tuple[str, ...]  # the pipeline, the Gumbel step marked with "*"


USE_CASES = (
    UseCase(
        "textgan", "Text GANs", "gumbelkit.apps.textgan", "gumbelkit train textgan",
        "A text GAN's generator writes words one at a time, and the discriminator must "
        "backpropagate through those choices. RelGAN feeds the discriminator Gumbel-Softmax "
        "samples of each word (a near-one-hot vector times the embedding table) and anneals the "
        "temperature down during training, instead of the high-variance REINFORCE of SeqGAN.",
        ("generator LSTM", "word logits", "*Gumbel-Softmax", "y @ embeddings", "discriminator"),
    ),
    UseCase(
        "vae", "Discrete VAEs", "gumbelkit.apps.vae", "gumbelkit train vae",
        "A VAE with categorical latent codes (Jang et al.'s 20 x 10 model on MNIST, DALL-E's dVAE) "
        "samples its code with Gumbel-Softmax so the reconstruction loss can train the encoder; the "
        "temperature is annealed, relaxed samples are used in training and one-hot codes at test.",
        ("image x", "encoder", "code logits", "*Gumbel-Softmax", "decoder", "reconstruction"),
    ),
    UseCase(
        "attention", "Hard attention and feature selection", "gumbelkit.apps.attention",
        "gumbelkit train attention",
        "Hard attention picks a few inputs instead of averaging over all of them. L2X selects the k "
        "features that explain a prediction with a relaxed top-k (k Gumbel-Softmax draws combined "
        "by an element-wise max at tau = 0.1); Gumbel-top-k gives the exact k-subset when no "
        "gradient is needed.",
        ("input x", "selector scores", "*relaxed top-k", "masked x", "predictor"),
    ),
    UseCase(
        "nas", "Architecture search", "gumbelkit.apps.nas", "gumbelkit train nas",
        "Differentiable architecture search chooses one operation per edge of a network cell. GDAS "
        "samples that choice with straight-through Gumbel-Softmax, so only the chosen operation is "
        "computed in the forward pass while the architecture weights still get gradients; tau "
        "decays linearly from 10 to 0.1.",
        ("arch. weights alpha", "*ST Gumbel-Softmax", "one op per edge", "cell output", "loss"),
    ),
)


def available(uc: UseCase) -> bool:
    """Whether the application's package is installed (so its command runs)."""
    try:
        return importlib.util.find_spec(uc.module) is not None
    except ModuleNotFoundError:
        return False


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
    bar = ctx.bar(f"7 {TITLE}", total=2)
    status = {uc.key: available(uc) for uc in USE_CASES}
    fig = Figure(figsize=(10, 4.4), layout="constrained")
    axes = fig.subplots(len(USE_CASES), 1)
    for ax, uc in zip(axes, USE_CASES, strict=True):
        _draw_chain(ax, uc.chain, uc.title)
    f1 = ctx.save_figure(fig, "s7_use_cases", "Where the Gumbel step (orange) sits in each of the four use cases.")
    bar.update()
    figures = [f1]
    app_numbers: dict[str, dict] = {}
    bar.update()
    bar.close()

    paragraphs = []
    for uc in USE_CASES:
        if status[uc.key]:
            how = f"Run it: <code>{uc.command} --help</code>."
        else:
            how = "This project's application for it is not available yet."
        paragraphs.append(f"<b>{uc.title}.</b> {uc.paragraph} {how}")
    numbers = {
        "applications": {uc.key: {"available": status[uc.key], "command": uc.command if status[uc.key] else None}
                         for uc in USE_CASES},
        "runs": app_numbers,
    }
    table = [(uc.title, (f"available: {uc.command}" if status[uc.key] else "not available yet"))
             for uc in USE_CASES]
    n_av = sum(status.values())
    return Section(
        number=7, key="use_cases", title=TITLE, paragraphs=paragraphs, figures=figures,
        numbers=numbers, table=table, headline=f"{n_av} of {len(USE_CASES)} applications available",
        html_paragraphs=True,
    )
