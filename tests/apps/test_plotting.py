"""The shared plotting style: estimator colours, outside legends, residuals, limits, resolution."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from gumbelkit import estimators
from gumbelkit.apps import plotting


def test_every_registered_estimator_has_its_own_colour_and_a_marker() -> None:
    names = estimators.estimator_names()
    styles = [plotting.estimator_style(n) for n in names]
    colours = [s["color"] for s in styles]
    assert len(set(colours)) == len(names), dict(zip(names, colours, strict=True))
    assert all("marker" in s for s in styles)
    # labels with options map to their estimator's style
    assert plotting.estimator_style("gumbel_rao(k=100)") == plotting.estimator_style("gumbel_rao")
    assert plotting.estimator_style("reinforce (tau ignored)")["color"] == plotting.ESTIMATOR_STYLES["reinforce"]["color"]
    # the two estimators with the same expectation stay distinguishable where their curves coincide
    st_gs, rao = plotting.estimator_style("st_gs"), plotting.estimator_style("gumbel_rao")
    assert (st_gs["linestyle"], st_gs.get("markerfacecolor")) != (rao["linestyle"], rao.get("markerfacecolor"))


def test_standardised_residuals() -> None:
    z = plotting.standardised_residuals([30, 70], [0.25, 0.75], 100)
    sd = np.sqrt(100 * 0.25 * 0.75)
    np.testing.assert_allclose(z, [5 / sd, -5 / sd])
    # an impossible cell: 0 when empty, infinite when drawn
    np.testing.assert_array_equal(plotting.standardised_residuals([0, 3], [0.0, 0.0], 3), [0.0, np.inf])


def test_legend_outside_does_not_cover_any_axes() -> None:
    fig = plotting.figure(6, 3)
    ax1, ax2 = fig.subplots(1, 2)
    for ax in (ax1, ax2):
        ax.plot([0, 1], [0, 1], label="line a")
        ax.plot([0, 1], [1, 0], label="line b")
    plotting.legend_outside(fig)
    assert ax1.get_legend() is None and ax2.get_legend() is None
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["line a", "line b"]  # shared entries once
    fig.draw_without_rendering()  # runs the constrained layout
    box = legend.get_window_extent()
    for ax in (ax1, ax2):
        assert not box.overlaps(ax.get_window_extent())
    with pytest.raises(ValueError, match="where"):
        plotting.legend_outside(fig, where="inside")


def test_constant_values_get_a_zero_based_axis_and_residuals_a_fixed_one() -> None:
    fig = plotting.figure(4, 3)
    ax, ax_res = fig.subplots(2, 1)
    ax.plot(range(5), [1.3] * 5)
    plotting.zero_based(ax, [1.3] * 5)
    assert ax.get_ylim() == pytest.approx((0.0, 1.3 * 1.15))
    plotting.residual_panel(ax_res, np.arange(4), [0.1, -0.2, 0.3, 0.0])
    assert ax_res.get_ylim() == (-3.5, 3.5)  # not autoscaled onto four small residuals
    plotting.residual_panel(ax_res, np.arange(2), [5.0, -1.0])
    assert ax_res.get_ylim() == pytest.approx((-5.75, 5.75))


def test_integer_ticks() -> None:
    fig = plotting.figure(4, 3)
    ax = fig.subplots()
    ax.plot([0, 3], [0, 2.5])
    plotting.integer_ticks(ax.xaxis)
    ticks = ax.get_xticks()
    assert np.all(ticks == np.round(ticks))


def test_saved_at_twice_the_default_resolution(tmp_path: Path) -> None:
    fig = plotting.figure(4, 3)
    fig.subplots().plot([0, 1])
    path = plotting.save(fig, tmp_path / "f.png")
    width, height = struct.unpack(">II", path.read_bytes()[16:24])  # PNG IHDR
    assert (width, height) == (4 * plotting.DPI, 3 * plotting.DPI) and plotting.DPI == 200


def test_image_rows_checks_its_labels() -> None:
    fig = plotting.figure(4, 2)
    with pytest.raises(ValueError, match="same length"):
        plotting.image_rows(fig, [np.zeros((2, 4, 4))], ["a", "b"])
