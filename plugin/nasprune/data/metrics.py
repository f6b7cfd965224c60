"""Task metrics, computed locally (scikit-learn / scipy, never ``evaluate.load``).

``error = 1 - metric``: the validation error nasprune minimises.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import numpy as np
import torch

from nasprune.data.tasks import TaskSpec, get_task
from nasprune.errors import NaspruneError


def _accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(pred == labels))


def _f1(pred: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    # Binary F1 of the positive class (id 1), as GLUE reports it; 0 when nothing is predicted.
    return float(f1_score(labels, pred, pos_label=1, average="binary", zero_division=0))


def _matthews(pred: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import matthews_corrcoef

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(matthews_corrcoef(labels, pred))
    return 0.0 if math.isnan(value) else value


def _spearman(pred: np.ndarray, labels: np.ndarray) -> float:
    from scipy.stats import spearmanr

    # A constant input has no rank correlation: scipy says NaN, we say 0 so errors stay finite.
    if np.ptp(pred) == 0 or np.ptp(labels) == 0:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(spearmanr(pred, labels).statistic)
    return 0.0 if math.isnan(value) else value


#: Metric name (a :attr:`TaskSpec.metric`) -> ``metric(predictions, labels)``, higher is better.
METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": _accuracy,
    "f1": _f1,
    "matthews_correlation": _matthews,
    "spearman": _spearman,
}


def _to_numpy(values: Any) -> np.ndarray:
    """Tensors (any device), arrays and lists to a numpy array."""
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().numpy() if values.is_floating_point() \
            else values.detach().cpu().numpy()
    return np.asarray(values)


def _predictions_from_outputs(outputs: np.ndarray, regression: bool) -> np.ndarray:
    """Class ids from logits ``[N, C]`` (argmax), or scores ``[N]`` / ``[N, 1]`` for regression."""
    if regression:
        return outputs.reshape(len(outputs), -1)[:, 0].astype(np.float64)
    if outputs.ndim == 2:
        return outputs.argmax(axis=1)
    if outputs.ndim == 1:
        return outputs.astype(np.int64)
    raise ValueError(f"predictions must be 1-D class ids or 2-D logits, got shape {outputs.shape}")


def compute_metric(task: TaskSpec | str, predictions: Any, labels: Any) -> float:
    """The task's metric (higher is better).

    Args:
        task: a :class:`TaskSpec` or a built-in task name.
        predictions: class ids ``[N]`` or logits ``[N, C]`` (argmax is taken); for regression,
            scores ``[N]`` or ``[N, 1]``. Tensors, arrays or lists.
        labels: gold labels ``[N]``.

    Returns:
        accuracy, binary F1, Matthews correlation or Spearman correlation. Degenerate inputs
        (constant predictions or labels) give 0 for the correlations, never NaN.
    """
    spec = get_task(task) if isinstance(task, str) else task
    outputs, gold = _to_numpy(predictions), _to_numpy(labels).reshape(-1)
    pred = _predictions_from_outputs(outputs, spec.is_regression)
    if len(pred) != len(gold):
        raise ValueError(f"{len(pred)} predictions but {len(gold)} labels")
    if len(gold) == 0:
        raise ValueError("cannot compute a metric on zero examples")
    if spec.metric not in METRICS:
        raise NaspruneError(f"Unknown metric {spec.metric!r}; known: {', '.join(METRICS)}")
    return METRICS[spec.metric](pred, gold)


def compute_error(task: TaskSpec | str, predictions: Any, labels: Any) -> float:
    """``1 - compute_metric(...)``: the validation error nasprune minimises."""
    return 1.0 - compute_metric(task, predictions, labels)
