"""Head pruning that keeps grouped-query attention valid: the order the baselines remove heads in.

With grouped-query attention (GQA) a layer's query heads share key/value heads, one per group of
``G`` consecutive query heads, and a sub-network is valid only when every group of a layer keeps
either no query head or as many as the other non-empty groups (:meth:`ModelShape.check`). The
baselines rank single heads, which breaks that rule, so on a GQA model they remove heads by
*valid removals* instead. From a valid layer that keeps ``k`` heads in each of its non-empty groups,
exactly two kinds of removal lead to another valid layer of fewer heads:

- a **whole group**: its ``k`` query heads, and with them its key and value heads;
- **one head of every non-empty group** (only while ``k > 1``): each group's least important kept
  head, so that all of them keep ``k - 1``.

Removing heads greedily, always the removal that loses the least importance per unit of cost it
saves (``head_cost`` per query head, plus ``kv_cost`` per key/value head a whole group frees),
gives a *removal path*: nested valid masks from the full layer to the empty one. Every baseline
cuts this path where the encoder version would cut its importance ranking: Michel's head pruning
removes at least its share of heads per step, importance pruning keeps a share of the heads per
layer or over all layers, and retraining-free pruning tries every point of the path as its number
of kept heads. Without GQA (one key/value head per query head) a whole group is a single head and
the path is the importance ranking, so the baselines do not use this module there.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from nasprune.subnet import ModelShape


@dataclass(frozen=True)
class Removal:
    """One valid removal: ``heads`` of ``layer`` go; ``lost`` importance and ``saved`` cost."""

    layer: int
    heads: np.ndarray
    lost: float
    saved: float

    @property
    def ratio(self) -> float:
        """Importance lost per unit of cost saved (the greedy order; lower goes first)."""
        return self.lost / self.saved if self.saved > 0 else float("inf")


def layer_removals(
    kept: np.ndarray,
    scores: np.ndarray,
    shape: ModelShape,
    layer: int = 0,
    head_cost: float = 1.0,
    kv_cost: float = 0.0,
) -> list[Removal]:
    """The valid removals of one layer's kept heads ``kept`` ``[H]`` with importance ``scores`` ``[H]``."""
    groups = np.asarray(kept, bool).reshape(shape.kv_heads, shape.group_size)
    grouped_scores = np.asarray(scores, float).reshape(shape.kv_heads, shape.group_size)
    counts = groups.sum(axis=1)
    non_empty = np.flatnonzero(counts)
    if not len(non_empty):
        return []
    per_group = int(counts[non_empty[0]])
    removals = []
    for group in non_empty:
        heads = group * shape.group_size + np.flatnonzero(groups[group])
        removals.append(Removal(layer, heads, float(grouped_scores[group][groups[group]].sum()),
                                per_group * head_cost + kv_cost))
    if per_group > 1:
        heads, lost = [], 0.0
        for group in non_empty:
            # The group's least important kept head (ties: the lowest index).
            candidates = np.flatnonzero(groups[group])
            weakest = candidates[np.argmin(grouped_scores[group][candidates])]
            heads.append(group * shape.group_size + weakest)
            lost += float(grouped_scores[group][weakest])
        removals.append(Removal(layer, np.array(heads), lost, len(non_empty) * head_cost))
    return removals


def cheapest_removal(
    kept: np.ndarray,
    scores: np.ndarray,
    shape: ModelShape,
    layer: int = 0,
    head_cost: float = 1.0,
    kv_cost: float = 0.0,
) -> Removal | None:
    """The removal of least importance per cost saved (ties: more cost saved, then the first listed)."""
    removals = layer_removals(kept, scores, shape, layer, head_cost, kv_cost)
    if not removals:
        return None
    return min(removals, key=lambda r: (r.ratio, -r.saved))


def layer_path(
    kept: np.ndarray,
    scores: np.ndarray,
    shape: ModelShape,
    layer: int = 0,
    head_cost: float = 1.0,
    kv_cost: float = 0.0,
) -> list[Removal]:
    """The greedy removals that take one layer from ``kept`` to no heads, in order."""
    kept = np.asarray(kept, bool).copy()
    path = []
    while (removal := cheapest_removal(kept, scores, shape, layer, head_cost, kv_cost)) is not None:
        path.append(removal)
        kept[removal.heads] = False
    return path


def removal_path(
    head_mask: np.ndarray,
    importance: np.ndarray,
    shape: ModelShape,
    head_cost: Sequence[float] | None = None,
    kv_cost: Sequence[float] | None = None,
) -> list[Removal]:
    """The greedy removals over all layers, from ``head_mask`` ``[L, H]`` to no heads, in order.

    Layers do not interact, so each layer's own :func:`layer_path` is followed, and at each step the
    layer whose next removal loses the least importance per cost saved goes first (ties: the
    lower layer).

    :param head_cost: cost per query head of each layer (default 1: count heads)
    :param kv_cost: cost per key/value head of each layer (default 0)
    """
    layers = shape.num_layers
    head_cost = np.ones(layers) if head_cost is None else np.asarray(head_cost, float)
    kv_cost = np.zeros(layers) if kv_cost is None else np.asarray(kv_cost, float)
    paths = [layer_path(head_mask[i], importance[i], shape, i, head_cost[i], kv_cost[i]) for i in range(layers)]
    position = [0] * layers
    queue = [(path[0].ratio, i) for i, path in enumerate(paths) if path]
    heapq.heapify(queue)
    merged = []
    while queue:
        _, i = heapq.heappop(queue)
        merged.append(paths[i][position[i]])
        position[i] += 1
        if position[i] < len(paths[i]):
            heapq.heappush(queue, (paths[i][position[i]].ratio, i))
    return merged


def remove(head_mask: np.ndarray, removals: Sequence[Removal]) -> np.ndarray:
    """A copy of ``head_mask`` without the heads of ``removals``."""
    head_mask = np.array(head_mask, bool)
    for removal in removals:
        head_mask[removal.layer, removal.heads] = False
    return head_mask


def prune_until(head_mask: np.ndarray, path: Sequence[Removal], max_heads: int) -> np.ndarray:
    """``head_mask`` after the shortest prefix of ``path`` that leaves at most ``max_heads`` heads."""
    head_mask = np.array(head_mask, bool)
    kept = int(head_mask.sum())
    for removal in path:
        if kept <= max_heads:
            break
        head_mask[removal.layer, removal.heads] = False
        kept -= len(removal.heads)
    return head_mask
