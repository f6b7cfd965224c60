"""``nasprune train-supernet``: fine-tune the model as a super-network."""

from __future__ import annotations

import argparse
from pathlib import Path

from nasprune.cli.flags import add_data_flags, add_training_flags, fill_default_task, rewiring_options_from_args
from nasprune.data import DataOptions
from nasprune.training import TrainingConfig
from nasprune.workflows import train_supernet

HELP = "fine-tune the model as a super-network"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``nasprune train-supernet``."""
    add_data_flags(parser)
    add_training_flags(parser, supernet=True, epochs=5)
    parser.add_argument("--output-dir", required=True, help="where the checkpoints (OUTPUT/epoch-<n>) go")


def train_from_args(args: argparse.Namespace, strategy: str) -> Path:
    """Train with ``strategy`` (``finetune``: "standard") as the flags say; print the checkpoint."""
    fill_default_task(args)
    path = train_supernet(
        args.model,
        DataOptions.from_args(args),
        TrainingConfig.from_args(args, strategy),
        getattr(args, "search_space", "medium"),
        args.output_dir,
        overwrite=args.overwrite_output_dir,
        progress=not args.quiet,
        rewiring=rewiring_options_from_args(args),
    )
    print(f"checkpoint: {path}")
    return path


def run_from_args(args: argparse.Namespace) -> Path:
    """``nasprune train-supernet``."""
    return train_from_args(args, strategy=args.strategy)
