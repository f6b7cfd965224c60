"""Measure an exported folder as a user would load it: its validation and test errors."""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers import AutoTokenizer

from nasprune import data
from nasprune.errors import NaspruneError
from nasprune.evaluation import plain_model_error
from nasprune.export.saving import load_pruned_model
from nasprune.objectives import EVAL_BATCH_SIZE


def measure_exported_model(
    directory: str | os.PathLike,
    task_data: Any,
    max_seq_length: int,
    batch_size: int = EVAL_BATCH_SIZE,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Load an exported folder back as a user would (``from_pretrained`` of the model and its
    tokenizer) and measure ``valid_error`` and ``test_error`` (``1 - metric``) on ``task_data``'s
    validation and test splits, with the data pipeline and metric of the search; ``examples``
    holds how many examples each split had as measured (blocks, for ``--task lm``)."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory)
    except (OSError, ValueError) as err:
        raise NaspruneError(f"the exported folder {directory} has no usable tokenizer: {err}") from None
    model = load_pruned_model(directory).to(device or "cpu")
    errors: dict[str, Any] = {"examples": {}}
    for split, column in (("validation", "valid_error"), ("test", "test_error")):
        encoded = data.prepare_split(task_data, split, tokenizer, max_seq_length)
        loader = data.make_dataloader(encoded, tokenizer, batch_size, shuffle=False, sort_by_length=True)
        errors[column] = plain_model_error(model, loader, task_data.metric)
        errors["examples"][split] = len(encoded)
    return errors
