"""Loading a task: the one entry point (:func:`load_task_data`) and what it returns
(:class:`TaskData`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Callable, Collection

import datasets

from nasprune.data.columns import class_names
from nasprune.data.hub import hub_splits
from nasprune.data.lm import NextTokenScore, load_text_files
from nasprune.data.metrics import compute_metric
from nasprune.data.rotten_tomatoes import rotten_tomatoes_splits
from nasprune.data.splits import SampleCaps
from nasprune.data.tasks import TaskKind, TaskSpec, get_task, list_tasks
from nasprune.data.user_files import ColumnArgs, load_files
from nasprune.errors import NaspruneError


@dataclass
class TaskData:
    """A task ready for tokenisation.

    Attributes:
        spec: the task (for user files, a spec built from the files and arguments).
        dataset: ``DatasetDict`` with ``train``, ``validation`` and ``test`` in the normalised
            columns described in :mod:`nasprune.data.columns`.
        num_labels: model outputs: classes, 1 for regression, choices for multiple choice.
        label_names: class names by id (user string labels: the sorted unique values), or None.
        block_caps: the LM task only (``dataset`` holds documents there): the sample caps, applied
            to the packed blocks by :func:`nasprune.data.prepare`, with :attr:`seed`.
        seed: the data seed of those caps.
    """

    spec: TaskSpec
    dataset: datasets.DatasetDict
    num_labels: int
    label_names: tuple[str, ...] | None = None
    block_caps: SampleCaps | None = None
    seed: int = 0

    @property
    def kind(self) -> TaskKind:
        """The task kind."""
        return self.spec.kind

    @property
    def is_regression(self) -> bool:
        """True for regression tasks."""
        return self.spec.is_regression

    @property
    def train(self) -> datasets.Dataset:
        """The training split."""
        return self.dataset["train"]

    @property
    def validation(self) -> datasets.Dataset:
        """The validation split (the one searches optimise)."""
        return self.dataset["validation"]

    @property
    def test(self) -> datasets.Dataset:
        """The held-out test split."""
        return self.dataset["test"]

    @property
    def is_language_modelling(self) -> bool:
        """True for the causal LM task (:mod:`nasprune.data.lm`)."""
        return self.spec.kind == "causal_lm"

    @property
    def metric(self) -> Callable[[Any, Any], float]:
        """``metric(predictions, labels)``, higher is better: :func:`compute_metric` for this task,
        or for the LM task a :class:`~nasprune.data.lm.NextTokenScore`, which evaluators can also
        sum batch by batch (its logits are too large to keep for a whole split)."""
        if self.is_language_modelling:
            return NextTokenScore()
        return partial(compute_metric, self.spec)

    def error(self, predictions: Any, labels: Any) -> float:
        """``1 - metric`` for this task (:func:`~nasprune.data.metrics.compute_error` for the labelled ones)."""
        return 1.0 - self.metric(predictions, labels)


def load_task_data(
    task: str | None,
    *,
    seed: int = 0,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    max_test_samples: int | None = None,
    train_file: str | os.PathLike | None = None,
    validation_file: str | os.PathLike | None = None,
    test_file: str | os.PathLike | None = None,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
    label_kind: TaskKind | None = None,
    metric: str | None = None,
    private_files: Collection[str | os.PathLike] = (),
) -> TaskData:
    """Load a task with the paper's split protocol and the sample caps.

    Three sources:

    * a hub task (``rte``, ``mrpc``, ``cola``, ``stsb``, ``sst2``, ``qnli``, ``mnli``, ``qqp``,
      ``imdb``, ``swag``) via ``datasets.load_dataset``. When the hub cannot be reached this
      raises one :class:`NaspruneError` that points to the offline alternatives;
    * ``rotten_tomatoes``, which works offline (see
      :func:`~nasprune.data.rotten_tomatoes.load_rotten_tomatoes_table`), split 70/15/15 with
      ``seed``;
    * user files (``train_file`` and optionally ``validation_file``/``test_file``; CSV, TSV, JSON or
      JSONL). ``task`` may then be None (a ``"custom"`` task) or a built-in task whose column
      names, kind and metric serve as defaults. Without a task the columns default to ``text`` and
      ``label``. Missing splits are carved out of the training file with ``seed``:

      ============================  ===================================================
      files given                   train file split into (train / validation / test)
      ============================  ===================================================
      train                         70 / 15 / 15
      train + test                  70 / 30 / --   (the paper's protocol)
      train + validation            85 / -- / 15
      train + validation + test     used as given
      ============================  ===================================================

      Labels may be strings (classes are the sorted unique values over all files, see
      ``label_names``), non-negative ints (classes ``0..max``), or floats (regression). Override
      the inferred kind with ``label_kind`` and the default metric (accuracy for classification,
      Spearman for regression) with ``metric``.

    Caps (``max_*_samples``) are applied last, as seeded subsamples without replacement.

    The ``lm`` task (causal language modelling, :mod:`nasprune.data.lm`) takes the same three files
    as plain text or JSON lines (``text_column``, default ``text``) and the same carving of missing
    splits; its splits hold documents, packed into blocks by :func:`nasprune.data.prepare`, and its
    caps count those blocks.

    Files that cannot be trained on are refused with one message naming the file and column:
    a text column empty in every row, a training split with a single class (or a constant
    regression target), labels that mix numbers and strings, more than
    :data:`~nasprune.data.user_files.MAX_CLASSES` classes, multiple-choice labels outside the
    choices, non-finite regression targets.

    ``private_files`` are files the user did not name (a checkpoint's metadata named them):
    errors about them name the file and the problem but never quote its header, rows or
    values.

    Raises:
        NaspruneError: unknown task, hub unreachable, malformed file, bad arguments.
    """
    caps = SampleCaps(max_train_samples, max_eval_samples, max_test_samples)
    files = {"train": train_file, "validation": validation_file, "test": test_file}
    if task is not None and get_task(task).kind == "causal_lm":
        stray = {"--text-pair-column": text_pair_column, "--label-column": label_column,
                 "label_kind": label_kind, "metric": metric}
        if any(value is not None for value in stray.values()):
            raise NaspruneError(f"{', '.join(k for k, v in stray.items() if v is not None)} do not apply to the lm task")
        spec, splits = load_text_files(files, text_column, seed, private_files)
        return TaskData(spec, splits, 0, None, block_caps=caps, seed=seed)
    if any(path is not None for path in files.values()):
        base = get_task(task) if task is not None else None
        columns = ColumnArgs(text_column, text_pair_column, label_column)
        spec, splits = load_files(base, files, columns, label_kind, metric, seed, caps, private_files)
        return TaskData(spec, splits, spec.num_labels, spec.label_names)
    given = {"--text-column": text_column, "--text-pair-column": text_pair_column,
             "--label-column": label_column, "label_kind": label_kind, "metric": metric}
    stray = [name for name, value in given.items() if value is not None]
    if stray:
        raise NaspruneError(f"{', '.join(stray)} only apply to your own files (--train-file).")
    if task is None:
        raise NaspruneError("Give a task name, or your own data with --train-file. "
                            f"Known tasks: {', '.join(list_tasks())}.")
    spec = get_task(task)
    if spec.name == "rotten_tomatoes":
        splits = rotten_tomatoes_splits(seed)
    else:
        splits = hub_splits(spec, seed)
    spec = replace(spec, label_names=spec.label_names or class_names(splits["train"]))
    return TaskData(spec, caps.apply(splits, seed), spec.num_labels, spec.label_names)
