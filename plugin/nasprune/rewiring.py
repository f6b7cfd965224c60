"""Rewiring: reorder heads and FFN units by importance so that "first k" spaces keep the best ones.

The small and medium search spaces keep the *first* heads and units of each layer. In the natural
order that is an arbitrary choice. DynaBERT (Hou et al. 2020, "DynaBERT: Dynamic BERT with
Adaptive Width and Depth", §3.1) sorts heads and neurons by importance before training a
width-adaptive network, so that every width keeps the most important ones. The importance here is
the Fisher information of the mask variables (Kwon et al. 2022, "A Fast Post-Training Pruning
Framework for Transformers", §4.1) or the expected absolute mask gradient (Michel et al. 2019,
"Are Sixteen Heads Really Better than One?"), see :mod:`nasprune.importance`.

A permutation of the heads of a layer permutes the Q, K and V output rows head-block-wise and the
attention output projection's input columns the same way; a permutation of the FFN units permutes
the rows (and bias) of the first FFN projection and the columns of the second. The layer computes
the same function: only the order in which a sub-network's first k heads/units are taken changes.

Under grouped-query attention a query head can only move with its group: groups are sorted by
their summed head importance and move whole, with their key and value rows, and the heads of a
group are sorted within it. The "first groups, first heads of each" of the GQA spaces then keep the
most important groups and, within them, the most important heads.

To rewire before super-network training (``train-supernet --rewire``), compute the importance on a
*fine-tuned* model (the pre-trained model's classifier is random) and apply the permutation to the
model the super-network starts from: fine-tuning does not reorder units, so head h of the
fine-tuned model is head h of the pre-trained one. :class:`RewiringOptions` names that fine-tuned
model; without one, :func:`nasprune.workflows.train_supernet` uses the start model itself when it
already has a trained task head, and fine-tunes a copy first when it does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
from torch import nn

from nasprune.errors import NaspruneError
from nasprune.importance import Importance, mask_gradients
from nasprune.subnet import ModelShape
from nasprune.supernet import LayerModules, SuperNetwork, encoder_layers, head_feature_indices, unwrap

IMPORTANCE_KINDS = ("fisher", "gradient")


@dataclass
class RewiringOptions:
    """How to rewire the start model before super-network training (``--rewire``)."""

    #: ``fisher`` (Kwon et al. 2022) or ``gradient`` (Michel et al. 2019)
    importance: str = "fisher"
    #: training examples the importance is estimated from
    num_examples: int = 512
    #: a fine-tuned model (folder or checkpoint) to measure the importance on; ``None``: the start
    #: model, fine-tuned first if its task head is untrained
    source: str | None = None
    #: start the super-network from that fine-tuned model (rewired) instead of the start model
    start_from_source: bool = False
    #: training examples of the copy fine-tuned first when the start model's task head is untrained;
    #: ``None``: all of the super-network's. The importance only has to rank the heads and units, and
    #: the super-network then trains on all the examples.
    finetune_examples: int | None = None

    def validate(self) -> None:
        if self.importance not in IMPORTANCE_KINDS:
            raise NaspruneError(
                f"unknown --rewire-importance {self.importance!r}; choose one of {', '.join(IMPORTANCE_KINDS)}"
            )
        if self.num_examples < 1:
            raise NaspruneError(f"--rewire-examples must be at least 1, got {self.num_examples}")
        if self.finetune_examples is not None and self.finetune_examples < 1:
            raise NaspruneError(f"--rewire-finetune-examples must be at least 1, got {self.finetune_examples}")


@dataclass(frozen=True)
class Permutation:
    """New order of the heads ``[L, H]`` and units ``[L, I]``: position j holds old index ``order[l, j]``."""

    head: np.ndarray
    unit: np.ndarray

    def to_dict(self) -> dict:
        return {"head": self.head.tolist(), "unit": self.unit.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "Permutation":
        return cls(np.asarray(data["head"], dtype=np.int64), np.asarray(data["unit"], dtype=np.int64))


def compute_importance(
    supernet: SuperNetwork,
    loader: Iterable[dict],
    regression: bool = False,
    max_examples: int | None = 512,
    kind: str = "fisher",
) -> Importance:
    """Head and unit importance of a fine-tuned model from a sample of labelled batches.

    :param kind: ``"fisher"``: ``sum_x (dL/dm)^2`` (Kwon et al. 2022); ``"gradient"``:
        ``E_x |dL/dm|`` (Michel et al. 2019)
    """
    if kind not in IMPORTANCE_KINDS:
        raise NaspruneError(f"unknown importance {kind!r}; choose one of {', '.join(IMPORTANCE_KINDS)}")
    gradients = mask_gradients(supernet, loader, regression, max_examples=max_examples)
    return gradients.fisher() if kind == "fisher" else gradients.mean_abs()


def importance_order(importance: Importance, group_size: int = 1) -> Permutation:
    """Per layer, heads and units by decreasing importance (ties keep their natural order).

    With ``group_size`` > 1 (grouped-query attention) heads stay in their group: groups by
    decreasing summed importance, and within each group its heads by decreasing importance.
    """
    if group_size > 1:
        head = np.stack([_grouped_order(row, group_size) for row in importance.head])
    else:
        head = np.stack([np.argsort(-row, kind="stable") for row in importance.head])
    unit = np.stack([np.argsort(-row, kind="stable") for row in importance.unit])
    return Permutation(head.astype(np.int64), unit.astype(np.int64))


def _grouped_order(scores: np.ndarray, group_size: int) -> np.ndarray:
    by_group = np.asarray(scores, dtype=float).reshape(-1, group_size)
    groups = np.argsort(-by_group.sum(axis=1), kind="stable")
    within = np.argsort(-by_group, axis=1, kind="stable")
    return (groups[:, None] * group_size + within[groups]).reshape(-1)


def kv_order(head_order: np.ndarray, group_size: int) -> np.ndarray:
    """The key/value-head order that goes with a grouped head order (``head_order`` keeps every
    group whole and contiguous); :class:`NaspruneError` if it moves a head out of its group."""
    by_group = np.asarray(head_order).reshape(-1, group_size) // group_size
    if (by_group != by_group[:, :1]).any():
        raise NaspruneError(
            "a rewiring order moves query heads between key/value groups; under grouped-query attention "
            "heads can only be reordered within their group, and groups as a whole"
        )
    return by_group[:, 0]


def _permute_(tensor: torch.Tensor, index: torch.Tensor, dim: int) -> None:
    # In place, so the Parameter objects (and any optimizer's references to them) stay the same.
    tensor.copy_(tensor.index_select(dim, index.to(tensor.device)))


@torch.no_grad()
def permute_layer(modules: LayerModules, head_order: np.ndarray, unit_order: np.ndarray, head_dim: int) -> None:
    """Reorder one layer's heads and FFN units in place; its function stays the same."""
    rows = torch.as_tensor(head_feature_indices(head_order, head_dim))
    kv_rows = rows
    kv_heads = modules.key.weight.shape[0] // head_dim
    if kv_heads != len(head_order):  # grouped-query attention: K/V rows move with their group
        kv_rows = torch.as_tensor(head_feature_indices(kv_order(head_order, len(head_order) // kv_heads), head_dim))
    projections = [(modules.query, rows), (modules.key, kv_rows), (modules.value, kv_rows)]
    for linear, index in projections + [(projection, rows) for projection in modules.head_projections]:
        if hasattr(linear, "permute_rows_"):
            # Rows that no tensor view holds (GPT-NeoX's head-interleaved fused QKV) permute themselves.
            linear.permute_rows_(index)
            continue
        _permute_(linear.weight, index, 0)
        if linear.bias is not None:
            _permute_(linear.bias, index, 0)
    _permute_(modules.attn_out.weight, rows, 1)
    units = torch.as_tensor(np.asarray(unit_order))
    for linear in (modules.ffn_in, modules.ffn_up):  # ffn_up: the second input of a gated unit
        if linear is None:
            continue
        _permute_(linear.weight, units, 0)
        if linear.bias is not None:
            _permute_(linear.bias, units, 0)
    _permute_(modules.ffn_out.weight, units, 1)


def apply_permutation(model: nn.Module, permutation: Permutation) -> None:
    """Reorder the heads and units of every layer of ``model`` (HF model or super-network) in place."""
    hf_model = unwrap(model)
    shape = ModelShape.from_config(hf_model.config)
    shape.check_per_head_and_unit(permutation.head.shape, permutation.unit.shape, "permutation shapes")
    for order in (*permutation.head, *permutation.unit):
        if not np.array_equal(np.sort(order), np.arange(len(order))):
            raise NaspruneError("a rewiring order is not a permutation")
    if shape.grouped:
        for order in permutation.head:
            kv_order(order, shape.group_size)  # refuses orders that split a group
    for layer, modules in enumerate(encoder_layers(hf_model)):
        permute_layer(modules, permutation.head[layer], permutation.unit[layer], shape.head_dim)


def rewire(model: nn.Module, importance: Importance | tuple[np.ndarray, np.ndarray]) -> Permutation:
    """Sort every layer's heads and FFN units by decreasing ``importance``, in place.

    :param model: a HF model of a supported family or a :class:`SuperNetwork`
    :param importance: an :class:`Importance` or a ``(head [L, H], unit [L, I])`` pair
    :return: the permutation applied (position j of layer l now holds old head/unit ``order[l, j]``)
    """
    if not isinstance(importance, Importance):
        importance = Importance(np.asarray(importance[0], float), np.asarray(importance[1], float))
    shape = ModelShape.from_config(unwrap(model).config)
    permutation = importance_order(importance, shape.group_size)
    apply_permutation(model, permutation)
    return permutation


def rewire_by_importance(
    supernet: SuperNetwork,
    loader: Iterable[dict],
    regression: bool = False,
    max_examples: int | None = 512,
    kind: str = "fisher",
    target: nn.Module | None = None,
) -> Permutation:
    """Compute the importance on ``supernet`` and rewire ``target`` (default: ``supernet`` itself).

    With ``target`` the importance of a fine-tuned model reorders another model of the same
    architecture, e.g. the pre-trained model it was fine-tuned from.
    """
    importance = compute_importance(supernet, loader, regression, max_examples, kind)
    return rewire(target if target is not None else supernet, importance)
