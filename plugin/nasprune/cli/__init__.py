"""The ``nasprune`` command: fine-tune, train a super-network, search it, or do it all.

Flags follow the HuggingFace example scripts (``--model``, ``--task``, ``--max-seq-length``,
``--max-train-samples`` ...). Errors a user can fix print one line and exit with status 2.

Each command is a module of this package with ``HELP`` (and optionally ``DESCRIPTION``),
``add_arguments(parser)`` and ``run_from_args(args)``; the flag groups they share are in
:mod:`nasprune.cli.flags`. Commands import ``flags``, never this entry point.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from types import ModuleType
from typing import Sequence

import datasets
import transformers

from nasprune.cli import baseline, compare, export, finetune, nas, recover, run, search, train_supernet
from nasprune.errors import NaspruneError
from nasprune.output_dir import check_output_dir, lock_output_dir

#: The commands in the order ``--help`` lists them: name -> module.
COMMANDS: dict[str, ModuleType] = {
    "run": run,
    "finetune": finetune,
    "train-supernet": train_supernet,
    "search": search,
    "export": export,
    "recover": recover,
    "nas": nas,
    "baseline": baseline,
    "compare": compare,
}


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``nasprune`` command and all its sub-commands."""
    parser = argparse.ArgumentParser(
        prog="nasprune",
        description="Prune fine-tuned language models by multi-objective neural architecture search.",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        description = getattr(module, "DESCRIPTION", None)
        extra = {"description": description} if description else {}
        module.add_arguments(commands.add_parser(name, help=module.HELP, **extra))
    return parser


def _configure_logging(quiet: bool) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("nasprune").setLevel(logging.INFO)
    transformers.logging.set_verbosity_error()
    # Their bars (tokenising, saving shards) flash by in a second; ours cover the long steps.
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` names (default: ``sys.argv``; no command: ``run``); the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["run", *(argv or [])])
    _configure_logging(args.quiet)
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
            COMMANDS[args.command].run_from_args(args)
    except NaspruneError as err:
        print(f"nasprune: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nasprune: interrupted; finished epochs and results are on disk", file=sys.stderr)
        return 130
    return 0
