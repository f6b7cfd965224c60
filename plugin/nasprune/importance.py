"""Per-example gradients of the loss w.r.t. head and FFN-unit mask variables.

Several pruning criteria are functions of the gradient of the loss with respect to a mask
variable ``m`` that multiplies the output of a head or unit (``m = 1``: kept, ``0``: pruned):

- Michel et al. 2019, "Are Sixteen Heads Really Better than One?": head importance
  ``I_h = E_x |dL/dm_h|``;
- Kwon et al. 2022, "A Fast Post-Training Pruning Framework for Transformers": the empirical
  Fisher information of the masks, ``I = sum_x g_x g_x^T`` with ``g_x = dL(x)/dm``; its diagonal
  ranks masks, its per-layer blocks drive mask rearrangement.

Both need *per-example* gradients (``E|g|`` and ``sum g^2`` are not functions of the batch
gradient). Each row of a batch gets its own copy of the mask variables (scales ``[N, L, H]`` and
``[N, L, I]``, see :meth:`nasprune.supernet.SuperNetwork.scaled`) and the loss is the sum of the
examples' own losses: an example's loss reads only its own copy, so one backward pass gives every
example's gradient, as exactly as one pass per example would (up to float rounding), at the cost
of one training step per batch.

Importance is core: rewiring (:mod:`nasprune.rewiring`) sorts heads and units by it, and the
pruning baselines (:mod:`nasprune.baselines.rfp`, :mod:`nasprune.baselines.head_pruning`) prune by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork
from nasprune.training import label_loss


@dataclass(frozen=True)
class Importance:
    """One importance score per head ``[L, H]`` and per FFN unit ``[L, I]`` (higher: keep)."""

    head: np.ndarray
    unit: np.ndarray

    def __post_init__(self) -> None:
        if self.head.ndim != 2 or self.unit.ndim != 2 or len(self.head) != len(self.unit):
            raise ValueError(f"importance shapes {self.head.shape} / {self.unit.shape} do not match")


@dataclass
class MaskGradients:
    """Per-example gradients ``dL(x)/dm`` at the current masks: ``head [N, L, H]``, ``unit [N, L, I]``."""

    head: np.ndarray
    unit: np.ndarray

    @property
    def num_examples(self) -> int:
        """The examples the gradients were taken on."""
        return len(self.head)

    def fisher(self) -> Importance:
        """Diagonal of the empirical Fisher information, ``sum_x g_x^2`` (Kwon et al. 2022, §4.1)."""
        return Importance(np.square(self.head).sum(0), np.square(self.unit).sum(0))

    def mean_abs(self) -> Importance:
        """Expected absolute sensitivity ``E_x |g_x|`` (Michel et al. 2019, eq. 2)."""
        return Importance(np.abs(self.head).mean(0), np.abs(self.unit).mean(0))


def _batches(loader: Iterable[dict], max_examples: int | None) -> Iterable[dict]:
    """The loader's batches, the last one cut so that at most ``max_examples`` examples are seen."""
    seen = 0
    for batch in loader:
        if max_examples is not None:
            if seen >= max_examples:
                return
            batch = {k: v[: max_examples - seen] for k, v in batch.items()}
        seen += len(batch["input_ids"])
        yield batch


def mask_gradients(
    supernet: SuperNetwork,
    loader: Iterable[dict],
    regression: bool = False,
    subnet: SubNetwork | None = None,
    max_examples: int | None = None,
) -> MaskGradients:
    """Per-example gradients of the task loss w.r.t. head and unit masks, at the masks of ``subnet``.

    :param supernet: the fine-tuned model; run in eval mode (no dropout) on its own device
    :param loader: batches with ``labels`` (typically a sample of the training split)
    :param regression: mean squared error instead of cross-entropy
    :param subnet: current masks (default: the full network); pruned masks sit at 0 and still get a
        gradient (the effect of adding them back), except in layers that skip the whole block
    :param max_examples: stop after this many examples
    """
    subnet = subnet if subnet is not None else SubNetwork.full(supernet.shape)
    supernet.check(subnet)
    was_training = supernet.training
    supernet.eval()
    parameter = next(supernet.parameters())
    device, dtype = parameter.device, parameter.dtype
    head_mask = torch.tensor(subnet.head_mask, dtype=dtype, device=device)
    unit_mask = torch.tensor(subnet.unit_mask, dtype=dtype, device=device)
    head_grads, unit_grads = [], []
    try:
        for batch in _batches(loader, max_examples):
            batch = {k: v.to(device) for k, v in batch.items()}
            examples = len(batch["input_ids"])
            # One row of scales per sequence the encoder runs: a multiple-choice example is C of them.
            rows = batch["input_ids"][..., 0].numel()
            head_scale = head_mask.expand(rows, *head_mask.shape).clone().requires_grad_()
            unit_scale = unit_mask.expand(rows, *unit_mask.shape).clone().requires_grad_()
            with supernet.scaled(head_scale, unit_scale, subnet):
                logits = supernet(**batch)
            labels = batch["labels"]
            loss = sum(label_loss(logits[i : i + 1], labels[i : i + 1], regression) for i in range(examples))
            # autograd.grad leaves the weights' .grad alone and skips their gradient kernels.
            g_head, g_unit = torch.autograd.grad(loss, [head_scale, unit_scale], allow_unused=True)
            # An example's masks act on each of its rows: its gradient is the sum over them.
            head_grads.append(_as_numpy(g_head, head_scale).reshape(examples, -1, *head_mask.shape).sum(1))
            unit_grads.append(_as_numpy(g_unit, unit_scale).reshape(examples, -1, *unit_mask.shape).sum(1))
    finally:
        supernet.train(was_training)
    shape = supernet.shape
    if not head_grads:
        return MaskGradients(
            np.zeros((0, shape.num_layers, shape.num_heads)),
            np.zeros((0, shape.num_layers, shape.intermediate_size)),
        )
    return MaskGradients(np.concatenate(head_grads), np.concatenate(unit_grads))


def _as_numpy(grad: torch.Tensor | None, like: torch.Tensor) -> np.ndarray:
    # A mask of a skipped block takes no part in the loss: its gradient is zero.
    if grad is None:
        return np.zeros(tuple(like.shape), dtype=np.float64)
    return grad.detach().double().cpu().numpy()
