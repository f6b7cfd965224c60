"""The normalised columns every split has, and turning a source's own columns into them.

Every split of :attr:`~nasprune.data.TaskData.dataset` has the columns

* classification / regression: ``text``, ``text_pair`` (only for sentence-pair tasks), ``label``
  (``int64`` class id, or ``float32`` for regression);
* multiple choice: ``text`` (the shared context), ``choices`` (a list of one string per choice,
  the second segment of each pair) and ``label`` (index of the right choice).
"""

from __future__ import annotations

from typing import Mapping

import datasets

from nasprune.data.tasks import TaskSpec

#: Normalised column names shared by all tasks.
TEXT, TEXT_PAIR, CHOICES, LABEL = "text", "text_pair", "choices", "label"


def class_names(dataset: datasets.Dataset) -> tuple[str, ...] | None:
    """Class names from a ``ClassLabel`` label feature, if the data set has one."""
    feature = dataset.features.get(LABEL)
    return tuple(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def _rename_safely(dataset: datasets.Dataset, mapping: Mapping[str, str]) -> datasets.Dataset:
    """Rename columns through temporary names, so swaps such as text<->label cannot collide."""
    mapping = {old: new for old, new in mapping.items() if old != new}
    if not mapping:
        return dataset
    temporary = {old: f"__nasprune_{i}" for i, old in enumerate(mapping)}
    dataset = dataset.rename_columns(temporary)
    return dataset.rename_columns({temporary[old]: new for old, new in mapping.items()})


def _build_choices(batch: dict[str, list], spec: TaskSpec) -> dict[str, list]:
    """Multiple choice: context, and one second segment per choice (prefix + ending)."""
    contexts = batch[spec.text_columns[0]]
    prefixes = batch[spec.text_columns[1]] if len(spec.text_columns) > 1 else [""] * len(contexts)
    choices = [
        [f"{prefix} {batch[column][row]}".strip() for column in spec.choice_columns]
        for row, prefix in enumerate(prefixes)
    ]
    return {TEXT: contexts, CHOICES: choices, LABEL: batch[spec.label_column]}


def normalise(dataset: datasets.Dataset, spec: TaskSpec) -> datasets.Dataset:
    """Source columns -> ``text``/``text_pair``/``label`` (or ``text``/``choices``/``label``).

    Drops rows with negative labels (unlabelled hub rows use -1).
    """
    if spec.kind == "multiple_choice":
        dataset = dataset.map(_build_choices, batched=True, fn_kwargs={"spec": spec},
                              remove_columns=dataset.column_names, desc="choices")
        dataset = dataset.select_columns([TEXT, CHOICES, LABEL])  # a fixed column order
    else:
        sources = [*spec.text_columns, spec.label_column]
        targets = [TEXT, TEXT_PAIR][: len(spec.text_columns)] + [LABEL]
        dataset = _rename_safely(dataset.select_columns(sources), dict(zip(sources, targets)))
    if spec.is_regression:
        return dataset.cast_column(LABEL, datasets.Value("float32"))
    dataset = dataset.filter(lambda labels: [label >= 0 for label in labels],
                             batched=True, input_columns=LABEL)
    if not isinstance(dataset.features[LABEL], datasets.ClassLabel):
        dataset = dataset.cast_column(LABEL, datasets.Value("int64"))
    return dataset
