"""A run's hypervolume under a fixed :class:`~nasprune.report.normalisation.Normalisation`:
its final value, and its value over wall-clock time.

Hypervolume over wall-clock time uses each row's ``elapsed_seconds``. The cost of the checkpoint a
run started from is added as an offset unless ``include_training_time`` is off
(:attr:`~nasprune.report.runs.Run.seconds_before_search`: the epochs in the checkpoint's
``nasprune.json`` history, super-network training or fine-tuning, plus, for a rewired
super-network, the training of the fine-tuned model its importance was measured on and the
rewiring itself), so that weight-sharing searches, baselines and standard NAS are charged for
everything they needed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from nasprune import analysis
from nasprune.report.normalisation import Normalisation
from nasprune.report.runs import Run


def run_hypervolume(run: Run, norm: Normalisation) -> float:
    """The final hypervolume of a run under the fixed normalisation."""
    return analysis.hypervolume(norm.transform(run.task, run.points(norm.objectives)), norm.reference_point)


def run_trace(run: Run, norm: Normalisation, include_training_time: bool = True) -> pd.DataFrame:
    """Hypervolume over wall-clock seconds (``seconds``, ``hypervolume``) of one run."""
    table = run.table
    if "elapsed_seconds" not in table.columns:
        table = table.assign(elapsed_seconds=np.arange(1, len(table) + 1, dtype=float))
    normalised = table.assign(**dict(zip(norm.objectives, norm.transform(run.task, run.points(norm.objectives)).T)))
    trace = analysis.hypervolume_over_time(normalised, norm.objectives, "elapsed_seconds", norm.reference_point)
    offset = run.seconds_before_search if include_training_time else 0.0
    return pd.DataFrame({"seconds": trace["elapsed_seconds"] + offset, "hypervolume": trace["hypervolume"]})


def traces_on_grid(traces: Sequence[pd.DataFrame], grid: np.ndarray) -> np.ndarray:
    """Step-function traces (``seconds``, ``hypervolume``) evaluated on a common time grid, one row
    per run (before a run's first result its hypervolume is 0)."""
    values = []
    for trace in traces:
        times, volumes = trace["seconds"].to_numpy(float), trace["hypervolume"].to_numpy(float)
        index = np.searchsorted(times, grid, side="right") - 1
        values.append(np.where(index >= 0, volumes[np.clip(index, 0, None)], 0.0))
    return np.vstack(values)


def mean_trace(traces: Sequence[pd.DataFrame], grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over runs of step-function traces on a common time grid
    (:func:`traces_on_grid`)."""
    stacked = traces_on_grid(traces, grid)
    return stacked.mean(axis=0), stacked.std(axis=0)
