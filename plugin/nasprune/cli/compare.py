"""``nasprune compare``: hypervolumes, ranks, plots and tables over result folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from nasprune import analysis
from nasprune.cli.flags import comma_separated
from nasprune.report import GROUP_FIELDS, NORMALISATIONS, Comparison, compare
from nasprune.report.html import REPORT_FILE, write_report

HELP = "hypervolumes, ranks, plots and tables over result folders, and report.html"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``nasprune compare`` (add to a sub-parser)."""
    parser.add_argument("results", nargs="+", metavar="RESULTS_DIR", help="run folders, or folders holding them")
    parser.add_argument("--output-dir", required=True, help="where the tables and plots go")
    parser.add_argument("--objectives", default="error,params", help="error,params or error,macs")
    parser.add_argument("--normalisation", default="unit", choices=list(NORMALISATIONS),
                        help="unit: the objectives as they are (fractions of the unpruned model), reference 1.1 "
                        "(the summaries' hypervolume); task: per-task min-max, reference 1.1; paper: per-task "
                        "quantiles (Klein et al. 2024), reference 2")
    parser.add_argument("--reference-point", type=float, help="override the reference point (normalised units)")
    parser.add_argument("--group-by", default="kind,method", help=f"fields naming a method: {', '.join(GROUP_FIELDS)}")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates of the rank CIs")
    parser.add_argument("--no-training-time", dest="include_training_time", action="store_false",
                        help="do not add what the checkpoint cost (its training, and a rewired one's fine-tuned "
                        "source and rewiring) to the time axis")


def run_from_args(args: argparse.Namespace) -> Comparison:
    """``nasprune compare``."""
    result = compare(
        args.results,
        args.output_dir,
        objectives=comma_separated(args.objectives),
        normalisation=args.normalisation,
        reference_point=args.reference_point,
        group_by=comma_separated(args.group_by),
        num_bootstrap=args.bootstrap,
        include_training_time=args.include_training_time,
    )
    # The page of the comparison, beside its plots and tables.
    result.files["report"] = write_report([args.output_dir], Path(args.output_dir) / REPORT_FILE, "nasprune compare")
    print(analysis.markdown_table(result.hypervolume))
    print(analysis.markdown_table(result.compression))
    for name, path in result.files.items():
        print(f"{name:>40}: {path}")
    return result
