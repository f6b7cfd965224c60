"""The task registry: what each built-in task is and where it comes from.

:class:`TaskSpec` describes a task (its source columns, label kind, metric and hub location);
:data:`TASKS` holds the built-in ones, looked up with :func:`get_task`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from nasprune.errors import NaspruneError

TaskKind = Literal["classification", "regression", "multiple_choice", "causal_lm"]

#: Size of the subsampled validation split for large tasks (paper protocol).
VALIDATION_CAP = 2048


@dataclass(frozen=True)
class TaskSpec:
    """Static description of a task.

    Attributes:
        name: registry name (``"rte"``, ``"rotten_tomatoes"``, ``"custom"`` for user files...).
        text_columns: source column(s) holding the text: one, or two for sentence pairs. For
            multiple choice: the context column and, optionally, a column prefixed to every choice.
        label_column: source column holding the label.
        num_labels: classes for classification, 1 for regression, choices for multiple choice.
        kind: ``"classification"``, ``"regression"``, ``"multiple_choice"`` or ``"causal_lm"``
            (language modelling on the user's text files, :mod:`nasprune.data.lm`).
        metric: ``"accuracy"``, ``"f1"``, ``"matthews_correlation"``, ``"spearman"`` or, for
            ``causal_lm``, ``"lm_score"`` (1 - next-token cross-entropy / ln V).
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
        # Language modelling on the user's own text (--train-file ...): see nasprune.data.lm.
        TaskSpec("lm", ("text",), "", 0, "causal_lm", "lm_score"),
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
