"""Seeded, disjoint, without-replacement splitting and subsampling of any ``datasets.Dataset``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import datasets
import numpy as np

from nasprune.errors import NaspruneError


def _part_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """Sizes of the parts: every part but the first is ``round(fraction * n)``, the first gets
    the rest, so the sizes always add up to ``n``."""
    if any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ValueError(f"fractions must be non-negative and sum to 1, got {list(fractions)}")
    rest = [int(round(f * n)) for f in fractions[1:]]
    return [n - sum(rest), *rest]


def split_dataset(dataset: datasets.Dataset, fractions: Sequence[float],
                  seed: int) -> list[datasets.Dataset]:
    """Split ``dataset`` into disjoint random parts of the given fractions.

    The same seed gives the same parts. Each part keeps the original row order (its indices are
    sorted), which keeps Arrow reads local.
    """
    sizes = _part_sizes(len(dataset), fractions)
    permutation = np.random.default_rng(seed).permutation(len(dataset))
    bounds = np.cumsum([0, *sizes])
    return [dataset.select(np.sort(permutation[lo:hi]))
            for lo, hi in zip(bounds[:-1], bounds[1:])]


def split_train_validation(dataset: datasets.Dataset, seed: int,
                           validation_fraction: float = 0.3
                           ) -> tuple[datasets.Dataset, datasets.Dataset]:
    """The paper's split of an official training set: 70/30 into train and validation."""
    train, validation = split_dataset(dataset, (1 - validation_fraction, validation_fraction), seed)
    return train, validation


def subsample(dataset: datasets.Dataset, max_samples: int | None, seed: int) -> datasets.Dataset:
    """At most ``max_samples`` rows drawn without replacement (seeded; order kept).

    ``None`` or a cap at least the dataset size returns the dataset unchanged.
    """
    if max_samples is None or max_samples >= len(dataset):
        return dataset
    if max_samples <= 0:
        raise NaspruneError(f"sample caps must be positive, got {max_samples}")
    chosen = np.random.default_rng(seed).choice(len(dataset), size=max_samples, replace=False)
    return dataset.select(np.sort(chosen))


@dataclass
class SampleCaps:
    """Per-split sample caps (None: no cap), applied as seeded subsamples (:func:`subsample`)."""

    train: int | None = None
    validation: int | None = None
    test: int | None = None

    def apply(self, splits: Mapping[str, datasets.Dataset], seed: int) -> datasets.DatasetDict:
        """Each split capped with the same ``seed``; splits without a cap are returned whole."""
        return datasets.DatasetDict({
            name: subsample(split, getattr(self, name), seed) for name, split in splits.items()
        })
