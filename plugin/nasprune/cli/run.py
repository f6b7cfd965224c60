"""``nasprune run``: train a super-network, search it and report, the whole job."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from nasprune.cli.flags import (
    add_data_flags,
    add_search_flags,
    add_training_flags,
    fill_default_task,
    rewiring_options_from_args,
    search_options_from_args,
)
from nasprune.cli.summary import print_search_summary
from nasprune.checkpoint import CheckpointInfo
from nasprune.data import DATA_FILE_FLAGS, DataOptions
from nasprune.files import write_json_atomic
from nasprune.report.html import REPORT_FILE, write_report
from nasprune.results import SearchResult, begin_search_outputs, check_search_output_dir, recorded_run_settings
from nasprune.training import TrainingConfig
from nasprune.workflows import search, train_supernet

logger = logging.getLogger("nasprune")

HELP = "fine-tune a super-network, search it and report: the whole job"
DESCRIPTION = (
    "Train a super-network, search its sub-networks, evaluate the Pareto set on "
    "the test split and write a table, a plot and a JSON summary. With no arguments it "
    "prunes the offline MiniLM-L6 on rotten_tomatoes in about five minutes on 2 CPU cores."
)

#: The fast CPU preset of ``nasprune run``: the offline default job in about five minutes on 2 cores.
QUICK_PRESET = {
    "epochs": 1,
    "learning_rate": 1e-4,
    "max_seq_length": 64,
    "max_train_samples": 6000,
    # The copy fine-tuned for the importance only has to rank heads and units; the super-network
    # then trains on all 6,000 examples.
    "rewire_finetune_examples": 2000,
    # Largest, smallest and one random sub-network per step instead of the paper's two random
    # ones: a third less time per step, and the default run still beats the quality it is held to
    # (README, "What the default run gives").
    "num_random_subnets": 1,
    "max_eval_samples": 1000,
    # NSGA-II's five generations of 10: on the default task 60 reached the same hypervolume
    # (0.9617 against 0.9615), 20 s later.
    "num_samples": 50,
}
#: Defaults of ``nasprune run`` without the preset: the paper's recipe.
FULL_DEFAULTS = {"epochs": 5, "learning_rate": 2e-5, "max_seq_length": 128, "num_samples": 100, "num_random_subnets": 2}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``nasprune run``."""
    add_data_flags(parser)
    add_training_flags(parser, supernet=True, epochs=5)
    add_search_flags(parser)
    parser.add_argument(
        "--output-dir", default="nasprune-output",
        help="where the super-network (OUTPUT/supernet/epoch-<n>) and the search results go",
    )
    # Filled in from QUICK_PRESET or FULL_DEFAULTS by run_from_args.
    parser.set_defaults(epochs=None, learning_rate=None, max_seq_length=None, num_samples=None, num_random_subnets=None)
    parser.add_argument(
        "--quick",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the fast CPU preset (1 epoch, max length 64, capped splits, a copy for the importance "
        "fine-tuned on 2,000 examples, 1 random sub-network per step, 50 samples); "
        "on by default when neither --model nor --task is given",
    )


def run_from_args(args: argparse.Namespace) -> SearchResult:
    """``nasprune run``: train the super-network, search it, evaluate and report."""
    quick = args.quick if args.quick is not None else (args.model is None and args.task is None and args.train_file is None)
    preset = QUICK_PRESET if quick else FULL_DEFAULTS
    for key, value in preset.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    fill_default_task(args)
    options = search_options_from_args(args)
    options.validate()  # fail on a bad --method or --objectives before an hour of training
    rewiring = rewiring_options_from_args(args)
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
        TrainingConfig.from_args(args, args.strategy),
        args.search_space,
        output_dir / "supernet",
        overwrite=args.overwrite_output_dir,
        progress=not args.quiet,
        rewiring=rewiring,
    )
    # The files named on this command line, not the checkpoint's record of them (see checkpoint_data_options).
    given_files = {name: getattr(data_options, name) for name in DATA_FILE_FLAGS if getattr(data_options, name)}
    # Results of another epoch of this run's own super-network are superseded, not another run's.
    searched = recorded_run_settings(output_dir).get("checkpoint")
    superseded = searched is not None and _other_epoch_of_same_training(Path(searched), checkpoint)
    if superseded:
        logger.info("the search results in %s are of %s: searching %s afresh", output_dir, searched, checkpoint)
    result = search(
        checkpoint, options, output_dir, given_files, progress=not args.quiet,
        overwrite=args.overwrite_output_dir or superseded,
    )
    result.summary["total_seconds"] = time.perf_counter() - start
    write_json_atomic(result.summary, result.files["summary"])  # still complete: only a field added
    # The page a user opens first: the front, the Pareto table, the recommended model and its export line.
    result.files["report"] = write_report([output_dir], output_dir / REPORT_FILE, f"nasprune run: {output_dir}")
    print_search_summary(result)
    print(_recovery_hint(output_dir, checkpoint))
    return result


def _recovery_hint(output_dir: Path, checkpoint: Path) -> str:
    """How to fine-tune a chosen point after the search, and about what it costs."""
    history = CheckpointInfo.load(checkpoint).history
    epoch_seconds = float(history[-1]["seconds"]) if history else float("nan")
    return (
        f"\nA sub-network gets more accurate with recovery training (one epoch of distillation from the "
        f"super-network): add --finetune-epochs 1 to its export, e.g. nasprune export --checkpoint "
        f"{output_dir / 'supernet'} --results {output_dir} --pick N --finetune-epochs 1 --output-dir "
        f"pruned-model, with N from the pick column above. Each epoch costs less than one "
        f"super-network epoch ({epoch_seconds:.0f}s here), since it trains one sub-network per step instead of "
        f"several; 'nasprune recover {output_dir} --checkpoint {output_dir / 'supernet'} --output-dir "
        f"recovered' does it for every Pareto point."
    )


def _other_epoch_of_same_training(searched: Path, checkpoint: Path) -> bool:
    searched, checkpoint = searched.resolve(), checkpoint.resolve()
    return searched != checkpoint and searched.parent == checkpoint.parent
