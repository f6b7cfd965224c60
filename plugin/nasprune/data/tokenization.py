"""Tokenisation with truncation and no padding (the collator pads), and token counts."""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nasprune.data.columns import CHOICES, LABEL, TEXT, TEXT_PAIR
from nasprune.data.loading import TaskData
from nasprune.data.tasks import TaskKind

#: Columns produced by tokenisation that the collator turns into tensors.
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _tokenize_flat(batch: dict[str, list], tokenizer: Any, max_seq_length: int,
                   regression: bool) -> dict[str, list]:
    pairs = batch.get(TEXT_PAIR)
    encoded = tokenizer(batch[TEXT], pairs, truncation=True, max_length=max_seq_length)
    out = {key: encoded[key] for key in MODEL_INPUTS if key in encoded}
    out["labels"] = [float(v) for v in batch[LABEL]] if regression else batch[LABEL]
    return out


def _tokenize_choices(batch: dict[str, list], tokenizer: Any,
                      max_seq_length: int) -> dict[str, list]:
    """Encode every (context, choice) pair, then regroup them per example as [C][T] lists."""
    counts = [len(choices) for choices in batch[CHOICES]]
    firsts = [context for context, n in zip(batch[TEXT], counts) for _ in range(n)]
    seconds = [choice for choices in batch[CHOICES] for choice in choices]
    encoded = tokenizer(firsts, seconds, truncation=True, max_length=max_seq_length)
    bounds = np.cumsum([0, *counts])
    out = {key: [encoded[key][lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]
           for key in MODEL_INPUTS if key in encoded}
    out["labels"] = batch[LABEL]
    return out


def tokenize_dataset(dataset: datasets.Dataset, kind: TaskKind, tokenizer: Any,
                     max_seq_length: int = 128) -> datasets.Dataset:
    """Tokenise one normalised split with truncation and *no* padding (the collator pads).

    Returns a dataset with ``input_ids``, ``attention_mask``, ``token_type_ids`` (when the
    tokenizer produces them) and ``labels``; for multiple choice each input is a list of one
    sequence per choice.
    """
    if kind == "multiple_choice":
        function, kwargs = _tokenize_choices, {}
    else:
        function, kwargs = _tokenize_flat, {"regression": kind == "regression"}
    kwargs.update(tokenizer=tokenizer, max_seq_length=max_seq_length)
    tokenized = dataset.map(function, batched=True, fn_kwargs=kwargs,
                            remove_columns=dataset.column_names, desc="tokenise")
    label_type = "float32" if kind == "regression" else "int64"
    return tokenized.cast_column("labels", datasets.Value(label_type))


def prepare(task_data: TaskData, tokenizer: Any,
            max_seq_length: int = 128) -> datasets.DatasetDict:
    """Tokenise all splits of ``task_data`` (see :func:`tokenize_dataset`)."""
    return datasets.DatasetDict({
        name: tokenize_dataset(split, task_data.kind, tokenizer, max_seq_length)
        for name, split in task_data.dataset.items()
    })


def sequence_lengths(dataset: datasets.Dataset) -> np.ndarray:
    """Token count of each example (multiple choice: of its longest choice), read from Arrow
    without converting the column to Python lists."""
    column = dataset.with_format("arrow")["input_ids"]
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if len(column) == 0:
        return np.zeros(0, dtype=np.int64)
    if pa.types.is_list(column.type.value_type) or pa.types.is_large_list(column.type.value_type):
        inner = column.flatten()
        longest = np.zeros(len(column), dtype=np.int64)
        parents = pc.list_parent_indices(column).to_numpy()
        np.maximum.at(longest, parents, pc.list_value_length(inner).to_numpy(zero_copy_only=False))
        return longest
    return pc.list_value_length(column).to_numpy(zero_copy_only=False).astype(np.int64)
