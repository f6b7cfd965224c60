"""``nasprune report``: one self-contained HTML page of result folders and comparisons."""

from __future__ import annotations

import argparse
from pathlib import Path

from nasprune.report.html import REPORT_FILE, write_report

HELP = "one self-contained HTML page (plots, tables, the recommended model) of result folders"
DESCRIPTION = (
    "Write an HTML page of every run folder (results.csv and summary.json, as run, search, baseline "
    "and nas write them) and every 'nasprune compare' output folder at or below RESULTS_DIR: the "
    "plots (embedded), the Pareto and comparison tables, and the recommended model with its export "
    "command. The page needs no other file and no network."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``nasprune report``."""
    parser.add_argument("results", nargs="+", metavar="RESULTS_DIR",
                        help="run folders, compare output folders, or folders holding them")
    parser.add_argument("--output", default=REPORT_FILE, help="the HTML file to write")
    parser.add_argument("--title", default="nasprune report", help="the page's title")


def run_from_args(args: argparse.Namespace) -> Path:
    """``nasprune report``."""
    path = write_report(args.results, args.output, args.title)
    print(f"report: {Path(path).resolve()}")
    return path
