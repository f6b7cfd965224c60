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
model      a smaller pre-trained model fine-tuned the same way          1
========== ============================================================ =====================

``elapsed_seconds`` is the wall-clock time from the start of the run until the row was measured
(importance estimation and fine-tuning included), for hypervolume-over-time plots.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from nasprune import analysis, data
from nasprune.baselines import head_pruning, layer_drop, reference_model, rfp
from nasprune.checkpoint import load_checkpoint
from nasprune.errors import NaspruneError
from nasprune.evaluation import SubnetEvaluator
from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork, check_max_seq_length, load_hf_model
from nasprune.training import TrainingConfig

logger = logging.getLogger("nasprune")

#: CLI name -> the ``method`` written to summary.json (search methods use underscores too).
BASELINE_METHODS = {
    "rfp": "rfp",
    "head-pruning": "head_pruning",
    "layer-drop": "layer_drop",
    "model": "reference_model",
}
#: The search space that can express each baseline's sub-networks (for the summary).
_SPACE = {"rfp": "large", "head_pruning": "large", "layer_drop": "layer", "reference_model": "none"}
DEFAULT_BUDGETS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class BaselineOptions:
    """How to run a baseline; see ``nasprune baseline --help``."""

    method: str = "rfp"
    seed: int = 0
    objectives: tuple[str, ...] = ("error", "params")
    eval_batch_size: int = 128
    macs_seq_length: int | None = None
    #: Training examples for importance estimates (Fisher information, head importance).
    num_importance_samples: int = 512
    batch_size: int = 32
    # rfp
    constraint: str = "macs"
    budgets: tuple[float, ...] = DEFAULT_BUDGETS
    tune_masks: bool = True
    rearrange_masks: bool = True
    num_tuning_samples: int = 256
    # head-pruning
    prune_fraction: float = 0.1
    # layer-drop and model
    epochs: int = 1
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    reference_model: str | None = None

    @property
    def summary_method(self) -> str:
        return BASELINE_METHODS[self.method]

    def metric_columns(self) -> list[str]:
        from nasprune.workflows import SearchOptions

        return SearchOptions(objectives=self.objectives).metric_columns()

    def validate(self) -> None:
        if self.method not in BASELINE_METHODS:
            raise NaspruneError(f"unknown baseline '{self.method}'; choose one of: {', '.join(BASELINE_METHODS)}")
        if not set(self.metric_columns()) <= {"valid_error", "relative_params", "relative_macs"}:
            # Baselines measure error, parameters and MACs; latency is for searches.
            raise NaspruneError(f"baselines support --objectives error,params or error,macs, not {','.join(self.objectives)}")
        if self.constraint not in rfp.CONSTRAINTS:
            raise NaspruneError(f"--constraint must be one of {', '.join(rfp.CONSTRAINTS)}, got {self.constraint}")
        if not self.budgets or any(not 0 < b <= 1 for b in self.budgets):
            raise NaspruneError(f"--budgets must be fractions in (0, 1], got {list(self.budgets)}")
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
        from nasprune.workflows import _load_tokenizer, default_device, load_checkpoint_data

        self.options = options
        self.progress = progress
        # Resolved, and its weights verified against the fingerprint the summary will record.
        self.path, self.info = load_checkpoint(checkpoint)
        self.device = device or default_device()
        # The checkpoint's data options (and data seed): the validation and test splits it never saw.
        self.data_options, self.task_data = load_checkpoint_data(self.path, self.info.data_options, data_overrides)
        self.regression = self.task_data.spec.kind == "regression"
        self.tokenizer = _load_tokenizer(str(self.path))
        hf_model = load_hf_model(str(self.path), self.info.task_kind, self.info.num_labels)
        check_max_seq_length(hf_model, self.data_options.max_seq_length)
        self.supernet = SuperNetwork(hf_model).to(self.device).eval()
        self.encoded = data.prepare(self.task_data, self.tokenizer, self.data_options.max_seq_length)
        self.macs_length = options.macs_seq_length or self.data_options.max_seq_length
        self.loaders = {split: self.loader(split) for split in ("validation", "test")}
        self.started = time.perf_counter()
        self.rows: list[dict[str, Any]] = []

    def loader(self, split: str, batch_size: int | None = None, dataset=None):
        return data.make_dataloader(
            self.encoded[split] if dataset is None else dataset,
            self.tokenizer,
            batch_size or self.options.eval_batch_size,
            shuffle=False,
            sort_by_length=True,
        )

    def train_sample(self, size: int) -> list[dict]:
        """A seeded sample of training examples, as length-sorted batches."""
        train = data.subsample(self.encoded["train"], size, self.options.seed)
        return list(self.loader("train", self.options.batch_size, train))

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
        row = {"trial_id": len(self.rows), **measured, "test_error": test_error}
        row["elapsed_seconds"] = time.perf_counter() - self.started
        row["num_layers"] = len(subnet.kept_layers)
        row["heads_per_layer"] = json.dumps(subnet.heads_per_layer.tolist())
        row["units_per_layer"] = json.dumps(subnet.units_per_layer.tolist())
        row["subnet"] = json.dumps(subnet.to_dict())
        row.update(extra)
        self.rows.append(row)
        logger.info(
            "%s row %d: valid error %.4f, relative params %.3f, relative MACs %.3f",
            self.options.summary_method, row["trial_id"], row["valid_error"],
            row["relative_params"], row["relative_macs"],
        )

    def add_measured(self, subnet: SubNetwork, valid: SubnetEvaluator, test: SubnetEvaluator, **extra: Any) -> None:
        self.add(subnet, valid.measure(subnet), test.error(subnet), **extra)

    def write(self, full_model: dict[str, float], details: dict[str, Any], output_dir: Path):
        from nasprune.workflows import _write_search_outputs

        metrics = self.options.metric_columns()
        table = pd.DataFrame(self.rows)
        table["pareto"] = analysis.pareto_mask(table[metrics].to_numpy(dtype=float))
        reference = analysis.reference_point(len(metrics))
        pareto = table[table["pareto"]].sort_values(metrics[1])
        summary = {
            "task": self.info.task,
            "model": self.info.base_model,
            "checkpoint": str(self.path),
            "checkpoint_fingerprint": self.info.fingerprint,
            "data_options": asdict(self.data_options),
            "method": self.options.summary_method,
            "search_space": _SPACE[self.options.summary_method],
            "seed": self.options.seed,
            "objectives": metrics,
            "num_evaluated": len(table),
            "search_seconds": time.perf_counter() - self.started,
            "hypervolume": analysis.hypervolume(table[metrics].to_numpy(dtype=float), reference),
            "reference_point": reference,
            "hypervolume_definition": analysis.HYPERVOLUME_DEFINITION,
            "full_model": full_model,
            "baseline": details,
            "pareto_set": [
                {
                    "trial_id": int(row["trial_id"]),
                    "valid_error": float(row["valid_error"]),
                    "test_error": float(row["test_error"]),
                    "params": int(row["params"]),
                    "relative_params": float(row["relative_params"]),
                    "macs": int(row["macs"]),
                    "relative_macs": float(row["relative_macs"]),
                    "subnet": json.loads(row["subnet"]),
                }
                for _, row in pareto.iterrows()
            ],
        }
        return _write_search_outputs(table, summary, metrics, Path(output_dir))


# --- the baselines ----------------------------------------------------------------------------
def _full_model(run: _Run, valid: SubnetEvaluator, test: SubnetEvaluator) -> dict[str, float]:
    full = SubNetwork.full(run.supernet.shape)
    return valid.measure(full) | {"test_error": test.error(full)}


def _run_rfp(run: _Run, output_dir: Path) -> dict[str, Any]:
    options = run.options
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
            tuned = SuperNetwork(rfp.apply_scales(run.supernet.model, subnet, result.scales)).eval()
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
        analysis.write_json_atomic(scales, output_dir / rfp.MASK_SCALES_FILE)
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


def _run_reference_model(run: _Run, output_dir: Path) -> dict[str, Any]:
    from nasprune.workflows import _load_tokenizer

    options = run.options
    valid, test = run.evaluators(run.supernet)
    full_model = _full_model(run, valid, test)
    name = options.reference_model
    tokenizer = _load_tokenizer(name)
    model = load_hf_model(name, run.info.task_kind, run.info.num_labels).to(run.device)
    encoded = data.prepare(run.task_data, tokenizer, run.data_options.max_seq_length)

    def loader(split: str, batch_size: int, shuffle: bool):
        return data.make_dataloader(
            encoded[split], tokenizer, batch_size, shuffle=shuffle, seed=options.seed, sort_by_length=True
        )

    if options.epochs:
        config = options.training_config()
        reference_model.finetune_model(model, loader("train", options.batch_size, True), config, run.regression)
    metric = run.task_data.metric
    valid_error = reference_model.model_error(model, loader("validation", options.eval_batch_size, False), metric)
    test_error = reference_model.model_error(model, loader("test", options.eval_batch_size, False), metric)
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
        :func:`nasprune.workflows.checkpoint_data_options` for where a checkpoint's own files may lie)
    :param overwrite: replace the results of another run in ``output_dir`` instead of refusing
    :return: a :class:`nasprune.workflows.SearchResult`
    """
    from nasprune.workflows import begin_search_outputs, check_search_output_dir

    options.validate()
    output_dir = Path(output_dir)
    run = _Run(checkpoint, options, data_overrides, device, progress)
    settings = {"checkpoint": str(run.path), "method": options.summary_method,
                "search_space": _SPACE[options.summary_method], "objectives": options.metric_columns(),
                "seed": options.seed}
    check_search_output_dir(output_dir, settings, overwrite)
    begin_search_outputs(output_dir, overwrite)
    if overwrite:  # rfp's tuned mask values belong to the rows they were written with
        (output_dir / rfp.MASK_SCALES_FILE).unlink(missing_ok=True)
    logger.info("baseline %s on %s (%s)", options.method, run.path, run.task_data.spec.name)
    torch.manual_seed(options.seed)
    full_model = _RUNNERS[options.method](run, output_dir)
    details = asdict(options)
    details["budgets"] = list(options.budgets)
    return run.write(full_model, details, output_dir)


# --- CLI glue ---------------------------------------------------------------------------------
def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``nasprune baseline`` (add to a sub-parser)."""
    from nasprune.cli import _add_data_flags

    parser.add_argument("--method", required=True, choices=list(BASELINE_METHODS))
    parser.add_argument(
        "--checkpoint", required=True,
        help="a fine-tuned checkpoint (nasprune finetune / train-supernet) or its output dir",
    )
    parser.add_argument("--output-dir", required=True)
    parser.add_argument(
        "--overwrite-output-dir", action="store_true",
        help="replace the results of another run in --output-dir instead of refusing",
    )
    parser.add_argument(
        "--seed", type=int, default=0,
        help="seed of the importance sample and fine-tuning (the data split follows --data-seed)",
    )
    parser.add_argument("--objectives", default="error,params", help="error,params or error,macs")
    parser.add_argument("--macs-seq-length", type=int, help="sequence length of the MAC count")
    parser.add_argument("--eval-batch-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32, help="batch size of importance estimates and fine-tuning")
    parser.add_argument(
        "--num-importance-samples", type=int, default=512,
        help="training examples for the Fisher information / head importance",
    )
    _add_data_flags(parser, with_model=False)
    group = parser.add_argument_group("rfp (Kwon et al. 2022)")
    group.add_argument("--constraint", default="macs", choices=list(rfp.CONSTRAINTS))
    group.add_argument(
        "--budgets", type=_floats, default=DEFAULT_BUDGETS,
        help="comma-separated fractions of the constrained cost (default 0.3,...,0.9)",
    )
    group.add_argument("--no-mask-tuning", dest="tune_masks", action="store_false", help="skip least-squares tuning")
    group.add_argument("--no-rearrangement", dest="rearrange_masks", action="store_false", help="skip mask rearrangement")
    group.add_argument("--num-tuning-samples", type=int, default=256, help="training examples for mask tuning")
    group = parser.add_argument_group("head-pruning (Michel et al. 2019)")
    group.add_argument("--prune-fraction", type=float, default=0.1, help="share of all heads pruned per step")
    group = parser.add_argument_group("layer-drop (Sajjad et al. 2023) and model")
    group.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs (layer-drop: per k; 0: none)")
    group.add_argument("--learning-rate", type=float, default=2e-5)
    group.add_argument("--warmup-ratio", type=float, default=0.1)
    group.add_argument("--reference-model", help="--method model: the smaller pre-trained model (name or path)")


def options_from_args(args: argparse.Namespace) -> BaselineOptions:
    return BaselineOptions(
        method=args.method,
        seed=args.seed,
        objectives=tuple(o.strip() for o in args.objectives.split(",") if o.strip()),
        eval_batch_size=args.eval_batch_size,
        macs_seq_length=args.macs_seq_length,
        num_importance_samples=args.num_importance_samples,
        batch_size=args.batch_size,
        constraint=args.constraint,
        budgets=tuple(args.budgets),
        tune_masks=args.tune_masks,
        rearrange_masks=args.rearrange_masks,
        num_tuning_samples=args.num_tuning_samples,
        prune_fraction=args.prune_fraction,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        warmup_ratio=args.warmup_ratio,
        reference_model=args.reference_model,
    )


def run_from_args(args: argparse.Namespace):
    """``nasprune baseline``."""
    from nasprune.workflows import data_overrides_from_args, print_search_summary

    options = options_from_args(args)
    options.validate()
    overrides = data_overrides_from_args(args)
    result = run_baseline(
        args.checkpoint, options, args.output_dir, overrides, progress=not args.quiet,
        overwrite=args.overwrite_output_dir,
    )
    print_search_summary(result)
    return result
