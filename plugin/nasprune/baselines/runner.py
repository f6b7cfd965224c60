"""``nasprune baseline``: run a pruning baseline on a fine-tuned checkpoint, write search-style results.

Every baseline evaluates its sub-networks on the checkpoint's validation and test splits (the
checkpoint's data seed, so no training example leaks into them) and writes ``results.csv``,
``summary.json``, ``pareto.png`` and ``pareto.md`` with the helpers and columns of the weight-sharing
search, so that ``nasprune compare`` puts searches and baselines on the same plots.

========== ============================================================ =====================
method     what                                                         rows
========== ============================================================ =====================
rfp        Kwon et al. 2022, retraining-free pruning, over budgets      full model + 1/budget
head-      Michel et al. 2019, iterative head pruning                   full model + 1/step
pruning
layer-drop Sajjad et al. 2023, top k layers dropped and fine-tuned      k = 0 .. L-1
importance one-shot first-order (Taylor or Fisher) importance pruning   full model + 1/budget
           of heads and units, uniform or global, then fine-tuned
model      a smaller pre-trained model fine-tuned the same way          1
========== ============================================================ =====================

``elapsed_seconds`` is the wall-clock time from the start of the run until the row was measured
(importance estimation and fine-tuning included), for hypervolume-over-time plots.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from nasprune import analysis, data
from nasprune.baselines import head_pruning, importance_pruning, layer_drop, reference_model, rfp
from nasprune.errors import NaspruneError
from nasprune.evaluation import SubnetEvaluator, plain_model_error
from nasprune.files import write_json_atomic
from nasprune.objectives import COMMON_OBJECTIVES, EVAL_BATCH_SIZE, OBJECTIVES, metric_columns
from nasprune.results import SearchResult, begin_search_outputs, build_summary, check_search_output_dir, result_row, write_results
from nasprune.scales import MASK_SCALES_FILE, apply_scales
from nasprune.session import CheckpointSession, load_tokenizer
from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork, load_hf_model
from nasprune.training import TrainingConfig

logger = logging.getLogger("nasprune")

#: CLI name -> the ``method`` written to summary.json (search methods use underscores too).
BASELINE_METHODS = {
    "rfp": "rfp",
    "head-pruning": "head_pruning",
    "layer-drop": "layer_drop",
    "importance": "importance_pruning",
    "model": "reference_model",
}
#: The search space that can express each baseline's sub-networks (for the summary).
_SPACE = {
    "rfp": "large", "head_pruning": "large", "layer_drop": "layer", "importance_pruning": "large",
    "reference_model": "none",
}
DEFAULT_BUDGETS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class BaselineOptions:
    """How to run a baseline; see ``nasprune baseline --help``."""

    method: str = "rfp"
    seed: int = 0
    objectives: tuple[str, ...] = ("error", "params")
    eval_batch_size: int = EVAL_BATCH_SIZE
    macs_seq_length: int | None = None
    #: Training examples for importance estimates (Fisher information, head importance).
    num_importance_samples: int = 512
    batch_size: int = 32
    # rfp and importance
    constraint: str = "macs"
    budgets: tuple[float, ...] = DEFAULT_BUDGETS
    tune_masks: bool = True
    rearrange_masks: bool = True
    num_tuning_samples: int = 256
    # importance
    importance: str = "taylor"
    allocation: str = "uniform"
    # head-pruning
    prune_fraction: float = 0.1
    # layer-drop, importance and model
    epochs: int = 1
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    reference_model: str | None = None

    @property
    def summary_method(self) -> str:
        return BASELINE_METHODS[self.method]

    def metric_columns(self) -> list[str]:
        """The result columns of :attr:`objectives` (see :func:`nasprune.objectives.metric_columns`)."""
        return metric_columns(self.objectives)

    def validate(self) -> None:
        if self.method not in BASELINE_METHODS:
            raise NaspruneError(f"unknown baseline '{self.method}'; choose one of: {', '.join(BASELINE_METHODS)}")
        if not set(self.metric_columns()) <= {OBJECTIVES[o] for o in COMMON_OBJECTIVES}:
            # Baselines measure error, parameters and MACs; latency is for searches.
            raise NaspruneError(f"baselines support --objectives error,params or error,macs, not {','.join(self.objectives)}")
        if self.constraint not in rfp.CONSTRAINTS:
            raise NaspruneError(f"--constraint must be one of {', '.join(rfp.CONSTRAINTS)}, got {self.constraint}")
        if not self.budgets or any(not 0 < b <= 1 for b in self.budgets):
            raise NaspruneError(f"--budgets must be fractions in (0, 1], got {list(self.budgets)}")
        if self.importance not in importance_pruning.CRITERIA:
            raise NaspruneError(
                f"--importance must be one of {', '.join(importance_pruning.CRITERIA)}, got {self.importance}"
            )
        if self.allocation not in importance_pruning.ALLOCATIONS:
            raise NaspruneError(
                f"--allocation must be one of {', '.join(importance_pruning.ALLOCATIONS)}, got {self.allocation}"
            )
        if not 0 < self.prune_fraction < 1:
            raise NaspruneError(f"--prune-fraction must be in (0, 1), got {self.prune_fraction}")
        if self.epochs < 0:
            raise NaspruneError(f"--epochs must be at least 0, got {self.epochs}")
        for name in ("num_importance_samples", "num_tuning_samples", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise NaspruneError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.method == "model" and not self.reference_model:
            raise NaspruneError("--method model needs --reference-model NAME_OR_PATH")

    def training_config(self) -> TrainingConfig:
        return TrainingConfig(
            epochs=self.epochs,  # 0: the callers skip training
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            seed=self.seed,
            warmup_ratio=self.warmup_ratio,
            strategy="standard",
        )


class _Run:
    """What every baseline shares: the checkpoint, its data, evaluators and the results rows."""

    def __init__(self, checkpoint, options: BaselineOptions, data_overrides: dict | None, device, progress: bool):
        self.options = options
        self.progress = progress
        # Resolved, and its weights verified against the fingerprint the summary will record.
        self.session = session = CheckpointSession(checkpoint, data_overrides, device)
        self.path, self.info, self.device = session.path, session.info, session.device
        # The checkpoint's data options (and data seed): the validation and test splits it never saw.
        self.data_options, self.task_data = session.data_options, session.task_data
        self.regression = self.task_data.spec.kind == "regression"
        self.tokenizer = session.tokenizer
        self.supernet = session.load_supernet(self.data_options.max_seq_length).eval()
        self.encoded = session.encoded
        self.macs_length = options.macs_seq_length or self.data_options.max_seq_length
        self.loaders = session.eval_loaders(options.eval_batch_size)
        self.started = time.perf_counter()
        self.rows: list[dict[str, Any]] = []

    def train_sample(self, size: int) -> list[dict]:
        """A seeded sample of training examples, as length-sorted batches."""
        train = data.subsample(self.encoded["train"], size, self.options.seed)
        return list(self.session.loader("train", self.options.batch_size, train))

    def train_loader(self):
        return data.make_dataloader(
            self.encoded["train"], self.tokenizer, self.options.batch_size, shuffle=True,
            seed=self.options.seed, sort_by_length=True,
        )

    def evaluators(self, supernet: SuperNetwork) -> tuple[SubnetEvaluator, SubnetEvaluator]:
        metric = self.task_data.metric
        valid = SubnetEvaluator(supernet, self.loaders["validation"], metric, self.macs_length)
        test = SubnetEvaluator(supernet, self.loaders["test"], metric, self.macs_length, cache_embeddings=False)
        return valid, test

    def add(self, subnet: SubNetwork, measured: dict[str, float], test_error: float, **extra: Any) -> None:
        elapsed = time.perf_counter() - self.started
        row = result_row(
            len(self.rows), subnet, {**measured, "test_error": test_error, "elapsed_seconds": elapsed}, extra=extra
        )
        self.rows.append(row)
        logger.info(
            "%s row %d: valid error %.4f, relative params %.3f, relative MACs %.3f",
            self.options.summary_method, row["trial_id"], row["valid_error"],
            row["relative_params"], row["relative_macs"],
        )

    def add_measured(self, subnet: SubNetwork, valid: SubnetEvaluator, test: SubnetEvaluator, **extra: Any) -> None:
        self.add(subnet, valid.measure(subnet), test.error(subnet), **extra)

    def write(self, full_model: dict[str, float], details: dict[str, Any], output_dir: Path) -> SearchResult:
        """Write the rows and the summary (with the baseline's settings, ``details``) to ``output_dir``."""
        metrics = self.options.metric_columns()
        table = pd.DataFrame(self.rows)
        table["pareto"] = analysis.pareto_mask(table[metrics].to_numpy(dtype=float))
        summary = build_summary(
            table, metrics, source=self.session.summary_source(), method=self.options.summary_method,
            search_space=_SPACE[self.options.summary_method], seed=self.options.seed,
            run={"search_seconds": time.perf_counter() - self.started}, full_model=full_model,
            details={"baseline": details},
        )
        return write_results(table, summary, metrics, Path(output_dir))


# --- the baselines ----------------------------------------------------------------------------
def _full_model(run: _Run, valid: SubnetEvaluator, test: SubnetEvaluator) -> dict[str, float]:
    full = SubNetwork.full(run.supernet.shape)
    return valid.measure(full) | {"test_error": test.error(full)}


def _run_rfp(run: _Run, output_dir: Path) -> dict[str, Any]:
    options = run.options
    if options.tune_masks:
        # Before anything is measured: otherwise every budget would be skipped with this warning.
        rfp.check_mask_tuning(run.supernet)
    valid, test = run.evaluators(run.supernet)
    full_model = _full_model(run, valid, test)
    full = SubNetwork.full(run.supernet.shape)
    run.add(full, valid.measure(full), full_model["test_error"], budget=1.0, valid_error_untuned=full_model["valid_error"])
    sample = run.train_sample(options.num_importance_samples)
    tuning_batches = max(1, -(-options.num_tuning_samples // options.batch_size))
    pruner = rfp.RetrainingFreePruner(
        run.supernet, sample, options.constraint, run.macs_length, run.regression,
        tune=options.tune_masks, rearrange=options.rearrange_masks, tuning_batches=tuning_batches,
    )
    scales: dict[str, Any] = {}
    for result in pruner.sweep(sorted(options.budgets, reverse=True)):
        subnet = result.subnet
        untuned = valid.error(subnet)
        if options.tune_masks:
            tuned = SuperNetwork(apply_scales(run.supernet.model, subnet, result.scales)).eval()
            tuned_valid, tuned_test = run.evaluators(tuned)
            # Fresh evaluators of the tuned copy: their errors are the tuned ones.
            measured = valid.size(subnet) | {"valid_error": tuned_valid.error(subnet)}
            test_error = tuned_test.error(subnet)
            del tuned, tuned_valid, tuned_test
        else:
            measured, test_error = valid.measure(subnet), test.error(subnet)
        run.add(subnet, measured, test_error, budget=result.budget, valid_error_untuned=untuned)
        scales[str(run.rows[-1]["trial_id"])] = result.scales.to_dict(subnet)
    if scales and options.tune_masks:
        # The tuned values make the weights of each row: keep them to rebuild the pruned models.
        write_json_atomic(scales, output_dir / MASK_SCALES_FILE)
    return full_model


def _run_head_pruning(run: _Run, output_dir: Path) -> dict[str, Any]:
    options = run.options
    valid, test = run.evaluators(run.supernet)
    full_model = _full_model(run, valid, test)
    sample = run.train_sample(options.num_importance_samples)
    # Rows are measured as the steps come, so elapsed_seconds shows when each became available.
    head_pruning.iterative_head_pruning(
        run.supernet, sample, options.prune_fraction, run.regression,
        max_examples=options.num_importance_samples,
        on_step=lambda step, subnet: run.add_measured(subnet, valid, test, step=step),
    )
    return full_model


def _run_layer_drop(run: _Run, output_dir: Path) -> dict[str, Any]:
    options = run.options
    valid, test = run.evaluators(run.supernet)
    full_model = _full_model(run, valid, test)
    config = options.training_config()
    train_loader = run.train_loader() if options.epochs else None
    for k, subnet in layer_drop.layer_drop_subnets(run.supernet.shape):
        if k == 0 or options.epochs == 0:
            run.add_measured(subnet, valid, test, dropped_layers=k)
            continue
        tuned = layer_drop.finetune_subnet(
            run.supernet, subnet, train_loader, config, run.regression, progress=run.progress
        )
        tuned_valid, tuned_test = run.evaluators(tuned)
        run.add_measured(subnet, tuned_valid, tuned_test, dropped_layers=k)
        del tuned, tuned_valid, tuned_test
    return full_model


def _run_importance(run: _Run, output_dir: Path) -> dict[str, Any]:
    options = run.options
    valid, test = run.evaluators(run.supernet)
    full_model = _full_model(run, valid, test)
    full = SubNetwork.full(run.supernet.shape)
    # The checkpoint itself, not fine-tuned again: the row every budget is measured against.
    run.add(full, valid.measure(full), full_model["test_error"], budget=1.0,
            valid_error_untuned=full_model["valid_error"], fine_tuned_epochs=0)
    sample = run.train_sample(options.num_importance_samples)
    pruner = importance_pruning.ImportancePruner(
        run.supernet, sample, options.importance, options.allocation, options.constraint, run.macs_length,
        run.regression, max_examples=options.num_importance_samples,
    )
    config = options.training_config()
    train_loader = run.train_loader() if options.epochs else None
    for result in pruner.sweep(sorted(options.budgets, reverse=True)):
        subnet = result.subnet
        untuned = valid.error(subnet)  # on the checkpoint's weights, before fine-tuning
        if not options.epochs:
            run.add_measured(subnet, valid, test, budget=result.budget, valid_error_untuned=untuned, fine_tuned_epochs=0)
            continue
        # A copy of the weights per budget, fine-tuned for that one sub-network.
        tuned = layer_drop.finetune_subnet(
            run.supernet, subnet, train_loader, config, run.regression, progress=run.progress
        )
        tuned_valid, tuned_test = run.evaluators(tuned)
        run.add_measured(subnet, tuned_valid, tuned_test, budget=result.budget, valid_error_untuned=untuned,
                         fine_tuned_epochs=options.epochs)
        del tuned, tuned_valid, tuned_test
    return full_model


def _run_reference_model(run: _Run, output_dir: Path) -> dict[str, Any]:
    options = run.options
    valid, test = run.evaluators(run.supernet)
    full_model = _full_model(run, valid, test)
    name = options.reference_model
    tokenizer = load_tokenizer(name)
    model = load_hf_model(name, run.info.task_kind, run.info.num_labels or None).to(run.device)
    data.ensure_padding(tokenizer, model.config)  # decoders: pad = eos, on the right, as the checkpoint's own
    encoded = data.prepare(run.task_data, tokenizer, run.data_options.max_seq_length)

    def loader(split: str, batch_size: int, shuffle: bool):
        return data.make_dataloader(
            encoded[split], tokenizer, batch_size, shuffle=shuffle, seed=options.seed, sort_by_length=True
        )

    if options.epochs:
        config = options.training_config()
        reference_model.finetune_model(model, loader("train", options.batch_size, True), config, run.regression)
    metric = run.task_data.metric
    valid_error = plain_model_error(model, loader("validation", options.eval_batch_size, False), metric)
    test_error = plain_model_error(model, loader("test", options.eval_batch_size, False), metric)
    size = reference_model.reference_size(model, valid.counter.total, run.supernet.shape, run.macs_length)
    subnet = SubNetwork.full(size.shape)
    measured = {
        "valid_error": valid_error,
        "params": size.params,
        "relative_params": size.relative_params,
        "macs": size.macs,
        "relative_macs": size.relative_macs,
    }
    run.add(subnet, measured, test_error, reference_model=name)
    return full_model


_RUNNERS: dict[str, Callable[[_Run, Path], dict[str, Any]]] = {
    "rfp": _run_rfp,
    "head-pruning": _run_head_pruning,
    "layer-drop": _run_layer_drop,
    "importance": _run_importance,
    "model": _run_reference_model,
}


def run_baseline(
    checkpoint: str | os.PathLike,
    options: BaselineOptions,
    output_dir: str | os.PathLike,
    data_overrides: dict[str, Any] | None = None,
    progress: bool = True,
    device: torch.device | None = None,
    overwrite: bool = False,
):
    """Run one baseline on a fine-tuned checkpoint and write search-style results to ``output_dir``.

    :param checkpoint: a checkpoint folder of ``nasprune finetune`` / ``train-supernet``, or its
        ``--output-dir`` (the latest epoch is used)
    :param options: the method and its settings
    :param data_overrides: replace the checkpoint's data options, e.g. ``{"max_eval_samples": 500,
        "max_test_samples": 1000}``, the data ``seed`` or data files (see
        :func:`nasprune.data.checkpoint_data_options` for where a checkpoint's own files may lie)
    :param overwrite: replace the results of another run in ``output_dir`` instead of refusing
    :return: a :class:`nasprune.results.SearchResult`
    """
    options.validate()
    output_dir = Path(output_dir)
    run = _Run(checkpoint, options, data_overrides, device, progress)
    settings = {"checkpoint": str(run.path), "method": options.summary_method,
                "search_space": _SPACE[options.summary_method], "objectives": options.metric_columns(),
                "seed": options.seed}
    check_search_output_dir(output_dir, settings, overwrite)
    begin_search_outputs(output_dir, overwrite)
    if overwrite:  # rfp's tuned mask values belong to the rows they were written with
        (output_dir / MASK_SCALES_FILE).unlink(missing_ok=True)
    logger.info("baseline %s on %s (%s)", options.method, run.path, run.task_data.spec.name)
    torch.manual_seed(options.seed)
    full_model = _RUNNERS[options.method](run, output_dir)
    details = asdict(options)
    details["budgets"] = list(options.budgets)
    return run.write(full_model, details, output_dir)
