"""``nasprune recover``: recovery-train every Pareto point of a search and write the retrained front."""

from __future__ import annotations

import argparse

from nasprune.cli.export import add_recovery_flags, recovery_options_from_args
from nasprune.cli.flags import add_data_flags, data_overrides_from_args
from nasprune.objectives import EVAL_BATCH_SIZE
from nasprune.recovery import recover_front
from nasprune.results import SearchResult

HELP = "fine-tune every Pareto point of a search (recovery training) and write the retrained front"
DESCRIPTION = (
    "Recovery training of a whole Pareto set: each point of RESULTS_DIR (a search of --checkpoint) is "
    "fine-tuned on the checkpoint's training split, by default distilling from the full super-network, and "
    "measured before and after on its validation and test splits. --output-dir gets the retrained front in the "
    "results format (valid_error_before and test_error_before beside the recovered errors), so 'nasprune "
    "compare RESULTS_DIR OUTPUT_DIR' shows both fronts. The recovered weights are not kept: export a point "
    "with 'nasprune export --finetune-epochs N' to get its model."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``nasprune recover``."""
    parser.add_argument("results", metavar="RESULTS_DIR", help="a weight-sharing search's --output-dir")
    parser.add_argument("--checkpoint", required=True, help="the super-network checkpoint that was searched")
    parser.add_argument("--output-dir", required=True, help="where the retrained front is written")
    parser.add_argument("--overwrite-output-dir", action="store_true",
                        help="replace the results of another run in --output-dir instead of refusing")
    parser.add_argument("--eval-batch-size", type=int, default=EVAL_BATCH_SIZE, help="batch size of the measurements")
    add_recovery_flags(parser, default_epochs=1)
    add_data_flags(parser, with_model=False)


def run_from_args(args: argparse.Namespace) -> SearchResult:
    """``nasprune recover``."""
    result = recover_front(
        args.results, args.checkpoint, args.output_dir, recovery_options_from_args(args),
        data_overrides=data_overrides_from_args(args), eval_batch_size=args.eval_batch_size,
        overwrite=args.overwrite_output_dir, progress=not args.quiet,
    )
    table = result.table
    print(
        f"recovered {len(table)} Pareto point(s) in {result.summary['recovery_seconds']:.0f}s: mean valid error "
        f"{table['valid_error_before'].mean():.4f} before, {table['valid_error'].mean():.4f} after; "
        f"hypervolume {result.summary['hypervolume']:.4f}; results in {result.output_dir}"
    )
    return result
