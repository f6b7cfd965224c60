"""``nasprune search``: search the sub-networks of a trained super-network."""

from __future__ import annotations

import argparse

from nasprune.cli.flags import add_data_flags, add_search_flags, data_overrides_from_args, search_options_from_args
from nasprune.cli.summary import print_search_summary
from nasprune.results import SearchResult
from nasprune.workflows import search

HELP = "search the sub-networks of a trained super-network"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``nasprune search``."""
    parser.add_argument("--checkpoint", required=True, help="a checkpoint folder or a training --output-dir")
    parser.add_argument("--search-space", help="default: the space the super-network was trained for")
    parser.add_argument("--seed", type=int, default=0, help="seed of the search (the data split follows --data-seed)")
    parser.add_argument("--output-dir", required=True, help="where the results, tables and plot go")
    parser.add_argument(
        "--overwrite-output-dir",
        action="store_true",
        help="replace the results of another search in --output-dir (and its journal of evaluated "
        "sub-networks) instead of refusing; the same search resumes without it",
    )
    add_data_flags(parser, with_model=False)
    add_search_flags(parser)


def run_from_args(args: argparse.Namespace) -> SearchResult:
    """``nasprune search``."""
    overrides = data_overrides_from_args(args)
    options = search_options_from_args(args)
    options.validate()
    result = search(
        args.checkpoint, options, args.output_dir, overrides, progress=not args.quiet,
        overwrite=args.overwrite_output_dir,
    )
    print_search_summary(result)
    return result
