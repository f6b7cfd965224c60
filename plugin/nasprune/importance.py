"""Per-example gradients of the loss w.r.t. head and FFN-unit mask variables.

Several pruning criteria are functions of the gradient of the loss with respect to a mask
variable ``m`` that multiplies the output of a head or unit (``m = 1``: kept, ``0``: pruned):

- Michel et al. 2019, "Are Sixteen Heads Really Better than One?": head importance
  ``I_h = E_x |dL/dm_h|``;
- Kwon et al. 2022, "A Fast Post-Training Pruning Framework for Transformers": the empirical
  Fisher information of the masks, ``I = sum_x g_x g_x^T`` with ``g_x = dL(x)/dm``; its diagonal
  ranks masks, its per-layer blocks drive mask rearrangement.

Both need *per-example* gradients (``E|g|`` and ``sum g^2`` are not functions of the batch
gradient). The super-network's mask mode broadcasts one scale vector over the whole batch, so the
gradients are taken one example at a time, with the example's trailing padding cut off. That is
exact and, at the few hundred examples these criteria use, fast enough on a CPU. The masks are
the scales of :meth:`nasprune.supernet.SuperNetwork.scaled`.

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


def _examples(loader: Iterable[dict], max_examples: int | None) -> Iterable[dict]:
    """Single examples of the loader's batches, without their trailing padding columns."""
    seen = 0
    for batch in loader:
        size = len(batch["input_ids"])
        for i in range(size):
            if max_examples is not None and seen >= max_examples:
                return
            example = {k: v[i : i + 1] for k, v in batch.items()}
            mask = example.get("attention_mask")
            if mask is not None:
                # Right padding only: cutting leading columns would shift BERT's positions.
                used = mask.reshape(-1, mask.shape[-1]).any(0).nonzero()
                length = int(used.max()) + 1 if len(used) else mask.shape[-1]
                # Per-token tensors (inputs, and a causal LM's labels) lose the padding columns.
                per_token = example["input_ids"].dim()
                example = {k: (v[..., :length] if v.dim() == per_token else v) for k, v in example.items()}
            seen += 1
            yield example


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
    head_grads, unit_grads = [], []
    try:
        for example in _examples(loader, max_examples):
            example = {k: v.to(device) for k, v in example.items()}
            head_scale = torch.tensor(subnet.head_mask, dtype=dtype, device=device, requires_grad=True)
            unit_scale = torch.tensor(subnet.unit_mask, dtype=dtype, device=device, requires_grad=True)
            with supernet.scaled(head_scale, unit_scale, subnet):
                logits = supernet(**example)
            loss = label_loss(logits, example["labels"], regression)
            # autograd.grad leaves the weights' .grad alone and skips their gradient kernels.
            g_head, g_unit = torch.autograd.grad(loss, [head_scale, unit_scale], allow_unused=True)
            head_grads.append(_as_numpy(g_head, head_scale))
            unit_grads.append(_as_numpy(g_unit, unit_scale))
    finally:
        supernet.train(was_training)
    shape = supernet.shape
    if not head_grads:
        return MaskGradients(
            np.zeros((0, shape.num_layers, shape.num_heads)),
            np.zeros((0, shape.num_layers, shape.intermediate_size)),
        )
    return MaskGradients(np.stack(head_grads), np.stack(unit_grads))


def _as_numpy(grad: torch.Tensor | None, like: torch.Tensor) -> np.ndarray:
    # A mask of a skipped block takes no part in the loss: its gradient is zero.
    if grad is None:
        return np.zeros(tuple(like.shape), dtype=np.float64)
    return grad.detach().double().cpu().numpy()
