"""Shared pieces of the tour: run settings, the per-section result record, figure saving.

Every section module exposes ``run(ctx: TourContext) -> Section``. A section puts every number it
shows into ``Section.numbers`` (written to ``results.json``) and formats the displayed values from
there, so the page never shows a number the JSON does not hold.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure as MplFigure
from tqdm import tqdm

from gumbelkit.apps import plotting

__all__ = ["FigureRef", "Section", "Sizes", "TourContext", "default_results_dir", "fmt", "to_jsonable"]


@dataclass(frozen=True)
class Sizes:
    """Sample sizes and step counts; ``--quick`` uses :meth:`quick`."""

    noise_samples: int = 1_000_000  # section 1: draws for the KS test and the histogram
    dtype_samples: int = 1_000_000  # section 1: draws per dtype for the observed range
    max_samples: int = 1_000_000  # section 2: Gumbel-Max draws per probability vector
    topk_samples: int = 500_000  # section 2: Gumbel-top-k draws
    simplex_points: int = 1_500  # section 3: points per tau on the simplex
    tau_curve_samples: int = 20_000  # section 3: draws per tau for the E[max] / entropy curves
    tau_curve_points: int = 33  # section 3: taus on the log grid
    polyprog_steps: int = 1_000  # section 5: Adam steps per run
    polyprog_seeds: int = 3  # section 5: seeds per configuration
    grad_samples: int = 20_000  # section 6: gradient draws per (estimator, tau)
    grad_taus: int = 9  # section 6: taus on the log grid 0.1 .. 10

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            noise_samples=200_000,
            dtype_samples=200_000,
            max_samples=200_000,
            topk_samples=100_000,
            simplex_points=400,
            tau_curve_samples=3_000,
            tau_curve_points=17,
            polyprog_steps=150,
            polyprog_seeds=1,
            grad_samples=3_000,
            grad_taus=5,
        )


@dataclass(frozen=True)
class FigureRef:
    """A figure written by a section: ``path`` is relative to the report directory."""

    name: str
    path: str
    caption: str


@dataclass
class Section:
    """What one section of the tour produced.

    Attributes:
        number: 1-based position in the report.
        key: short identifier, the key of this section in ``results.json``.
        title: heading.
        paragraphs: one or two plain sentences each (numbers in them come from ``numbers``).
        figures: figures, in display order.
        numbers: every number the section shows (JSON-serialisable, no NaN).
        table: ``(label, value)`` rows shown under the figures, formatted from ``numbers``.
        headline: one line for the summary table.
        extra_html: trusted HTML written by the tour itself (worked-example tables, the slider).
        seconds: wall time of the section.
    """

    number: int
    key: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    figures: list[FigureRef] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    table: list[tuple[str, str]] = field(default_factory=list)
    headline: str = ""
    extra_html: str = ""
    html_paragraphs: bool = False  # paragraphs hold trusted HTML written by the tour itself
    seconds: float = 0.0


def default_results_dir() -> Path | None:
    """The committed ``results/`` of the source checkout this package runs from, else ``./results``.

    ``None`` when neither exists (e.g. an installed wheel run outside the repository).
    """
    checkout = Path(__file__).resolve().parents[4] / "results"  # src/gumbelkit/apps/tour/ -> repo
    for candidate in (checkout, Path.cwd() / "results"):
        if candidate.is_dir():
            return candidate
    return None


@dataclass
class TourContext:
    """Where the report goes, how big the run is, and where the committed results are."""

    out: Path
    seed: int = 0
    quick: bool = False
    progress: bool = True
    sizes: Sizes = dataclasses.field(default_factory=Sizes)
    results: Path | None = dataclasses.field(default_factory=default_results_dir)

    @property
    def fig_dir(self) -> Path:
        return self.out / "figures"

    def generator(self, stream: int) -> torch.Generator:
        """A CPU generator for one section: seeded from ``(seed, stream)`` so sections are
        reproducible on their own and independent of the order they run in."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + stream)

    def save_figure(self, fig: MplFigure, name: str, caption: str) -> FigureRef:
        """Write ``fig`` as ``figures/<name>.png`` and return its reference."""
        plotting.save(fig, self.fig_dir / f"{name}.png", software="gumbelkit tour")
        return FigureRef(name=name, path=f"figures/{name}.png", caption=caption)

    @property
    def bars(self) -> bool:
        """Progress bars only on a terminal: a log file gets no carriage-return frames."""
        return self.progress and sys.stderr.isatty()

    def bar(self, desc: str, total: int) -> tqdm:
        """A progress bar for one section (on stderr, when it is a terminal)."""
        return tqdm(total=total, desc=desc, leave=True, disable=not self.bars, ncols=88,
                    bar_format="{desc:<28}{percentage:3.0f}%|{bar}| {n}/{total} [{elapsed}]")


def fmt(x: float, digits: int = 4) -> str:
    """Format a number for display: ``digits`` significant digits, scientific when tiny/huge."""
    if x == 0:
        return "0"
    ax = abs(x)
    if ax < 1e-3 or ax >= 1e6:
        return f"{x:.{max(digits - 1, 1)}e}"
    return f"{x:.{digits}g}"


def fmt_p(p: float) -> str:
    """Format a p-value."""
    return f"{p:.3g}" if p >= 1e-3 else f"{p:.2e}"


def to_jsonable(obj: Any) -> Any:
    """Convert tensors, numpy scalars/arrays, tuples and dataclasses to plain JSON types.

    Raises:
        ValueError: a NaN or infinite float anywhere (the report must not contain them).
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist())
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy arrays and scalars
        return to_jsonable(obj.tolist())
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"non-finite number {obj!r} in the tour results")
        return obj
    raise TypeError(f"cannot convert {type(obj).__name__} to JSON")


def chunks(n: int, size: int) -> Iterator[int]:
    """Sizes of consecutive chunks that add up to ``n``."""
    while n > 0:
        yield min(size, n)
        n -= size


def rounded(values: Sequence[float], digits: int = 6) -> list[float]:
    """Round a list of floats for the JSON (keeps the file readable)."""
    return [float(f"{v:.{digits}g}") for v in values]
