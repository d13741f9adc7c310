"""Section 4: where the Gumbel trick goes, on one worked example with real tensors."""

from __future__ import annotations

import html

import numpy as np
import torch

from gumbelkit.apps import plotting
from gumbelkit.apps.tour._report import Section, TourContext, fmt
from gumbelkit.functional import gumbel_softmax, gumbel_softmax_sample
from gumbelkit.noise import gumbel_noise

TITLE = "Where the trick goes"
VOCAB = ("the", "cat", "sat", "on", "mat")
TARGET = 2  # "sat"
TAU = 1.0


def run(ctx: TourContext) -> Section:
    """The language-model pipeline next to the Gumbel-Softmax pipeline, on one worked example."""
    gen = ctx.generator(4)
    bar = ctx.bar(f"4 {TITLE}", total=3)
    d, K = 4, len(VOCAB)
    h = torch.randn(d, generator=gen, dtype=torch.float64)  # (d,) a hidden state
    W = torch.randn(K, d, generator=gen, dtype=torch.float64)  # (K, d) output layer
    E = torch.randn(K, 3, generator=gen, dtype=torch.float64)  # (K, 3) next layer's embeddings
    goal = torch.randn(3, generator=gen, dtype=torch.float64)  # (3,) what the next layer wants

    # Pipeline A: an ordinary language model. No sampling, no noise.
    logits_a = (W @ h).requires_grad_()  # (K,)
    p = torch.softmax(logits_a, -1)
    ce = -torch.log(p[TARGET])
    (grad_ce,) = torch.autograd.grad(ce, logits_a)
    onehot_t = torch.zeros(K, dtype=torch.float64)
    onehot_t[TARGET] = 1
    ce_identity_err = float((grad_ce - (p.detach() - onehot_t)).abs().max())
    bar.update()

    # Pipeline B: a sampled, differentiable decision passed on to the next layer.
    logits = (W @ h).detach()
    g = gumbel_noise((K,), dtype=torch.float64, generator=gen)  # (K,)
    lb = logits.clone().requires_grad_()
    s = gumbel_softmax_sample(lb, tau=TAU, noise=g)
    by_hand = torch.softmax((logits + g) / TAU, -1)
    soft_err = float((s.soft.detach() - by_hand).abs().max())

    def downstream(y: torch.Tensor) -> torch.Tensor:
        return ((y @ E - goal) ** 2).sum()  # the next layer's loss on the chosen word's embedding

    (grad_soft,) = torch.autograd.grad(downstream(s.soft), lb, retain_graph=True)
    (grad_st,) = torch.autograd.grad(downstream(s.hard), lb)
    same_draw = gumbel_softmax(logits, tau=TAU, hard=True, noise=g)
    bar.update()

    rows = {
        "logits": logits.tolist(),
        "p_softmax": p.detach().tolist(),
        "dCE_dlogits": grad_ce.tolist(),
        "gumbel_noise": g.tolist(),
        "logits_plus_noise": (logits + g).tolist(),
        "y_soft": s.soft.detach().tolist(),
        "y_hard": s.hard.detach().tolist(),
        "dL_dlogits_soft": grad_soft.tolist(),
        "dL_dlogits_straight_through": grad_st.tolist(),
    }
    ce_value, loss_soft, loss_hard = ce.item(), float(downstream(s.soft.detach())), float(downstream(s.hard.detach()))
    numbers = {
        "vocab": list(VOCAB),
        "target": VOCAB[TARGET],
        "tau": TAU,
        "hidden_dim": d,
        **rows,
        "cross_entropy": ce_value,
        "max_abs_error_dCE_vs_p_minus_onehot": ce_identity_err,
        "sampled_index": int(s.indices),
        "sampled_word": VOCAB[int(s.indices)],
        "argmax_logits_plus_noise": int((logits + g).argmax()),
        "max_abs_error_soft_vs_by_hand": soft_err,
        "hard_is_exact_one_hot": bool(((s.hard == 0) | (s.hard == 1)).all() and s.hard.sum() == 1),
        "gumbel_softmax_hard_same_noise_equal": bool(torch.equal(same_draw, s.hard.detach())),
        "downstream_loss_soft": loss_soft,
        "downstream_loss_hard": loss_hard,
    }

    fig = plotting.figure(11, 5.2)
    axs = fig.subplots(2, 3)
    xs = np.arange(K)
    panels_a = [
        (axs[0, 0], rows["logits"], "A: logits = W h", "#969696"),
        (axs[0, 1], rows["p_softmax"], "A: p = softmax(logits)", "#3182bd"),
        (axs[0, 2], rows["dCE_dlogits"], f"A: d CE(p, '{VOCAB[TARGET]}') / d logits", "#de2d26"),
    ]
    panels_b = [
        (axs[1, 0], rows["logits_plus_noise"], "B: logits + g", "#969696"),
        (axs[1, 1], rows["y_soft"], f"B: y = softmax((logits + g) / {TAU:g})", "#3182bd"),
        (axs[1, 2], rows["y_hard"], "B: straight-through y_hard", "#31a354"),
    ]
    for ax, vals, title, color in panels_a + panels_b:
        ax.bar(xs, vals, color=color)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks(xs, VOCAB, fontsize=8)
        ax.set_title(title, fontsize=9)
        plotting.style_axes(ax, grid=False)
    fig.suptitle("A: a language model trained by cross entropy (no sampling)    "
                 "B: a sampled, differentiable decision", fontsize=10)
    f1 = ctx.save_figure(fig, "s4_pipelines", "Top: the ordinary language-model pipeline, from logits to probabilities to the cross-entropy gradient. Bottom: the Gumbel-Softmax pipeline for the same logits and one noise draw, soft and straight-through.")
    bar.update()
    bar.close()

    table = [
        ("cross entropy of the target word", fmt(ce_value)),
        ("max |dCE/dlogits - (p - onehot)| (autograd vs formula)", fmt(ce_identity_err)),
        ("sampled word (argmax of logits + g)", f"{numbers['sampled_word']} (index {numbers['sampled_index']})"),
        ("max |y_soft - softmax((logits+g)/tau)| (library vs by hand)", fmt(soft_err)),
        ("y_hard is an exact one-hot; equals gumbel_softmax(hard=True) with the same noise",
         f"{numbers['hard_is_exact_one_hot']}; {numbers['gumbel_softmax_hard_same_noise_equal']}"),
        ("next layer's loss on y_soft / on y_hard", f"{fmt(loss_soft)} / {fmt(loss_hard)}"),
    ]
    paragraphs = [
        "A language model trained with cross entropy needs no Gumbel noise: the loss is computed "
        "from the probabilities and its gradient is simply p minus the one-hot target (pipeline A). "
        "The trick belongs where the model must pick one option and pass it on, so that later "
        "layers see a choice rather than a distribution (pipeline B).",
        "There the noise is added to the logits, divided by tau and pushed through a softmax; the "
        "straight-through version passes the exact one-hot forward and the soft sample's gradient "
        "backward, so the two give different gradients for the same draw (last two columns).",
    ]
    return Section(
        number=4, key="pipelines", title=TITLE, paragraphs=paragraphs, figures=[f1],
        numbers=numbers, table=table, extra_html=_worked_table(numbers),
        headline=f"sampled '{numbers['sampled_word']}'; soft vs by-hand error {fmt(soft_err, 2)}",
    )


def _worked_table(n: dict) -> str:
    cols = [
        ("logits", "logits"), ("p = softmax", "p_softmax"), ("dCE/dlogits", "dCE_dlogits"),
        ("g", "gumbel_noise"), ("logits + g", "logits_plus_noise"),
        (f"y_soft (tau={n['tau']:g})", "y_soft"), ("y_hard", "y_hard"),
        ("dL/dlogits soft", "dL_dlogits_soft"), ("dL/dlogits ST", "dL_dlogits_straight_through"),
    ]
    head = "".join(f"<th>{html.escape(c)}</th>" for c, _ in cols)
    body = []
    for i, word in enumerate(n["vocab"]):
        cells = "".join(f"<td>{float(n[k][i]):+.4f}</td>" for _, k in cols)
        mark = " class=\"gk-target\"" if word == n["target"] else ""
        body.append(f"<tr{mark}><th>{html.escape(word)}</th>{cells}</tr>")
    return (
        "<p class=\"gk-note\">The worked example, every value from the run (the target word of "
        "pipeline A is highlighted; L is the next layer's squared error on the chosen word's "
        "embedding):</p>\n<div class=\"gk-scroll\"><table class=\"gk-worked\"><tr><th>word</th>"
        f"{head}</tr>\n" + "\n".join(body) + "</table></div>"
    )
