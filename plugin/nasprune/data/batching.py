"""Batching: dynamic padding (:class:`PaddingCollator`), seeded length-sorted or length-grouped
batch samplers, and :func:`make_dataloader`, which puts them together."""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from nasprune.accelerator import default_device
from nasprune.data.lm import IGNORE_INDEX
from nasprune.data.tokenization import MODEL_INPUTS, sequence_lengths
from nasprune.errors import NaspruneError


class PaddingCollator:
    """Pads a list of tokenised examples to the longest one in the batch (dynamic padding).

    Produces ``input_ids``, ``attention_mask``, ``token_type_ids`` (when present) of shape
    ``[B, T]`` -- or ``[B, C, T]`` for multiple choice -- and ``labels`` (``float32`` for
    regression, ``int64`` otherwise; per token ``[B, T]``, padded with -100, for causal LM blocks).
    Other keys are ignored.
    """

    def __init__(self, pad_token_id: int, *, regression: bool = False,
                 padding_side: str = "right", pad_to_multiple_of: int | None = None) -> None:
        self.pad_values = {"input_ids": pad_token_id, "attention_mask": 0, "token_type_ids": 0}
        self.regression = regression
        self.padding_side = padding_side
        self.pad_to_multiple_of = pad_to_multiple_of

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, *, regression: bool = False,
                       pad_to_multiple_of: int | None = None) -> "PaddingCollator":
        """A collator with the tokenizer's pad token and padding side."""
        if tokenizer.pad_token_id is None:
            raise NaspruneError("the tokenizer has no padding token")
        return cls(tokenizer.pad_token_id, regression=regression,
                   padding_side=getattr(tokenizer, "padding_side", "right"),
                   pad_to_multiple_of=pad_to_multiple_of)

    def _pad(self, sequences: list[Sequence[int]], value: int) -> torch.Tensor:
        length = max(len(s) for s in sequences)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        out = torch.full((len(sequences), length), value, dtype=torch.long)
        for row, sequence in enumerate(sequences):
            values = torch.as_tensor(sequence, dtype=torch.long)
            if self.padding_side == "left":
                out[row, length - len(values):] = values
            else:
                out[row, : len(values)] = values
        return out

    def __call__(self, features: list[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        first = features[0]["input_ids"]
        choices = len(first) if len(first) and isinstance(first[0], (list, tuple, torch.Tensor)) \
            else None
        batch: dict[str, torch.Tensor] = {}
        for key, value in self.pad_values.items():
            if key not in features[0]:
                continue
            if choices is None:
                batch[key] = self._pad([f[key] for f in features], value)
            else:
                # Flatten [B][C] sequences, pad them jointly, then restore [B, C, T].
                flat = self._pad([seq for f in features for seq in f[key]], value)
                batch[key] = flat.view(len(features), choices, -1)
        if "labels" in features[0] and isinstance(features[0]["labels"], (list, tuple)):
            # Causal LM: one label per token, padded where no loss reads (-100).
            batch["labels"] = self._pad([f["labels"] for f in features], IGNORE_INDEX)
        elif "labels" in features[0]:
            dtype = torch.float32 if self.regression else torch.long
            batch["labels"] = torch.tensor([float(f["labels"]) if self.regression
                                            else int(f["labels"]) for f in features], dtype=dtype)
        return batch


# --------------------------------------------------------------------------------------------
# Batch samplers and the dataloader
# --------------------------------------------------------------------------------------------


def _chunks(indices: np.ndarray, size: int) -> list[list[int]]:
    return [indices[i: i + size].tolist() for i in range(0, len(indices), size)]


class _EpochSampler(Sampler[list[int]]):
    """Base for seeded batch samplers whose order changes every epoch.

    Each ``iter()`` uses the generator for ``(seed, epoch)`` and then advances the epoch, so a
    fixed seed gives the same sequence of epochs; :meth:`set_epoch` sets it explicitly.
    """

    def __init__(self, num_examples: int, batch_size: int, seed: int, drop_last: bool) -> None:
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        self.num_examples, self.batch_size = num_examples, batch_size
        self.seed, self.drop_last, self.epoch = seed, drop_last, 0

    def set_epoch(self, epoch: int) -> None:
        """Use the order of this epoch on the next iteration."""
        self.epoch = epoch

    def _batches(self, rng: np.random.Generator) -> list[list[int]]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches(np.random.default_rng([self.seed, self.epoch]))
        self.epoch += 1
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        return iter(batches)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_examples // self.batch_size
        return -(-self.num_examples // self.batch_size)


class ShuffledBatchSampler(_EpochSampler):
    """Plain random batches (seeded, different each epoch)."""

    def _batches(self, rng: np.random.Generator) -> list[list[int]]:
        return _chunks(rng.permutation(self.num_examples), self.batch_size)


class LengthGroupedBatchSampler(_EpochSampler):
    """Training batches of similar length, still random.

    Shuffle, cut into mega-batches of ``mega_batch_factor`` batches, sort each mega-batch by
    length (longest first) and cut it into batches, then shuffle the batch order. The longest
    batch is moved to the front so that running out of memory happens at the first step.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0,
                 mega_batch_factor: int = 50, drop_last: bool = False) -> None:
        super().__init__(len(lengths), batch_size, seed, drop_last)
        self.lengths = np.asarray(lengths)
        self.mega_batch_factor = mega_batch_factor

    def _batches(self, rng: np.random.Generator) -> list[list[int]]:
        permutation = rng.permutation(self.num_examples)
        batches: list[list[int]] = []
        for mega in _chunks(permutation, self.batch_size * self.mega_batch_factor):
            mega = np.asarray(mega)
            ordered = mega[np.argsort(-self.lengths[mega], kind="stable")]
            batches += _chunks(ordered, self.batch_size)
        order = rng.permutation(len(batches))
        batches = [batches[i] for i in order]
        longest = int(np.argmax([self.lengths[b].max() for b in batches])) if batches else 0
        batches[0], batches[longest] = batches[longest], batches[0]
        return batches


class FixedOrderBatchSampler(Sampler[list[int]]):
    """Deterministic batches over ``order`` (evaluation).

    ``order[k]`` is the dataset index of the k-th example served, so callers can map outputs
    back to rows when they need to; labels travel with each batch anyway.
    """

    def __init__(self, order: Sequence[int], batch_size: int) -> None:
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        self.order = np.asarray(order, dtype=np.int64)
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[list[int]]:
        return iter(_chunks(self.order, self.batch_size))

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)


def _is_regression_dataset(dataset: datasets.Dataset) -> bool:
    feature = dataset.features.get("labels")
    return isinstance(feature, datasets.Value) and feature.dtype.startswith("float")


def make_dataloader(dataset: datasets.Dataset, tokenizer: Any, batch_size: int,
                    shuffle: bool = False, seed: int = 0, sort_by_length: bool = False,
                    drop_last: bool = False, pin_memory: bool | None = None) -> DataLoader:
    """A DataLoader over a tokenised split with dynamic padding.

    * ``shuffle=False, sort_by_length=False``: dataset order.
    * ``shuffle=False, sort_by_length=True``: sorted by length, longest first (evaluation: least
      padding). The sampler's ``order`` attribute gives the dataset index of each served row.
    * ``shuffle=True, sort_by_length=False``: random batches.
    * ``shuffle=True, sort_by_length=True``: length-grouped random batches
      (:class:`LengthGroupedBatchSampler`, for training).

    Shuffled orders are seeded and change every epoch (each pass over the loader). Batches are
    dicts of tensors as produced by :class:`PaddingCollator`. ``pin_memory`` (default: when the
    models run on a GPU, :func:`nasprune.accelerator.default_device`) puts them in page-locked
    memory, from which ``.to(device, non_blocking=True)`` copies overlap with the GPU's work.
    """
    collator = PaddingCollator.from_tokenizer(tokenizer,
                                              regression=_is_regression_dataset(dataset))
    sampler: Sampler[list[int]]
    if shuffle and sort_by_length:
        sampler = LengthGroupedBatchSampler(sequence_lengths(dataset), batch_size, seed,
                                            drop_last=drop_last)
    elif shuffle:
        sampler = ShuffledBatchSampler(len(dataset), batch_size, seed, drop_last)
    else:
        order = np.arange(len(dataset))
        if sort_by_length:
            order = np.argsort(-sequence_lengths(dataset), kind="stable")
        sampler = FixedOrderBatchSampler(order, batch_size)
    columns = [c for c in (*MODEL_INPUTS, "labels") if c in dataset.column_names]
    if pin_memory is None:
        pin_memory = default_device().type == "cuda"
    return DataLoader(dataset.with_format(None, columns=columns), batch_sampler=sampler,
                      collate_fn=collator, pin_memory=pin_memory)
