"""The causal language-modelling task: text files, packed blocks and the next-token score.

``--task lm --train-file F --validation-file F [--test-file F]`` reads plain text (``.txt``: each
non-blank line is a document) or JSON / JSON lines (each record's ``text`` field, or
``--text-column``, is a document). :func:`load_text_files` returns the documents of the three
splits (a missing one is carved out of the training file, as for classification files);
:func:`pack_blocks` tokenises them, joins the documents with the end-of-sequence token and cuts
the stream into blocks of ``block_size`` tokens (``--block-size``, the same setting as
``--max-seq-length``). The last, partial block of each split is dropped, as HF's ``run_clm``
does. The sample caps (``--max-train-samples`` ...) count blocks.

The error of a model on a split is :class:`NextTokenScore`'s: the mean next-token cross-entropy
divided by ``ln V`` (``V`` the vocabulary size, the width of the logits), that is, the loss relative
to a model that guesses uniformly. It is 0 for a perfect model and 1 for the uniform guess, so it
lies in [0, 1] like every other nasprune error and the hypervolume's reference point of 1.1 holds
(a model worse than uniform scores above 1 and adds no volume). The loss itself is ``error · ln V``
and the perplexity ``V ** error``; result tables show both
(:func:`nasprune.results.lm_loss_and_perplexity`).
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Collection, Mapping

import datasets
import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from datasets.table import InMemoryTable

from nasprune.data.columns import TEXT
from nasprune.data.splits import split_dataset
from nasprune.data.tasks import TASKS, TaskSpec
from nasprune.data.user_files import read_table
from nasprune.errors import NaspruneError

#: The metric name of the LM task: ``1 - error``, the share of the uniform guess's cross-entropy removed.
LM_METRIC = "lm_score"
#: Label value of positions that no loss reads (PyTorch's ``ignore_index``).
IGNORE_INDEX = -100
#: File types of the LM task.
TEXT_SUFFIXES = (".txt", ".text")
JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")


def _read_documents(path: Path, text_column: str, quote_contents: bool) -> list[str]:
    """The non-blank documents of one file: lines of a text file, or the ``text_column`` of JSON(L) records."""
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        if path.is_dir():
            raise NaspruneError(f"{path}: is a folder, not a data file")
        if not path.is_file():
            raise NaspruneError(f"{path}: no such file")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as error:
            raise NaspruneError(f"{path}: not UTF-8 text") from error
        except PermissionError as error:
            raise NaspruneError(f"{path}: cannot read the file (permission denied)") from error
        documents = [line for line in lines if line.strip()]
    elif suffix in JSON_SUFFIXES:
        frame = read_table(path, quote_contents=quote_contents)
        if text_column not in frame.columns:
            header = f"; the file has {list(frame.columns)}" if quote_contents else ""
            raise NaspruneError(f"{path}: no {text_column!r} field{header}; name the text field with --text-column")
        values = frame[text_column]
        if not all(isinstance(value, str) or value is None or (isinstance(value, float) and math.isnan(value))
                   for value in values):
            raise NaspruneError(f"{path}: field {text_column!r} holds values that are not text")
        documents = [value for value in values if isinstance(value, str) and value.strip()]
    else:
        raise NaspruneError(
            f"{path}: unsupported file type {path.suffix!r} for the lm task; use plain text "
            f"({', '.join(TEXT_SUFFIXES)}) or JSON lines with a text field ({', '.join(JSON_SUFFIXES)})"
        )
    if not documents:
        raise NaspruneError(f"{path}: holds no text (every line or record is blank)")
    return documents


def lm_spec(text_column: str | None = None) -> TaskSpec:
    """The spec of the LM task (``text_column``: the JSON field holding the text)."""
    return replace(TASKS["lm"], text_columns=(text_column or TEXT,))


def load_text_files(
    files: Mapping[str, str | os.PathLike | None],
    text_column: str | None,
    seed: int,
    private_files: Collection[str | os.PathLike] = (),
) -> tuple[TaskSpec, datasets.DatasetDict]:
    """The documents of the train / validation / test files as splits with one ``text`` column.

    A missing split is carved out of the training file's documents with ``seed``, as for
    classification files: train only 70/15/15, train + validation 85/--/15, train + test 70/30/--.
    ``private_files`` (named by a checkpoint, not the user) are never quoted in errors.
    """
    if files.get("train") is None:
        raise NaspruneError("the lm task needs --train-file (and --validation-file): plain text or JSON lines")
    private = {Path(path).resolve() for path in private_files}
    column = text_column or TEXT
    splits: dict[str, datasets.Dataset] = {}
    for name, path in files.items():
        if path is None:
            continue
        path = Path(path)
        documents = _read_documents(path, column, quote_contents=path.resolve() not in private)
        splits[name] = datasets.Dataset.from_dict({TEXT: documents})
    has_validation, has_test = "validation" in splits, "test" in splits
    if not has_validation and not has_test:
        splits["train"], splits["validation"], splits["test"] = split_dataset(splits["train"], (0.70, 0.15, 0.15), seed)
    elif not has_validation:
        splits["train"], splits["validation"] = split_dataset(splits["train"], (0.70, 0.30), seed)
    elif not has_test:
        splits["train"], splits["test"] = split_dataset(splits["train"], (0.85, 0.15), seed)
    for name, split in splits.items():
        if len(split) == 0:
            raise NaspruneError(
                f"the {name} split of the lm task is empty: the training file has too few documents to carve "
                "it out; give more text or a separate file"
            )
    return lm_spec(text_column), datasets.DatasetDict({name: splits[name] for name in ("train", "validation", "test")})


def _tokenize_documents(batch: dict[str, list], tokenizer: Any) -> dict[str, list]:
    """Each document's tokens, followed by the end-of-sequence token (when the tokenizer has one
    and did not add it itself)."""
    encoded = tokenizer(batch[TEXT], add_special_tokens=True)["input_ids"]
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is not None:
        encoded = [ids if ids and ids[-1] == eos else [*ids, eos] for ids in encoded]
    return {"input_ids": encoded}


def pack_blocks(
    split: datasets.Dataset, tokenizer: Any, block_size: int, max_blocks: int | None = None, seed: int = 0,
    name: str = "",
) -> datasets.Dataset:
    """Tokenise a split's documents into one stream and cut it into ``block_size``-token blocks.

    Returns a dataset with ``input_ids`` and ``labels`` (the same ids: the loss shifts them, as HF
    causal-LM models do), one row per block, in the stream's order; the partial block at the end is
    dropped. ``max_blocks`` keeps a seeded subsample of that many blocks. The stream stays in Arrow
    and numpy arrays (8 bytes a token), never in Python lists, so large corpora fit.
    """
    if block_size < 2:
        raise NaspruneError(f"--block-size must be at least 2 tokens, got {block_size}")
    tokenized = split.map(_tokenize_documents, batched=True, fn_kwargs={"tokenizer": tokenizer},
                          remove_columns=split.column_names, desc="tokenise")
    column = tokenized.with_format("arrow")["input_ids"]
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    stream = column.flatten().to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    count = len(stream) // block_size
    if count == 0:
        where = f"the {name} split" if name else "the split"
        raise NaspruneError(
            f"{where} holds {len(stream)} tokens, fewer than one block of --block-size {block_size}; give "
            "more text or a smaller --block-size"
        )
    blocks = stream[: count * block_size].reshape(count, block_size)
    if max_blocks is not None and max_blocks < count:
        blocks = blocks[np.sort(np.random.default_rng(seed).choice(count, size=max_blocks, replace=False))]
    offsets = pa.array(np.arange(0, blocks.size + 1, block_size, dtype=np.int32))
    rows = pa.ListArray.from_arrays(offsets, pa.array(blocks.reshape(-1)))
    return datasets.Dataset(InMemoryTable(pa.table({"input_ids": rows, "labels": rows})))


# --- the score -----------------------------------------------------------------------------------
def next_token_sums(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[summed next-token cross-entropy, scored tokens]`` of ``[B, T, V]`` logits against ``[B, T]``
    labels: position ``t`` predicts label ``t + 1``; labels of :data:`IGNORE_INDEX` are not scored."""
    predicted = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    targets = labels[:, 1:].reshape(-1).to(predicted.device)
    summed = F.cross_entropy(predicted, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    return torch.stack([summed, (targets != IGNORE_INDEX).sum().to(summed.dtype)])


class NextTokenScore:
    """The LM task's metric, ``1 - mean next-token cross-entropy / ln V`` (higher is better).

    Called on the logits ``[N, T, V]`` and labels ``[N, T]`` of a whole split it returns the score;
    evaluators that cannot hold a split's logits sum :meth:`batch_statistics` over the batches and
    read the score with :meth:`from_statistics`.
    """

    name = LM_METRIC

    def batch_statistics(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``[cross-entropy / ln V summed over the batch's scored tokens, their count]``, on the logits' device."""
        sums = next_token_sums(logits, labels)
        return torch.stack([sums[0] / math.log(logits.shape[-1]), sums[1]])

    def from_statistics(self, statistics: torch.Tensor | np.ndarray) -> float:
        """The score from the summed :meth:`batch_statistics` of a split."""
        normalised_loss, tokens = (float(value) for value in statistics)
        if tokens == 0:
            raise ValueError("cannot score zero tokens")
        return 1.0 - normalised_loss / tokens

    def __call__(self, logits: Any, labels: Any) -> float:
        logits, labels = torch.as_tensor(np.asarray(logits)), torch.as_tensor(np.asarray(labels))
        return self.from_statistics(self.batch_statistics(logits, labels))

