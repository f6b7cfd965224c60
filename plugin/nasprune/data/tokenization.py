"""Tokenisation with truncation and no padding (the collator pads), token counts, and the padding
token of decoder tokenizers (:func:`ensure_padding`)."""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nasprune.data.columns import CHOICES, LABEL, TEXT, TEXT_PAIR
from nasprune.data.lm import pack_blocks
from nasprune.data.loading import TaskData
from nasprune.data.tasks import TaskKind
from nasprune.errors import NaspruneError
from nasprune.subnet import DECODER_MODEL_TYPES

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
    """Tokenise all splits of ``task_data`` (see :func:`prepare_split`)."""
    return datasets.DatasetDict({
        name: prepare_split(task_data, name, tokenizer, max_seq_length) for name in task_data.dataset
    })


def prepare_split(task_data: TaskData, split: str, tokenizer: Any, max_seq_length: int = 128) -> datasets.Dataset:
    """Tokenise one split of ``task_data`` (:func:`tokenize_dataset`); for the LM task, pack it into
    blocks of ``max_seq_length`` tokens, capped at the split's sample cap (:func:`nasprune.data.lm.pack_blocks`)."""
    if task_data.is_language_modelling:
        cap = getattr(task_data.block_caps, split, None) if task_data.block_caps is not None else None
        return pack_blocks(task_data.dataset[split], tokenizer, max_seq_length, cap, task_data.seed, split)
    return tokenize_dataset(task_data.dataset[split], task_data.kind, tokenizer, max_seq_length)


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


def ensure_padding(tokenizer: Any, config: Any) -> None:
    """Make a decoder's tokenizer and config pad alike: a tokenizer without a padding token (GPT-2,
    Llama ...) pads with the id ``config.pad_token_id`` names, else with its end-of-sequence token;
    decoders pad on the right; ``config.pad_token_id`` is set to that id. Encoders whose tokenizer
    has a padding token are left as they are.

    Decoder sequence-classification heads read the last token that is not padding; HF finds it
    from ``config.pad_token_id``, which these families leave unset. The attention mask keeps the
    padding out of every real token's attention, so which id pads does not change a logit.
    """
    if tokenizer.pad_token_id is not None and getattr(config, "model_type", "") not in DECODER_MODEL_TYPES:
        return
    if tokenizer.pad_token_id is None:
        configured = getattr(config, "pad_token_id", None)
        if isinstance(configured, int) and 0 <= configured < len(tokenizer):
            tokenizer.pad_token = tokenizer.convert_ids_to_tokens(configured)  # the model's own choice
        elif tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        else:
            raise NaspruneError(
                f"the tokenizer of this {getattr(config, 'model_type', 'model')} has neither a padding nor an "
                "end-of-sequence token, so batches cannot be padded; add a pad token to the tokenizer"
            )
    tokenizer.padding_side = "right"
    config.pad_token_id = tokenizer.pad_token_id
