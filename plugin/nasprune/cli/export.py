"""``nasprune export``: cut a sub-network out of a checkpoint as a smaller model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nasprune.cli.flags import add_data_flags, data_overrides_from_args
from nasprune.objectives import EVAL_BATCH_SIZE
from nasprune.recovery import RECOVERY_LOSSES, RecoveryOptions
from nasprune.workflows import export

HELP = "cut a sub-network out of a checkpoint as a smaller model that loads with from_pretrained"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``nasprune export``."""
    parser.add_argument("--checkpoint", required=True, help="the super-network checkpoint that was searched")
    parser.add_argument("--results", required=True, help="a search --output-dir, or its results.csv")
    choose = parser.add_mutually_exclusive_group(required=True)
    choose.add_argument(
        "--pick", type=int,
        help="index into the Pareto set, smallest first (-1: largest): the 'pick' column of pareto.md",
    )
    choose.add_argument("--trial-id", type=int, help="the row of this trial (the 'trial_id' column)")
    choose.add_argument("--max-params", type=float, help="the most accurate Pareto point within this relative size")
    choose.add_argument(
        "--max-macs", type=float, help="the most accurate Pareto point within this fraction of the full model's MACs"
    )
    choose.add_argument(
        "--max-latency", type=float,
        help="the most accurate Pareto point within this fraction of the full model's latency (results of a "
        "search with the latency objective only)",
    )
    choose.add_argument("--max-error", type=float, help="the smallest Pareto point within this validation error")
    parser.add_argument("--output-dir", required=True, help="the model folder to write (must not exist yet)")
    parser.add_argument("--onnx", action="store_true", help="also write model.onnx (needs 'nasprune[onnx]')")
    parser.add_argument("--overwrite-output-dir", action="store_true", help="replace an existing --output-dir")
    parser.add_argument(
        "--no-evaluate", dest="evaluate", action="store_false",
        help="do not measure the exported model on the checkpoint's validation and test data (e.g. when "
        "the data is gone); then no error numbers are recorded",
    )
    parser.add_argument("--eval-batch-size", type=int, default=EVAL_BATCH_SIZE, help="batch size of that measurement")
    parser.add_argument(
        "--push-to-hub", metavar="REPO",
        help="then upload the folder to this Hugging Face Hub model repository (owner/name) with "
        "huggingface_hub; the token is huggingface_hub's (HF_TOKEN or 'hf auth login')",
    )
    parser.add_argument(
        "--hub-private", action="store_true", help="create the --push-to-hub repository as private"
    )
    add_recovery_flags(parser, default_epochs=0)
    # Where the checkpoint's data files are not found (moved, or outside the folders it may follow).
    add_data_flags(parser, with_model=False)


def add_recovery_flags(parser: argparse.ArgumentParser, default_epochs: int) -> None:
    """``--finetune-epochs``, ``--recovery-loss`` and ``--finetune-learning-rate`` (also read by
    ``nasprune recover``)."""
    parser.add_argument(
        "--finetune-epochs", type=int, default=default_epochs,
        help="recovery training: fine-tune the chosen sub-network for this many epochs on the checkpoint's "
        f"training split before it is saved, and record its errors before and after (default {default_epochs})",
    )
    parser.add_argument(
        "--recovery-loss", choices=RECOVERY_LOSSES, default="distill",
        help="distill: distillation from the full super-network (frozen), as the 'full' strategy trains; "
        "ce: cross-entropy on the labels (default distill)",
    )
    parser.add_argument(
        "--finetune-learning-rate", type=float, default=None,
        help="learning rate of recovery training (default: the checkpoint's training learning rate); the "
        "batch size, warm-up and temperature are the checkpoint's",
    )


def recovery_options_from_args(args: argparse.Namespace) -> RecoveryOptions:
    # A namespace built by hand (the API's callers, older scripts) may lack the flags: no recovery.
    options = RecoveryOptions(
        epochs=getattr(args, "finetune_epochs", 0),
        loss=getattr(args, "recovery_loss", "distill"),
        learning_rate=getattr(args, "finetune_learning_rate", None),
    )
    options.validate()
    return options


def run_from_args(args: argparse.Namespace) -> Path:
    """``nasprune export``."""
    path = export(
        args.checkpoint, args.results, args.output_dir, pick=args.pick, max_params=args.max_params,
        max_error=args.max_error, onnx=args.onnx, overwrite=args.overwrite_output_dir,
        evaluate=args.evaluate, eval_batch_size=args.eval_batch_size, data_overrides=data_overrides_from_args(args),
        recovery=recovery_options_from_args(args), progress=not getattr(args, "quiet", True),
        # A namespace built by hand (older scripts) may lack the newer flags.
        **{name: getattr(args, name, None) for name in ("trial_id", "max_macs", "max_latency", "push_to_hub")},
        hub_private=getattr(args, "hub_private", False),
    )
    meta = json.loads((path / "nasprune_export.json").read_text())
    how = (
        "as a stock model (no custom code)" if meta.get("format") == "stock"
        else "after 'import nasprune', or with trust_remote_code=True"
    )
    print(
        f"exported trial {meta['trial_id']}: {meta['params']:,} parameters ({meta['relative_params']:.1%} of the "
        f"model) to {path}; load it with from_pretrained('{path}') {how}; README.md is its model card"
    )
    searched = meta["searched"]
    if meta["evaluated"]:
        metric = meta.get("metric", "metric")
        print(
            f"measured on the exported model: valid {metric} {1 - meta['valid_error']:.4f} (error "
            f"{meta['valid_error']:.4f}), test {metric} {1 - meta['test_error']:.4f} (error {meta['test_error']:.4f}); "
            f"the results table (trial {searched['trial_id']}) says valid error {searched['valid_error']:.4f}, "
            f"test error {searched.get('test_error', float('nan')):.4f}"
        )
    else:
        print("not evaluated (--no-evaluate): nasprune_export.json records no error numbers")
    recovery = meta.get("recovery")
    if recovery:
        print(
            f"recovery training ({recovery['epochs']} epoch(s), {recovery['loss']}, {recovery['seconds']:.0f}s): "
            f"valid error {recovery['valid_error_before']:.4f} before, {recovery['valid_error_after']:.4f} after; "
            f"test error {recovery['test_error_before']:.4f} before, {recovery['test_error_after']:.4f} after"
        )
    if getattr(args, "push_to_hub", None):
        print(f"uploaded to https://huggingface.co/{args.push_to_hub}" + (" (private)" if args.hub_private else ""))
    return path
