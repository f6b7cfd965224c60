"""Pareto sets, hypervolume, plots and tables (atomic files: :mod:`nasprune.files`).

All objectives are minimised (errors, relative sizes, latencies). Comparing searches by
hypervolume needs the *same* normalisation and reference point for every method, so
:func:`hypervolume` takes fixed bounds rather than deriving them from the points.

The hypervolume of nasprune (one definition everywhere)
--------------------------------------------------------
Every ``summary.json`` (searches, baselines, standard NAS) and ``nasprune compare``'s default
``unit`` mode report the hypervolume of a run's points in *normalised units*, where each
objective is already a fraction: the error is ``1 - metric`` and every size or latency is
relative to the unpruned model (which sits at exactly 1). The reference point is
:data:`REFERENCE_POINT` (1.1) in every objective, beyond the unpruned model, so the unpruned
model and a sub-network timed at or slightly above it still add volume; a point that is not
strictly below the reference point in every objective adds nothing. :data:`HYPERVOLUME_DEFINITION`
states this in one line, and every ``summary.json`` carries it.

Klein et al. 2024 instead quantile-normalise each objective per data set over all compared
runs and use the reference point (2, 2); ``nasprune compare --normalisation paper`` offers that.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from nasprune.files import save_figure_atomic

Bounds = tuple[Sequence[float], Sequence[float]]

#: The reference point of every reported hypervolume, per objective, in normalised units.
REFERENCE_POINT = 1.1
#: The one-line statement of that definition, written into every ``summary.json``.
HYPERVOLUME_DEFINITION = (
    f"hypervolume dominated by the points up to the reference point {REFERENCE_POINT} in every "
    "objective, all minimised in normalised units: error = 1 - metric, sizes and latency relative "
    "to the unpruned model (which scores 1); points not strictly below the reference point add nothing"
)


#: Fractions of the unpruned model's score (``1 - error``) that tables and plots measure against.
SCORE_LEVELS = (1.0, 0.95, 0.9)


def error_at_level(unpruned: float, level: float) -> float:
    """The largest error whose score (``1 - error``) is ``level`` times the unpruned model's."""
    return 1.0 - level * (1.0 - unpruned)


def reference_point(num_objectives: int) -> list[float]:
    """:data:`REFERENCE_POINT` for each of ``num_objectives`` objectives."""
    return [REFERENCE_POINT] * num_objectives


# --- Pareto sets ------------------------------------------------------------------------
def pareto_mask(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the Pareto-optimal rows of ``points`` (``[n, m]``, all minimised).

    A row is Pareto-optimal if no other row is at least as good in every objective and
    better in one. Of several identical Pareto-optimal rows only the *first* is marked, so
    that a front counts every trade-off once (a config evaluated twice is one point). Rows
    with NaN or infinite values are never Pareto-optimal.
    """
    points = np.asarray(points, dtype=float)
    if points.ndim == 1:
        points = points[:, None]
    mask = np.zeros(len(points), dtype=bool)
    finite = np.flatnonzero(np.all(np.isfinite(points), axis=1))
    if finite.size == 0:
        return mask
    front = NonDominatedSorting().do(points[finite], only_non_dominated_front=True)
    candidates = finite[np.sort(front)]
    # np.unique returns the first index of every distinct row: later copies are dropped.
    _, first = np.unique(points[candidates], axis=0, return_index=True)
    mask[candidates[first]] = True
    return mask


# --- hypervolume ------------------------------------------------------------------------
def normalise(points: np.ndarray, bounds: Bounds | None) -> np.ndarray:
    """``(points - lower) / (upper - lower)`` per objective; ``bounds=None`` returns ``points``."""
    if bounds is None:
        return points
    lower = np.asarray(bounds[0], dtype=float)
    upper = np.asarray(bounds[1], dtype=float)
    if lower.shape != (points.shape[1],) or upper.shape != lower.shape:
        raise ValueError(
            f"bounds must give one lower and one upper value per objective ({points.shape[1]})"
        )
    if np.any(upper <= lower):
        raise ValueError(f"every upper bound must exceed its lower bound: {lower} vs {upper}")
    return (points - lower) / (upper - lower)


def hypervolume(
    points: np.ndarray,
    reference_point: Sequence[float],
    bounds: Bounds | None = None,
) -> float:
    """Hypervolume dominated by ``points`` (``[n, m]``, minimised) up to ``reference_point``.

    :param points: Objective values; rows with NaN or infinite values are ignored.
    :param reference_point: The worst corner of the measured box. With ``bounds`` it is
        given in *normalised* units (e.g. ``(1, 1)`` for the upper bounds, ``(2, 2)`` as in
        Klein et al. 2024), otherwise in the units of ``points``.
    :param bounds: ``(lower, upper)`` per objective: fixed normalisation
        ``(y - lower) / (upper - lower)``, the same for every search being compared. None
        means no normalisation.
    :return: The hypervolume (pymoo's :class:`~pymoo.indicators.hv.HV`); points that do not
        dominate the reference point contribute nothing, and no point gives 0.
    """
    points = np.asarray(points, dtype=float)
    if points.ndim == 1:
        points = points[None, :] if points.size else points.reshape(0, len(reference_point))
    reference = np.asarray(reference_point, dtype=float)
    if points.shape[1] != reference.size:
        raise ValueError(
            f"points have {points.shape[1]} objectives, the reference point {reference.size}"
        )
    points = points[np.all(np.isfinite(points), axis=1)]
    points = normalise(points, bounds)
    # Points outside the box add nothing; dropping them spares the backend edge cases.
    points = points[np.all(points < reference, axis=1)]
    if len(points) == 0:
        return 0.0
    return float(HV(ref_point=reference)(points))


def hypervolume_over_time(
    df: pd.DataFrame,
    objective_columns: Sequence[str],
    time_column: str,
    reference_point: Sequence[float],
    bounds: Bounds | None = None,
) -> pd.DataFrame:
    """Hypervolume of all results seen up to each point in time (non-decreasing).

    :return: One row per row of ``df``, sorted by ``time_column`` (stable), with columns
        ``time_column`` and ``hypervolume``.
    """
    ordered = df.sort_values(time_column, kind="stable")
    values = ordered[list(objective_columns)].to_numpy(dtype=float)
    front = np.zeros((0, len(objective_columns)))
    volumes = []
    for row in values:
        # Only the running front matters for the hypervolume: keep it small.
        if np.all(np.isfinite(row)):
            front = np.vstack([front, row])
            front = front[pareto_mask(front)]
        volumes.append(hypervolume(front, reference_point, bounds))
    return pd.DataFrame(
        {time_column: ordered[time_column].to_numpy(), "hypervolume": volumes}
    ).reset_index(drop=True)


# --- plots ------------------------------------------------------------------------------
def new_figure(width: float = 6.0, height: float = 4.5, dpi: int = 100) -> Any:
    """A matplotlib ``Figure`` on the Agg canvas: no pyplot state, works without a display.

    matplotlib is imported here, not with this module, since it is slow to load and only plots
    need it. Finish with :func:`save_figure`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Any, path: str | os.PathLike) -> Path:
    """Lay out a :func:`new_figure` tightly and write it as PNG atomically."""
    figure.tight_layout()
    return save_figure_atomic(figure, path)


def plot_front(
    df: pd.DataFrame,
    x: str,
    y: str,
    path: str | os.PathLike,
    title: str | None = None,
    pareto_column: str = "pareto",
    summary: dict[str, Any] | None = None,
) -> Path:
    """Write ``pareto.png``: the evaluated points and Pareto front on validation, and the test error
    of the Pareto set, with the full model and the recommended point marked when ``summary`` (the
    run's ``summary.json``) is given. Drawn by :func:`nasprune.plots.plot_front`."""
    # Imported here: nasprune.plots uses this module, and plotting needs matplotlib.
    from nasprune.plots import plot_front as draw_front

    return draw_front(df, x, y, path, title=title, pareto_column=pareto_column, summary=summary)


# --- tables -----------------------------------------------------------------------------
def markdown_table(df: pd.DataFrame, float_format: str = "{:.4g}", index: bool = False) -> str:
    """A GitHub-flavoured Markdown table of ``df``.

    ``DataFrame.to_markdown`` needs the optional ``tabulate`` package; this does not.
    Floats use ``float_format``; ``|`` in cells is escaped.
    """
    frame = df.reset_index() if index else df

    def cell(value: Any) -> str:
        if isinstance(value, (float, np.floating)):
            text = "" if np.isnan(value) else float_format.format(value)
        elif value is None:
            text = ""
        else:
            text = str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    header = [cell(c) for c in frame.columns]
    rows = [[cell(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if is_num else ":---" for is_num in numeric) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
