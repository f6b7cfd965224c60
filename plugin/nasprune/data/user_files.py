"""The user's own data files (CSV, TSV, JSON or JSONL): reading, checking and label encoding.

Missing splits are carved out of the training file (see :func:`nasprune.data.load_task_data`);
files that cannot be trained on are refused with one message naming the file and column.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Collection, Mapping, Sequence

import datasets
import numpy as np
import pandas as pd

from nasprune.data.columns import LABEL, TEXT, normalise
from nasprune.data.metrics import METRICS
from nasprune.data.splits import SampleCaps, split_dataset, split_train_validation
from nasprune.data.tasks import TaskKind, TaskSpec
from nasprune.errors import NaspruneError


@dataclass
class ColumnArgs:
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


def _file_spec(base: TaskSpec | None, columns: ColumnArgs, kind: TaskKind | None,
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


def load_files(base: TaskSpec | None, files: Mapping[str, str | os.PathLike | None],
               columns: ColumnArgs, kind: TaskKind | None, metric: str | None,
               seed: int, caps: SampleCaps, private_files: Collection[str | os.PathLike] = ()
               ) -> tuple[TaskSpec, datasets.DatasetDict]:
    """User files -> the task spec built from them and its capped splits (see
    :func:`nasprune.data.load_task_data`, which makes them a ``TaskData``)."""
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
    if spec.metric not in METRICS:
        raise NaspruneError(f"unknown metric {spec.metric!r}; known: {', '.join(METRICS)}")
    splits = {name: normalise(split, spec)
              for name, split in _frames_to_splits(frames, seed).items()}
    capped = caps.apply(splits, seed)
    _check_training_labels(capped["train"], spec, paths["train"],
                           capped=len(capped["train"]) < len(splits["train"]),
                           quote_contents=quote["train"])
    return spec, capped
