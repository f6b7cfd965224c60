"""``nasprune baseline``: the pruning baselines, in the same results format as the search."""

from __future__ import annotations

import argparse

from nasprune.baselines import importance_pruning, rfp
from nasprune.baselines.runner import BASELINE_METHODS, DEFAULT_BUDGETS, BaselineOptions, run_baseline
from nasprune.cli.flags import add_data_flags, comma_separated, data_overrides_from_args
from nasprune.cli.summary import print_search_summary
from nasprune.objectives import EVAL_BATCH_SIZE
from nasprune.results import SearchResult

HELP = "pruning baselines in the same results format"


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``nasprune baseline`` (add to a sub-parser)."""
    parser.add_argument(
        "--method", required=True, choices=list(BASELINE_METHODS),
        help="the baseline to run; the groups below say which flags each one reads",
    )
    parser.add_argument(
        "--checkpoint", required=True,
        help="a fine-tuned checkpoint (nasprune finetune / train-supernet) or its output dir",
    )
    parser.add_argument("--output-dir", required=True, help="where the results, tables and plot go")
    parser.add_argument(
        "--overwrite-output-dir", action="store_true",
        help="replace the results of another run in --output-dir instead of refusing",
    )
    parser.add_argument(
        "--seed", type=int, default=0,
        help="seed of the importance sample and fine-tuning (the data split follows --data-seed)",
    )
    parser.add_argument("--objectives", default="error,params", help="error,params or error,macs")
    parser.add_argument("--macs-seq-length", type=int, help="sequence length of the MAC count")
    parser.add_argument("--eval-batch-size", type=int, default=EVAL_BATCH_SIZE, help="batch size of the validation and test measurements")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size of importance estimates and fine-tuning")
    parser.add_argument(
        "--num-importance-samples", type=int, default=512,
        help="training examples for the Fisher information / head importance",
    )
    add_data_flags(parser, with_model=False)
    group = parser.add_argument_group("rfp (Kwon et al. 2022) and importance")
    group.add_argument("--constraint", default="macs", choices=list(rfp.CONSTRAINTS), help="the cost that --budgets limits")
    group.add_argument(
        "--budgets", type=_floats, default=DEFAULT_BUDGETS,
        help="comma-separated fractions of the constrained cost (default 0.3,...,0.9)",
    )
    group.add_argument("--no-mask-tuning", dest="tune_masks", action="store_false", help="skip least-squares tuning")
    group.add_argument("--no-rearrangement", dest="rearrange_masks", action="store_false", help="skip mask rearrangement")
    group.add_argument("--num-tuning-samples", type=int, default=256, help="training examples for mask tuning")
    group = parser.add_argument_group("importance (one-shot first-order pruning of heads and units, then fine-tuning)")
    group.add_argument(
        "--importance", default="taylor", choices=list(importance_pruning.CRITERIA),
        help="taylor: sum over examples of |mask gradient| (gradient x activation); fisher: of its square",
    )
    group.add_argument(
        "--allocation", default="uniform", choices=list(importance_pruning.ALLOCATIONS),
        help="uniform: every layer keeps the same share of heads and of units; global: rank all heads "
        "together and all units together across layers",
    )
    group = parser.add_argument_group("head-pruning (Michel et al. 2019)")
    group.add_argument("--prune-fraction", type=float, default=0.1, help="share of all heads pruned per step")
    group = parser.add_argument_group("layer-drop (Sajjad et al. 2023), importance and model")
    group.add_argument(
        "--epochs", type=int, default=1, help="fine-tuning epochs (layer-drop: per k; importance: per budget; 0: none)"
    )
    group.add_argument("--learning-rate", type=float, default=2e-5, help="peak learning rate of fine-tuning (AdamW)")
    group.add_argument("--warmup-ratio", type=float, default=0.1, help="share of the fine-tuning steps spent warming up")
    group.add_argument("--reference-model", help="--method model: the smaller pre-trained model (name or path)")


def options_from_args(args: argparse.Namespace) -> BaselineOptions:
    """The flags of :func:`add_arguments` as :class:`BaselineOptions`."""
    return BaselineOptions(
        method=args.method,
        seed=args.seed,
        objectives=tuple(comma_separated(args.objectives)),
        eval_batch_size=args.eval_batch_size,
        macs_seq_length=args.macs_seq_length,
        num_importance_samples=args.num_importance_samples,
        batch_size=args.batch_size,
        constraint=args.constraint,
        budgets=tuple(args.budgets),
        tune_masks=args.tune_masks,
        rearrange_masks=args.rearrange_masks,
        num_tuning_samples=args.num_tuning_samples,
        importance=args.importance,
        allocation=args.allocation,
        prune_fraction=args.prune_fraction,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        warmup_ratio=args.warmup_ratio,
        reference_model=args.reference_model,
    )


def run_from_args(args: argparse.Namespace) -> SearchResult:
    """``nasprune baseline``."""
    options = options_from_args(args)
    options.validate()
    overrides = data_overrides_from_args(args)
    result = run_baseline(
        args.checkpoint, options, args.output_dir, overrides, progress=not args.quiet,
        overwrite=args.overwrite_output_dir,
    )
    print_search_summary(result)
    return result
