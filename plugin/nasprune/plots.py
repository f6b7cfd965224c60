"""The front plot of one run (``pareto.png``) and the drawing conventions every plot shares.

``pareto.png`` has two panels. The left one shows every evaluated sub-network and the Pareto front
on the validation error the search minimised; the right one shows the test error of the Pareto set,
held out from the search. Both mark the full (unpruned) model, draw lines at 100/95/90% of its
metric, and highlight the recommended point (:func:`nasprune.choosing.recommended_point`).

The empty model (no layers: a majority-class predictor, or for language modelling the next token
from the current token's embedding alone) stays in the data but does not set the
axis limits, nor do sub-networks that score no better than it (near-empty ones predict the majority
class too): when their errors lie above the others they are drawn on the upper edge of the axes,
with one note giving their true error, so the interesting part of the front keeps the whole height.

Figures use the Agg canvas (:func:`nasprune.analysis.new_figure`: no pyplot state, no display);
``front_figure`` returns the figure so that tests can look at what was drawn.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from nasprune import analysis, choosing
from nasprune.analysis import SCORE_LEVELS, error_at_level

#: Colours of one run's plot: evaluated points, the front, the full model, the recommended point.
EVALUATED, FRONT, FULL_MODEL, RECOMMENDED, EMPTY = "0.7", "C3", "black", "C2", "C7"
#: The share of the data range added above and below the points.
MARGIN = 0.06
#: The share of the y range added on top when points are drawn on the upper edge, for them and their note.
CLIPPED_HEADROOM = 0.14


# --- labels -----------------------------------------------------------------------------------
def macs_length(summary: Mapping[str, Any]) -> int | None:
    """The sequence length the MACs of a run were counted at (None when the summary does not say)."""
    for value in (summary.get("macs_seq_length"), (summary.get("data_options") or {}).get("max_seq_length")):
        if isinstance(value, (int, float)) and value > 0:
            return int(value)
    return None


def objective_label(column: str, summary: Mapping[str, Any] | None = None) -> str:
    """An axis label that says what ``column`` of ``results.csv`` means.

    ``valid_error`` reads "validation error (1 − accuracy)" with the task's metric,
    ``relative_params`` "parameters relative to the full model (22.7M)" with the full model's count.
    """
    summary = summary or {}
    full = summary.get("full_model") if isinstance(summary.get("full_model"), Mapping) else {}
    metric = choosing.metric_name(summary) if summary else "metric"
    if column in ("valid_error", "test_error"):
        split = "validation" if column == "valid_error" else "test"
        return f"{split} error (1 − {metric})"
    if column == "relative_params":
        params = full.get("params")
        count = f" ({float(params) / 1e6:.1f}M)" if isinstance(params, (int, float)) and params > 0 else ""
        return f"parameters relative to the full model{count}"
    if column == "relative_macs":
        length = macs_length(summary)
        return f"MACs at length {length}, relative to the full model" if length else "MACs relative to the full model"
    if column == "relative_latency":
        return "latency relative to the full model"
    return column


def empty_model_label(summary: Mapping[str, Any] | None = None) -> str:
    """The legend of the empty model: what a model without layers predicts for the run's task.

    A language-modelling run (its summary records ``vocab_size``) still predicts each next token,
    from the current token's embedding through the LM head; a classifier predicts one class.
    """
    vocab_size = (summary or {}).get("vocab_size")
    if isinstance(vocab_size, (int, float)) and vocab_size > 1:
        return "empty model (0 layers, next token from its embedding)"
    return "empty model (0 layers, majority class)"


# --- shared drawing helpers -------------------------------------------------------------------
def padded_limits(values: Sequence[float] | np.ndarray, margin: float = MARGIN) -> tuple[float, float]:
    """``(low, high)`` around the finite ``values`` with ``margin`` of their range on either side."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not values.size:
        return 0.0, 1.0
    low, high = float(values.min()), float(values.max())
    pad = margin * (high - low) if high > low else max(abs(high), 1.0) * 0.05
    return low - pad, high + pad


def draw_score_levels(axes: Any, full_error: float, side: str = "right") -> list[Any]:
    """Horizontal lines at 100/95/90% of the full model's score (``1 - full_error``), labelled."""
    lines = []
    if not math.isfinite(full_error):
        return lines
    for level in SCORE_LEVELS:
        error = error_at_level(full_error, level)
        line = axes.axhline(error, color="0.35", linewidth=0.8, linestyle="--" if level == 1 else ":", zorder=1)
        line.set_gid(f"level-{level:.2f}")
        lines.append(line)
        # In axes coordinates along x, so the label stays inside whatever the x limits become.
        axes.annotate(
            f"{level:.0%} of full model", (1.0 if side == "right" else 0.0, error),
            xycoords=("axes fraction", "data"), xytext=(-3 if side == "right" else 3, 2),
            textcoords="offset points", ha=side, va="bottom", fontsize=7, color="0.35",
        )
    return lines


def draw_clipped_group(
    axes: Any, xs: np.ndarray, ys: np.ndarray, label: str, note: str, colour: str = EMPTY, marker: str = "^"
) -> Any:
    """Draw points whose ``ys`` lie above the axes as markers on the upper edge (the y limits must
    be set before), with one ``note`` beside the leftmost, which should give their true errors."""
    top = axes.get_ylim()[1]
    shown_y = np.minimum(np.asarray(ys, dtype=float), top)
    drawn = axes.scatter(xs, shown_y, s=36, marker=marker, color=colour, zorder=4, clip_on=False, label=label)
    if note:
        left = int(np.argmin(xs))
        axes.annotate(note, (xs[left], shown_y[left]), xytext=(6, -12), textcoords="offset points", fontsize=7,
                      color=colour)
    return drawn


def draw_clipped_outlier(axes: Any, x: float, y: float, label: str, short: str, colour: str = EMPTY) -> Any:
    """Draw a point whose ``y`` lies above the axes on the upper edge, with its true value written
    beside it (the y limits must be set before). ``label`` goes to the legend, ``short`` beside the point."""
    top = axes.get_ylim()[1]
    if y <= top:
        marker = axes.scatter([x], [y], s=40, marker="X", color=colour, zorder=4, label=label)
        axes.annotate(f"{short}: {y:.3f}", (x, y), xytext=(5, -10), textcoords="offset points", fontsize=7, color=colour)
        return marker
    marker = axes.scatter([x], [top], s=50, marker="^", color=colour, zorder=5, clip_on=False, label=label)
    axes.annotate(f"{short}: {y:.3f} (above)", (x, top), xytext=(6, -12), textcoords="offset points", fontsize=7, color=colour)
    return marker


# --- the front plot of one run ----------------------------------------------------------------
def _draw_empty_and_uninformative(
    axes: Any, sizes: np.ndarray, errors: np.ndarray, empty: np.ndarray, uninformative: np.ndarray,
    summary: Mapping[str, Any],
) -> None:
    """The empty model and the sub-networks no better than it: on the upper edge when above the
    axes, with one note giving their errors (one note, so that near-empty points at sizes beside
    the empty model's do not write over each other)."""
    top = axes.get_ylim()[1]
    above_empty, above_rest = empty & (errors > top), uninformative & (errors > top)
    for index in np.flatnonzero(empty & ~above_empty):
        draw_clipped_outlier(axes, sizes[index], errors[index], empty_model_label(summary), "empty model")
    inside = uninformative & ~above_rest  # only where a level line or the full model reaches as high
    if inside.any():
        axes.scatter(sizes[inside], errors[inside], s=14, color=EVALUATED, zorder=2, label="_nolegend_")
    values = errors[above_empty | above_rest]
    if not values.size:
        return
    span = f"{values.min():.3f}" if values.max() - values.min() < 5e-4 else f"{values.min():.3f}–{values.max():.3f}"
    count = int(above_rest.sum())
    others = f"{count} no better" if count else ""
    who = " and ".join(part for part in ("empty model" if above_empty.any() else "", others) if part)
    note = f"{who}: {span} (above)"
    if above_rest.any():
        # The note goes beside the empty model when it is drawn too (it is the leftmost).
        rest_note = "" if above_empty.any() else note
        draw_clipped_group(axes, sizes[above_rest], errors[above_rest], "no better than the empty model", rest_note,
                           colour=EVALUATED)
    if above_empty.any():
        draw_clipped_group(axes, sizes[above_empty], errors[above_empty], empty_model_label(summary), note)


def _number(value: Any, default: float) -> float:
    """``value`` as a float, ``default`` when it is missing or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def front_figure(
    df: pd.DataFrame,
    x: str,
    y: str,
    title: str | None = None,
    pareto_column: str = "pareto",
    summary: Mapping[str, Any] | None = None,
) -> Any:
    """The figure :func:`plot_front` writes (see the module docstring).

    :param df: result rows (``results.csv``); ``x`` and ``y`` are objective columns, ``y`` the error
    :param summary: the run's ``summary.json`` (its ``full_model``, metric and objectives). Without
        it only the evaluated points and the front are drawn.
    """
    summary = summary or {}
    df = df.reset_index(drop=True)
    points = df[[x, y]].to_numpy(dtype=float)
    finite = np.all(np.isfinite(points), axis=1)
    on_front = df[pareto_column].to_numpy(dtype=bool) if pareto_column in df.columns else analysis.pareto_mask(points)
    on_front = on_front & finite
    empty = choosing.is_empty_model(df).to_numpy() & finite
    full = summary.get("full_model") if isinstance(summary.get("full_model"), Mapping) else {}
    recommended = None
    if summary and "valid_error" in df.columns and "trial_id" in df.columns:
        frame = df.assign(pareto=on_front)
        recommended = choosing.recommended_point(frame, choosing.full_model_valid_error(summary), x)
    has_test = "test_error" in df.columns and bool(np.isfinite(df["test_error"].to_numpy(float))[on_front].any())
    full_size = _number(full.get(x), 1.0)
    # One x range for both panels (they share the axis): every point, the empty model included,
    # since its size is real and does not stretch anything.
    x_limits = padded_limits(np.concatenate([points[finite, 0], [full_size]]))

    figure = analysis.new_figure(11.0, 4.6, 100)
    validation_axes = figure.add_subplot(1, 2, 1)
    test_axes = figure.add_subplot(1, 2, 2, sharex=validation_axes)
    panels = [(validation_axes, y, "evaluated sub-networks and the Pareto front")]
    panels.append((test_axes, "test_error", "the Pareto set on the test split (held out from the search)"))
    for axes, error_column, panel_title in panels:
        if error_column not in df.columns or (error_column == "test_error" and not has_test):
            axes.text(0.5, 0.5, "no test error was measured", transform=axes.transAxes, ha="center", va="center")
            axes.set_title(panel_title, fontsize=9)
            axes.set_xlabel(objective_label(x, summary))
            continue
        errors = df[error_column].to_numpy(dtype=float)
        sizes = points[:, 0]
        shown = finite & np.isfinite(errors) & (on_front if error_column == "test_error" else True)
        normal = shown & ~empty
        # Sub-networks no better than the empty model (near-empty ones predict the majority class
        # too) say nothing a user would choose from: like the empty model, they do not set the limits.
        empty_errors = errors[shown & empty]
        floor = float(empty_errors.min()) if empty_errors.size else math.inf
        uninformative = normal & (errors >= floor - 1e-9)
        informative = normal & ~uninformative
        if error_column != "test_error":
            rest = informative & ~on_front
            axes.scatter(sizes[rest], errors[rest], s=14, color=EVALUATED, label="evaluated", zorder=2)
        front = informative & on_front
        order = np.argsort(sizes[front], kind="stable")
        front_x, front_y = sizes[front][order], errors[front][order]
        if len(front_x):
            if error_column == y:  # the attainment boundary of the objectives searched
                axes.step(front_x, front_y, where="post", color=FRONT, linewidth=1.2, zorder=3)
            else:  # on test the same points need not form a front: join them lightly, in size order
                axes.plot(front_x, front_y, color=FRONT, linewidth=0.8, alpha=0.5, zorder=3)
            axes.scatter(front_x, front_y, s=24, color=FRONT, zorder=3, label="Pareto front" if error_column == y else "Pareto set")
        full_error = _number(full.get(error_column), math.nan)
        if math.isfinite(full_error):
            axes.scatter([full_size], [full_error], s=110, marker="*", color=FULL_MODEL, zorder=5,
                         label=f"full model ({1 - full_error:.1%} {choosing.metric_name(summary)})")
        # Labels at the left: the full model and the recommended point sit at the right end of the lines.
        levels = draw_score_levels(axes, full_error, side="left")
        y_values = np.concatenate([errors[informative], [full_error], [line.get_ydata()[0] for line in levels]])
        axes.set_xlim(*x_limits)
        low, high = padded_limits(y_values)
        above = (shown & empty | uninformative) & (errors > high)
        if above.any():
            # Headroom for the markers on the edge and their note, clear of the level labels.
            high += CLIPPED_HEADROOM * (high - low)
        axes.set_ylim(low, high)
        if recommended is not None and shown[recommended] and math.isfinite(errors[recommended]):
            rx, ry = sizes[recommended], errors[recommended]
            pick = choosing.pick_index(df.assign(pareto=on_front), recommended)
            axes.scatter([rx], [ry], s=180, facecolors="none", edgecolors=RECOMMENDED, linewidths=2.2, zorder=6,
                         label=f"recommended (pick {pick})")
            # On the side with room: left of a point in the right half of the axes.
            right_half = rx > sum(x_limits) / 2
            axes.annotate(f"pick {pick}: {1 - ry:.1%}, size {rx:.2f}", (rx, ry), xytext=(-10 if right_half else 10, 8),
                          textcoords="offset points", ha="right" if right_half else "left", fontsize=8,
                          color=RECOMMENDED, fontweight="bold")
        _draw_empty_and_uninformative(axes, sizes, errors, shown & empty, uninformative, summary)
        axes.set_xlabel(objective_label(x, summary))
        axes.set_ylabel(objective_label(error_column, summary))
        axes.set_title(panel_title, fontsize=9)
        axes.grid(alpha=0.3)
        # The front runs from the upper left to the lower right: the upper right corner is free, below
        # the band of points drawn on the upper edge, if any, so that the legend does not cover their note.
        band = CLIPPED_HEADROOM / (1 + CLIPPED_HEADROOM) if above.any() else 0.0
        axes.legend(loc="upper right", bbox_to_anchor=(1.0, 1.0 - band), fontsize="x-small", framealpha=0.85)
    if title:
        figure.suptitle(title, fontsize=11)
    return figure


def plot_front(
    df: pd.DataFrame,
    x: str,
    y: str,
    path: str | os.PathLike,
    title: str | None = None,
    pareto_column: str = "pareto",
    summary: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``pareto.png`` (:func:`front_figure`) atomically."""
    return analysis.save_figure(front_figure(df, x, y, title, pareto_column, summary), path)
