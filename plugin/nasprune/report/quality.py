"""Compression at fixed quality: the unpruned model's score on a task, and the smallest relative
size a run reaches within a share (100/95/90%) of it."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from nasprune.analysis import SCORE_LEVELS, error_at_level
from nasprune.report.runs import Run

__all__ = ["ERRORS", "SCORE_LEVELS", "error_at_level", "smallest_at_level", "unpruned_error"]

#: The errors of a run's rows: the searches optimise the first, the second is held out.
ERRORS = ("valid_error", "test_error")


def unpruned_error(runs: Sequence[Run], column: str = "valid_error") -> float:
    """The unpruned model's error on a task: the median over the runs' ``full_model`` entries."""
    values = [
        float(r.summary["full_model"][column])
        for r in runs
        if isinstance(r.summary.get("full_model"), dict) and r.summary["full_model"].get(column) is not None
    ]
    return float(np.median(values)) if values else math.nan


def smallest_at_level(run: Run, size: str, max_error: float, error: str = "valid_error") -> float:
    """The smallest relative size among a run's rows with ``error <= max_error`` (NaN if none)."""
    table = run.table
    if error not in table.columns:
        return math.nan
    fitting = table[table[error].to_numpy(float) <= max_error + 1e-12]
    return float(fitting[size].min()) if len(fitting) else math.nan
