"""Iterative head pruning: Michel et al. 2019, "Are Sixteen Heads Really Better than One?".

The importance of head h is the expected absolute sensitivity of the loss to its mask,
``I_h = E_x |dL(x)/dm_h|`` (their eq. 2), normalised by its layer's l2 norm (their §4.1, after
Molchanov et al. 2017), so that layers with large gradients do not take all the heads. Pruning is
iterative: each step removes a fixed share of all heads, the least important remaining ones, and
recomputes the importance on the pruned model. Each step is one sub-network; FFN units are kept.

With grouped-query attention single heads cannot go one by one (:mod:`nasprune.baselines.grouped`):
each step follows the valid removal path instead (whole key/value groups, or one head of every
kept group, whichever loses the least importance per head removed) until at least its share of
heads is gone, so a step may remove a few more heads than the share.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import numpy as np

from nasprune.baselines import grouped
from nasprune.importance import mask_gradients
from nasprune.subnet import ModelShape, SubNetwork
from nasprune.supernet import SuperNetwork


def normalise_per_layer(scores: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Scores of kept heads divided by their layer's l2 norm (over the kept heads); pruned: 0."""
    scores = np.where(kept, scores, 0.0)
    norms = np.sqrt(np.square(scores).sum(axis=1, keepdims=True))
    return np.divide(scores, norms, out=np.zeros_like(scores), where=norms > 0)


def head_importance(
    supernet: SuperNetwork,
    loader: Iterable[dict],
    subnet: SubNetwork | None = None,
    regression: bool = False,
    max_examples: int | None = None,
    normalise: bool = True,
) -> np.ndarray:
    """Michel et al.'s head importance ``[L, H]`` at the masks of ``subnet`` (pruned heads: 0)."""
    subnet = subnet if subnet is not None else SubNetwork.full(supernet.shape)
    scores = mask_gradients(supernet, loader, regression, subnet, max_examples).mean_abs().head
    return normalise_per_layer(scores, subnet.head_mask) if normalise else np.where(subnet.head_mask, scores, 0.0)


def prune_least_important(
    subnet: SubNetwork, importance: np.ndarray, count: int, shape: ModelShape | None = None
) -> SubNetwork:
    """``subnet`` without its ``count`` least important kept heads (ties: lowest index first).

    With a grouped-query ``shape``: without at least ``count`` heads, removed along the valid
    removal path (:func:`nasprune.baselines.grouped.removal_path`), so the result stays valid.
    """
    if shape is not None and shape.grouped:
        path = grouped.removal_path(subnet.head_mask, importance, shape)
        kept = int(subnet.head_mask.sum())
        return SubNetwork(grouped.prune_until(subnet.head_mask, path, kept - count), subnet.unit_mask)
    head_mask = subnet.head_mask.copy()
    kept = np.flatnonzero(head_mask.ravel())
    order = kept[np.argsort(importance.ravel()[kept], kind="stable")]
    head_mask.ravel()[order[:count]] = False
    return SubNetwork(head_mask, subnet.unit_mask)


def iterative_head_pruning(
    supernet: SuperNetwork,
    loader: Iterable[dict],
    fraction: float = 0.1,
    regression: bool = False,
    max_examples: int | None = None,
    max_steps: int | None = None,
    min_heads: int = 1,
    on_step: Callable[[int, SubNetwork], None] | None = None,
) -> list[SubNetwork]:
    """The sub-networks of Michel et al.'s iterative pruning, one per step, full network first.

    :param fraction: share of *all* heads pruned per step (10% in the paper's figures)
    :param max_examples: examples per importance estimate
    :param max_steps: stop after this many steps
    :param min_heads: stop before fewer heads than this would remain
    :param on_step: called with ``(step, subnet)`` as soon as each step is known
    :return: sub-networks with strictly fewer heads at each step, units untouched (valid under
        grouped-query attention)
    """
    total = supernet.shape.num_layers * supernet.shape.num_heads
    per_step = max(1, math.ceil(fraction * total))
    loader = list(loader)  # iterated once per step
    subnet = SubNetwork.full(supernet.shape)
    steps = [subnet]
    if on_step is not None:
        on_step(0, subnet)
    while int(subnet.head_mask.sum()) - per_step >= min_heads:
        if max_steps is not None and len(steps) > max_steps:
            break
        importance = head_importance(supernet, loader, subnet, regression, max_examples)
        pruned = prune_least_important(subnet, importance, per_step, supernet.shape)
        if int(pruned.head_mask.sum()) < min_heads:
            break  # grouped-query attention: the valid removals overshot the share
        subnet = pruned
        steps.append(subnet)
        if on_step is not None:
            on_step(len(steps) - 1, subnet)
    return steps
