"""The comparison's plots: error against size, hypervolume over time, average ranks.

Many methods times several seeds must stay readable, so every method is drawn once, aggregated
over its seeds:

- *Error against size*: the median empirical attainment surface of the method's runs (what at least
  half of the seeds reached), with a band from the best to the worst attainment surface (what one
  seed reached, what every seed reached). The attainment functions come from ``moocore``.
- *Hypervolume over time*: the median over seeds, with a band from the worst to the best seed.

When the methods come in a ``natural`` and a ``rewired`` variant (``--group-by ...,order``), each
variant gets its own panel and the baselines are drawn in every panel as a reference; one colour
per method, circles for searches, squares for baselines, triangles for standard NAS.

Figures come from :func:`nasprune.analysis.new_figure` (the Agg canvas, no pyplot state) and are
written atomically by :func:`nasprune.analysis.save_figure`; the ``*_figure`` functions return the
figure so that tests can read what was drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from nasprune import analysis, choosing
from nasprune.plots import draw_score_levels, objective_label, padded_limits
from nasprune.report.hypervolume import traces_on_grid
from nasprune.report.runs import Run

#: The height (inches) and resolution of the comparison's plots; the width grows with the panels.
PANEL_WIDTH, HEIGHT, DPI = 5.8, 5.4, 110
#: The variants of a search that ``--group-by ...,order`` names, and what each means.
ORDERS = {
    "natural": "natural: heads and units in the pretrained model's order",
    "rewired": "rewired: heads and units sorted by importance before super-network training",
}
#: Markers by kind of run.
MARKERS = {"ws": "o", "baseline": "s", "snas": "^"}
KIND_NAMES = {"ws": "weight-sharing search", "baseline": "pruning baseline", "snas": "standard NAS"}
#: Times spanning more than this ratio are drawn on a log axis.
LOG_TIME_RATIO = 10.0
#: The opacity of the bands: eight overlapping bands must leave the curves readable.
BAND_ALPHA = 0.1
#: The attainment levels drawn (moocore's percentiles): best seed, median, worst seed.
BEST, MEDIAN, WORST = 0.0, 50.0, 100.0


@dataclass(frozen=True)
class MethodStyle:
    """How a method is drawn: its family (the label without the order), colour, marker and panel."""

    family: str
    kind: str
    order: str | None
    colour: Any
    marker: str

    @property
    def everywhere(self) -> bool:
        """Baselines have no natural or rewired variant: they are drawn in every panel."""
        return self.kind == "baseline" or self.order is None


def _split_label(label: str) -> tuple[str, str, str | None]:
    """``(family, kind, order)`` of a method label such as ``ws/local_search/rewired``."""
    parts = label.split("/")
    order = parts[-1] if len(parts) > 1 and parts[-1] in ORDERS else None
    family = "/".join(parts[:-1]) if order else label
    kind = parts[0] if parts[0] in MARKERS else "ws"
    return family, kind, order


def method_styles(labels: Sequence[str]) -> dict[str, MethodStyle]:
    """One colour per method family (natural and rewired share it: the panel tells them apart),
    searches before baselines; tab10 up to ten families, tab20 beyond."""
    # Imported here: matplotlib is slow to load and only the plots need it.
    from matplotlib import colormaps

    split = {label: _split_label(label) for label in labels}
    kind_of = {family: kind for family, kind, _ in split.values()}
    families = sorted(kind_of, key=lambda family: (kind_of[family] == "baseline", family))
    if len(families) <= 10:
        palette = list(colormaps["tab10"].colors)
    else:  # the strong shades of tab20 first, then the light ones
        colours = list(colormaps["tab20"].colors)
        palette = colours[0::2] + colours[1::2]
    colour_of = {family: palette[i % len(palette)] for i, family in enumerate(families)}
    return {
        label: MethodStyle(family, kind, order, colour_of[family], MARKERS.get(kind, "D"))
        for label, (family, kind, order) in split.items()
    }


def panels_of(styles: Mapping[str, MethodStyle]) -> list[str | None]:
    """The panels: one per order the searches come in (``[None]``: a single panel)."""
    orders = sorted({s.order for s in styles.values() if not s.everywhere})
    return list(orders) if len(orders) > 1 else [orders[0] if orders else None]


def _linestyle(style: MethodStyle) -> Any:
    # Baselines dashed: told apart from searches even where two colours look alike.
    return (0, (4, 1.5)) if style.kind == "baseline" else "-"


def _in_panel(style: MethodStyle, panel: str | None) -> bool:
    return style.everywhere or panel is None or style.order == panel


def _panel_title(panel: str | None) -> str:
    return ORDERS.get(panel, "") if panel else ""


def _figure(num_panels: int) -> tuple[Any, list[Any]]:
    figure = analysis.new_figure(PANEL_WIDTH * num_panels + 2.6, HEIGHT, DPI)
    first = figure.add_subplot(1, num_panels, 1)
    axes = [first] + [figure.add_subplot(1, num_panels, i + 1, sharex=first, sharey=first) for i in range(1, num_panels)]
    return figure, axes


def _legend(figure: Any, styles: Mapping[str, MethodStyle], runs_per_label: Mapping[str, int], band: str) -> Any:
    """One legend for the figure, right of the panels: a line per method family, then what the
    markers, lines and bands mean."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles, seen = [], set()
    for label in sorted(styles, key=lambda lb: (styles[lb].kind == "baseline", styles[lb].family)):
        style = styles[label]
        if style.family in seen:
            continue
        seen.add(style.family)
        seeds = sorted({runs_per_label[lb] for lb, s in styles.items() if s.family == style.family})
        name = f"{style.family} (seeds: {'/'.join(map(str, seeds))})"
        handles.append(Line2D([], [], color=style.colour, marker=style.marker, markersize=5, linewidth=1.4,
                              linestyle=_linestyle(style), label=name))
    handles.append(Patch(color="0.5", alpha=0.25, label=band))
    for kind in sorted({s.kind for s in styles.values()}):
        handles.append(Line2D([], [], color="0.3", marker=MARKERS.get(kind, "D"), linestyle="", label=KIND_NAMES.get(kind, kind)))
    # What the panels' orders mean, also in the legend (a text line without a symbol).
    for order in sorted({s.order for s in styles.values() if s.order and not s.everywhere}):
        handles.append(Line2D([], [], linestyle="", marker="", label=ORDERS[order]))
    return figure.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="x-small",
                         frameon=False, title="method (median over seeds)", title_fontsize="small")


# --- error against size: attainment surfaces ---------------------------------------------------
def attainment_surfaces(fronts: Sequence[np.ndarray]) -> dict[float, np.ndarray]:
    """The best, median and worst empirical attainment surfaces of several runs' points
    (``[n, 2]`` each, minimised), by moocore's EAF; each surface sorted by its first objective."""
    import moocore  # installed with pymoo; imported here since only this plot needs it

    fronts = [f[np.all(np.isfinite(f), axis=1)] for f in fronts]
    fronts = [f for f in fronts if len(f)]
    if not fronts:
        return {}
    points = np.vstack(fronts)
    sets = np.concatenate([np.full(len(f), i + 1) for i, f in enumerate(fronts)])
    table = moocore.eaf(points, sets, percentiles=[BEST, MEDIAN, WORST])
    surfaces = {}
    for level in (BEST, MEDIAN, WORST):
        surface = table[np.isclose(table[:, 2], level)][:, :2]
        surfaces[level] = surface[np.argsort(surface[:, 0], kind="stable")]
    return surfaces


def staircase(surface: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The attainment surface as a function of the first objective: the least second objective
    attained at or below each ``grid`` value (``inf`` before the surface starts)."""
    if not len(surface):
        return np.full(len(grid), np.inf)
    best = np.minimum.accumulate(surface[:, 1])
    index = np.searchsorted(surface[:, 0], grid, side="right") - 1
    return np.where(index >= 0, best[np.clip(index, 0, None)], np.inf)


def _run_points(run: Run, size: str, error: str) -> tuple[np.ndarray, np.ndarray]:
    """A run's (size, error) points and which of them are the empty model."""
    table = run.table
    points = table[[size, error]].to_numpy(float)
    empty = choosing.is_empty_model(table).to_numpy()
    finite = np.all(np.isfinite(points), axis=1)
    return points[finite], empty[finite]


def error_vs_size_figure(
    runs: Sequence[Run], size: str, error: str, unpruned: float, title: str
) -> Any:
    """The figure :func:`plot_error_vs_size` writes."""
    runs = [r for r in runs if error in r.table.columns and size in r.table.columns]
    styles = method_styles(sorted({r.label for r in runs}))
    panels = panels_of(styles)
    figure, all_axes = _figure(len(panels))
    summary = runs[0].summary if runs else {}
    surfaces: dict[str, dict[float, np.ndarray]] = {}
    limit_values: list[np.ndarray] = []
    for label in sorted(styles):
        fronts = []
        for run in (r for r in runs if r.label == label):
            points, empty = _run_points(run, size, error)
            fronts.append(points[analysis.pareto_mask(points)] if len(points) else points)
            # The limits come from every run's front without the empty model (a majority-class
            # predictor would stretch the error axis for no information).
            kept = points[~empty]
            if len(kept):
                limit_values.append(kept[analysis.pareto_mask(kept)])
        surfaces[label] = attainment_surfaces(fronts)
    limits = np.vstack(limit_values) if limit_values else np.zeros((0, 2))
    x_low, x_high = padded_limits(np.concatenate([limits[:, 0], [1.0]]))
    levels = [1 - share * (1 - unpruned) for share in (1.0, 0.9)] if math.isfinite(unpruned) else []
    y_low, y_high = padded_limits(np.concatenate([limits[:, 1], levels]))
    for axes, panel in zip(all_axes, panels):
        axes.set_xlim(x_low, x_high)
        axes.set_ylim(y_low, y_high)
        for label, style in styles.items():
            if not _in_panel(style, panel) or not surfaces.get(label):
                continue
            levels_of = surfaces[label]
            grid = np.unique(np.concatenate([s[:, 0] for s in levels_of.values()] + [[x_high]]))
            best, worst = staircase(levels_of[BEST], grid), staircase(levels_of[WORST], grid)
            # Where the worst seed attains nothing yet, the band reaches the top of the axes.
            axes.fill_between(grid, np.minimum(best, y_high), np.minimum(worst, y_high), step="post",
                              color=style.colour, alpha=BAND_ALPHA, linewidth=0)
            median = levels_of[MEDIAN]
            line_x = np.append(median[:, 0], x_high)
            line_y = np.append(median[:, 1], median[-1, 1])
            line = axes.step(line_x, line_y, where="post", color=style.colour, linewidth=1.5,
                             linestyle=_linestyle(style))[0]
            line.set_gid(f"median:{label}")
            axes.scatter(median[:, 0], median[:, 1], s=16, marker=style.marker, color=style.colour, zorder=3)
        draw_score_levels(axes, unpruned, side="left")  # the curves crowd the right end, by the full model
        axes.set_title(_panel_title(panel), fontsize=9)
        axes.set_xlabel(objective_label(size, summary))
        axes.grid(alpha=0.3)
    all_axes[0].set_ylabel(objective_label(error, summary))
    counts = {label: sum(r.label == label for r in runs) for label in styles}
    _legend(figure, styles, counts, "band: best to worst seed (attainment surfaces)")
    figure.suptitle(title, fontsize=11)
    return figure


def plot_error_vs_size(
    runs: Sequence[Run], size: str, error: str, unpruned: float, path: Path, title: str
) -> Path:
    """Per method, the median attainment surface of its runs' error against size with a band from
    the best to the worst seed, and lines at 100/95/90% of the unpruned model's score."""
    figure = error_vs_size_figure(runs, size, error, unpruned, title)
    return _save(figure, path)


def _save(figure: Any, path: Path) -> Path:
    # The legend sits right of the axes: a tight bounding box keeps it in the image.
    from nasprune.files import write_atomic

    figure.tight_layout()
    return write_atomic(path, lambda handle: figure.savefig(handle, format="png", bbox_inches="tight"), binary=True)


# --- hypervolume over time --------------------------------------------------------------------
def hypervolume_over_time_figure(traces: Mapping[str, Sequence[pd.DataFrame]], title: str) -> Any:
    """The figure :func:`plot_hypervolume_over_time` writes."""
    styles = method_styles(sorted(traces))
    panels = panels_of(styles)
    figure, all_axes = _figure(len(panels))
    times = np.concatenate([t["seconds"].to_numpy(float) for ts in traces.values() for t in ts] or [np.zeros(0)])
    times = times[times > 0]
    # A log axis only where the times span more than a decade (checkpoint training before short searches).
    log_axis = bool(times.size) and times.max() > LOG_TIME_RATIO * times.min()
    if times.size and times.max() > times.min():
        grid = (np.geomspace if log_axis else np.linspace)(times.min(), times.max(), 200)
    else:
        grid = times[:1]
    for axes, panel in zip(all_axes, panels):
        for label, style in styles.items():
            if not _in_panel(style, panel) or not grid.size:
                continue
            values = traces_on_grid(traces[label], grid)
            median = np.median(values, axis=0)
            line = axes.step(grid, median, where="post", color=style.colour, linewidth=1.5,
                             linestyle=_linestyle(style))[0]
            line.set_gid(f"median:{label}")
            axes.fill_between(grid, values.min(axis=0), values.max(axis=0), step="post", color=style.colour,
                              alpha=BAND_ALPHA, linewidth=0)
            # The marker at the end of each curve says which method it is without the colour.
            axes.scatter([grid[-1]], [median[-1]], marker=style.marker, color=style.colour, s=22, zorder=3, clip_on=False)
        if log_axis:
            axes.set_xscale("log")
        axes.set_title(_panel_title(panel), fontsize=9)
        axes.set_xlabel("wall-clock seconds (checkpoint training included)")
        axes.grid(alpha=0.3)
    all_axes[0].set_ylabel("hypervolume (higher is better)")
    _legend(figure, styles, {label: len(traces[label]) for label in styles}, "band: worst to best seed")
    figure.suptitle(title, fontsize=11)
    return figure


def plot_hypervolume_over_time(traces: dict[str, list[pd.DataFrame]], path: Path, title: str) -> Path:
    """Median hypervolume over wall-clock time per method, with a band from the worst to the best seed."""
    return _save(hypervolume_over_time_figure(traces, title), path)


# --- ranks --------------------------------------------------------------------------------------
def plot_ranks(ranks: pd.DataFrame, path: Path, title: str) -> Path:
    """Average ranks with their bootstrap confidence intervals (lower is better)."""
    figure = analysis.new_figure(6.5, 0.4 * len(ranks) + 1.5, DPI)
    axes = figure.add_subplot()
    y = np.arange(len(ranks))
    mean = ranks["mean_rank"].to_numpy(float)
    err = np.vstack([mean - ranks["ci_low"].to_numpy(float), ranks["ci_high"].to_numpy(float) - mean])
    styles = method_styles(ranks["method"].tolist())
    for i, method in enumerate(ranks["method"]):
        style = styles[method]
        axes.errorbar(mean[i], y[i], xerr=np.clip(err[:, i : i + 1], 0, None), fmt=style.marker, color=style.colour,
                      capsize=3)
    axes.set_yticks(y, ranks["method"].tolist(), fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("average rank (1 = best), 95% bootstrap CI")
    axes.set_title(title)
    axes.grid(alpha=0.3, axis="x")
    return analysis.save_figure(figure, path)
