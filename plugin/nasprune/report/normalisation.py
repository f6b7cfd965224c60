"""Hypervolume normalisation (fixed, the same for every method).

The objectives are the validation error and a relative size (``relative_params`` or
``relative_macs``), all minimised. Comparing hypervolumes is only meaningful with one
normalisation and one reference point for all runs. Three choices are offered:

- ``unit`` (default): nasprune's one definition (:data:`nasprune.analysis.HYPERVOLUME_DEFINITION`):
  no rescaling, since errors and relative sizes are already fractions (the unpruned model is at
  size 1), and the reference point 1.1 per objective, so the unpruned model counts. It does not
  depend on which runs are compared, and the values equal the ``hypervolume`` in each run's
  ``summary.json``.
- ``task``: per task, each objective is min-max scaled over *all* points of *all* runs of that task
  being compared, with the reference point (1.1, 1.1) in scaled units (a point at the worst value
  still counts). It spreads the values more, but changes when runs are added.
- ``paper``: the normalisation of Klein et al. 2024: per task, each objective is quantile-normalised
  (its empirical distribution over all points of all runs of that task being compared is mapped
  to [0, 1], scikit-learn's ``QuantileTransformer``) and the reference point is (2, 2). It
  changes when runs are added, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from nasprune import analysis
from nasprune.errors import NaspruneError
from nasprune.report.runs import Run

NORMALISATIONS = ("unit", "task", "paper")
#: The reference point of the ``task`` (min-max) and ``paper`` (quantile) normalisations.
TASK_REFERENCE_POINT, PAPER_REFERENCE_POINT = 1.1, 2.0


@dataclass(frozen=True)
class Normalisation:
    """Fixed bounds (``unit``, ``task``) or quantile maps (``paper``) per task and objective, and
    the reference point in normalised units."""

    kind: str
    objectives: tuple[str, ...]
    bounds: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    reference_point: tuple[float, ...] = ()
    #: ``paper``: per task, a QuantileTransformer fitted on all compared points of that task
    quantiles: dict[str, Any] = field(default_factory=dict)

    def for_task(self, task: str) -> tuple[list[float], list[float]]:
        """The (lower, upper) bounds of ``task`` (0 and 1 per objective when it has none)."""
        return self.bounds.get(task, ([0.0] * len(self.objectives), [1.0] * len(self.objectives)))

    def transform(self, task: str, points: np.ndarray) -> np.ndarray:
        """``points`` (``[n, objectives]``) in normalised units; non-finite values become NaN."""
        points = np.asarray(points, dtype=float).reshape(-1, len(self.objectives))
        if self.kind != "paper":
            return analysis.normalise(points, self.for_task(task))
        finite = np.where(np.isfinite(points), points, np.nan)  # the transformer keeps NaN as NaN
        return self.quantiles[task].transform(finite) if len(points) else finite

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON types (for ``comparison.json``)."""
        return {
            "kind": self.kind,
            "objectives": list(self.objectives),
            "reference_point": list(self.reference_point),
            "bounds": {t: {"lower": lo, "upper": up} for t, (lo, up) in self.bounds.items()},
            "quantile_points": {t: int(q.n_quantiles_) for t, q in self.quantiles.items()},
        }


def make_normalisation(
    runs: Sequence[Run], objectives: Sequence[str], kind: str = "unit", reference_point: float | None = None
) -> Normalisation:
    """The fixed normalisation of the module docstring, from all runs being compared."""
    if kind not in NORMALISATIONS:
        raise NaspruneError(f"unknown normalisation {kind!r}; choose one of {', '.join(NORMALISATIONS)}")
    objectives = tuple(objectives)
    default_reference = {
        "unit": analysis.REFERENCE_POINT, "task": TASK_REFERENCE_POINT, "paper": PAPER_REFERENCE_POINT,
    }[kind]
    ref = (default_reference if reference_point is None else reference_point,) * len(objectives)
    if kind == "unit":
        return Normalisation(kind, objectives, {}, ref)
    bounds, quantiles = {}, {}
    for task in sorted({r.task for r in runs}):
        points = np.vstack([r.points(objectives) for r in runs if r.task == task])
        points = points[np.all(np.isfinite(points), axis=1)]
        if not len(points):
            raise NaspruneError(f"no run of task {task} has a finite {' and '.join(objectives)}: nothing to normalise")
        if kind == "paper":
            # scikit-learn is imported only for this mode: it is slow to load.
            from sklearn.preprocessing import QuantileTransformer

            quantiles[task] = QuantileTransformer(n_quantiles=min(1000, len(points))).fit(points)
            continue
        lower, upper = points.min(axis=0), points.max(axis=0)
        upper = np.where(upper > lower, upper, lower + 1.0)  # a constant objective: any width works
        bounds[task] = (lower.tolist(), upper.tolist())
    return Normalisation(kind, objectives, bounds, ref, quantiles)
