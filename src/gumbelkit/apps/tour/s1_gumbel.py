"""Section 1: the noise really is Gumbel(0, 1), and it stays finite in every dtype."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats

from gumbelkit.apps import plotting
from gumbelkit.apps.tour._report import Section, TourContext, fmt, fmt_p
from gumbelkit.noise import GUMBEL_NOISE_MAX, GUMBEL_NOISE_MIN, gumbel_noise

TITLE = "The Gumbel distribution"
_DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def run(ctx: TourContext) -> Section:
    """KS tests of gumbel_noise against scipy, and the observed noise range per dtype."""
    n = ctx.sizes.noise_samples
    gen = ctx.generator(1)
    bar = ctx.bar(f"1 {TITLE}", total=2 + len(_DTYPES))

    # Kolmogorov-Smirnov against scipy's independent implementation of the Gumbel CDF
    x64 = gumbel_noise((n,), dtype=torch.float64, generator=gen).numpy()
    ks64 = stats.kstest(x64, "gumbel_r")
    x32 = gumbel_noise((n,), dtype=torch.float32, generator=gen).numpy().astype(np.float64)
    ks32 = stats.kstest(x32, "gumbel_r")
    bar.update()

    ranges: dict[str, dict[str, float | int | bool]] = {}
    for name, dt in _DTYPES.items():
        y = gumbel_noise((ctx.sizes.dtype_samples,), dtype=dt, generator=gen)
        yf = y.to(torch.float64)
        ranges[name] = {
            "observed_min": float(yf.min()),
            "observed_max": float(yf.max()),
            "all_finite": bool(torch.isfinite(y).all()),
            "distinct_values": int(torch.unique(yf).numel()),
            "samples": int(y.numel()),
        }
        bar.update()

    # what naive float32 noise -log(-log(u)) could reach at most: u on a 2^-24 grid, largest
    # u below 1 is 1 - 2^-24
    naive_cap = -math.log(-math.log1p(-(2.0**-24)))

    fig = plotting.figure(11, 4.6)
    grid_spec = fig.add_gridspec(2, 2, height_ratios=(3, 1.3))
    ax1 = fig.add_subplot(grid_spec[0, 0])
    ax_res = fig.add_subplot(grid_spec[1, 0], sharex=ax1)
    ax2 = fig.add_subplot(grid_spec[:, 1])
    edges = np.linspace(-4, 12, 161)
    counts, _ = np.histogram(x64, bins=edges)
    width = edges[1] - edges[0]
    centres = 0.5 * (edges[:-1] + edges[1:])
    ax1.bar(centres, counts / (n * width), width=width, color="#9ecae1", lw=0, label=f"gumbel_noise, n = {n:,}")
    grid = np.linspace(-4, 12, 400)
    ax1.plot(grid, stats.gumbel_r.pdf(grid), color="#08519c", lw=1.6, label=r"exact density $e^{-(x+e^{-x})}$")
    ax1.set_ylabel("density")
    ax1.set_title(f"Histogram vs exact density (KS p = {fmt_p(ks64.pvalue)})")
    ax1.tick_params(labelbottom=False)
    plotting.style_axes(ax1)
    # goodness of fit per bin: the exact probability of each bin from scipy's CDF
    # bins expecting fewer than 20 draws are left out: their residuals are too skewed to read
    p_bin = np.diff(stats.gumbel_r.cdf(edges))
    fit = n * p_bin >= 20
    plotting.residual_panel(ax_res, centres[fit],
                            plotting.standardised_residuals(counts[fit], p_bin[fit], n),
                            xlabel="x", stems=False)
    xs = np.sort(x64)
    surv = 1.0 - np.arange(1, n + 1) / n  # empirical P(G > x_i)
    keep = surv > 0
    ax2.semilogy(xs[keep], surv[keep], color="#9ecae1", lw=2.5, label="empirical P(G > x)")
    tail = np.linspace(-2, naive_cap + 1.5, 300)
    ax2.semilogy(tail, stats.gumbel_r.sf(tail), color="#08519c", lw=1.2, ls="--", label=r"exact $1 - e^{-e^{-x}}$")
    ax2.axvline(naive_cap, color="#cb181d", lw=1, ls=":", label=f"cap of naive float32 noise ({naive_cap:.2f})")
    ax2.set_xlabel("x")
    ax2.set_ylabel("P(G > x)")
    ax2.set_title("Upper tail (log scale)")
    plotting.style_axes(ax2)
    plotting.legend_outside(fig, [ax1, ax2, ax_res])
    f1 = ctx.save_figure(fig, "s1_gumbel_density", "Left: a histogram of gumbel_noise samples over the exact Gumbel(0, 1) density, and below it each bin's standardised residual (count minus its exact expectation, in standard errors; bins expecting at least 20 draws; about 95% of them fall inside the grey band when the noise is right). Right: the upper tail on a log scale; the dotted line is where noise computed naively from a float32 uniform stops.")
    bar.update()
    bar.close()

    mean, var = float(x64.mean()), float(x64.var())
    numbers = {
        "samples": n,
        "ks_float64": {"statistic": float(ks64.statistic), "pvalue": float(ks64.pvalue)},
        "ks_float32": {"statistic": float(ks32.statistic), "pvalue": float(ks32.pvalue)},
        "mean_float64": mean,
        "var_float64": var,
        "exact_mean_euler_gamma": float(np.euler_gamma),
        "exact_var_pi2_over_6": math.pi**2 / 6,
        "library_bounds": {"min": GUMBEL_NOISE_MIN, "max": GUMBEL_NOISE_MAX},
        "naive_float32_cap": naive_cap,
        "range_per_dtype": ranges,
    }
    table = [
        ("KS test, float64 noise (statistic, p-value)", f"D = {fmt(ks64.statistic)}, p = {fmt_p(ks64.pvalue)}"),
        ("KS test, float32 noise (statistic, p-value)", f"D = {fmt(ks32.statistic)}, p = {fmt_p(ks32.pvalue)}"),
        ("mean (exact: Euler's gamma)", f"{fmt(mean)} (exact {fmt(np.euler_gamma)})"),
        ("variance (exact: pi^2/6)", f"{fmt(var)} (exact {fmt(math.pi**2 / 6)})"),
        ("bounds the library can ever return", f"[{fmt(GUMBEL_NOISE_MIN)}, {fmt(GUMBEL_NOISE_MAX)}]"),
        ("largest value of naive float32 noise", fmt(naive_cap)),
    ]
    for name, r in ranges.items():
        table.append(
            (f"{name}: observed range over {r['samples']:,} draws",
             f"[{fmt(float(r['observed_min']))}, {fmt(float(r['observed_max']))}], "
             f"{r['distinct_values']:,} distinct values, all finite: {'yes' if r['all_finite'] else 'NO'}")
        )
    paragraphs = [
        f"{n:,} draws of gumbel_noise match the Gumbel(0, 1) law: the Kolmogorov-Smirnov test against "
        f"scipy's Gumbel CDF gives p = {fmt_p(ks64.pvalue)} (float64) and p = {fmt_p(ks32.pvalue)} "
        "(float32); a p-value is uniform on (0, 1) when the noise is right, so only a tiny one would "
        "signal a problem.",
        "The uniforms behind the noise have 53 bits in every dtype, so the upper tail goes far beyond "
        f"the {naive_cap:.2f} where naive float32 noise stops, and no dtype ever produces an infinite "
        "value; half-precision noise is only coarser (fewer distinct values), not wrong.",
    ]
    return Section(
        number=1, key="gumbel_distribution", title=TITLE, paragraphs=paragraphs, figures=[f1],
        numbers=numbers, table=table,
        headline=f"KS p = {fmt_p(ks64.pvalue)} (f64), {fmt_p(ks32.pvalue)} (f32); all dtypes finite: "
        f"{all(bool(r['all_finite']) for r in ranges.values())}",
    )
