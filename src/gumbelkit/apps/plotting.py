"""One plotting style for every figure of the applications layer (tour, applications, benchmarks).

The rules, each applied by a helper below:

* legends sit outside the data (:func:`legend_outside`);
* figures are saved at twice matplotlib's default resolution (:data:`DPI`, :func:`save`);
* integer quantities (a latent index, a category, a step) get integer ticks (:func:`integer_ticks`);
* an axis whose values are constant, or nearly so, is not autoscaled onto the rounding noise:
  its limits start at zero (:func:`zero_based`);
* a goodness-of-fit figure shows the standardised residuals in a panel of their own
  (:func:`residual_panel`), where a deviation of a few standard errors is visible at a glance;
* one colour, marker and line style per gradient estimator, the same in every figure
  (:func:`estimator_style`); two estimators with the same expectation (``st_gs`` and
  ``gumbel_rao``) are drawn so that both stay visible where their curves coincide.

Everything draws on ``matplotlib.figure.Figure`` objects, never pyplot, so importing this module
leaves the process's matplotlib backend alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = [
    "DPI",
    "ESTIMATOR_STYLES",
    "estimator_style",
    "figure",
    "image_rows",
    "integer_ticks",
    "legend_outside",
    "residual_panel",
    "save",
    "standardised_residuals",
    "style_axes",
    "zero_based",
]

#: Resolution of saved figures: twice matplotlib's default of 100 dots per inch.
DPI = 200

#: Base font size (points) of titles, labels and legends.
FONT = 8.5

#: Colour, marker and line style per registered estimator (``gumbelkit.estimators.estimator_names()``).
#: ``st_gs`` and ``gumbel_rao`` have the same expected gradient (Rao-Blackwellisation keeps the
#: mean), so their bias and cosine curves coincide: ``st_gs`` is drawn solid with filled markers
#: and ``gumbel_rao`` dashed with open markers on top, so that both stay visible.
ESTIMATOR_STYLES: dict[str, dict[str, Any]] = {
    "st": {"color": "#1f77b4", "marker": "o", "linestyle": "-"},
    "gs": {"color": "#ff7f0e", "marker": "s", "linestyle": "-"},
    "st_gs": {"color": "#2ca02c", "marker": "o", "linestyle": "-"},
    "gumbel_rao": {"color": "#d62728", "marker": "D", "linestyle": "--", "markerfacecolor": "none"},
    "gst": {"color": "#9467bd", "marker": "^", "linestyle": "-"},
    "reinmax": {"color": "#8c564b", "marker": "v", "linestyle": "-"},
    "reinforce": {"color": "#e377c2", "marker": "P", "linestyle": "-"},
    # decoupled_st with tau_forward = tau is st_gs: dotted with open markers, to stay visible over it
    "decoupled_st": {"color": "#17becf", "marker": "h", "linestyle": ":", "markerfacecolor": "none"},
    "indecater": {"color": "#bcbd22", "marker": "*", "linestyle": "-"},
}
_OTHER = {"color": "#7f7f7f", "marker": "x", "linestyle": "-"}


def estimator_style(label: str) -> dict[str, Any]:
    """Line keyword arguments for an estimator, from its name or a label that starts with it.

    ``"gumbel_rao(k=10)"`` and ``"reinforce (tau ignored)"`` get the style of ``gumbel_rao`` and
    ``reinforce``; an unknown name gets a neutral grey.

    Example:
        >>> estimator_style("gumbel_rao k=10")["color"]
        '#d62728'
    """
    name = label.split("(")[0].split(" ")[0].strip()
    return dict(ESTIMATOR_STYLES.get(name, _OTHER))


def figure(width: float, height: float) -> Figure:
    """A new figure with constrained layout (room is made for outside legends)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig


def style_axes(ax: Axes, *, grid: bool = True) -> Axes:
    """The house look of one axes: no top/right spines, a faint grid, the base font size."""
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.tick_params(labelsize=FONT)
    if grid:
        ax.grid(True, alpha=0.25, lw=0.6)
    ax.xaxis.label.set_fontsize(FONT + 0.5)
    ax.yaxis.label.set_fontsize(FONT + 0.5)
    ax.title.set_fontsize(FONT + 1)
    return ax


def legend_outside(fig: Figure, axes: Axes | Sequence[Axes] | None = None, *, where: str = "right",
                   ncols: int = 1, title: str | None = None) -> None:
    """One legend for the figure, outside every axes (right of them, or below them).

    Handles are collected from ``axes`` (default: every axes of the figure); a label seen twice
    is listed once, so panels that share estimators share one legend entry each.
    """
    if axes is None:
        axes = fig.axes
    elif isinstance(axes, Axes):
        axes = [axes]
    handles: list[Any] = []
    labels: list[str] = []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels and not lab.startswith("_"):
                handles.append(h)
                labels.append(lab)
    if not handles:
        return
    if where not in ("right", "below"):
        raise ValueError(f"where must be 'right' or 'below', got {where!r}")
    loc: Any = "outside right upper" if where == "right" else "outside lower center"
    fig.legend(handles, labels, loc=loc, ncols=ncols, fontsize=FONT, frameon=False, title=title,
               title_fontsize=FONT)


def integer_ticks(axis: Axis) -> None:
    """Ticks only at whole numbers on ``axis`` (e.g. ``ax.yaxis`` of a latent index)."""
    axis.set_major_locator(MaxNLocator(integer=True))


def zero_based(ax: Axes, values: Sequence[float] | np.ndarray, *, which: str = "y",
               headroom: float = 0.15) -> None:
    """Limits from 0 to a little above the largest value, instead of matplotlib's autoscale.

    For quantities such as a temperature that may stay constant for a whole run: autoscaling a
    constant draws the rounding noise of the values as if it were a trend.
    """
    top = float(np.nanmax(np.abs(np.asarray(values, dtype=float)))) if len(values) else 1.0
    top = top * (1 + headroom) if top > 0 else 1.0
    (ax.set_ylim if which == "y" else ax.set_xlim)(0, top)


def standardised_residuals(observed: Sequence[float] | np.ndarray, expected_p: Sequence[float] | np.ndarray,
                           n: int) -> np.ndarray:
    """``(count - n p) / sqrt(n p (1 - p))`` per cell: about N(0, 1) when the counts fit ``p``.

    Cells with ``p == 0`` get 0 if they are empty and ``inf`` otherwise.
    """
    obs = np.asarray(observed, dtype=float)
    p = np.asarray(expected_p, dtype=float)
    sd = np.sqrt(n * p * (1 - p))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, (obs - n * p) / np.where(sd > 0, sd, 1.0), np.where(obs > 0, np.inf, 0.0))
    return z


def residual_panel(ax: Axes, x: Sequence[float] | np.ndarray, z: Sequence[float] | np.ndarray, *,
                   color: str = "#08519c", xlabel: str | None = None, stems: bool = True) -> None:
    """Standardised residuals against ``x`` with the +-2 band shaded and +-3 dotted.

    The vertical limits are symmetric and at least +-3.5, so sampling noise looks like what it is
    and a real deviation stands out; they are never autoscaled onto a handful of small values.
    """
    xs = np.asarray(x, dtype=float)
    zs = np.asarray(z, dtype=float)
    finite = zs[np.isfinite(zs)]
    lim = max(3.5, 1.15 * float(np.abs(finite).max())) if finite.size else 3.5
    ax.axhspan(-2, 2, color="#bdbdbd", alpha=0.35, lw=0, label="+-2 standard errors")
    for v in (-3, 3):
        ax.axhline(v, color="#737373", lw=0.7, ls=":")
    ax.axhline(0, color="black", lw=0.7)
    if stems:
        ax.vlines(xs, 0, np.clip(zs, -lim, lim), color=color, lw=1.2)
    ax.plot(xs, np.clip(zs, -lim, lim), "o", color=color, ms=3.5, label="standardised residual")
    ax.set_ylim(-lim, lim)
    integer_ticks(ax.yaxis)
    ax.set_ylabel("residual (s.e.)")
    if xlabel:
        ax.set_xlabel(xlabel)
    style_axes(ax)


def image_rows(fig: Figure, rows: Sequence[np.ndarray], labels: Sequence[str], *,
               title: str | None = None, column_labels: Sequence[str] | None = None) -> None:
    """Rows of grey-level images (each ``(N, H, W)`` in [0, 1]) as one mosaic, a label per row.

    Used for inputs over their reconstructions: the same column is the same example.
    """
    if len(rows) != len(labels):
        raise ValueError(f"rows and labels must have the same length, got {len(rows)} and {len(labels)}")
    n = rows[0].shape[0]
    axes = fig.subplots(len(rows), n, squeeze=False, gridspec_kw={"wspace": 0.04, "hspace": 0.04})
    for r, (images, label) in enumerate(zip(rows, labels, strict=True)):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(images[c], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if r == 0 and column_labels is not None:
                ax.set_title(column_labels[c], fontsize=FONT)
        axes[r, 0].set_ylabel(label, fontsize=FONT, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=FONT + 1)


def save(fig: Figure, path: str | Path, *, software: str = "gumbelkit") -> Path:
    """Write ``fig`` as a PNG at :data:`DPI`; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, metadata={"Software": software})
    return path
