"""One-shot first-order importance pruning of heads and FFN units, then fine-tuning.

The recipe that structured-pruning papers compare against (Molchanov et al. 2017/2019, "Importance
Estimation for Neural Network Pruning"; Michel et al. 2019 for heads): score every head and FFN unit
of the fine-tuned model once, keep the most important ones within a budget, and fine-tune what is
left.

**Importance.** With a mask variable ``m`` multiplying each head's context and each unit's
activation (``m = 1``: kept), the first-order Taylor estimate of the loss change when a mask is
removed is ``|dL/dm * m|``; at ``m = 1`` that is the absolute mask gradient. Per example, summed
over the sample: ``I = sum_x |dL(x)/dm|`` (``"taylor"``, the default). ``"fisher"`` is the
diagonal of the empirical Fisher information, ``sum_x (dL(x)/dm)^2`` (Kwon et al. 2022). Both come
from the same per-example mask gradients (:func:`nasprune.importance.mask_gradients`).

**Allocation.** Heads and units are ranked separately (their scores need not be comparable), and
the same *share* ``r`` of heads and of units is kept:

- ``"uniform"``: every layer keeps ``floor(r H)`` heads and ``floor(r I)`` units, its most
  important ones;
- ``"global"``: all heads of all layers are ranked together and the top ``floor(r L H)`` are kept
  (so some layers may keep more than others, or none), and likewise all units.

With grouped-query attention heads are kept along the valid removal path of
:mod:`nasprune.baselines.grouped` (whole key/value groups, or one head of every kept group, by the
least importance per head removed): ``"uniform"`` follows each layer's own path until it keeps at
most ``floor(r H)`` heads, ``"global"`` the path over all layers until at most ``floor(r L H)``.

``r`` is the largest share whose *exact* cost (MACs or parameters, :class:`~nasprune.baselines.rfp.CostModel`)
fits the budget; kept sets grow with ``r``, so the cost does too and a bisection over the shares at
which a count changes finds it.

Each pruned sub-network is then fine-tuned on a copy of the weights
(:func:`nasprune.baselines.layer_drop.finetune_subnet`), as layer dropping is.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from nasprune.baselines import grouped
from nasprune.baselines.rfp import CostModel, sweep_feasible
from nasprune.errors import NaspruneError
from nasprune.importance import Importance, MaskGradients, mask_gradients
from nasprune.subnet import ModelShape, SubNetwork
from nasprune.supernet import SuperNetwork

logger = logging.getLogger("nasprune")

CRITERIA = ("taylor", "fisher")
ALLOCATIONS = ("uniform", "global")


def first_order_importance(gradients: MaskGradients, criterion: str = "taylor") -> Importance:
    """``sum_x |g_x|`` (``"taylor"``: |gradient x mask| at mask 1) or ``sum_x g_x^2`` (``"fisher"``)."""
    if criterion == "taylor":
        return Importance(np.abs(gradients.head).sum(0), np.abs(gradients.unit).sum(0))
    if criterion == "fisher":
        return gradients.fisher()
    raise NaspruneError(f"unknown importance criterion {criterion!r}; choose one of {', '.join(CRITERIA)}")


def _count(share: float, total: int) -> int:
    # The tolerance keeps a share computed as k / total from rounding down to k - 1.
    return min(total, int(math.floor(share * total + 1e-9)))


def _top(scores: np.ndarray, count: int) -> np.ndarray:
    """Boolean mask of the ``count`` highest scores (ties: lowest index first)."""
    kept = np.zeros(scores.shape, bool)
    kept[np.argsort(-scores, kind="stable")[:count]] = True
    return kept


def allocate(
    importance: Importance, share: float, allocation: str = "uniform", shape: ModelShape | None = None
) -> SubNetwork:
    """The sub-network that keeps the share ``share`` of the heads and of the units, by ``allocation``.

    With a grouped-query ``shape`` the heads follow the valid removal path (module docstring), so
    the sub-network is valid; it may keep fewer heads than the share.
    """
    num_layers, num_heads = importance.head.shape
    intermediate = importance.unit.shape[1]
    grouped_heads = shape is not None and shape.grouped
    if allocation == "uniform":
        heads, units = _count(share, num_heads), _count(share, intermediate)
        if grouped_heads:
            full = np.ones(num_heads, bool)
            head_mask = np.stack([
                grouped.prune_until(full[None], grouped.layer_path(full, importance.head[i], shape), heads)[0]
                for i in range(num_layers)
            ])
        else:
            head_mask = np.stack([_top(importance.head[i], heads) for i in range(num_layers)])
        unit_mask = np.stack([_top(importance.unit[i], units) for i in range(num_layers)])
    elif allocation == "global":
        heads = _count(share, importance.head.size)
        if grouped_heads:
            full = np.ones(importance.head.shape, bool)
            head_mask = grouped.prune_until(full, grouped.removal_path(full, importance.head, shape), heads)
        else:
            head_mask = _top(importance.head.ravel(), heads).reshape(importance.head.shape)
        unit_mask = _top(importance.unit.ravel(), _count(share, importance.unit.size)).reshape(importance.unit.shape)
    else:
        raise NaspruneError(f"unknown allocation {allocation!r}; choose one of {', '.join(ALLOCATIONS)}")
    return SubNetwork(head_mask, unit_mask)


def _shares(shape: ModelShape, allocation: str) -> np.ndarray:
    """Every share at which a kept count changes, ascending (0 and 1 included)."""
    if allocation == "uniform":
        sizes = (shape.num_heads, shape.intermediate_size)
    else:
        sizes = (shape.num_layers * shape.num_heads, shape.num_layers * shape.intermediate_size)
    return np.unique(np.concatenate([np.arange(n + 1) / n for n in sizes]))


def prune_to_budget(importance: Importance, costs: CostModel, budget: float, allocation: str = "uniform") -> SubNetwork:
    """The sub-network of the largest share whose exact cost is at most ``budget`` of the full model's.

    :raises NaspruneError: when even the empty sub-network exceeds the budget
    """
    limit = budget * costs.total * (1 + 1e-12)
    shares = _shares(costs.shape, allocation)
    shape = costs.shape
    if costs.cost(allocate(importance, 0.0, allocation, shape)) > limit:
        raise NaspruneError(
            f"a {costs.kind} budget of {budget:.3f} is below the smallest possible sub-network "
            f"({costs.minimum_relative:.3f} of the model)"
        )
    low, high = 0, len(shares) - 1  # shares[low] fits; find the last that does
    while low < high:
        middle = (low + high + 1) // 2
        if costs.cost(allocate(importance, shares[middle], allocation, shape)) <= limit:
            low = middle
        else:
            high = middle - 1
    return allocate(importance, shares[low], allocation, shape)


@dataclass
class PruningResult:
    """One budget's sub-network and its exact relative cost."""

    budget: float
    subnet: SubNetwork
    relative_cost: float


class ImportancePruner:
    """First-order importance of a fine-tuned model's heads and units, pruned to several budgets.

    :param supernet: the fine-tuned model
    :param sample: batches of training examples with labels
    :param criterion: ``"taylor"`` or ``"fisher"``
    :param allocation: ``"uniform"`` or ``"global"``
    :param constraint: ``"macs"`` or ``"params"``
    :param seq_len: the sequence length of the MAC count
    :param regression: mean squared error instead of cross-entropy
    :param max_examples: examples for the importance (all of ``sample`` when None)
    """

    def __init__(
        self,
        supernet: SuperNetwork,
        sample: Sequence[dict],
        criterion: str = "taylor",
        allocation: str = "uniform",
        constraint: str = "macs",
        seq_len: int = 128,
        regression: bool = False,
        max_examples: int | None = None,
    ):
        if allocation not in ALLOCATIONS:
            raise NaspruneError(f"unknown allocation {allocation!r}; choose one of {', '.join(ALLOCATIONS)}")
        self.allocation = allocation
        self.costs = CostModel(supernet.model, constraint, seq_len)
        self.gradients = mask_gradients(supernet, list(sample), regression, max_examples=max_examples)
        self.importance = first_order_importance(self.gradients, criterion)

    def prune(self, budget: float) -> PruningResult:
        subnet = prune_to_budget(self.importance, self.costs, budget, self.allocation)
        return PruningResult(budget, subnet, self.costs.relative(subnet))

    def sweep(self, budgets: Iterable[float]) -> list[PruningResult]:
        """:meth:`prune` for every feasible budget; infeasible ones are skipped with a warning."""
        return sweep_feasible(self.prune, budgets)
