"""Random example inputs shaped for a model's task: for timing (:mod:`nasprune.latency`) and for
tracing an ONNX graph (:func:`nasprune.export.example_batch`).

Kept apart from both so that neither imports the other: export loads the pruned models (and
transformers), which latency measurement only needs once it slices a sub-network.
"""

from __future__ import annotations

import torch
from torch import nn


def is_multiple_choice(model: nn.Module) -> bool:
    """Whether ``model`` (a super-network, a dense or a pruned HF task model) scores choices."""
    task_kind = getattr(model, "task_kind", None)  # a SuperNetwork says so itself
    if isinstance(task_kind, str):
        return task_kind == "multiple_choice"
    return "MultipleChoice" in type(model).__name__


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s parameters (the CPU for a model without any)."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def random_inputs(
    model: nn.Module,
    batch_size: int = 1,
    seq_len: int = 128,
    num_choices: int = 4,
    device: torch.device | str | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Random ``input_ids`` and an all-ones ``attention_mask`` for ``model``, on ``device``
    (default: the model's).

    Shapes are ``[batch_size, seq_len]``, or ``[batch_size, num_choices, seq_len]`` for a
    multiple-choice model. Ids avoid the padding id, so RoBERTa's positions count every token.
    """
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    shape = (batch_size, num_choices, seq_len) if is_multiple_choice(model) else (batch_size, seq_len)
    low = min(int(getattr(config, "pad_token_id", None) or 0) + 1, config.vocab_size - 1)
    input_ids = torch.randint(low, config.vocab_size, shape, generator=generator)
    device = torch.device(device) if device is not None else model_device(model)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones(shape, dtype=torch.long, device=device),
    }
