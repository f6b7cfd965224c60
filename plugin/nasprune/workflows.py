"""The jobs behind the CLI, as Python functions: train a super-network, search it, do both.

>>> from nasprune.data import DataOptions
>>> from nasprune.workflows import train_supernet, search, SearchOptions
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
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from nasprune import analysis, data
from nasprune.accelerator import default_precision, describe_device
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
from nasprune.data import DataOptions
from nasprune.errors import NaspruneError
from nasprune.evaluation import SubnetEvaluator
from nasprune.choosing import metric_name
from nasprune.export import (
    SearchResults,
    check_repo_id,
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
from nasprune.export import push_to_hub as upload_to_hub
from nasprune.objectives import EVAL_BATCH_SIZE, LatencyObjective, check_latency_settings, metric_columns
from nasprune.output_dir import lock_output_dir
from nasprune.parallel_evaluation import ParallelSearchEvaluation, RayWorkers, WorkerSettings, import_ray
from nasprune.recovery import Recovery, RecoveryOptions, refuse_recovered_results, split_settings
from nasprune.results import (
    JOURNAL_FILE,
    SearchResult,
    begin_search_outputs,
    build_summary,
    check_search_output_dir,
    result_row,
    write_results,
)
from nasprune.rewiring import RewiringOptions, rewire_by_importance
from nasprune.scales import apply_scales
from nasprune.search.loop import run_ask_tell
from nasprune.search.parallel import run_ask_tell_parallel
from nasprune.search.multifidelity import (
    MIN_FIDELITY,
    REDUCTION_FACTOR,
    fidelity_levels,
    nested_subsets,
    run_multi_fidelity,
)
from nasprune.search.registry import SEARCH_METHODS, make_scheduler
from nasprune.session import CheckpointSession, default_device, default_model, load_tokenizer
from nasprune.spaces import SEARCH_SPACES, get_search_space
from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork, check_max_seq_length, has_task_head, load_hf_model
from nasprune.training import Trainer, TrainingConfig, get_strategy

logger = logging.getLogger("nasprune")

#: The hypervolume's reference point (kept importable here; defined in :mod:`nasprune.analysis`).
REFERENCE_POINT = analysis.REFERENCE_POINT


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
    tokenizer = load_tokenizer(str(resume_from or model))
    hf_model = load_hf_model(str(resume_from or model), task_data.spec.kind, task_data.num_labels or None)
    check_max_seq_length(hf_model, data_options.max_seq_length)
    data.ensure_padding(tokenizer, hf_model.config)  # decoders: pad = eos, on the right
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
        started_from = None
        # The start model's own weights, before any training step, are what gets reordered.
        # A causal LM's head is the pre-trained LM head the lm task trains: its importance counts as it is.
        if rewiring.source is None and supernet.task_kind != "causal_lm" and not _has_trained_task_head(hf_model):
            logger.info("rewiring: %s has no trained task head; fine-tuning a copy to measure importance", model)
            finetuned = train_supernet(
                model, _capped_train_samples(data_options, rewiring.finetune_examples),
                replace(config, strategy="standard"), search_space,
                output_dir / "rewiring-finetune", overwrite=overwrite, progress=progress, device=device,
            )
            rewiring = replace(rewiring, source=str(finetuned))
        # From here on is the rewiring's own cost (loading the source, importance, reordering): the
        # fine-tuned copy's epochs are in its own history, so compare can charge both.
        rewiring_started = time.perf_counter()
        if rewiring.start_from_source and rewiring.source is not None:
            # The fine-tuned weights (task head included) are the start: the super-network's largest
            # network then begins where plain fine-tuning ended. Its importance is its own.
            started_from = _verified_model_folder(rewiring.source)
            start = load_hf_model(started_from, task_data.spec.kind, task_data.num_labels or None)
            started = SuperNetwork(start)
            if started.shape != supernet.shape:
                raise NaspruneError(f"--rewire-from {started_from} has another shape than {model}")
            start.config.id2label, start.config.label2id = hf_model.config.id2label, hf_model.config.label2id
            data.ensure_padding(tokenizer, start.config)
            hf_model, supernet = start, started.to(device)
            rewiring = replace(rewiring, source=None)
        rewiring_record = _rewire(supernet, rewiring, encoded["train"], tokenizer, task_data, config.batch_size, config.seed)
        rewiring_record["source"] = _absolute_if_local(started_from or rewiring_record["source"] or str(model))
        rewiring_record["started_from_source"] = started_from is not None
        rewiring_record["seconds"] = time.perf_counter() - rewiring_started
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


def _capped_train_samples(data_options: DataOptions, cap: int | None) -> DataOptions:
    """``data_options`` with at most ``cap`` training examples (``None``: as they are)."""
    if cap is None or (data_options.max_train_samples is not None and data_options.max_train_samples <= cap):
        return data_options
    return replace(data_options, max_train_samples=cap)


def _has_trained_task_head(hf_model: torch.nn.Module) -> bool:
    # A checkpoint saved from a task model lists that class; a bare encoder (BertModel) does not.
    return has_task_head(hf_model.config)


def _absolute_if_local(name: str) -> str:
    """``name`` as an absolute path when it names a local file or folder (a hub model id stays as
    it is): the record is then readable from any working directory."""
    return str(Path(name).resolve()) if os.path.exists(name) else name


def _verified_model_folder(source: str) -> str:
    """``source`` as a model folder; a nasprune checkpoint or training output folder (its last
    epoch) is verified first."""
    if epoch_checkpoints(Path(source)) or (Path(source) / META_FILE).is_file():
        return str(load_checkpoint(source)[0])
    return source


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
        source = _verified_model_folder(source)
        device = next(supernet.parameters()).device
        judge = SuperNetwork(load_hf_model(source, task_data.spec.kind, task_data.num_labels or None)).to(device)
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

    #: NSGA-II had the highest mean hypervolume of the searches on the default run's super-network
    #: over 3 seeds (README, "Search methods"), and needs nothing beyond the core dependencies
    method: str = "nsga2"
    num_samples: int = 100
    max_time: float | None = None
    seed: int = 0
    #: MACs rather than parameters by default: they set what a sub-network costs to run, while the
    #: parameters of small models are dominated by the embeddings every sub-network shares
    objectives: tuple[str, ...] = ("error", "macs")
    search_space: str | None = None
    macs_seq_length: int | None = None
    eval_batch_size: int = EVAL_BATCH_SIZE
    latency_batch_size: int = 1
    latency_seq_length: int | None = None
    #: Sub-networks evaluated at once, each on its own Ray actor (above 1 needs ``nasprune[ray]``).
    workers: int = 1
    #: The Ray cluster of the workers (``auto`` or ``HOST:PORT``); None starts Ray on this machine.
    ray_address: str | None = None
    #: CPU threads per worker; None: one with GPUs, else the cores split between the workers.
    threads_per_worker: int | None = None
    #: Put MO-ASHA's rungs (growing validation subsets) in front of ``method``'s searcher.
    multi_fidelity: bool = False
    #: The smallest validation fraction of multi-fidelity search (``moasha``, ``multi_fidelity``).
    min_fidelity: float = MIN_FIDELITY
    #: The factor between the validation fractions of successive rungs.
    reduction_factor: float = REDUCTION_FACTOR

    def fidelities(self) -> list[float] | None:
        """The validation fractions of the rungs, ascending to 1; None for single-fidelity search."""
        if self.method != "moasha" and not self.multi_fidelity:
            return None
        return fidelity_levels(self.min_fidelity, self.reduction_factor)

    def method_label(self) -> str:
        """The method as results record it: ``nsga2+moasha`` for NSGA-II behind MO-ASHA's rungs."""
        return f"{self.method}+moasha" if self.multi_fidelity and self.method != "moasha" else self.method

    def metric_columns(self) -> list[str]:
        """The result columns of :attr:`objectives` (see :func:`nasprune.objectives.metric_columns`)."""
        return metric_columns(self.objectives)

    def validate(self) -> None:
        self.metric_columns()
        if self.method not in SEARCH_METHODS:
            raise NaspruneError(
                f"unknown search method '{self.method}'; choose one of: {', '.join(SEARCH_METHODS)}"
            )
        if self.fidelities() is not None and self.workers > 1:
            raise NaspruneError(
                "multi-fidelity search (--method moasha, --multi-fidelity) runs in one process; "
                "it does not take --workers yet"
            )
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
        if self.workers < 1:
            raise NaspruneError(f"--workers must be at least 1, got {self.workers}")
        if self.threads_per_worker is not None and self.threads_per_worker < 1:
            raise NaspruneError(f"--threads-per-worker must be at least 1, got {self.threads_per_worker}")
        if self.workers > 1:
            import_ray()  # fail now, not after the data is loaded


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

    With ``options.workers`` above 1, that many Ray actors (:mod:`nasprune.parallel_evaluation`)
    measure the sub-networks, each with its own copy of the super-network, and ``device`` is not
    used; the journal, the results and the files are the same as with one process.
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
    # With workers the super-network here only counts parameters and MACs: it stays on the CPU.
    session = CheckpointSession(checkpoint, data_overrides, torch.device("cpu") if options.workers > 1 else device)
    path, info = session.path, session.info
    space_name = options.search_space or info.search_space
    check_search_output_dir(
        output_dir,
        {"checkpoint": str(path), "method": options.method_label(), "search_space": space_name,
         "objectives": metrics, "seed": options.seed},
        overwrite,
    )

    data_options = session.data_options
    latency_length = options.latency_seq_length or data_options.max_seq_length
    supernet = session.load_supernet(
        data_options.max_seq_length, *([latency_length] if "relative_latency" in metrics else [])
    )
    space = get_search_space(space_name, supernet.shape)
    task_data = session.task_data
    encoded = session.encoded
    metric = task_data.metric
    loaders = session.eval_loaders(options.eval_batch_size)
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
    fidelities = options.fidelities()
    # Multi-fidelity: nested validation subsets, prefixes of one permutation seeded by the search.
    subsets = nested_subsets(len(encoded["validation"]), fidelities, options.seed) if fidelities else {}
    if subsets:
        journal_key["fidelity_subsets"] = {
            repr(f): hashlib.sha256(np.asarray(idx, dtype=np.int64).tobytes()).hexdigest() for f, idx in subsets.items()
        }
    if default_precision() != "fp32":  # bf16/fp16 errors differ slightly; fp32 journals keep their key
        journal_key["precision"] = default_precision()
    begin_search_outputs(output_dir, overwrite)
    journal = output_dir / JOURNAL_FILE
    if info.fingerprint is None and journal.exists():
        logger.warning("%s has no fingerprint to match %s against: evaluating afresh", path, journal)
        journal.unlink()
    validation = SubnetEvaluator(
        supernet, loaders["validation"], metric, macs_length, journal=journal, journal_key=journal_key,
        cache_embeddings=options.workers == 1,  # with workers, they measure the errors
        # ... in the precision they are given below; this CPU copy only counts and journals.
        precision="fp32" if options.workers > 1 else None,
    )
    # Each lower fidelity has its own evaluator (its subset's embeddings) on the same journal.
    validation_at = {1.0: validation} | {
        f: SubnetEvaluator(
            supernet, session.loader("validation", options.eval_batch_size, encoded["validation"].select(idx)),
            metric, macs_length, journal=journal, journal_key=journal_key, fidelity=f,
        )
        for f, idx in subsets.items()
    }
    num_resumed = sum(e.num_resumed for e in validation_at.values())
    if num_resumed:
        logger.info("resuming: %d evaluations already recorded in %s", num_resumed, output_dir)

    # With several workers, each Ray actor holds its own super-network and times its own latency;
    # the super-network here only counts parameters and MACs.
    parallel = options.workers > 1
    latency = (
        LatencyObjective(supernet, options.latency_batch_size, latency_length)
        if "relative_latency" in metrics and not parallel
        else None
    )

    def evaluate_at(config: dict, fidelity: float) -> dict[str, float]:
        subnet = space.to_subnet(config)
        measured = validation_at[fidelity].measure(subnet)
        return measured if latency is None else measured | latency(subnet)

    def evaluate(config: dict) -> dict[str, float]:
        return evaluate_at(config, 1.0)

    scheduler = make_scheduler(
        options.method, space.config_space, metrics, space.initial_design(), options.seed,
        fidelities=fidelities, config_key=space.to_subnet if fidelities else None,
    )
    logger.info(
        "searching %s with %s over the '%s' space (%d variables): %d samples%s%s",
        path, options.method, space.name, space.num_variables, options.num_samples,
        f", at most {options.max_time:.0f}s" if options.max_time else "",
        f", {options.workers} workers" if parallel else "",
    )
    workers = None
    if parallel:
        timed = "relative_latency" in metrics
        workers = RayWorkers(
            WorkerSettings(
                checkpoint=str(path), data_overrides=dict(data_overrides or {}),
                eval_batch_size=options.eval_batch_size, macs_seq_length=macs_length,
                max_seq_lengths=(data_options.max_seq_length, *([latency_length] if timed else [])),
                latency=(options.latency_batch_size, latency_length) if timed else None,
                precision=default_precision(),
            ),
            options.workers, options.ray_address, options.threads_per_worker,
        )
    try:
        if workers is not None:
            workers.check(info.fingerprint, len(encoded["validation"]))
            pool = ParallelSearchEvaluation(workers, space, validation, with_latency="relative_latency" in metrics)
        started = time.perf_counter()
        if fidelities:
            records = run_multi_fidelity(
                scheduler, evaluate_at, fidelities, num_samples=options.num_samples,
                max_time=options.max_time, progress=progress,
            )
        elif workers is None:
            records = run_ask_tell(
                scheduler,
                evaluate,
                num_samples=options.num_samples,
                max_time=options.max_time,
                progress=progress,
            )
        else:
            records = run_ask_tell_parallel(
                scheduler, pool, num_samples=options.num_samples, max_time=options.max_time, progress=progress
            )
        search_seconds = time.perf_counter() - started

        subnets = [space.to_subnet(r["config"]) for r in records]
        table = pd.DataFrame([
            result_row(
                r["trial_id"], s,
                {**r["metrics"], "elapsed_seconds": r["elapsed"],
                 **({"fidelity": r["fidelity"]} if fidelities else {})},
                config=r["config"],
            )
            for r, s in zip(records, subnets)
        ])
        # Only full-fidelity results can be on the front (and then on the test split).
        full_fidelity = table["fidelity"].to_numpy() == 1.0 if fidelities else np.ones(len(table), dtype=bool)
        table["pareto"] = False
        table.loc[full_fidelity, "pareto"] = analysis.pareto_mask(
            table.loc[full_fidelity, metrics].to_numpy(dtype=float)
        )
        table["test_error"] = np.nan
        full = SubNetwork.full(supernet.shape)
        on_front = np.flatnonzero(table["pareto"].to_numpy())
        if workers is None:
            test = SubnetEvaluator(supernet, loaders["test"], metric, macs_length, cache_embeddings=False)
            for i in tqdm(on_front, desc="test split", unit="subnet", disable=not progress, dynamic_ncols=True):
                table.loc[table.index[i], "test_error"] = test.error(subnets[i])
            full_test_error = test.error(full)
        else:
            *front_errors, full_test_error = pool.test_errors([*(subnets[i] for i in on_front), full], progress)
            table.loc[table.index[on_front], "test_error"] = front_errors
            pool.measure(full)  # its validation error, measured by a worker, joins the journal
        full_model = validation.measure(full) | {"test_error": full_test_error}
    finally:
        if workers is not None:
            workers.close()
        for evaluator in validation_at.values():
            evaluator.close()

    run_info: dict[str, Any] = {"search_seconds": search_seconds}
    if workers is None:  # where the errors (and latencies) were measured; workers report their own
        run_info |= describe_device(next(supernet.parameters()).device) | {"precision": validation.precision.name}
    else:
        run_info |= {"workers": len(workers.descriptions), "precision": default_precision(),
                     "worker_devices": sorted({d["device"] for d in workers.descriptions}),
                     "worker_nodes": len({d["node"] for d in workers.descriptions})}
    if fidelities:
        run_info |= {
            "fidelities": fidelities, "evaluations": len(table), "full_fidelity_trials": int(full_fidelity.sum()),
        }
    # The summary (hypervolume, Pareto set) is of the full-fidelity results only.
    summary = build_summary(
        table[full_fidelity], metrics, source=session.summary_source(), method=options.method_label(),
        search_space=space.name, seed=options.seed, run=run_info, full_model=full_model,
    )
    return write_results(table, summary, metrics, output_dir)


def _split_digest(split: Any) -> str:
    """sha256 of a tokenised split's columns (a ``datasets.Dataset``): the examples themselves."""
    table = split.with_format("arrow")[:]
    digest = hashlib.sha256()
    for name in sorted(table.column_names):
        digest.update(json.dumps([name, table.column(name).to_pylist()]).encode())
    return digest.hexdigest()


# --- settings from parsed flags -----------------------------------------------------------
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
    eval_batch_size: int = EVAL_BATCH_SIZE,
    device: torch.device | None = None,
    data_overrides: dict[str, Any] | None = None,
    recovery: RecoveryOptions | None = None,
    progress: bool = False,
    trial_id: int | None = None,
    max_macs: float | None = None,
    max_latency: float | None = None,
    push_to_hub: str | None = None,
    hub_private: bool = False,
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

    With ``recovery`` of at least one epoch the sub-network is first fine-tuned on the checkpoint's
    training split (:mod:`nasprune.recovery`; by default distilling from the full super-network),
    then cut out; ``nasprune_export.json`` records under ``recovery`` its settings, its seconds and
    the validation and test errors measured on the sub-network before it (the errors after are the
    exported model's, measured as above). Recovery needs the data, so not without ``evaluate``.

    The row is chosen by exactly one of ``pick``, ``trial_id``, ``max_params``, ``max_macs``,
    ``max_latency`` and ``max_error`` (:func:`nasprune.export.pick_from_results`). With
    ``push_to_hub`` (a Hub repository id) the finished folder is then uploaded with
    ``huggingface_hub`` (:func:`nasprune.export.push_to_hub`; ``hub_private`` creates it private).
    """
    if eval_batch_size < 1:
        raise NaspruneError(f"--eval-batch-size must be at least 1, got {eval_batch_size}")
    recovering = recovery is not None and recovery.epochs > 0
    if recovery is not None:
        recovery.validate()
    if recovering and not evaluate:
        raise NaspruneError(
            "--finetune-epochs trains on the checkpoint's data and records the errors before and after: "
            "it cannot be combined with --no-evaluate"
        )
    if hub_private and push_to_hub is None:
        raise NaspruneError("--hub-private makes the --push-to-hub repository private: pass --push-to-hub REPO too")
    if push_to_hub is not None:
        check_repo_id(push_to_hub)  # a typo fails now, not after the export
    found = SearchResults.load(results)
    refuse_recovered_results(found)
    row = pick_from_results(
        found.table, pick=pick, max_params=max_params, max_error=max_error, trial_id=trial_id,
        max_macs=max_macs, max_latency=max_latency,
    )
    check_row_has_weights(found, row)
    # The splits the results were measured on: the checkpoint's data, with the split seed, caps
    # and length its search or baseline recorded. Data files come from the checkpoint only
    # (checked by checkpoint_data_options): a results folder does not choose files to read.
    settings = split_settings(found)
    # Cut out on the CPU; the exported model is measured on ``device``.
    session = CheckpointSession(checkpoint, {**settings, **(data_overrides or {})}, torch.device("cpu"))
    path, info = session.path, session.info
    check_results_checkpoint(found, path, info.fingerprint)
    subnet = subnet_from_row(row)
    scales = mask_scales_for_row(found, row, subnet)

    task_data = None
    if evaluate:
        try:
            data_options, task_data = session.data_options, session.task_data
        except NaspruneError as err:
            raise NaspruneError(
                f"cannot load the checkpoint's data to measure the exported model ({err}); pass "
                "--no-evaluate to export without error numbers"
            ) from None

    supernet = session.load_supernet()
    supernet.check(subnet)
    # Retraining-free pruning's error is that of its tuned mask values: fold them into the weights.
    source = supernet if scales is None else apply_scales(supernet.model, subnet, scales)
    recovered: dict[str, Any] | None = None
    if recovering:
        trainer = Recovery(session, recovery, device or default_device(), eval_batch_size, progress)
        student = source if isinstance(source, SuperNetwork) else SuperNetwork(source)
        before = trainer.measure(student, subnet)
        result = trainer.train(student, subnet)
        source = result.supernet.to(torch.device("cpu"))
        supernet.to(torch.device("cpu"))
        recovered = {**trainer.settings(), "seconds": result.seconds,
                     "valid_error_before": before["valid_error"], "test_error_before": before["test_error"]}
        del trainer, student, result

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
        "metric": metric_name({"task": info.task, "metric": found.summary.get("metric")}),
        "base_model": info.base_model,
        "evaluated": evaluate,
        "searched": {**searched, "method": found.method, "results": str(found.directory)},
    }
    if scales is not None:
        metadata["mask_scales"] = "retraining-free pruning's tuned mask values, folded into the weights"

    def finish(folder: Path) -> dict[str, Any]:
        """Measure the folder as a user would load it, and add the ONNX graph, before it is published."""
        added: dict[str, Any] = {}
        if task_data is not None:
            measured = measure_exported_model(folder, task_data, data_options.max_seq_length,
                                              eval_batch_size, device or default_device())
            examples = measured.pop("examples")
            added.update(measured)
            added["evaluation"] = {
                "validation_examples": examples["validation"],
                "test_examples": examples["test"],
                "max_seq_length": data_options.max_seq_length,
            }
        else:
            added["evaluation"] = "not evaluated (--no-evaluate): no error numbers recorded"
        if recovered is not None:  # the errors after recovery are the exported model's, just measured
            added["recovery"] = {**recovered, "valid_error_after": added["valid_error"],
                                 "test_error_after": added["test_error"]}
        if onnx:
            tokenizer = load_tokenizer(str(folder))
            model = load_pruned_model(folder)
            export_onnx(model, folder / "model.onnx", input_names=onnx_input_names(model, tokenizer))
        return added

    macs_seq_length = (found.summary.get("data_options") or {}).get("max_seq_length") or info.max_seq_length
    exported = export_subnetwork(
        source, subnet, session.tokenizer, output_dir, extra_metadata=metadata,
        overwrite=overwrite, label_names=info.label_names, finish=finish, macs_seq_length=int(macs_seq_length),
    )
    if push_to_hub is not None:
        logger.info("uploaded %s: %s", exported, upload_to_hub(exported, push_to_hub, private=hub_private))
    return exported
