"""``nasprune finetune``: plain fine-tuning of the whole model."""

from __future__ import annotations

import argparse
from pathlib import Path

from nasprune.cli.flags import add_data_flags, add_training_flags
from nasprune.cli.train_supernet import train_from_args

HELP = "plain fine-tuning of the whole model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``nasprune finetune``."""
    add_data_flags(parser)
    add_training_flags(parser, supernet=False, epochs=3)
    parser.add_argument("--output-dir", required=True, help="where the checkpoints (OUTPUT/epoch-<n>) go")


def run_from_args(args: argparse.Namespace) -> Path:
    """``nasprune finetune``."""
    return train_from_args(args, strategy="standard")
