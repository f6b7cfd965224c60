"""Choosing a model from a search's results: the order ``--pick`` indexes, the recommended point.

Every table that shows a Pareto set (``pareto.md``, the summary ``run`` and ``search`` print) and
``nasprune export --pick`` use :func:`pareto_front`'s order, so the ``pick`` column of a table is
the number to pass to ``--pick``.

The recommended point (:func:`recommended_point`) is the smallest Pareto point, by the first size
objective, whose validation metric is within :data:`RECOMMENDATION_TOLERANCE` (one point: 0.01 of
a metric in [0, 1]) of the full model's, leaving out the empty model (:func:`is_empty_model`).

This module is light (pandas and numpy only) so that result writers, plots and the CLI can all
use it.
"""

from __future__ import annotations

import math
import os
import shlex
from pathlib import Path
from typing import Any, Hashable, Mapping

import numpy as np
import pandas as pd

from nasprune.errors import NaspruneError

#: How much worse than the full model's validation metric the recommended point may be (one point).
RECOMMENDATION_TOLERANCE = 0.01
#: The columns :func:`pareto_front` needs.
FRONT_COLUMNS = ("trial_id", "valid_error", "relative_params", "pareto")
#: What tables say of the empty model's row.
EMPTY_MODEL_NOTE = "no layers: predicts one class (majority-class baseline)"
#: How sentences name the size columns of a results table.
SIZE_NAMES = {"relative_params": "parameters", "relative_macs": "MACs", "relative_latency": "latency"}


def _pareto_flags(results: pd.DataFrame) -> pd.Series:
    pareto = results["pareto"]
    if pareto.dtype != bool:  # read back from CSV by hand, or written as strings
        pareto = pareto.astype(str).str.lower().isin(("true", "1"))
    return pareto


def pareto_labels(results: pd.DataFrame) -> list[Hashable]:
    """The index labels of the Pareto rows of ``results`` in ``--pick`` order (see :func:`pareto_front`)."""
    missing = [c for c in FRONT_COLUMNS if c not in results.columns]
    if missing:
        raise NaspruneError(f"the results table lacks the column(s) {', '.join(missing)}")
    finite = np.isfinite(pd.to_numeric(results["valid_error"], errors="coerce").to_numpy(dtype=float))
    front = results[_pareto_flags(results).to_numpy() & finite]
    ordered = front.sort_values(["relative_params", "valid_error", "trial_id"], kind="stable")
    return list(ordered.index)


def pareto_front(results: pd.DataFrame) -> pd.DataFrame:
    """The Pareto rows of a results table with a finite validation error, smallest first.

    Sorted by ``relative_params`` ascending, ties broken by ``valid_error`` then ``trial_id``, so the
    order, and hence ``--pick``, is deterministic. The index is reset: row ``i`` is what ``--pick i``
    selects and what the ``pick`` column of ``pareto.md`` says.
    """
    return results.loc[pareto_labels(results)].reset_index(drop=True)


def is_empty_model(results: pd.DataFrame) -> pd.Series:
    """Which rows keep no layer at all (``num_layers == 0``).

    Such a model maps every input to the same embedding of the first token, so it predicts one
    class for every example: it is the majority-class baseline at best. It stays in the results
    (it is a real point of the search) but tables mark it and nothing recommends it.
    """
    if "num_layers" not in results.columns:
        return pd.Series(False, index=results.index)
    return pd.to_numeric(results["num_layers"], errors="coerce").fillna(-1).eq(0)


def full_model_valid_error(summary: Mapping[str, Any]) -> float | None:
    """The full (unpruned) model's validation error recorded in a ``summary.json``, or None."""
    full = summary.get("full_model") or {}
    value = full.get("valid_error") if isinstance(full, Mapping) else None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def size_objective(summary: Mapping[str, Any]) -> str:
    """The first size objective of a run (its second objective; the first is the error)."""
    objectives = list(summary.get("objectives") or [])
    return str(objectives[1]) if len(objectives) > 1 else "relative_params"


def chosen_size_column(results: pd.DataFrame, size_column: str) -> str:
    """The column :func:`recommended_point` ranks by: ``size_column``, or ``relative_params`` when
    the table lacks it."""
    return size_column if size_column in results.columns else "relative_params"


def size_shares(row: Mapping[str, Any], size_column: str) -> str:
    """How a sentence quotes the size of ``row``: its share of the full model by ``size_column``
    first (the objective it was chosen by), then the other recorded shares in parentheses, e.g.
    "39.5% of the full model's MACs (71.6% of its parameters)"."""
    def share(column: str) -> float | None:
        try:
            value = float(row[column])
        except (KeyError, TypeError, ValueError):
            return None
        return value if math.isfinite(value) else None

    first = share(size_column)
    name = SIZE_NAMES.get(size_column, size_column)
    if first is None:
        return f"no recorded {name}"
    others = [f"{value:.1%} of its {SIZE_NAMES[column]}" for column in SIZE_NAMES
              if column != size_column and (value := share(column)) is not None]
    return f"{first:.1%} of the full model's {name}" + (f" ({', '.join(others)})" if others else "")


def recommended_point(
    results: pd.DataFrame,
    full_valid_error: float | None,
    size_column: str = "relative_params",
    tolerance: float = RECOMMENDATION_TOLERANCE,
) -> Hashable | None:
    """The index label (in ``results.index``) of the recommended point, or None.

    The recommended point is the smallest Pareto point by ``size_column`` whose validation error is
    at most ``full_valid_error + tolerance``, i.e. whose validation metric is within ``tolerance``
    (one point) of the full model's; ties go to the lower error, then the lower ``trial_id``. The
    empty model is never recommended. None when the full model's error is unknown or no point
    qualifies.

    :param results: result rows as ``results.csv`` holds them (:mod:`nasprune.results`)
    :param full_valid_error: the full model's validation error (:func:`full_model_valid_error`)
    :param size_column: the size objective to minimise (:func:`size_objective`); a column the
        table lacks falls back to ``relative_params``
    """
    if full_valid_error is None or not math.isfinite(float(full_valid_error)):
        return None
    size_column = chosen_size_column(results, size_column)
    labels = pareto_labels(results)
    candidates = results.loc[labels]
    candidates = candidates[~is_empty_model(candidates).to_numpy()]
    errors = candidates["valid_error"].to_numpy(dtype=float)
    # A small slack so that a point exactly one point worse is not lost to rounding.
    candidates = candidates[errors <= float(full_valid_error) + tolerance + 1e-9]
    if candidates.empty:
        return None
    ordered = candidates.sort_values([size_column, "valid_error", "trial_id"], kind="stable")
    return ordered.index[0]


def pick_index(results: pd.DataFrame, label: Hashable) -> int:
    """The ``--pick`` number of the row with index label ``label`` (it must be a Pareto row)."""
    labels = pareto_labels(results)
    if label not in labels:
        raise NaspruneError(f"row {label!r} is not a Pareto point with a finite validation error")
    return labels.index(label)


def metric_name(summary: Mapping[str, Any]) -> str:
    """The name of the task's metric (``accuracy``, ``f1``, ...) of a ``summary.json``.

    The summary's ``metric`` when it records one, else that of the built-in task it names, else
    ``"metric"``.
    """
    if summary.get("metric"):
        return str(summary["metric"])
    from nasprune.data.tasks import TASKS  # light: dataclasses only

    spec = TASKS.get(str(summary.get("task")))
    return spec.metric if spec is not None else "metric"


def weights_in_checkpoint(
    summary: Mapping[str, Any], results: pd.DataFrame, row: Mapping[str, Any] | None = None
) -> bool:
    """Whether ``row`` (or, without it, every row) of these results can be cut out of their checkpoint.

    Not for standard NAS (every trial fine-tuned and deleted its own weights), the reference model,
    recovered fronts, and rows of the layer-drop or importance baselines that were fine-tuned after
    reduction; :func:`nasprune.export.check_row_has_weights` says why when exporting.
    """
    if not summary.get("checkpoint"):
        return False
    if "syne_tune" in summary or "best_epoch" in results.columns or "recovery" in summary:
        return False
    method = summary.get("method")
    if method == "reference_model":
        return False
    epochs = int((summary.get("baseline") or {}).get("epochs", 0) or 0)
    if method not in ("layer_drop", "importance_pruning") or not epochs:
        return True
    if row is None:
        return False
    if method == "layer_drop":
        return int(row.get("dropped_layers", 0) or 0) == 0
    return not importance_row_fine_tuned(row, epochs)


def importance_row_fine_tuned(row: Mapping[str, Any], epochs: int) -> bool:
    """Whether an importance-pruning row was measured on fine-tuned weights (its own column, if any)."""
    recorded = row.get("fine_tuned_epochs")
    try:
        if recorded is not None and np.isfinite(float(recorded)):
            return float(recorded) > 0
    except (TypeError, ValueError):
        pass
    # No per-row record: only the unpruned row (budget 1) is the checkpoint's.
    return bool(epochs) and float(row.get("budget", 0.0) or 0.0) < 1.0


def export_command(
    summary: Mapping[str, Any],
    results_dir: str | os.PathLike,
    pick: int,
    output_dir: str = "pruned-model",
) -> str:
    """The ``nasprune export`` line that cuts out Pareto point ``pick`` of the results in ``results_dir``.

    Paths are absolute, so that the line works wherever it is pasted.
    """
    checkpoint = Path(str(summary["checkpoint"]))
    if not checkpoint.is_absolute():  # an older summary: relative to the results folder or the cwd
        checkpoint = Path(results_dir) / checkpoint if (Path(results_dir) / checkpoint).exists() else checkpoint
    words = [
        "nasprune", "export", "--checkpoint", str(checkpoint.resolve()), "--results",
        str(Path(results_dir).resolve()), "--pick", str(pick), "--output-dir", output_dir,
    ]
    return shlex.join(words)


def recommendation(
    results: pd.DataFrame, summary: Mapping[str, Any], results_dir: str | os.PathLike
) -> dict[str, Any] | None:
    """The recommended point of a run as tables print it: ``pick``, ``trial_id``, the row, the
    export line (None when the results' weights are not in the checkpoint), how it was chosen, the
    ``size_column`` it was chosen by and the ``shares`` sentences quote (:func:`size_shares`). None
    when no point qualifies."""
    size_column = chosen_size_column(results, size_objective(summary))
    label = recommended_point(results, full_model_valid_error(summary), size_column)
    if label is None:
        return None
    pick = pick_index(results, label)
    exportable = weights_in_checkpoint(summary, results, results.loc[label])
    return {
        "pick": pick,
        "trial_id": int(results.loc[label, "trial_id"]),
        "row": results.loc[label],
        "command": export_command(summary, results_dir, pick) if exportable else None,
        "size_column": size_column,
        "shares": size_shares(results.loc[label], size_column),
        "rule": (
            f"the smallest Pareto point by {size_column} whose validation {metric_name(summary)} "
            f"is within {RECOMMENDATION_TOLERANCE * 100:.0f} point of the full model's"
        ),
    }


__all__ = [
    "EMPTY_MODEL_NOTE",
    "FRONT_COLUMNS",
    "RECOMMENDATION_TOLERANCE",
    "SIZE_NAMES",
    "chosen_size_column",
    "export_command",
    "full_model_valid_error",
    "importance_row_fine_tuned",
    "is_empty_model",
    "metric_name",
    "pareto_front",
    "pareto_labels",
    "pick_index",
    "recommendation",
    "recommended_point",
    "size_objective",
    "size_shares",
    "weights_in_checkpoint",
]
