"""Retraining-free pruning: Kwon et al. 2022, "A Fast Post-Training Pruning Framework for Transformers".

Given a fine-tuned model, a few hundred training examples and a budget (a fraction of the MACs or
of the parameters), the framework prunes heads and FFN units in three steps, none of which
retrains a weight:

1. **Mask search** (§4.1, Algorithm 1): the diagonal of the empirical Fisher information of the
   mask variables approximates how much the loss grows when a mask is removed. With one cost per
   head and one per unit, the best mix is found by trying every number of kept heads, spending the
   rest of the budget on the most important units, and keeping the mix of highest total importance.
2. **Mask rearrangement** (§4.2): within each layer the masks interact; with the layer's block of
   the Fisher matrix ``G``, the pruned set ``z`` (1 = pruned) should minimise ``z^T G z``. Starting
   from step 1's choice, kept and pruned masks of the same layer are swapped while a swap lowers it
   (the per-layer counts, hence the cost, stay the same).
3. **Mask tuning** (§4.3): layer by layer, the kept heads' and units' mask values become real
   numbers chosen by linear least squares so that the pruned layer's (pre-LayerNorm) output
   reconstructs the unpruned model's on the sample.

**Tuned masks are not binary.** A :class:`~nasprune.subnet.SubNetwork` is, so the tuned values
are folded into a *copy* of the model: a kept head's columns of the attention output projection,
and a kept unit's column of the FFN output projection, are multiplied by its value. The copy
running the binary sub-network computes exactly the tuned masked model; it has the same parameter
count and MACs as the binary sub-network, but it is a different set of weights than the
checkpoint's, which :class:`RFPResult` keeps (``scales``) so that it can be rebuilt. The values
and the folding (:class:`~nasprune.scales.MaskScales`, :func:`~nasprune.scales.apply_scales`) live in
:mod:`nasprune.scales`, since ``nasprune export`` folds them too.

**Grouped-query attention.** Single heads cannot be kept or pruned freely there
(:mod:`nasprune.baselines.grouped`). Step 1 then tries every point of the valid removal path
(whole key/value groups, or one head of every kept group) instead of every number of kept heads;
the path removes first what loses the least Fisher importance per unit of cost saved, and a whole
group saves its key and value heads' cost too. The repair removes heads along valid removals, and
step 2 swaps heads only within their key/value group, which keeps every group's count. Step 3
needs BERT-style layers, so decoders run with ``--no-mask-tuning``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from nasprune.baselines import grouped
from nasprune.counting import ParameterCounter, count_macs
from nasprune.errors import NaspruneError
from nasprune.importance import Importance, MaskGradients, mask_gradients
from nasprune.scales import MaskScales
from nasprune.subnet import ModelShape, SubNetwork
from nasprune.supernet import LayerModules, SuperNetwork, encoder_layers, head_feature_indices

logger = logging.getLogger("nasprune")
T = TypeVar("T")

CONSTRAINTS = ("macs", "params")


# --- costs ----------------------------------------------------------------------------------
class CostModel:
    """Exact MAC or parameter cost of sub-networks, split into per-head and per-unit costs.

    MACs are linear in the kept heads and units (:func:`nasprune.counting.count_macs`). Parameters
    also have fixed costs per block (the output bias and LayerNorm of a block that keeps anything);
    the search ignores those and :func:`repair_to_budget` removes masks until the exact count fits.
    With grouped-query attention ``head_cost`` is a query head's (its query rows and output
    columns) and ``kv_cost`` a key/value head's, paid while its group keeps any query head;
    without it ``kv_cost`` is 0 and ``head_cost`` holds the head's key and value rows.
    """

    def __init__(self, model: torch.nn.Module, kind: str = "macs", seq_len: int = 128):
        if kind not in CONSTRAINTS:
            raise NaspruneError(f"unknown constraint {kind!r}; choose one of {', '.join(CONSTRAINTS)}")
        self.kind = kind
        self.seq_len = seq_len
        self.counter = ParameterCounter(model)
        self.shape: ModelShape = self.counter.shape
        layers = self.shape.num_layers
        if kind == "macs":
            if self.shape.grouped:
                # One group with two heads minus one with one: a query head; the rest of one: its K/V head.
                query = self._macs(groups=1, heads_per_group=2) - self._macs(groups=1, heads_per_group=1)
                self.head_cost = np.full(layers, query, dtype=float)
                self.kv_cost = np.full(layers, self._macs(groups=1, heads_per_group=1) - query, dtype=float)
            else:
                self.head_cost = np.full(layers, self._macs(groups=1, heads_per_group=1), dtype=float)
                self.kv_cost = np.zeros(layers)
            self.unit_cost = np.full(layers, self._macs(units=1), dtype=float)
            self.base = 0.0
            self.total = float(count_macs(SubNetwork.full(self.shape), self.shape, seq_len))
        else:
            self.head_cost = np.array([c.per_head for c in self.counter.layers], dtype=float)
            self.kv_cost = np.array([c.per_kv_head for c in self.counter.layers], dtype=float)
            self.unit_cost = np.array([c.per_unit for c in self.counter.layers], dtype=float)
            self.base = float(self.counter.non_encoder)
            self.total = float(self.counter.total)

    def _macs(self, groups: int = 0, heads_per_group: int = 0, units: int = 0) -> int:
        """MACs of ``groups`` key/value groups of ``heads_per_group`` heads and ``units`` units in the
        first layer (without GQA a group is one head)."""
        rest = [0] * (self.shape.num_layers - 1)
        subnet = SubNetwork.from_group_counts(self.shape, [groups] + rest, [heads_per_group] + rest, [units] + rest)
        return count_macs(subnet, self.shape, self.seq_len)

    def cost(self, subnet: SubNetwork) -> float:
        """The exact cost (MACs or parameters) of ``subnet``."""
        if self.kind == "macs":
            return float(count_macs(subnet, self.shape, self.seq_len))
        return float(self.counter.count(subnet))

    def relative(self, subnet: SubNetwork) -> float:
        return self.cost(subnet) / self.total

    @property
    def minimum_relative(self) -> float:
        """The cost of the empty sub-network: no budget can go below it."""
        return self.relative(SubNetwork.from_counts(self.shape, [0] * self.shape.num_layers, [0] * self.shape.num_layers))


# --- step 1: mask search --------------------------------------------------------------------
def search_masks(importance: Importance, costs: CostModel, budget: float) -> SubNetwork:
    """Kwon et al. 2022, Algorithm 1: the heads and units of highest total importance within ``budget``.

    :param importance: per-mask scores, e.g. the Fisher diagonal (higher: more important)
    :param costs: the cost model (MACs or parameters)
    :param budget: a fraction of the unpruned model's cost
    :raises NaspruneError: when even the empty sub-network exceeds the budget
    """
    limit = budget * costs.total
    if costs.cost(_empty(costs.shape)) > limit + 1e-9:
        raise NaspruneError(
            f"a {costs.kind} budget of {budget:.3f} is below the smallest possible sub-network "
            f"({costs.minimum_relative:.3f} of the model)"
        )
    shape = costs.shape
    if shape.grouped:
        return _search_grouped_masks(importance, costs, budget)
    head_order = np.argsort(-importance.head.ravel(), kind="stable")
    unit_order = np.argsort(-importance.unit.ravel(), kind="stable")
    head_cost = np.repeat(costs.head_cost, shape.num_heads)[head_order]
    unit_cost = np.repeat(costs.unit_cost, shape.intermediate_size)[unit_order]
    head_gain = np.concatenate([[0.0], np.cumsum(importance.head.ravel()[head_order])])
    unit_gain = np.concatenate([[0.0], np.cumsum(importance.unit.ravel()[unit_order])])
    head_spent = np.concatenate([[0.0], np.cumsum(head_cost)])
    unit_spent = np.cumsum(unit_cost)

    best, best_score = (0, 0), -math.inf
    for num_heads in range(len(head_order) + 1):
        left = limit - costs.base - head_spent[num_heads]
        if left < 0:
            break
        # The most units whose (sorted-by-importance) costs fit in what is left.
        num_units = int(np.searchsorted(unit_spent, left * (1 + 1e-12), side="right"))
        score = head_gain[num_heads] + unit_gain[num_units]
        if score > best_score:
            best, best_score = (num_heads, num_units), score

    head_mask = np.zeros(shape.num_layers * shape.num_heads, bool)
    unit_mask = np.zeros(shape.num_layers * shape.intermediate_size, bool)
    head_mask[head_order[: best[0]]] = True
    unit_mask[unit_order[: best[1]]] = True
    subnet = SubNetwork(head_mask.reshape(shape.num_layers, -1), unit_mask.reshape(shape.num_layers, -1))
    return repair_to_budget(subnet, importance, costs, budget)


def _search_grouped_masks(importance: Importance, costs: CostModel, budget: float) -> SubNetwork:
    """Algorithm 1 under grouped-query attention: each point of the valid removal path (module
    docstring) stands for a number of kept heads, the rest of the budget goes to units."""
    shape, limit = costs.shape, budget * costs.total
    full = np.ones((shape.num_layers, shape.num_heads), bool)
    path = grouped.removal_path(full, importance.head, shape, costs.head_cost, costs.kv_cost)
    unit_order = np.argsort(-importance.unit.ravel(), kind="stable")
    unit_gain = np.concatenate([[0.0], np.cumsum(importance.unit.ravel()[unit_order])])
    unit_spent = np.cumsum(np.repeat(costs.unit_cost, shape.intermediate_size)[unit_order])
    # After the first j removals of the path: the heads' importance and cost left.
    head_gain = float(importance.head.sum()) - np.concatenate([[0.0], np.cumsum([r.lost for r in path])])
    full_cost = float((costs.head_cost * shape.num_heads + costs.kv_cost * shape.kv_heads).sum())
    head_spent = full_cost - np.concatenate([[0.0], np.cumsum([r.saved for r in path])])

    best, best_score = (len(path), 0), -math.inf
    for removed in range(len(path), -1, -1):  # from no heads to all of them
        left = limit - costs.base - head_spent[removed]
        if left < -1e-9 * max(costs.total, 1.0):
            break
        num_units = int(np.searchsorted(unit_spent, max(left, 0.0) * (1 + 1e-12), side="right"))
        score = head_gain[removed] + unit_gain[num_units]
        if score > best_score:
            best, best_score = (removed, num_units), score

    unit_mask = np.zeros(shape.num_layers * shape.intermediate_size, bool)
    unit_mask[unit_order[: best[1]]] = True
    subnet = SubNetwork(grouped.remove(full, path[: best[0]]), unit_mask.reshape(shape.num_layers, -1))
    return repair_to_budget(subnet, importance, costs, budget)


def _empty(shape: ModelShape) -> SubNetwork:
    return SubNetwork.from_counts(shape, [0] * shape.num_layers, [0] * shape.num_layers)


def repair_to_budget(subnet: SubNetwork, importance: Importance, costs: CostModel, budget: float) -> SubNetwork:
    """Drop the least important kept masks (per unit of cost) until the *exact* cost fits ``budget``."""
    limit = budget * costs.total
    if costs.shape.grouped:
        return _repair_grouped(subnet, importance, costs, limit)
    head_mask, unit_mask = subnet.head_mask.copy(), subnet.unit_mask.copy()
    head_ratio = importance.head / costs.head_cost[:, None]
    unit_ratio = importance.unit / costs.unit_cost[:, None]
    while costs.cost(SubNetwork(head_mask, unit_mask)) > limit * (1 + 1e-12):
        head_score = np.where(head_mask, head_ratio, np.inf)
        unit_score = np.where(unit_mask, unit_ratio, np.inf)
        if head_score.min() <= unit_score.min():
            head_mask[np.unravel_index(np.argmin(head_score), head_mask.shape)] = False
        else:
            unit_mask[np.unravel_index(np.argmin(unit_score), unit_mask.shape)] = False
    return SubNetwork(head_mask, unit_mask)


def _repair_grouped(subnet: SubNetwork, importance: Importance, costs: CostModel, limit: float) -> SubNetwork:
    """:func:`repair_to_budget` under grouped-query attention: heads go by valid removals only."""
    shape = costs.shape
    head_mask, unit_mask = subnet.head_mask.copy(), subnet.unit_mask.copy()
    unit_ratio = importance.unit / costs.unit_cost[:, None]
    while costs.cost(SubNetwork(head_mask, unit_mask)) > limit * (1 + 1e-12):
        removals = [
            grouped.cheapest_removal(head_mask[i], importance.head[i], shape, i, costs.head_cost[i], costs.kv_cost[i])
            for i in range(shape.num_layers)
        ]
        removal = min((r for r in removals if r is not None), key=lambda r: r.ratio, default=None)
        unit_score = np.where(unit_mask, unit_ratio, np.inf)
        if removal is not None and removal.ratio <= unit_score.min():
            head_mask[removal.layer, removal.heads] = False
        else:
            unit_mask[np.unravel_index(np.argmin(unit_score), unit_mask.shape)] = False
    return SubNetwork(head_mask, unit_mask)


# --- step 2: mask rearrangement -------------------------------------------------------------
def rearrange_layer(
    kept: np.ndarray, gradients: np.ndarray, max_swaps: int | None = None, groups: np.ndarray | None = None
) -> np.ndarray:
    """Kwon et al. 2022, §4.2, for one layer: swap kept and pruned masks to lower ``z^T G z``.

    :param kept: boolean keep mask of the layer's heads (or units)
    :param gradients: per-example mask gradients of this layer, ``[N, n]``; ``G = g^T g`` is the
        layer's block of the empirical Fisher matrix
    :param max_swaps: at most this many swaps (default: ``n``)
    :param groups: a group number per mask; only masks of the same group swap (so each group keeps
        its count: grouped-query attention). None: any two masks may swap
    :return: a keep mask with as many kept masks, whose pruned set has a ``z^T G z`` no larger
    """
    kept = np.asarray(kept, bool).copy()
    if kept.all() or not kept.any():
        return kept  # nothing to swap
    gram = gradients.T @ gradients
    pruned = (~kept).astype(float)
    r = gram @ pruned
    diagonal = np.diag(gram)
    for _ in range(max_swaps if max_swaps is not None else len(kept)):
        out_idx, in_idx = np.flatnonzero(~kept), np.flatnonzero(kept)
        # Change of z^T G z when pruned mask i is kept and kept mask j is pruned instead.
        delta = (
            (-2 * r[out_idx] + diagonal[out_idx])[:, None]
            + (2 * r[in_idx] + diagonal[in_idx])[None, :]
            - 2 * gram[np.ix_(out_idx, in_idx)]
        )
        if groups is not None:
            delta = np.where(groups[out_idx][:, None] == groups[in_idx][None, :], delta, np.inf)
        best = np.unravel_index(np.argmin(delta), delta.shape)
        # A relative tolerance: a swap that gains only rounding noise would cycle.
        if delta[best] >= -1e-12 * max(abs(float(pruned @ r)), 1e-300):
            break
        i, j = out_idx[best[0]], in_idx[best[1]]
        kept[i], kept[j] = True, False
        r += gram[:, j] - gram[:, i]
        pruned[i], pruned[j] = 0.0, 1.0
    return kept


def rearrange_masks(
    subnet: SubNetwork, gradients: MaskGradients, max_swaps: int | None = None, shape: ModelShape | None = None
) -> SubNetwork:
    """:func:`rearrange_layer` for the heads and units of every layer; the counts stay the same.

    With a grouped-query ``shape`` heads swap only within their key/value group, so the
    sub-network stays valid.
    """
    groups = np.arange(shape.num_heads) // shape.group_size if shape is not None and shape.grouped else None
    head_mask = np.stack(
        [rearrange_layer(subnet.head_mask[i], gradients.head[:, i], max_swaps, groups) for i in range(subnet.num_layers)]
    )
    unit_mask = np.stack(
        [rearrange_layer(subnet.unit_mask[i], gradients.unit[:, i], max_swaps) for i in range(subnet.num_layers)]
    )
    return SubNetwork(head_mask, unit_mask)


def pruned_fisher_loss(subnet: SubNetwork, gradients: MaskGradients) -> float:
    """``sum_layers z^T G z`` over heads and units: what rearrangement minimises."""
    total = 0.0
    for i in range(subnet.num_layers):
        for kept, grads in ((subnet.head_mask[i], gradients.head[:, i]), (subnet.unit_mask[i], gradients.unit[:, i])):
            z = (~kept).astype(float)
            total += float(np.square(grads @ z).sum())
    return total


# --- step 3: mask tuning --------------------------------------------------------------------
def _head_outputs(x: torch.Tensor, ext_mask, m: LayerModules, heads: np.ndarray, head_dim: int) -> torch.Tensor:
    """Each selected head's contribution to the attention output projection: ``[K, N, T, d]``."""
    batch, length, width = x.shape
    rows = torch.as_tensor(head_feature_indices(heads, head_dim), device=x.device)

    def project(linear: torch.nn.Linear) -> torch.Tensor:
        out = F.linear(x, linear.weight[rows], None if linear.bias is None else linear.bias[rows])
        return out.view(batch, length, len(heads), head_dim).transpose(1, 2)

    context = F.scaled_dot_product_attention(
        project(m.query), project(m.key), project(m.value), attn_mask=ext_mask, scale=head_dim**-0.5
    )
    w_out = m.attn_out.weight[:, rows].view(width, len(heads), head_dim)
    return torch.einsum("nktc,dkc->kntd", context, w_out)


def _attention_teacher(x: torch.Tensor, ext_mask, m: LayerModules, shape: ModelShape) -> torch.Tensor:
    """The unpruned attention block's output before LayerNorm (residual included)."""
    contributions = _head_outputs(x, ext_mask, m, np.arange(shape.num_heads), shape.head_dim)
    return contributions.sum(0) + m.attn_out.bias + x


def _ffn_activations(x: torch.Tensor, m: LayerModules) -> torch.Tensor:
    return m.activation(F.linear(x, m.ffn_in.weight, m.ffn_in.bias))


class _Normal:
    """Accumulates the normal equations ``G m = r`` of a least-squares problem over batches."""

    def __init__(self, size: int):
        self.gram = torch.zeros(size, size, dtype=torch.float64)
        self.rhs = torch.zeros(size, dtype=torch.float64)
        self.target_sq = 0.0

    def solve(self, damping: float) -> np.ndarray:
        """Ridge towards all-ones (the untuned masks), so ill-posed directions keep their value 1."""
        size = len(self.rhs)
        strength = damping * float(torch.diagonal(self.gram).mean()) + 1e-12
        ones = torch.ones(size, dtype=torch.float64)
        solution = torch.linalg.solve(self.gram + strength * torch.eye(size, dtype=torch.float64), self.rhs + strength * ones)
        return solution.numpy()

    def residual(self, m: np.ndarray) -> float:
        """``||A m - b||^2`` from the accumulated normal equations."""
        v = torch.as_tensor(m, dtype=torch.float64)
        return float(v @ self.gram @ v - 2 * v @ self.rhs + self.target_sq)


def check_mask_tuning(supernet: SuperNetwork) -> None:
    """Raise :class:`NaspruneError` unless :func:`tune_masks` can tune this model's layers."""
    if any(m.pre_norm or m.attend is not None or m.ffn_up is not None for m in encoder_layers(supernet)):
        # The teacher and the per-head least squares below are BERT's post-norm block with plain
        # dot-product attention; another block (pre-norm decoders, rotary, relative positions,
        # gated FFN) needs its own.
        raise NaspruneError(
            f"mask tuning supports BERT-style layers only, not {supernet.config.model_type}'s; "
            "pass --no-mask-tuning to run retraining-free pruning without it"
        )


@torch.no_grad()
def tune_masks(
    supernet: SuperNetwork,
    subnet: SubNetwork,
    batches: Sequence[dict],
    damping: float = 1e-3,
) -> MaskScales:
    """Kwon et al. 2022, §4.3: layer-wise least-squares values of the kept masks.

    Layer by layer, the student's input is the output of the already tuned pruned layers below,
    and the target is the unpruned model's pre-LayerNorm output of the same block on its own input.
    Only non-padding tokens enter the least-squares problems. The ridge term pulls towards 1, so a
    tuned layer reconstructs the target at least as well as the binary masks do on ``batches``.
    """
    supernet.check(subnet)
    check_mask_tuning(supernet)
    layers = encoder_layers(supernet)
    was_training = supernet.training
    supernet.eval()
    shape = supernet.shape
    device = next(supernet.parameters()).device
    scales = MaskScales.binary(subnet)
    states = []  # per batch: (student x, teacher x, additive mask, token mask)
    for batch in batches:
        inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
        hidden, ext_mask = supernet.embed(**inputs)
        length, width = hidden.shape[-2:]
        hidden = hidden.reshape(-1, length, width)
        ext_mask = None if ext_mask is None else ext_mask.reshape(-1, 1, 1, length)
        tokens = (
            inputs["attention_mask"].reshape(-1, length).bool()
            if "attention_mask" in inputs
            else torch.ones(hidden.shape[:2], dtype=torch.bool, device=device)
        )
        states.append([hidden, hidden, ext_mask, tokens])
    try:
        for layer, modules in enumerate(layers):
            heads = subnet.head_indices(layer)
            if len(heads):
                scales.head[layer, heads] = _tune_attention(states, modules, heads, shape, damping)
            else:
                _advance_teacher(states, lambda x, mask: modules.attn_norm(_attention_teacher(x, mask, modules, shape)))
            units = subnet.unit_indices(layer)
            if len(units):
                scales.unit[layer, units] = _tune_ffn(states, modules, units, damping)
            else:
                _advance_teacher(states, lambda x, mask: modules.ffn_norm(_ffn_teacher(x, modules)))
    finally:
        supernet.train(was_training)
    return scales


def _ffn_teacher(x: torch.Tensor, m: LayerModules) -> torch.Tensor:
    return F.linear(_ffn_activations(x, m), m.ffn_out.weight, m.ffn_out.bias) + x


def _advance_teacher(states: list, block) -> None:
    """A skipped block: the student passes through unchanged, the teacher runs the block."""
    for state in states:
        state[1] = block(state[1], state[2])


def _tune_attention(states: list, m: LayerModules, heads: np.ndarray, shape: ModelShape, damping: float) -> np.ndarray:
    normal = _Normal(len(heads))
    for state in states:
        student, teacher, ext_mask, tokens = state
        block = _attention_teacher(teacher, ext_mask, m, shape)
        target = block - m.attn_out.bias - student
        state[1] = m.attn_norm(block)  # the teacher's next state: computed once, here
        parts = _head_outputs(student, ext_mask, m, heads, shape.head_dim)[:, tokens].double()  # [K, M, d]
        goal = target[tokens].double()
        normal.gram += torch.einsum("kmd,jmd->kj", parts, parts).cpu()
        normal.rhs += torch.einsum("kmd,md->k", parts, goal).cpu()
        normal.target_sq += float((goal**2).sum())
    values = _accept(normal, damping)
    scale = torch.as_tensor(values, dtype=states[0][0].dtype, device=states[0][0].device)
    for state in states:
        student, _, ext_mask, _ = state
        parts = _head_outputs(student, ext_mask, m, heads, shape.head_dim)
        state[0] = m.attn_norm(torch.einsum("k,kntd->ntd", scale, parts) + m.attn_out.bias + student)
    return values


def _tune_ffn(states: list, m: LayerModules, units: np.ndarray, damping: float) -> np.ndarray:
    normal = _Normal(len(units))
    index = torch.as_tensor(units, device=states[0][0].device)
    w_out = m.ffn_out.weight[:, index].double()  # [d, K]
    w_gram = (w_out.T @ w_out).cpu()
    for state in states:
        student, teacher, _, tokens = state
        block = _ffn_teacher(teacher, m)
        target = (block - m.ffn_out.bias - student)[tokens].double()
        state[1] = m.ffn_norm(block)  # the teacher's next state: computed once, here
        acts = _ffn_activations(student, m)[..., index][tokens].double()  # [M, K]
        # Column k of the design matrix is acts[:, k] (outer) w_out[:, k]: its Gram factorises.
        normal.gram += ((acts.T @ acts).cpu() * w_gram)
        normal.rhs += (acts * (target @ w_out)).sum(0).cpu()
        normal.target_sq += float((target**2).sum())
    values = _accept(normal, damping)
    scale = torch.as_tensor(values, dtype=states[0][0].dtype, device=states[0][0].device)
    for state in states:
        student = state[0]
        acts = _ffn_activations(student, m)[..., index] * scale
        state[0] = m.ffn_norm(F.linear(acts, m.ffn_out.weight[:, index], m.ffn_out.bias) + student)
    return values


def _accept(normal: _Normal, damping: float) -> np.ndarray:
    """The tuned values, or all ones if (by rounding) they reconstruct worse than the binary masks."""
    ones = np.ones(len(normal.rhs))
    values = normal.solve(damping)
    if not np.all(np.isfinite(values)) or normal.residual(values) > normal.residual(ones):
        return ones
    return values


# --- the whole pipeline ---------------------------------------------------------------------
@dataclass
class RFPResult:
    """One budget's outcome: the searched, rearranged masks and their tuned values."""

    budget: float
    searched: SubNetwork
    subnet: SubNetwork
    scales: MaskScales
    relative_cost: float


class RetrainingFreePruner:
    """Kwon et al. 2022's pipeline over several budgets, sharing one Fisher computation.

    :param supernet: the fine-tuned model
    :param sample: batches of training examples with labels (the paper uses 2K examples)
    :param constraint: ``"macs"`` (the paper's) or ``"params"``
    :param seq_len: the sequence length of the MAC count
    :param regression: mean squared error instead of cross-entropy for the Fisher information
    :param max_examples: examples for the Fisher information (all of ``sample`` when None)
    :param tune: run mask tuning (step 3)
    :param rearrange: run mask rearrangement (step 2)
    """

    def __init__(
        self,
        supernet: SuperNetwork,
        sample: Sequence[dict],
        constraint: str = "macs",
        seq_len: int = 128,
        regression: bool = False,
        max_examples: int | None = None,
        tune: bool = True,
        rearrange: bool = True,
        tuning_batches: int | None = None,
    ):
        self.supernet = supernet
        self.sample = list(sample)
        self.costs = CostModel(supernet.model, constraint, seq_len)
        self.tune = tune
        self.rearrange = rearrange
        self.tuning_batches = tuning_batches
        self.gradients: MaskGradients = mask_gradients(supernet, self.sample, regression, max_examples=max_examples)
        self.fisher = self.gradients.fisher()

    def prune(self, budget: float) -> RFPResult:
        searched = search_masks(self.fisher, self.costs, budget)
        subnet = rearrange_masks(searched, self.gradients, shape=self.costs.shape) if self.rearrange else searched
        batches = self.sample[: self.tuning_batches] if self.tuning_batches else self.sample
        scales = tune_masks(self.supernet, subnet, batches) if self.tune else MaskScales.binary(subnet)
        return RFPResult(budget, searched, subnet, scales, self.costs.relative(subnet))

    def sweep(self, budgets: Iterable[float]) -> list[RFPResult]:
        """:meth:`prune` for every feasible budget; infeasible ones are skipped with a warning."""
        return sweep_feasible(self.prune, budgets)


def sweep_feasible(prune: Callable[[float], T], budgets: Iterable[float]) -> list[T]:
    """``prune(budget)`` for every budget it can meet; a budget it refuses (a :class:`NaspruneError`,
    e.g. below the empty sub-network's cost) is skipped with a warning."""
    results = []
    for budget in budgets:
        try:
            results.append(prune(budget))
        except NaspruneError as err:
            logger.warning("skipping budget %.3f: %s", budget, err)
    return results
