"""Which data a run uses (:class:`DataOptions`), and reading them back from a checkpoint without
letting its metadata point nasprune at an arbitrary file (:func:`checkpoint_data_options`)."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Collection

from nasprune.checkpoint import META_FILE, epoch_checkpoints
from nasprune.data.loading import TaskData, load_task_data
from nasprune.errors import NaspruneError

logger = logging.getLogger("nasprune")

#: The DataOptions fields that name data files, and their command-line flags.
DATA_FILE_FLAGS = {"train_file": "--train-file", "validation_file": "--validation-file", "test_file": "--test-file"}
#: The flags to name when a checkpoint's data file cannot be used.
_PASS_FILES = "pass --train-file/--validation-file/--test-file explicitly"


@dataclass
class DataOptions:
    """Which data to use and how much of it: the HF example scripts' data flags.

    ``seed`` is the *data* seed (``--data-seed``): it draws the train/validation/test split and the
    sample caps. The training and search seed (``--seed``) never changes it, so runs with different
    seeds are measured on the same split and ``nasprune compare`` ranks them on one instance.
    """

    task: str | None = None
    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    max_seq_length: int = 128
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    max_test_samples: int | None = None
    seed: int = 0
    #: Filled in by :meth:`record` only: each data file relative to the checkpoint folder that
    #: records it, so a folder moved together with its data still finds it. Not a user setting.
    files_relative_to_checkpoint: dict[str, str] | None = None

    @classmethod
    def from_args(cls, args: Any, **overrides: Any) -> "DataOptions":
        """The options of parsed command-line flags; data files become absolute paths.

        ``--data-seed`` (``args.data_seed``) fills :attr:`seed`; ``--seed`` is never read here.
        """
        values = {f.name: getattr(args, f.name) for f in fields(cls) if f.name != "seed" and hasattr(args, f.name)}
        values["seed"] = getattr(args, "data_seed", None)
        values.update(overrides)
        return cls(**{k: v for k, v in values.items() if v is not None}).with_absolute_files()

    def with_absolute_files(self) -> "DataOptions":
        """These options with every data file as an absolute path (relative ones: to the working directory)."""
        return replace(self, **{name: os.path.abspath(path) for name in DATA_FILE_FLAGS if (path := getattr(self, name))})

    def record(self, checkpoint_dir: str | os.PathLike) -> dict[str, Any]:
        """What a checkpoint's ``nasprune.json`` stores: every option, the data files as absolute paths
        and, in ``files_relative_to_checkpoint``, relative to ``checkpoint_dir``."""
        options = self.with_absolute_files()
        folder = os.path.abspath(checkpoint_dir)
        relative = {name: os.path.relpath(path, folder) for name in DATA_FILE_FLAGS if (path := getattr(options, name))}
        return asdict(replace(options, files_relative_to_checkpoint=relative or None))

    def validate(self) -> None:
        """Raise :class:`NaspruneError` for a setting of the wrong type or out of range."""
        # The types too: these options may come from a checkpoint's nasprune.json.
        for name in ("task", *DATA_FILE_FLAGS, "text_column", "text_pair_column", "label_column"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise NaspruneError(f"--{name.replace('_', '-')} must be a name or path, got {getattr(self, name)!r}")
        for name in ("max_seq_length", "max_train_samples", "max_eval_samples", "max_test_samples", "seed"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                flag = "--data-seed" if name == "seed" else f"--{name.replace('_', '-')}"
                raise NaspruneError(f"{flag} must be an integer, got {value!r}")
        if self.max_seq_length < 8:
            raise NaspruneError(f"--max-seq-length must be at least 8, got {self.max_seq_length}")
        for name in ("max_train_samples", "max_eval_samples", "max_test_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise NaspruneError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if self.seed < 0:
            raise NaspruneError(f"--data-seed must be a non-negative integer, got {self.seed}")

    def load(self, private_files: Collection[str | os.PathLike] = ()) -> TaskData:
        """Load the task; ``private_files`` (named by a checkpoint, not by the user) are never
        quoted in errors (see :func:`load_checkpoint_data`)."""
        self.validate()
        return load_task_data(
            self.task,
            seed=self.seed,
            max_train_samples=self.max_train_samples,
            max_eval_samples=self.max_eval_samples,
            max_test_samples=self.max_test_samples,
            train_file=self.train_file,
            validation_file=self.validation_file,
            test_file=self.test_file,
            text_column=self.text_column,
            text_pair_column=self.text_pair_column,
            label_column=self.label_column,
            private_files=private_files,
        )


def checkpoint_data_options(
    checkpoint_dir: str | os.PathLike, recorded: dict[str, Any], overrides: dict[str, Any] | None = None
) -> tuple[DataOptions, tuple[Path, ...]]:
    """A checkpoint's data options, with the data files it names checked before anything reads them.

    ``recorded`` is ``nasprune.json``'s ``data_options``; ``overrides`` are the caller's own settings
    (command-line flags, API arguments) and win. A data file that comes from ``recorded`` (not from
    ``overrides``) is looked up relative to the checkpoint folder (``files_relative_to_checkpoint``
    first, then the recorded path: absolute, or relative to the checkpoint, then to the working
    directory) and is only used when it lies, symbolic links resolved, in

    * the checkpoint's tree: its folder, or the training output folder that holds its ``epoch-<n>``;
    * the current working directory;
    * the folder of a data file given in ``overrides``.

    Anything else is refused with one message saying to pass the files explicitly, so a checkpoint
    from elsewhere cannot make nasprune read an arbitrary file.

    Returns:
        The options, and the files that came from the metadata: load with
        ``options.load(private_files=...)`` so that no error quotes their contents (or call
        :func:`load_checkpoint_data`).
    """
    folder = Path(checkpoint_dir)
    relative = (recorded.get("files_relative_to_checkpoint") or {}) if isinstance(recorded, dict) else None
    if not isinstance(relative, dict):
        raise NaspruneError(f"{folder / META_FILE}: its data_options are not a mapping of settings; is it a nasprune checkpoint?")
    unknown = sorted(set(recorded) - {f.name for f in fields(DataOptions)})
    if unknown:
        raise NaspruneError(f"{folder / META_FILE}: unknown data option(s) {unknown}; is it a nasprune checkpoint?")
    overrides = dict(overrides or {})
    values = {**recorded, **overrides, "files_relative_to_checkpoint": None}
    checkpoint_seed, seed = recorded.get("seed"), overrides.get("seed")
    if seed is not None and checkpoint_seed is not None and seed != checkpoint_seed:
        logger.warning(
            "--data-seed %s differs from the data seed %s that %s was trained with: its validation and test "
            "splits may hold examples it was trained on", seed, checkpoint_seed, folder,
        )
    given = [Path(overrides[name]).absolute() for name in DATA_FILE_FLAGS if overrides.get(name)]
    tree = folder.resolve()
    if tree in epoch_checkpoints(tree.parent):
        tree = tree.parent  # an epoch-<n> folder: its siblings belong to the same run
    allowed = [tree, Path.cwd().resolve(), *(path.parent.resolve() for path in given)]
    private: list[Path] = []
    for name, flag in DATA_FILE_FLAGS.items():
        if overrides.get(name) or not recorded.get(name):
            continue
        path = _checkpoint_data_file(folder, recorded[name], relative.get(name), flag, allowed)
        values[name] = str(path)
        private.append(path)
    return DataOptions(**{k: v for k, v in values.items() if v is not None}), tuple(private)


def _checkpoint_data_file(folder: Path, recorded: Any, relative: Any, flag: str, allowed: list[Path]) -> Path:
    """Where a data file named by a checkpoint's metadata lies, once it is known to be allowed."""
    source = f"{folder / META_FILE} names the {flag.lstrip('-').replace('-', ' ')}"
    if not isinstance(recorded, str) or (relative is not None and not isinstance(relative, str)):
        raise NaspruneError(f"{source} as {recorded!r}, which is not a path; {_PASS_FILES}")
    candidates = [folder / relative] if relative else []
    path = Path(recorded)
    candidates += [path] if path.is_absolute() else [folder / path, Path.cwd() / path]
    found = [candidate.resolve() for candidate in candidates if candidate.is_file()]
    for real in found:
        if any(real.is_relative_to(root) for root in allowed):
            return real
    if found:
        raise NaspruneError(
            f"{source} {recorded}, which lies outside the checkpoint's folder, the working directory and the "
            f"folders of the data files given; nasprune does not follow a checkpoint there: {_PASS_FILES}"
        )
    raise NaspruneError(
        f"{source} {recorded}, which was not found (looked relative to the checkpoint and to the working "
        f"directory); {_PASS_FILES}"
    )


def load_checkpoint_data(
    checkpoint_dir: str | os.PathLike, recorded: dict[str, Any], overrides: dict[str, Any] | None = None
) -> tuple[DataOptions, TaskData]:
    """:func:`checkpoint_data_options`, then load the data without quoting the metadata's files in errors."""
    options, private = checkpoint_data_options(checkpoint_dir, recorded, overrides)
    return options, options.load(private_files=private)
