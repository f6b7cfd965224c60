"""``nasprune nas``: standard NAS, each sub-network fine-tuned as a Syne Tune trial."""

from __future__ import annotations

import argparse

from nasprune.cli.flags import add_data_flags, add_objective_flags, comma_separated, fill_default_task
from nasprune.cli.summary import print_search_summary
from nasprune.data import DataOptions
from nasprune.objectives import EVAL_BATCH_SIZE
from nasprune.snas import BACKENDS, TRIALS_TABLE, StandardNASResult, run_standard_nas

HELP = "standard NAS: fine-tune each sub-network as a Syne Tune trial (MO-ASHA, NSGA-II, ...)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``nasprune nas``."""
    add_data_flags(parser)
    group = parser.add_argument_group("search")
    group.add_argument("--search-space", default="small", help="small, small_pow2, medium, layer or large")
    group.add_argument(
        "--method",
        default="moasha",
        help="moasha (multi-fidelity, stops weak trials early), nsga2, ehvi, lsbo, rsbo, morea, "
        "local_search or random_search",
    )
    group.add_argument(
        "--n-workers", type=int,
        help="trials running at the same time (default: 2 locally; with --backend ray, as many as the cluster has room for)",
    )
    budget = group.add_mutually_exclusive_group(required=True)
    budget.add_argument("--max-wallclock-time", type=float, help="stop after this many seconds")
    budget.add_argument("--max-trials", type=int, help="start this many trials and let them finish")
    add_objective_flags(group)  # with latency, each trial times its sub-network in its own process
    group.add_argument("--output-dir", required=True, help="where the Syne Tune experiment and the results go")
    group.add_argument(
        "--max-failures", type=int,
        help="stop the search after more failed trials than this "
        "(default: the larger of 3 and a tenth of --max-trials)",
    )
    continuing = group.add_mutually_exclusive_group()
    continuing.add_argument(
        "--resume", action="store_true",
        help="continue the experiment in --output-dir (refuse when there is none); rerunning the same "
        "command continues it as well",
    )
    continuing.add_argument(
        "--overwrite-output-dir", action="store_true",
        help="start afresh instead of continuing the experiment in --output-dir",
    )
    cluster = parser.add_argument_group("where trials run")
    cluster.add_argument(
        "--backend", choices=BACKENDS, default="local",
        help="local: trials are processes on this machine; ray: Ray tasks on a Ray cluster (pip install 'nasprune[ray]')",
    )
    cluster.add_argument(
        "--ray-address",
        help="with --backend ray: the cluster, 'auto' (the one this machine joined) or HOST:PORT "
        "(default: $RAY_ADDRESS, else Ray starts on this machine)",
    )
    cluster.add_argument(
        "--storage",
        help="with --backend ray: folder all nodes share, or a URI such as s3://bucket/path, for the trial "
        "checkpoints (default: the syne-tune folder in --output-dir)",
    )
    cluster.add_argument("--cpus-per-trial", type=float, help="with --backend ray: CPUs per trial (default 1)")
    cluster.add_argument(
        "--gpus-per-trial", type=float,
        help="with --backend ray: GPUs per trial (default 1 where the cluster has GPUs, else 0)",
    )
    cluster.add_argument(
        "--max-retries", type=int, default=3,
        help="with --backend ray: runs of a trial after its node died, each from its last checkpoint (default 3)",
    )
    training = parser.add_argument_group("training (every trial)")
    training.add_argument("--epochs", type=int, default=3, help="epochs per trial (MO-ASHA's max_t)")
    training.add_argument("--learning-rate", type=float, default=2e-5, help="peak learning rate of AdamW (linear schedule)")
    training.add_argument("--batch-size", type=int, default=32, help="training examples per step")
    training.add_argument("--warmup-ratio", type=float, default=0.1, help="share of the steps spent warming up the learning rate")
    training.add_argument("--eval-batch-size", type=int, default=EVAL_BATCH_SIZE, help="batch size of the validation and test measurements")
    training.add_argument("--seed", type=int, default=0, help="seed of training and search (not of the data split)")
    training.add_argument(
        "--data-seed", type=int, default=0,
        help="seed of the train/validation/test split and the sample caps",
    )
    training.add_argument(
        "--num-threads", type=int, help="CPU threads per trial (default: the cores split across the workers)"
    )


def run_from_args(args: argparse.Namespace) -> StandardNASResult:
    """``nasprune nas``."""
    fill_default_task(args)
    result = run_standard_nas(
        args.model,
        DataOptions.from_args(args),
        args.output_dir,
        search_space=args.search_space,
        method=args.method,
        n_workers=args.n_workers,
        max_wallclock_time=args.max_wallclock_time,
        max_trials=args.max_trials,
        epochs=args.epochs,
        seed=args.seed,
        objectives=comma_separated(args.objectives),
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        warmup_ratio=args.warmup_ratio,
        macs_seq_length=args.macs_seq_length,
        latency_batch_size=args.latency_batch_size,
        latency_seq_length=args.latency_seq_length,
        eval_batch_size=args.eval_batch_size,
        num_threads=args.num_threads,
        max_failures=args.max_failures,
        resume=args.resume,
        overwrite=args.overwrite_output_dir,
        backend=args.backend,
        ray_address=args.ray_address,
        storage=args.storage,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_retries=args.max_retries,
    )
    print_summary(result)
    return result


def print_summary(result: StandardNASResult) -> None:
    """The trial counts, the Pareto table and the files of a standard-NAS run."""
    summary = result.summary
    counts = {status: n for status, n in summary["trial_counts"].items() if n and status != "started"}
    print_search_summary(result, headline=(
        f"\n{summary['trial_counts']['started']} trials in {summary['search_seconds']:.0f}s "
        f"({', '.join(f'{n} {s}' for s, n in counts.items())}), {summary['num_evaluated']} sub-networks "
        f"evaluated; hypervolume {summary['hypervolume']:.4f}"
    ))
    if summary["failed_trials"]:
        print(f"failed trials and their errors: {result.output_dir / TRIALS_TABLE}")
