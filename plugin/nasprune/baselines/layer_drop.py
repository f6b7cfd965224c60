"""Dropping the top layers: Sajjad et al. 2023, "On the effect of dropping layers of pre-trained
transformer models".

Of their strategies, dropping the top k layers and fine-tuning what is left worked best. Here the
dropped model is the super-network running the sub-network of the bottom ``L - k`` layers (slice
mode, so the dropped layers cost nothing) on a *copy* of the fine-tuned model, fine-tuned with the
project's :class:`~nasprune.training.Trainer` and a strategy that always trains that one
sub-network. The result is the same function as the dense model
:func:`nasprune.export.slice_subnetwork` would cut out of the copy.
"""

from __future__ import annotations

import copy
from typing import Iterable

import numpy as np

from nasprune.subnet import ModelShape, SubNetwork
from nasprune.supernet import SuperNetwork
from nasprune.training import FixedSubnetStrategy, Trainer, TrainingConfig


def top_layers_dropped(shape: ModelShape, k: int) -> SubNetwork:
    """The whole bottom ``L - k`` layers; the top ``k`` are dropped."""
    if not 0 <= k <= shape.num_layers:
        raise ValueError(f"cannot drop {k} of {shape.num_layers} layers")
    kept = np.arange(shape.num_layers) < shape.num_layers - k
    return SubNetwork.from_counts(shape, kept * shape.num_heads, kept * shape.intermediate_size)


def layer_drop_subnets(shape: ModelShape, max_dropped: int | None = None) -> list[tuple[int, SubNetwork]]:
    """``(k, sub-network)`` for k = 0 (the full model) .. ``max_dropped`` (default ``L - 1``)."""
    last = shape.num_layers - 1 if max_dropped is None else min(max_dropped, shape.num_layers - 1)
    return [(k, top_layers_dropped(shape, k)) for k in range(last + 1)]


def finetune_subnet(
    supernet: SuperNetwork,
    subnet: SubNetwork,
    train_loader: Iterable[dict],
    config: TrainingConfig,
    regression: bool = False,
    progress: bool = False,
) -> SuperNetwork:
    """A copy of ``supernet`` whose weights are fine-tuned for ``subnet`` (``config.epochs`` epochs).

    ``supernet`` is left as it was. With ``config.epochs == 0`` the copy is returned untrained.
    """
    # Copy the HF model, not the super-network: SubNetwork (held by it) refuses deepcopy's setattr.
    tuned = SuperNetwork(copy.deepcopy(supernet.model), mode=supernet.mode)
    if config.epochs == 0:
        return tuned
    Trainer(tuned, FixedSubnetStrategy(subnet), train_loader, config, regression=regression, progress=progress).train()
    tuned.eval()
    return tuned
